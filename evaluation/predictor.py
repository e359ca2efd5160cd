"""A trained regressor loaded from a model directory, for evaluation/prediction.

``Predictor.from_model_dir(model_dir)`` prefers the latest checkpoint (with the
run's ``config.json``) and falls back to the SavedModel in
``model_dir/export``.  Either way it offers the same calls on float32 face
crops ``[batch, 160, 160, 3]`` with RGB in [0, 1]:

* :meth:`Predictor.encode` -> encoder features and embeddings,
* :meth:`Predictor.decode` -> shape and texture coefficients,
* :meth:`Predictor.predict` = decode(encode(images)).
"""
import os
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from unsup3dmm import config as config_lib
from unsup3dmm.model import encoder as encoder_lib
from unsup3dmm.model import morphable_model as morphable_model_lib
from unsup3dmm.model import regressor as regressor_lib
from unsup3dmm.training import export as export_lib


class Predictor:
  """Face crops -> coefficients, from a checkpoint or a SavedModel."""

  def __init__(self, cfg: config_lib.Config, encode_fn, decode_fn,
               source: str,
               morphable_model: Optional[
                   morphable_model_lib.MorphableModel] = None):
    """Args:
      cfg: the run's config (morphable model, renderer settings).
      encode_fn: float32 images [batch, 160, 160, 3] in [0, 1] ->
        (features, embeddings) numpy arrays.
      decode_fn: features -> (shape, texture) numpy arrays.
      source: what was loaded (for the metrics).
      morphable_model: the loaded model (default: loaded from ``cfg``).
    """
    self.cfg = cfg
    self.source = source
    self.morphable_model = (morphable_model or
                            morphable_model_lib.load_from_config(cfg.model))
    self.tf_morphable_model = morphable_model_lib.TFMorphableModel(
        self.morphable_model)
    self._encode = encode_fn
    self._decode = decode_fn

  @classmethod
  def from_model_dir(cls, model_dir: str,
                     facenet_weights: Optional[str] = None,
                     encoder=None) -> "Predictor":
    """Loads the latest checkpoint of ``model_dir`` (or its SavedModel).

    Args:
      model_dir: a training run's folder (``config.json`` plus checkpoints,
        and/or ``export/``).
      facenet_weights: overrides the run's ``model.facenet_weights``.
      encoder: an already built encoder to reuse (tests).

    Raises:
      ValueError: naming ``model_dir`` when it holds neither.
    """
    if not os.path.isdir(model_dir):
      raise ValueError(f"--model_dir: {model_dir!r} is not a folder")
    config_path = os.path.join(model_dir, config_lib.CONFIG_FILENAME)
    latest = tf.train.latest_checkpoint(model_dir)
    export_path = os.path.join(model_dir, export_lib.EXPORT_SUBDIR)
    if not os.path.exists(config_path):
      raise ValueError(f"--model_dir: {model_dir!r} has no "
                       f"{config_lib.CONFIG_FILENAME}; is it a training run?")
    cfg = config_lib.Config.load(config_path)
    if facenet_weights:
      cfg = cfg.override([f"model.facenet_weights={facenet_weights}"],
                         source="--facenet_weights")
    if latest:
      return cls._from_checkpoint(cfg, latest, encoder)
    if os.path.isdir(export_path):
      return cls._from_saved_model(cfg, export_path)
    raise ValueError(f"--model_dir: {model_dir!r} has neither a checkpoint "
                     "nor an export/ SavedModel")

  @classmethod
  def _from_checkpoint(cls, cfg, checkpoint_path, encoder):
    mm = morphable_model_lib.load_from_config(cfg.model)
    encoder = encoder or encoder_lib.FaceNetEncoder.from_model_config(
        cfg.model)
    regressor = regressor_lib.Regressor.from_model_config(
        cfg.model, encoder, mm.shape_components, mm.texture_components)
    regressor.decode(tf.zeros([1, encoder.feature_dim]))
    status = tf.train.Checkpoint(decoder=regressor.decoder).restore(
        checkpoint_path)
    status.expect_partial()
    try:
      status.assert_existing_objects_matched()
    except AssertionError as e:
      raise ValueError(f"Checkpoint {checkpoint_path} does not match the "
                       f"decoder of its config ({e})") from None
    logging.info("Loaded %s", checkpoint_path)

    def encode(images):
      return tuple(t.numpy() for t in encoder(tf.constant(images, tf.float32)))

    def decode(features):
      out = regressor.decode(tf.constant(features, tf.float32))
      return (out[regressor_lib.SHAPE_COEFFICIENTS].numpy(),
              out[regressor_lib.TEXTURE_COEFFICIENTS].numpy())

    predictor = cls(cfg, encode, decode, checkpoint_path, mm)
    predictor.encoder = encoder
    return predictor

  @classmethod
  def _from_saved_model(cls, cfg, export_path):
    loaded = tf.saved_model.load(export_path)
    encode_signature = loaded.signatures["encode"]
    decode_signature = loaded.signatures["decode"]

    def encode(images):
      out = encode_signature(images=tf.constant(images, tf.float32) * 255.0)
      return out["features"].numpy(), out["embeddings"].numpy()

    def decode(features):
      out = decode_signature(features=tf.constant(features, tf.float32))
      return (out["shape_coefficients"].numpy(),
              out["texture_coefficients"].numpy())

    logging.info("Loaded SavedModel %s", export_path)
    return cls(cfg, encode, decode, export_path)

  def encode(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """float32 [batch, 160, 160, 3] in [0, 1] -> (features, embeddings)."""
    return self._encode(np.asarray(images, np.float32))

  def decode(self, features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """float32 [batch, feature_dim] -> (shape [batch, Ks], texture [batch, Kt])."""
    return self._decode(np.asarray(features, np.float32))

  def predict(self, images: np.ndarray, batch_size: int = 32
             ) -> Tuple[np.ndarray, np.ndarray]:
    """Coefficients of face crops, in batches."""
    shapes, textures = [], []
    for start in range(0, len(images), batch_size):
      features, _ = self.encode(images[start:start + batch_size])
      shape, texture = self.decode(features)
      shapes.append(shape)
      textures.append(texture)
    return np.concatenate(shapes), np.concatenate(textures)
