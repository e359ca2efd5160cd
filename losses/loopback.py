"""Loopback loss on real faces (Genova et al., CVPR 2018, Sec. 3.4).

The caller renders the first prediction ``(s, t)`` for a real photo in a
random pose and lighting, encodes the render and decodes it again to
``(s', t')``; this loss is the parameter loss between the two predictions.
It makes the regressor map its own renders back to the same coefficients.

Gradients flow through BOTH arguments: through the loopback prediction
(render -> encoder -> decoder) and through the first prediction, which is
deliberately not wrapped in ``tf.stop_gradient`` (the paper backpropagates
through both paths; stopping it would only train the decoder's response to
renders, not make the first prediction consistent).
"""
from typing import Optional

import tensorflow as tf

from unsup3dmm.losses import parameter


def loopback_loss(first_shape,
                  first_texture,
                  loopback_shape,
                  loopback_texture,
                  shape_weight: float,
                  texture_weight: float,
                  example_weights: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Parameter loss between a prediction and the prediction from its render.

  ``mean_i [lambda_s ||s_i - s'_i||^2 + lambda_t ||t_i - t'_i||^2]``, exactly
  :func:`unsup3dmm.losses.parameter_loss` (same reduction and
  ``example_weights``), weighted later by ``LossConfig.loopback_weight``.

  Args:
    first_shape: float32 ``[batch, shape_components]`` prediction from the
      photos; gradients flow (no stop_gradient).
    first_texture: float32 ``[batch, texture_components]``; gradients flow.
    loopback_shape: float32 ``[batch, shape_components]`` prediction from the
      renders of the first prediction; gradients flow.
    loopback_texture: float32 ``[batch, texture_components]``; gradients flow.
    shape_weight, texture_weight: lambda_s, lambda_t
      (``LossConfig.shape_parameter_weight`` / ``texture_parameter_weight``).
    example_weights: optional float32 ``[batch]`` weights (e.g. a real-photo
      mask in a hybrid batch).

  Returns:
    float32 scalar >= 0.

  Raises:
    ValueError: mismatched shapes, naming the argument.
  """
  return parameter.squared_error_loss(
      (first_shape, first_texture, loopback_shape, loopback_texture),
      ("first_shape", "first_texture", "loopback_shape", "loopback_texture"),
      shape_weight, texture_weight, example_weights)
