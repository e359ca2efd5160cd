"""Boundary checks shared by the loss functions (static shapes only)."""
import tensorflow as tf


def matrix(value, name: str) -> tf.Tensor:
  """A float32 ``[batch, count]`` tensor, or ValueError naming ``name``."""
  tensor = tf.convert_to_tensor(value, dtype_hint=tf.float32)
  if tensor.dtype != tf.float32:
    raise ValueError(f"{name}: expected float32, got {tensor.dtype.name}")
  if tensor.shape.rank != 2:
    raise ValueError(f"{name}: expected shape [batch, count], got "
                     f"{tensor.shape}")
  return tensor


def same_shape(a: tf.Tensor, a_name: str, b: tf.Tensor, b_name: str) -> None:
  if not a.shape.is_compatible_with(b.shape):
    raise ValueError(f"{b_name}: expected the shape of {a_name} {a.shape}, "
                     f"got {b.shape}")


def example_weights(value, batch_like: tf.Tensor, name: str) -> tf.Tensor:
  """A float32 ``[batch]`` weight vector matching ``batch_like``'s batch."""
  tensor = tf.convert_to_tensor(value, dtype_hint=tf.float32)
  tensor = tf.cast(tensor, tf.float32)
  if tensor.shape.rank != 1 or not tensor.shape.is_compatible_with(
      batch_like.shape[:1]):
    raise ValueError(f"{name}: expected shape [{batch_like.shape[0]}] (one "
                     f"weight per example), got {tensor.shape}")
  return tensor


def weighted_mean(per_example: tf.Tensor, weights) -> tf.Tensor:
  """``sum(w * x) / sum(w)`` (0 when ``sum(w) == 0``); plain mean if None."""
  if weights is None:
    return tf.reduce_mean(per_example)
  return tf.math.divide_no_nan(tf.reduce_sum(weights * per_example),
                               tf.reduce_sum(weights))
