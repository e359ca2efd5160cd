"""Batch-distribution loss on real faces (Genova et al., CVPR 2018, Sec. 3.3).

The predicted coefficients of a batch of real photos should look like draws
from the morphable model's prior, a standard normal per coefficient (the
coefficients are in units of each component's std).  For shape and texture
separately, the per-coefficient batch mean is pulled to 0 and the
per-coefficient batch variance to 1.
"""
import tensorflow as tf

from unsup3dmm.losses import _checks


def _moment_terms(coefficients):
  count = tf.cast(tf.shape(coefficients)[0], tf.float32)
  mean = tf.reduce_mean(coefficients, axis=0)
  # Unbiased (Bessel-corrected) variance: its expectation is 1 for standard-
  # normal coefficients at any batch size, so small real batches are not
  # pushed towards inflated spread.
  variance = tf.reduce_sum(tf.square(coefficients - mean), axis=0) / (count -
                                                                       1.0)
  return (tf.reduce_mean(tf.square(mean)),
          tf.reduce_mean(tf.square(variance - 1.0)))


def batch_distribution_loss(shape_coefficients,
                            texture_coefficients) -> tf.Tensor:
  """Squared deviation of batch mean from 0 and batch variance from 1.

  With ``m_k`` the batch mean and ``v_k`` the unbiased batch variance
  (divisor ``batch - 1``) of coefficient ``k``::

    L = mean_k(m_k^2) + mean_k((v_k - 1)^2)        over shape coefficients
      + mean_k(m_k^2) + mean_k((v_k - 1)^2)        over texture coefficients

  i.e. the sum of four terms, each a mean over coefficients.  Weighted later
  by ``LossConfig.batch_distribution_weight`` (10).  Pass only the real
  photos of a hybrid batch.

  Args:
    shape_coefficients: float32 ``[batch, shape_components]`` predictions
      (units of component std), batch >= 2; gradients flow.
    texture_coefficients: float32 ``[batch, texture_components]``, same
      batch; gradients flow.

  Returns:
    float32 scalar >= 0 (~0 for a large standard-normal batch).

  Raises:
    ValueError: wrong dtype/rank, mismatched batch sizes, or a static batch
      size below 2.
  """
  shape = _checks.matrix(shape_coefficients, "shape_coefficients")
  texture = _checks.matrix(texture_coefficients, "texture_coefficients")
  if not shape.shape[:1].is_compatible_with(texture.shape[:1]):
    raise ValueError(f"texture_coefficients: expected the batch size of "
                     f"shape_coefficients ({shape.shape[0]}), got "
                     f"{texture.shape[0]}")
  batch = shape.shape[0] if shape.shape[0] is not None else texture.shape[0]
  if batch is not None and batch < 2:
    raise ValueError(f"shape_coefficients: the batch variance needs at least "
                     f"2 examples, got a batch of {batch}")
  return tf.add_n(list(_moment_terms(shape)) + list(_moment_terms(texture)))
