"""Multi-view identity loss on real faces (Genova et al., CVPR 2018, Sec. 3.2).

The caller renders the predicted face of each photo in ``views`` random poses
and lightings (``LossConfig.identity_views``, default 3) and encodes photo and
renders with the same frozen FaceNet; the loss is one minus the cosine
similarity of the embeddings, averaged over views and photos.
"""
from typing import Optional

import tensorflow as tf

from unsup3dmm.losses import _checks


def identity_loss(photo_embeddings,
                  render_embeddings,
                  example_weights: Optional[tf.Tensor] = None) -> tf.Tensor:
  """``1 - cos(photo embedding, render embedding)``, mean over views/batch.

  Both embeddings are L2-normalised here (FaceNet's already are; this keeps
  the value a true cosine for any input), so the per-pair value is in [0, 2]:
  0 for the same direction, 1 for orthogonal.  Reduction: the mean over the
  views of each photo, then the mean over the batch -- with
  ``example_weights``, the weighted mean ``sum_i w_i L_i / sum_i w_i`` (0 when
  all weights are 0), e.g. a real-photo mask in a hybrid batch.

  Args:
    photo_embeddings: float32 ``[batch, embedding_dim]`` embeddings of the
      photos.  Constant in training (frozen encoder, fixed photo), but
      gradients do flow if the caller makes them depend on variables.
    render_embeddings: float32 ``[batch, views, embedding_dim]`` embeddings
      of the renders of each photo's prediction; gradients flow (to the
      renders, hence the coefficients and the decoder).
    example_weights: optional float32 ``[batch]`` non-negative weights.

  Returns:
    float32 scalar in [0, 2].

  Raises:
    ValueError: wrong dtype, rank or mismatched sizes, naming the argument.
  """
  photo = _checks.matrix(photo_embeddings, "photo_embeddings")
  renders = tf.convert_to_tensor(render_embeddings, dtype_hint=tf.float32)
  if renders.dtype != tf.float32 or renders.shape.rank != 3:
    raise ValueError(f"render_embeddings: expected float32 [batch, views, "
                     f"embedding_dim], got {renders.dtype.name} "
                     f"{renders.shape}")
  if not (renders.shape[:1].is_compatible_with(photo.shape[:1]) and
          renders.shape[2:].is_compatible_with(photo.shape[1:])):
    raise ValueError(f"render_embeddings: expected [{photo.shape[0]}, views, "
                     f"{photo.shape[1]}] to match photo_embeddings "
                     f"{photo.shape}, got {renders.shape}")
  if renders.shape[1] == 0:
    raise ValueError("render_embeddings: expected at least one view, got "
                     f"{renders.shape}")
  if example_weights is not None:
    example_weights = _checks.example_weights(example_weights, photo,
                                              "example_weights")
  photo = tf.math.l2_normalize(photo, axis=-1)
  renders = tf.math.l2_normalize(renders, axis=-1)
  cosine = tf.reduce_sum(renders * photo[:, tf.newaxis, :], axis=-1)
  per_example = tf.reduce_mean(1.0 - cosine, axis=1)
  return _checks.weighted_mean(per_example, example_weights)
