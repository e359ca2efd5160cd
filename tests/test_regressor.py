"""Tests of the coefficient decoder and the regressor (with the test encoder).

The real FaceNet regressor is exercised in test_encoder.py.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from unsup3dmm.model import encoder as encoder_lib
from unsup3dmm.model import regressor as regressor_lib
from unsup3dmm.model.config import ModelConfig


def _images(batch, seed=0):
  return tf.random.stateless_uniform([batch, 160, 160, 3], [seed, 2])


def _regressor(**overrides):
  kwargs = dict(shape_components=11, texture_components=6, decoder_units=24,
                decoder_output_init_stddev=1e-3, seed=0)
  kwargs.update(overrides)
  return regressor_lib.Regressor(encoder_lib.TinyTestEncoder(), **kwargs)


def test_outputs_shapes_and_decode_matches_call():
  regressor = _regressor()
  images = _images(3)
  out = regressor(images)
  assert out["shape_coefficients"].shape == (3, 11)
  assert out["texture_coefficients"].shape == (3, 6)
  assert out["features"].shape == (3, 64)
  assert out["embeddings"].shape == (3, 16)
  decoded = regressor.decode(out["features"])
  for key in ("shape_coefficients", "texture_coefficients"):
    np.testing.assert_array_equal(decoded[key].numpy(), out[key].numpy())
  # The decoder is the documented MLP: relu(relu(x W1 + b1) W2 + b2) W3 + b3.
  d = regressor.decoder
  x = out["features"].numpy()
  hidden = np.maximum(x @ d.hidden_1.kernel.numpy() + d.hidden_1.bias.numpy(),
                      0)
  hidden = np.maximum(
      hidden @ d.hidden_2.kernel.numpy() + d.hidden_2.bias.numpy(), 0)
  coefficients = (hidden @ d.coefficients.kernel.numpy() +
                  d.coefficients.bias.numpy())
  np.testing.assert_allclose(out["shape_coefficients"].numpy(),
                             coefficients[:, :11], rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(out["texture_coefficients"].numpy(),
                             coefficients[:, 11:], rtol=1e-4, atol=1e-7)


def test_new_decoder_predicts_near_the_mean_face():
  out = _regressor(decoder_units=1024)(_images(4))
  for key in ("shape_coefficients", "texture_coefficients"):
    values = out[key].numpy()
    assert np.abs(values).max() < 0.05
    assert np.abs(values).max() > 0  # not a dead (all-zero) output layer


def test_only_decoder_variables_are_trainable():
  regressor = _regressor()
  trainable = regressor.trainable_variables
  assert len(trainable) == 6
  decoder_ids = {id(v) for v in regressor.decoder.trainable_variables}
  assert {id(v) for v in trainable} == decoder_ids
  assert not regressor.encoder.trainable_weights
  assert regressor.encoder.non_trainable_weights
  # Variables exist before the first call (checkpoint restore, optimiser).
  kernel = regressor.decoder.hidden_1.kernel
  assert kernel.shape == (64, 24)


def test_weight_penalty_is_sum_of_squared_kernels():
  regressor = _regressor()
  d = regressor.decoder
  expected = sum(
      np.sum(layer.kernel.numpy().astype(np.float64)**2)
      for layer in (d.hidden_1, d.hidden_2, d.coefficients))
  np.testing.assert_allclose(regressor.weight_penalty().numpy(), expected,
                             rtol=1e-5)
  with tf.GradientTape() as tape:
    penalty = regressor.weight_penalty()
  kernel_gradient, bias_gradient = tape.gradient(
      penalty, [d.hidden_2.kernel, d.hidden_2.bias])
  np.testing.assert_allclose(kernel_gradient.numpy(),
                             2 * d.hidden_2.kernel.numpy(), rtol=1e-6)
  assert bias_gradient is None


def test_seed_makes_initialisation_reproducible():
  a = _regressor(seed=5)(_images(2))["shape_coefficients"].numpy()
  b = _regressor(seed=5)(_images(2))["shape_coefficients"].numpy()
  c = _regressor(seed=6)(_images(2))["shape_coefficients"].numpy()
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 0


def test_from_model_config_uses_config_sizes():
  config = ModelConfig(decoder_units=16, decoder_output_init_stddev=0.5)
  regressor = regressor_lib.Regressor.from_model_config(
      config, encoder_lib.TinyTestEncoder(), 4, 3)
  assert regressor.decoder.hidden_1.kernel.shape == (64, 16)
  assert regressor.decoder.coefficients.kernel.shape == (16, 7)
  # Truncated normal, std 0.5: |w| <= 2 std, sample std ~ 0.88 * 0.5.
  kernel = regressor.decoder.coefficients.kernel.numpy()
  assert np.abs(kernel).max() <= 1.0
  assert 0.3 < kernel.std() < 0.6


def test_regressor_runs_in_tf_function_with_gradient_to_images():
  regressor = _regressor()
  images = tf.Variable(_images(2))

  @tf.function
  def coefficients_sum():
    with tf.GradientTape() as tape:
      out = regressor(images)
      total = tf.reduce_sum(out["shape_coefficients"])
    return total, tape.gradient(total, images)

  total, gradient = coefficients_sum()
  np.testing.assert_allclose(
      total.numpy(), np.sum(regressor(images)["shape_coefficients"].numpy()),
      rtol=1e-5)
  assert np.abs(gradient.numpy()).max() > 0


def test_errors():
  trainable = keras.layers.Dense(8)
  trainable.build((None, 4))
  with pytest.raises(ValueError, match="frozen encoder"):
    regressor_lib.Regressor(trainable, 3, 3, 8, 1e-3)
  with pytest.raises(ValueError, match="shape_components"):
    _regressor(shape_components=0)
  with pytest.raises(ValueError, match="output_init_stddev"):
    _regressor(decoder_output_init_stddev=0.0)
  regressor = _regressor()
  with pytest.raises(ValueError, match=r"features: expected .*\[batch, 64\]"):
    regressor.decode(np.zeros([2, 65], np.float32))
  with pytest.raises(ValueError, match=r"images: expected shape"):
    regressor(tf.zeros([2, 128, 128, 3]))
  with pytest.raises(ValueError, match="float32"):
    regressor(tf.zeros([2, 160, 160, 3], tf.uint8))
