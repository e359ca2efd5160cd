"""Tests of the loss functions: NumPy references, analytic cases, gradients.

The end-to-end gradient tests render the predicted faces of the demo
morphable model with the real renderer and encode them with the small
``TinyTestEncoder`` (fast); test_encoder.py repeats the identity-loss
optimisation with the real FaceNet.
"""
import numpy as np
import pytest
import tensorflow as tf

from unsup3dmm import losses
from unsup3dmm.losses import combine
from unsup3dmm.model import encoder as encoder_lib
from unsup3dmm.model import morphable_model
from unsup3dmm.model import regressor as regressor_lib
from unsup3dmm.renderer import render
from unsup3dmm.renderer.config import RendererConfig

SHAPE_K = 7
TEXTURE_K = 5


def _np_parameter_loss(s, t, s_hat, t_hat, ws, wt, weights=None):
  per_example = []
  for i in range(s.shape[0]):
    value = 0.0
    for k in range(s.shape[1]):
      value += ws * (s[i, k] - s_hat[i, k])**2
    for k in range(t.shape[1]):
      value += wt * (t[i, k] - t_hat[i, k])**2
    per_example.append(value)
  per_example = np.array(per_example)
  if weights is None:
    return per_example.mean()
  return (weights * per_example).sum() / weights.sum()


def _random(rng, *shape):
  return rng.normal(size=shape).astype(np.float32)


def test_parameter_loss_matches_numpy_reference():
  rng = np.random.default_rng(0)
  s, t, s_hat, t_hat = (_random(rng, 4, SHAPE_K), _random(rng, 4, TEXTURE_K),
                        _random(rng, 4, SHAPE_K), _random(rng, 4, TEXTURE_K))
  value = losses.parameter_loss(s, t, s_hat, t_hat, 0.4, 0.002)
  np.testing.assert_allclose(
      value.numpy(), _np_parameter_loss(s, t, s_hat, t_hat, 0.4, 0.002),
      rtol=1e-5)
  weights = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
  masked = losses.parameter_loss(s, t, s_hat, t_hat, 0.4, 0.002,
                                 example_weights=weights)
  np.testing.assert_allclose(
      masked.numpy(),
      _np_parameter_loss(s, t, s_hat, t_hat, 0.4, 0.002, weights), rtol=1e-5)
  # The masked loss is the loss of the selected examples alone.
  np.testing.assert_allclose(
      masked.numpy(),
      losses.parameter_loss(s[::2], t[::2], s_hat[::2], t_hat[::2], 0.4,
                            0.002).numpy(), rtol=1e-6)
  zero = losses.parameter_loss(s, t, s_hat, t_hat, 0.4, 0.002,
                               example_weights=np.zeros(4, np.float32))
  assert zero.numpy() == 0.0


def test_parameter_loss_gradient_is_analytic():
  rng = np.random.default_rng(1)
  s, t = _random(rng, 3, SHAPE_K), _random(rng, 3, TEXTURE_K)
  s_hat = tf.Variable(_random(rng, 3, SHAPE_K))
  t_hat = tf.Variable(_random(rng, 3, TEXTURE_K))
  with tf.GradientTape() as tape:
    value = losses.parameter_loss(s, t, s_hat, t_hat, 0.4, 0.002)
  d_s, d_t = tape.gradient(value, [s_hat, t_hat])
  # d/ds_hat mean_i [0.4 sum_k (s - s_hat)^2] = -2 * 0.4 * (s - s_hat) / B.
  np.testing.assert_allclose(d_s.numpy(), -2 * 0.4 * (s - s_hat.numpy()) / 3,
                             rtol=1e-5)
  np.testing.assert_allclose(d_t.numpy(),
                             -2 * 0.002 * (t - t_hat.numpy()) / 3, rtol=1e-5)


def test_loopback_loss_is_parameter_loss_with_gradients_to_both_arguments():
  rng = np.random.default_rng(2)
  first_s = tf.Variable(_random(rng, 2, SHAPE_K))
  first_t = tf.Variable(_random(rng, 2, TEXTURE_K))
  loop_s = tf.Variable(_random(rng, 2, SHAPE_K))
  loop_t = tf.Variable(_random(rng, 2, TEXTURE_K))
  with tf.GradientTape() as tape:
    value = losses.loopback_loss(first_s, first_t, loop_s, loop_t, 0.4, 0.002)
  np.testing.assert_allclose(
      value.numpy(),
      _np_parameter_loss(first_s.numpy(), first_t.numpy(), loop_s.numpy(),
                         loop_t.numpy(), 0.4, 0.002), rtol=1e-5)
  grads = tape.gradient(value, [first_s, first_t, loop_s, loop_t])
  # No stop_gradient on the first prediction: equal and opposite gradients.
  np.testing.assert_allclose(grads[0].numpy(), -grads[2].numpy(), rtol=1e-6)
  np.testing.assert_allclose(grads[1].numpy(), -grads[3].numpy(), rtol=1e-6)
  assert np.abs(grads[0].numpy()).min() > 0


def _np_identity_loss(photo, renders, weights=None):
  per_example = []
  for i in range(photo.shape[0]):
    values = []
    for v in range(renders.shape[1]):
      a, b = photo[i], renders[i, v]
      values.append(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    per_example.append(np.mean(values))
  per_example = np.array(per_example)
  if weights is None:
    return per_example.mean()
  return (weights * per_example).sum() / weights.sum()


def test_identity_loss_matches_numpy_reference():
  rng = np.random.default_rng(3)
  photo = _random(rng, 4, 16)
  renders = _random(rng, 4, 3, 16)
  np.testing.assert_allclose(
      losses.identity_loss(photo, renders).numpy(),
      _np_identity_loss(photo, renders), rtol=1e-5)
  weights = np.array([0.0, 1.0, 2.0, 0.0], np.float32)
  np.testing.assert_allclose(
      losses.identity_loss(photo, renders, example_weights=weights).numpy(),
      _np_identity_loss(photo, renders, weights), rtol=1e-5)


def test_identity_loss_extremes():
  rng = np.random.default_rng(4)
  photo = _random(rng, 3, 8)
  same = np.repeat(photo[:, None, :] * 2.5, 3, axis=1)
  assert abs(losses.identity_loss(photo, same).numpy()) < 1e-6
  assert abs(losses.identity_loss(photo, -same).numpy() - 2.0) < 1e-6
  # An orthogonal render: cosine 0, loss 1.
  a = np.array([[1.0, 0.0]], np.float32)
  b = np.array([[[0.0, 3.0]]], np.float32)
  assert abs(losses.identity_loss(a, b).numpy() - 1.0) < 1e-6


def test_batch_distribution_loss_constructed_batch_is_analytic():
  # Two examples per coefficient, (mu + d, mu - d): batch mean mu, unbiased
  # variance ((d)^2 + (d)^2) / (2 - 1) = 2 d^2.
  mu_s = np.array([0.5, -1.0, 0.0], np.float32)
  d_s = np.array([1.0, 0.5, 2.0], np.float32)
  mu_t = np.array([2.0, 0.0], np.float32)
  d_t = np.array([0.0, 1.0 / np.sqrt(2.0)], np.float32)
  shape = np.stack([mu_s + d_s, mu_s - d_s])
  texture = np.stack([mu_t + d_t, mu_t - d_t])
  expected = (np.mean(mu_s**2) + np.mean((2 * d_s**2 - 1)**2) +
              np.mean(mu_t**2) + np.mean((2 * d_t**2 - 1)**2))
  # = (1.25/3) + ((1 + 0.25 + 49) / 3) + 2 + (1 + 0) / 2
  np.testing.assert_allclose(expected, 1.25 / 3 + 50.25 / 3 + 2.0 + 0.5,
                             rtol=1e-6)
  np.testing.assert_allclose(
      losses.batch_distribution_loss(shape, texture).numpy(), expected,
      rtol=1e-5)


def test_batch_distribution_loss_of_standard_normal_batch_is_small():
  rng = np.random.default_rng(5)
  shape = _random(rng, 20000, 40)
  texture = _random(rng, 20000, 30)
  # Sampling error: mean^2 ~ 1/B = 5e-5, (var - 1)^2 ~ 2/B = 1e-4 per term.
  assert losses.batch_distribution_loss(shape, texture).numpy() < 1e-3
  # Twice the std: each variance term is (4 - 1)^2 = 9.
  np.testing.assert_allclose(
      losses.batch_distribution_loss(2 * shape, 2 * texture).numpy(), 18.0,
      rtol=0.02)


def test_batch_distribution_loss_rejects_single_example():
  with pytest.raises(ValueError, match="at least 2 examples"):
    losses.batch_distribution_loss(np.zeros([1, 3], np.float32),
                                   np.zeros([1, 2], np.float32))


def test_loss_input_errors_name_the_argument():
  s = np.zeros([2, 3], np.float32)
  t = np.zeros([2, 4], np.float32)
  with pytest.raises(ValueError, match="shape_prediction"):
    losses.parameter_loss(s, t, np.zeros([2, 5], np.float32), t, 1.0, 1.0)
  with pytest.raises(ValueError, match="loopback_texture"):
    losses.loopback_loss(s, t, s, np.zeros([3, 4], np.float32), 1.0, 1.0)
  with pytest.raises(ValueError, match="texture_target"):
    losses.parameter_loss(s, np.zeros([3, 4], np.float32), s,
                          np.zeros([3, 4], np.float32), 1.0, 1.0)
  with pytest.raises(ValueError, match="example_weights"):
    losses.parameter_loss(s, t, s, t, 1.0, 1.0,
                          example_weights=np.ones(3, np.float32))
  with pytest.raises(ValueError, match="float32"):
    losses.parameter_loss(tf.constant(s, tf.float64), t, s, t, 1.0, 1.0)
  with pytest.raises(ValueError, match="render_embeddings"):
    losses.identity_loss(np.zeros([2, 8], np.float32),
                         np.zeros([2, 8], np.float32))
  with pytest.raises(ValueError, match="render_embeddings"):
    losses.identity_loss(np.zeros([2, 8], np.float32),
                         np.zeros([2, 3, 16], np.float32))
  with pytest.raises(ValueError, match="texture_coefficients"):
    losses.batch_distribution_loss(s, np.zeros([3, 4], np.float32))


def test_combine_losses_weights_from_config_and_names_terms():
  config = losses.LossConfig()
  terms = {"parameter": tf.constant(2.0), "identity": tf.constant(0.5),
           "batch_distribution": tf.constant(0.25),
           "loopback": tf.constant(4.0)}
  total, named = losses.combine_losses(terms, config,
                                       regularization=tf.constant(1000.0))
  expected = {
      "parameter": 2.0,
      "identity": config.identity_weight * 0.5,
      "batch_distribution": config.batch_distribution_weight * 0.25,
      "loopback": config.loopback_weight * 4.0,
      "regularization": config.decoder_l2_weight * 1000.0,
  }
  assert set(named) == set(expected) | {"total"}
  for name, value in expected.items():
    np.testing.assert_allclose(named[name].numpy(), value, rtol=1e-6)
  np.testing.assert_allclose(total.numpy(), sum(expected.values()), rtol=1e-6)
  assert named["total"] is total
  # The paper's weights are the LossConfig defaults.
  assert (config.batch_distribution_weight, config.loopback_weight) == (10.0,
                                                                        0.07)
  assert combine.term_weight("identity", config) == config.identity_weight
  # Stage 1: the parameter term alone.
  total, named = losses.combine_losses({"parameter": tf.constant(3.0)}, config)
  assert total.numpy() == 3.0 and set(named) == {"parameter", "total"}


def test_combine_losses_errors():
  config = losses.LossConfig()
  with pytest.raises(ValueError, match="unknown loss term"):
    losses.combine_losses({"identiy": tf.constant(1.0)}, config)
  with pytest.raises(ValueError, match="scalar"):
    losses.combine_losses({"identity": tf.ones([2])}, config)
  with pytest.raises(ValueError, match="at least one"):
    losses.combine_losses({}, config)


# ---------------------------------------------------------------------------
# End-to-end gradients through render -> encode -> decode.


@pytest.fixture(scope="module")
def face_model():
  return morphable_model.TFMorphableModel(
      morphable_model.load_morphable_model("demo"))


def random_view_renderer(face_model, seed):
  """``(shape, texture, view) -> images``: the real renderer in a random pose
  and lighting per (seed, view), random background colours."""
  config = RendererConfig()

  def render_view(shape, texture, view):
    batch = shape.shape[0]
    return render.render_coefficients(
        face_model, shape, texture,
        render.sample_poses(batch, [seed, view], config),
        render.sample_lights(batch, [seed + 1, view], config), config,
        background_seed=[seed + 2, view]).images

  return render_view


def _photos(seed, batch):
  # Smooth random "photos" (the tiny encoder pools them to 8x8 anyway).
  coarse = tf.random.stateless_uniform([batch, 8, 8, 3], [seed, 1])
  return tf.image.resize(coarse, (160, 160))


def _regressor(encoder, face_model):
  return regressor_lib.Regressor(encoder, face_model.shape_components,
                                 face_model.texture_components,
                                 decoder_units=32,
                                 decoder_output_init_stddev=0.1, seed=3)


def _real_face_losses(regressor, renderer, photos, views, config):
  """Identity and loopback terms of a batch of real photos."""
  first = regressor(photos)
  shape = first[regressor_lib.SHAPE_COEFFICIENTS]
  texture = first[regressor_lib.TEXTURE_COEFFICIENTS]
  renders = [renderer(shape, texture, v) for v in range(views)]
  render_embeddings = tf.stack(
      [regressor.encoder(r).embeddings for r in renders], axis=1)
  identity = losses.identity_loss(first[regressor_lib.EMBEDDINGS],
                                  render_embeddings)
  loop = regressor(renders[0])
  loopback = losses.loopback_loss(shape, texture,
                                  loop[regressor_lib.SHAPE_COEFFICIENTS],
                                  loop[regressor_lib.TEXTURE_COEFFICIENTS],
                                  config.shape_parameter_weight,
                                  config.texture_parameter_weight)
  return identity, loopback


@pytest.mark.parametrize("term", ["identity", "loopback"])
def test_real_face_losses_give_gradients_to_every_decoder_variable(
    term, face_model):
  config = losses.LossConfig()
  encoder = encoder_lib.TinyTestEncoder()
  regressor = _regressor(encoder, face_model)
  renderer = random_view_renderer(face_model, seed=10)
  with tf.GradientTape(persistent=True) as tape:
    identity, loopback = _real_face_losses(regressor, renderer, _photos(0, 4),
                                           config.identity_views, config)
    value = identity if term == "identity" else loopback
  decoder_variables = regressor.decoder.trainable_variables
  assert len(regressor.trainable_variables) == len(decoder_variables) == 6
  for variable, gradient in zip(decoder_variables,
                                tape.gradient(value, decoder_variables)):
    assert gradient is not None, variable.path
    assert np.all(np.isfinite(gradient.numpy())), variable.path
    assert np.abs(gradient.numpy()).max() > 0, variable.path
  encoder_gradients = tape.gradient(value, encoder.weights)
  assert encoder.weights and all(g is None for g in encoder_gradients)
  assert not encoder.trainable_weights


def test_identity_loss_optimisation_lowers_it(face_model):
  config = losses.LossConfig()
  encoder = encoder_lib.TinyTestEncoder()
  regressor = _regressor(encoder, face_model)
  renderer = random_view_renderer(face_model, seed=20)
  photos = _photos(1, 2)
  optimizer = tf.keras.optimizers.Adam(3e-2)
  values = []
  for _ in range(8):
    with tf.GradientTape() as tape:
      identity, _ = _real_face_losses(regressor, renderer, photos,
                                      config.identity_views, config)
    variables = regressor.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(identity, variables),
                                  variables))
    values.append(float(identity))
  assert values[-1] < 0.7 * values[0], values
