"""Parameter loss on synthetic faces (Genova et al., CVPR 2018, Sec. 3.1).

For a face with known coefficients ``(s, t)`` and predicted ``(s_hat,
t_hat)``::

  L = lambda_s * ||s - s_hat||^2 + lambda_t * ||t - t_hat||^2

with the paper's lambda_s = 0.4 and lambda_t = 0.002
(``LossConfig.shape_parameter_weight`` / ``texture_parameter_weight``).
"""
from typing import Optional

import tensorflow as tf

from unsup3dmm.losses import _checks


def parameter_loss(shape_target,
                   texture_target,
                   shape_prediction,
                   texture_prediction,
                   shape_weight: float,
                   texture_weight: float,
                   example_weights: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Weighted squared error of shape and texture coefficients.

  Reduction: per example, the squared errors are summed over the
  coefficients (then weighted by ``shape_weight`` / ``texture_weight`` and
  added); over the batch, the mean -- with ``example_weights``, the weighted
  mean ``sum_i w_i L_i / sum_i w_i`` (0 when all weights are 0), so a 0/1
  mask applies the loss to part of a hybrid batch at the scale of a batch of
  only those examples.

  Args:
    shape_target: float32 ``[batch, shape_components]`` true coefficients
      (units of component std).  Gradients flow (for the loopback loss this
      is the first prediction).
    texture_target: float32 ``[batch, texture_components]``, likewise.
    shape_prediction: float32 ``[batch, shape_components]`` predicted
      coefficients; gradients flow.
    texture_prediction: float32 ``[batch, texture_components]``; gradients
      flow.
    shape_weight: lambda_s, dimensionless (LossConfig default 0.4).
    texture_weight: lambda_t, dimensionless (LossConfig default 0.002).
    example_weights: optional float32 ``[batch]`` non-negative weights (e.g. 1
      for synthetic, 0 for real examples).

  Returns:
    float32 scalar >= 0.

  Raises:
    ValueError: non-float32 or mismatched shapes, naming the argument.
  """
  return squared_error_loss(
      (shape_target, texture_target, shape_prediction, texture_prediction),
      ("shape_target", "texture_target", "shape_prediction",
       "texture_prediction"), shape_weight, texture_weight, example_weights)


def squared_error_loss(tensors, names, shape_weight, texture_weight,
                       example_weights):
  """Checks and computes the parameter loss; ``names`` label the tensors.

  ``tensors``: (shape a, texture a, shape b, texture b); see
  :func:`parameter_loss` for shapes, reduction and gradients.
  """
  shape_a, texture_a, shape_b, texture_b = (
      _checks.matrix(t, n) for t, n in zip(tensors, names))
  _checks.same_shape(shape_a, names[0], shape_b, names[2])
  _checks.same_shape(texture_a, names[1], texture_b, names[3])
  if not shape_a.shape[:1].is_compatible_with(texture_a.shape[:1]):
    raise ValueError(f"{names[1]}: expected the batch size of {names[0]} "
                     f"({shape_a.shape[0]}), got {texture_a.shape[0]}")
  if example_weights is not None:
    example_weights = _checks.example_weights(example_weights, shape_a,
                                              "example_weights")
  per_example = (
      shape_weight * tf.reduce_sum(tf.square(shape_a - shape_b), axis=1) +
      texture_weight * tf.reduce_sum(tf.square(texture_a - texture_b), axis=1))
  return _checks.weighted_mean(per_example, example_weights)
