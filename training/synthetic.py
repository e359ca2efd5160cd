"""Synthetic faces: random coefficients, pose and lighting, rendered and encoded.

Stage 1 trains on these alone; stage 2 mixes them into hybrid batches.  Every
batch is a pure function of its seed (stateless random ops), so a run is
reproducible and resumable.

Because the encoder is frozen, the encoder features of a synthetic face never
change: :class:`SyntheticFeatureBank` renders and encodes a bank of faces once
and stage 1 then trains the decoder from it (many times faster than
rendering and encoding every batch); part of the bank is re-rendered every
``refresh_every`` steps so that the decoder keeps seeing new faces.
"""
import dataclasses
from typing import Optional

import tensorflow as tf
from absl import logging

from unsup3dmm.renderer import render as render_lib


@dataclasses.dataclass
class SyntheticBatch:
  """A batch of synthetic faces.

  Attributes:
    images: float32 [batch, height, width, 3], RGB in [0, 1] (None when the
      batch came from the feature bank).
    features: float32 [batch, feature_dim] encoder features (None before
      encoding).
    shape_coefficients: float32 [batch, shape_components], ground truth.
    texture_coefficients: float32 [batch, texture_components], ground truth.
  """
  images: Optional[tf.Tensor]
  features: Optional[tf.Tensor]
  shape_coefficients: tf.Tensor
  texture_coefficients: tf.Tensor


def sub_seed(seed: tf.Tensor, index: int) -> tf.Tensor:
  """Derives an independent stateless seed [2] from ``seed`` [2] and index."""
  seed = tf.cast(seed, tf.int64)
  return tf.random.experimental.stateless_fold_in(seed, index)


class SyntheticFaces:
  """Renders random faces of a morphable model in random poses and lights."""

  def __init__(self, tf_morphable_model, renderer_config, truncation: float):
    """Args: the TFMorphableModel, a RendererConfig, and the coefficient
    truncation in standard deviations (0: none)."""
    self.morphable_model = tf_morphable_model
    self.renderer_config = renderer_config
    self.truncation = truncation

  def sample(self, batch_size: int, seed: tf.Tensor):
    """The randomness of ``batch_size`` faces from ``seed`` (int [2]).

    Returns:
      A tuple (shape [B, Ks], texture [B, Kt], poses, lights, backgrounds
      [B, 3]) whose tensors all have the batch as first axis, so that a
      replica can slice its share of a global batch.
    """
    shape, texture = self.morphable_model.sample_coefficients(
        batch_size, seed=sub_seed(seed, 0), truncation=self.truncation or None)
    poses = render_lib.sample_poses(batch_size, sub_seed(seed, 1),
                                    self.renderer_config)
    lights = render_lib.sample_lights(batch_size, sub_seed(seed, 2),
                                      self.renderer_config)
    backgrounds = render_lib.sample_backgrounds(batch_size, sub_seed(seed, 3),
                                                self.renderer_config)
    return shape, texture, poses, lights, backgrounds

  def render_sample(self, sample) -> SyntheticBatch:
    """Renders a :meth:`sample` (or a slice of one); no features yet."""
    shape, texture, poses, lights, backgrounds = sample
    images = render_lib.render_coefficients(
        self.morphable_model, shape, texture, poses, lights,
        self.renderer_config, background=backgrounds).images
    return SyntheticBatch(images=images, features=None,
                          shape_coefficients=shape,
                          texture_coefficients=texture)

  def render(self, batch_size: int, seed: tf.Tensor) -> SyntheticBatch:
    """Samples and renders ``batch_size`` faces from ``seed`` (int [2])."""
    return self.render_sample(self.sample(batch_size, seed))


class SyntheticFeatureBank:
  """A bank of pre-rendered, pre-encoded synthetic faces.

  The bank lives in (non-trainable) variables so that a training step can
  gather a batch from it inside a ``tf.function``.  Its content is a pure
  function of (seed, refresh round), so a resumed run rebuilds the same bank.
  """

  def __init__(self, synthetic_faces: SyntheticFaces, encoder, size: int,
               seed: int, chunk_size: int = 32):
    self.synthetic_faces = synthetic_faces
    self.encoder = encoder
    self.size = size
    self.seed = seed
    self.chunk_size = chunk_size
    model = synthetic_faces.morphable_model
    self.features = tf.Variable(
        tf.zeros([size, encoder.feature_dim]), trainable=False,
        name="bank_features")
    self.shape_coefficients = tf.Variable(
        tf.zeros([size, model.shape_components]), trainable=False,
        name="bank_shape")
    self.texture_coefficients = tf.Variable(
        tf.zeros([size, model.texture_components]), trainable=False,
        name="bank_texture")
    self._render_and_encode = tf.function(self._render_and_encode_chunk)
    self.filled_round = -1

  def _render_and_encode_chunk(self, seed):
    batch = self.synthetic_faces.render(self.chunk_size, seed)
    features, _ = self.encoder(batch.images)
    return features, batch.shape_coefficients, batch.texture_coefficients

  def _fill(self, start: int, stop: int, refresh_round: int):
    for chunk_start in range(start, stop, self.chunk_size):
      seed = tf.constant([self.seed, refresh_round * 1_000_003 + chunk_start],
                         tf.int64)
      features, shape, texture = self._render_and_encode(seed)
      count = min(self.chunk_size, stop - chunk_start)
      for variable, value in ((self.features, features),
                              (self.shape_coefficients, shape),
                              (self.texture_coefficients, texture)):
        variable[chunk_start:chunk_start + count].assign(value[:count])

  def build(self):
    """Renders and encodes the whole bank (round 0)."""
    logging.info("Rendering and encoding a bank of %d synthetic faces",
                 self.size)
    self._fill(0, self.size, 0)
    self.filled_round = 0

  def refresh(self, refresh_round: int, fraction: float):
    """Re-renders a share of the bank; which share rotates with the round."""
    count = max(1, int(round(self.size * fraction)))
    start = ((refresh_round - 1) * count) % self.size
    stop = min(self.size, start + count)
    self._fill(start, stop, refresh_round)
    self.filled_round = refresh_round

  def rebuild_to(self, refresh_round: int, fraction: float):
    """Reproduces the bank as it was after ``refresh_round`` (for resume)."""
    self.build()
    for r in range(1, refresh_round + 1):
      self.refresh(r, fraction)

  def gather(self, indices: tf.Tensor) -> SyntheticBatch:
    """The faces at ``indices`` (int [batch]) as a batch without images."""
    return SyntheticBatch(
        images=None,
        features=tf.gather(self.features, indices),
        shape_coefficients=tf.gather(self.shape_coefficients, indices),
        texture_coefficients=tf.gather(self.texture_coefficients, indices))


def random_indices(count: int, population: int, seed: tf.Tensor) -> tf.Tensor:
  """``count`` distinct indices in [0, population) from a stateless seed."""
  keys = tf.random.stateless_uniform([population], seed=seed)
  return tf.argsort(keys)[:count]

