"""tf.data pipelines over prepared face crops.

The crops are the clean 160x160 PNGs written by
:func:`unsup3dmm.data.real_images.prepare_crops`; every image that reaches the
pipeline decodes.  Images leave the pipeline as float32 RGB in [0, 1], the
convention of the renderer and the encoder.
"""
from typing import Sequence

import tensorflow as tf


def decode_crop(path: tf.Tensor, crop_size: int) -> tf.Tensor:
  """Reads one crop PNG: string scalar -> float32 [crop_size, crop_size, 3]."""
  image = tf.io.decode_png(tf.io.read_file(path), channels=3)
  image = tf.image.convert_image_dtype(image, tf.float32)
  image.set_shape([crop_size, crop_size, 3])
  return image


def crop_dataset(crop_paths: Sequence[str],
                 batch_size: int,
                 seed: int,
                 crop_size: int = 160,
                 shuffle: bool = True,
                 repeat: bool = True,
                 drop_remainder: bool = True) -> tf.data.Dataset:
  """Shuffled, batched, prefetched dataset of face crops.

  Deterministic for a given ``seed``: the same seed gives the same sequence of
  batches (shuffling reshuffles each epoch from that seed).

  Args:
    crop_paths: PNG paths of prepared crops.
    batch_size: images per batch.
    seed: shuffle seed.
    crop_size: side length of the crops in pixels.
    shuffle: shuffle the paths (buffer covering the whole list).
    repeat: repeat forever.
    drop_remainder: drop a last partial batch.

  Returns:
    A dataset of (images float32 [batch, crop_size, crop_size, 3] in [0, 1],
    indices int64 [batch] into ``crop_paths``).
  """
  if not crop_paths:
    raise ValueError("crop_paths is empty: no usable real images")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  paths = tf.constant(list(crop_paths))
  ds = tf.data.Dataset.range(len(crop_paths))
  if shuffle:
    ds = ds.shuffle(len(crop_paths), seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options)
  ds = ds.map(lambda i: (decode_crop(tf.gather(paths, i), crop_size), i),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  return ds.prefetch(tf.data.AUTOTUNE)
