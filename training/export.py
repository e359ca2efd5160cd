"""SavedModel export for serving.

The exported ``tf.Module`` needs nothing of this project to run: it holds the
frozen encoder, the trained decoder and the morphable model's mean and basis as
constants.  Load it anywhere with ``tf.saved_model.load(path)``.

Signatures (all take a batch of 160x160 RGB face crops with pixel values in
0-255, cropped in the FaceNet convention):

* ``serving_default``: ``images`` float32 ``[batch, 160, 160, 3]``.
* ``serving_uint8``: ``images`` uint8 ``[batch, 160, 160, 3]``.

Both return ``shape_coefficients`` ``[batch, shape_components]``,
``texture_coefficients`` ``[batch, texture_components]`` (standard-normal
units), ``vertices`` float32 ``[batch, vertex_count, 3]`` (model space, mm) and
``vertex_colors`` float32 ``[batch, vertex_count, 3]`` (linear RGB in [0, 1]).
Two more signatures split the pipeline, so that a caller can average the
encoder features of several frames of one person before decoding (the MICC
protocol of the evaluation):

* ``encode``: ``images`` float32 (0-255) -> ``features``
  ``[batch, feature_dim]`` and ``embeddings`` ``[batch, embedding_dim]``.
* ``decode``: ``features`` float32 ``[batch, feature_dim]`` -> the four
  outputs of ``serving_default``.

The loaded object also has ``triangles`` (int32 ``[triangle_count, 3]``).
"""
import os
import shutil

import tensorflow as tf
from absl import logging

EXPORT_SUBDIR = "export"


class ServingModule(tf.Module):
  """Image -> coefficients -> mesh, for serving."""

  def __init__(self, regressor, tf_morphable_model, image_size=(160, 160)):
    super().__init__(name="unsup3dmm_serving")
    self.regressor = regressor
    self.morphable_model = tf_morphable_model
    # A variable, so that the loaded SavedModel exposes it as an attribute.
    self.triangles = tf.Variable(tf_morphable_model.triangles, trainable=False,
                                 dtype=tf.int32, name="triangles")
    height, width = image_size
    self.serve = tf.function(
        self._serve,
        input_signature=[
            tf.TensorSpec([None, height, width, 3], tf.float32, name="images")
        ])
    self.serve_uint8 = tf.function(
        self._serve_uint8,
        input_signature=[
            tf.TensorSpec([None, height, width, 3], tf.uint8, name="images")
        ])

    self.encode = tf.function(
        self._encode,
        input_signature=[
            tf.TensorSpec([None, height, width, 3], tf.float32, name="images")
        ])
    self.decode = tf.function(
        self._decode,
        input_signature=[
            tf.TensorSpec([None, regressor.encoder.feature_dim], tf.float32,
                          name="features")
        ])

  def _serve(self, images):
    prediction = self.regressor(images / 255.0, training=False)
    return self._mesh(prediction["shape_coefficients"],
                      prediction["texture_coefficients"])

  def _encode(self, images):
    features, embeddings = self.regressor.encoder(images / 255.0)
    return {"features": features, "embeddings": embeddings}

  def _decode(self, features):
    prediction = self.regressor.decode(features)
    return self._mesh(prediction["shape_coefficients"],
                      prediction["texture_coefficients"])

  def _mesh(self, shape, texture):
    return {
        "shape_coefficients": shape,
        "texture_coefficients": texture,
        "vertices": self.morphable_model.vertices(shape),
        "vertex_colors": self.morphable_model.colors(texture),
    }

  def _serve_uint8(self, images):
    return self._serve(tf.cast(images, tf.float32))


def export_saved_model(regressor, tf_morphable_model, model_dir: str,
                       image_size=(160, 160)) -> str:
  """Writes ``model_dir/export`` without ever losing a previous export.

  The SavedModel is written to a temporary folder first; only when that
  succeeds does it replace the previous export (which is kept as
  ``export.previous`` until the swap is done).

  Returns:
    The export path.
  """
  final = os.path.join(model_dir, EXPORT_SUBDIR)
  tmp = final + ".tmp"
  previous = final + ".previous"
  shutil.rmtree(tmp, ignore_errors=True)
  module = ServingModule(regressor, tf_morphable_model, image_size)
  # TensorFlow logs every renamed input of the frozen encoder (thousands of
  # names) at INFO while saving; keep the training log readable.
  verbosity = logging.get_verbosity()
  logging.set_verbosity(min(verbosity, logging.WARNING))
  try:
    tf.saved_model.save(
        module, tmp,
        signatures={
            "serving_default": module.serve,
            "serving_uint8": module.serve_uint8,
            "encode": module.encode,
            "decode": module.decode,
        })
  finally:
    logging.set_verbosity(verbosity)
  if os.path.exists(final):
    shutil.rmtree(previous, ignore_errors=True)
    os.replace(final, previous)
  os.replace(tmp, final)
  shutil.rmtree(previous, ignore_errors=True)
  return final
