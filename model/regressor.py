"""Image -> morphable-model coefficients: frozen encoder + trainable decoder.

Genova et al., CVPR 2018, Sec. 4: the FaceNet average-pool features (1792-D)
go through two fully connected ReLU layers (1024 units) and a linear layer to
the shape and colour ("texture") coefficients of the morphable model (199 +
199 = 398 outputs for BFM 2017).  Coefficients are in units of each
component's standard deviation (the morphable model multiplies them by the
component's std), so 0 is the mean face and a standard-normal draw is a
plausible face.

Only the decoder is trainable.  :class:`Regressor` also returns the encoder's
features and embeddings so that training reuses them (the identity loss needs
the photo's embedding), and :meth:`Regressor.decode` runs the decoder alone on
cached features.

Checkpoint ``regressor.decoder`` (the only part that changes); the encoder is
rebuilt from its weights file.
"""
from typing import Dict

import keras
import tensorflow as tf

from unsup3dmm.model.config import ModelConfig

SHAPE_COEFFICIENTS = "shape_coefficients"
TEXTURE_COEFFICIENTS = "texture_coefficients"
FEATURES = "features"
EMBEDDINGS = "embeddings"


class CoefficientDecoder(keras.layers.Layer):
  """Encoder features -> (shape, texture) coefficients: FC-ReLU x2, linear.

  Weights are created at construction (``feature_dim`` is known), so the
  variables exist before the first call (checkpoint restore, optimiser).
  The hidden layers use Keras' default Glorot-uniform kernels and zero
  biases; the output layer's kernel is truncated-normal with a small std and
  its bias is zero, so a new decoder predicts coefficients close to 0, the
  mean face.  All initialisers are seeded from ``seed``.
  """

  def __init__(self, feature_dim: int, shape_components: int,
               texture_components: int, units: int,
               output_init_stddev: float, seed: int = 0, **kwargs):
    """Args:
      feature_dim: width of the encoder features (FaceNet: 1792).
      shape_components, texture_components: coefficients to predict (>= 1).
      units: width of each hidden layer (``ModelConfig.decoder_units``).
      output_init_stddev: std of the output kernel's truncated-normal init
        (``ModelConfig.decoder_output_init_stddev``), > 0.
      seed: initialiser seed.

    Raises:
      ValueError: a size < 1 or a non-positive std.
    """
    super().__init__(**kwargs)
    for name, value in (("feature_dim", feature_dim),
                        ("shape_components", shape_components),
                        ("texture_components", texture_components),
                        ("units", units)):
      if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if not output_init_stddev > 0:
      raise ValueError(f"output_init_stddev: expected a positive number, got "
                       f"{output_init_stddev!r}")
    self.feature_dim = feature_dim
    self.shape_components = shape_components
    self.texture_components = texture_components
    self.hidden_1 = keras.layers.Dense(
        units, activation="relu", name="hidden_1",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed))
    self.hidden_2 = keras.layers.Dense(
        units, activation="relu", name="hidden_2",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1))
    self.coefficients = keras.layers.Dense(
        shape_components + texture_components, name="coefficients",
        kernel_initializer=keras.initializers.TruncatedNormal(
            stddev=output_init_stddev, seed=seed + 2))
    self.hidden_1.build((None, feature_dim))
    self.hidden_2.build((None, units))
    self.coefficients.build((None, units))
    self.built = True

  def call(self, features):
    """Decodes features.

    Args:
      features: float32 ``[batch, feature_dim]`` encoder features; gradients
        flow to them and to the decoder's variables.

    Returns:
      ``(shape [batch, shape_components], texture [batch,
      texture_components])`` float32 coefficients, units of each component's
      standard deviation.
    """
    hidden = self.hidden_2(self.hidden_1(features))
    coefficients = self.coefficients(hidden)
    return (coefficients[:, :self.shape_components],
            coefficients[:, self.shape_components:])

  def weight_penalty(self) -> tf.Tensor:
    """Sum of squares of the three kernels (biases excluded), a float32 scalar.

    The L2 regularisation term: :func:`unsup3dmm.losses.combine_losses`
    multiplies it by ``LossConfig.decoder_l2_weight``.  Gradients flow to the
    kernels (d/dW = 2 W).
    """
    return tf.add_n([
        tf.reduce_sum(tf.square(layer.kernel))
        for layer in (self.hidden_1, self.hidden_2, self.coefficients)
    ])


class Regressor(keras.Model):
  """Face crops -> morphable-model coefficients (+ encoder outputs).

  ``regressor(images)`` returns a dict with float32 tensors:

  * ``"shape_coefficients"``: ``[batch, shape_components]``,
  * ``"texture_coefficients"``: ``[batch, texture_components]``,
  * ``"features"``: ``[batch, feature_dim]`` encoder features,
  * ``"embeddings"``: ``[batch, embedding_dim]`` unit-norm embeddings.

  Only ``regressor.decoder``'s variables are trainable.
  """

  def __init__(self, encoder: keras.layers.Layer, shape_components: int,
               texture_components: int, decoder_units: int,
               decoder_output_init_stddev: float, seed: int = 0, **kwargs):
    """Args:
      encoder: a frozen encoder (``model.encoder.FaceNetEncoder``; in tests
        ``TinyTestEncoder``) with ``feature_dim`` and a call returning
        ``EncoderOutput(features, embeddings)``.
      shape_components, texture_components: coefficients to predict.
      decoder_units, decoder_output_init_stddev: see
        :class:`CoefficientDecoder`.
      seed: decoder initialiser seed.

    Raises:
      ValueError: a trainable encoder, or bad decoder sizes.
    """
    super().__init__(**kwargs)
    if encoder.trainable_weights:
      raise ValueError(f"encoder: expected a frozen encoder, but "
                       f"{encoder.name} has {len(encoder.trainable_weights)} "
                       "trainable variables")
    self.encoder = encoder
    self.decoder = CoefficientDecoder(encoder.feature_dim, shape_components,
                                      texture_components, decoder_units,
                                      decoder_output_init_stddev, seed=seed,
                                      name="decoder")

  @classmethod
  def from_model_config(cls, model_config: ModelConfig,
                        encoder: keras.layers.Layer, shape_components: int,
                        texture_components: int,
                        seed: int = 0) -> "Regressor":
    """A regressor with ``model_config``'s decoder settings.

    ``shape_components``/``texture_components`` come from the loaded
    morphable model (after ``ModelConfig.shape_components`` truncation).
    """
    return cls(encoder, shape_components, texture_components,
               model_config.decoder_units,
               model_config.decoder_output_init_stddev, seed=seed)

  def call(self, images) -> Dict[str, tf.Tensor]:
    """Encodes and decodes face crops.

    Args:
      images: float32 ``[batch, 160, 160, 3]`` RGB in [0, 1]; gradients flow
        to it through the (frozen) encoder.

    Returns:
      The dict described in the class docstring.

    Raises:
      ValueError: ``images`` of the wrong dtype or shape (from the encoder).
    """
    features, embeddings = self.encoder(images)
    shape, texture = self.decoder(features)
    return {
        SHAPE_COEFFICIENTS: shape,
        TEXTURE_COEFFICIENTS: texture,
        FEATURES: features,
        EMBEDDINGS: embeddings,
    }

  def decode(self, features) -> Dict[str, tf.Tensor]:
    """Runs the decoder alone (e.g. on cached encoder features).

    Args:
      features: float32 ``[batch, feature_dim]``.

    Returns:
      ``{"shape_coefficients": [batch, shape_components],
      "texture_coefficients": [batch, texture_components]}`` float32.

    Raises:
      ValueError: ``features`` is not ``[batch, feature_dim]``.
    """
    features = tf.convert_to_tensor(features, dtype_hint=tf.float32)
    if features.shape.rank != 2 or features.shape[1] not in (
        None, self.decoder.feature_dim):
      raise ValueError(f"features: expected shape [batch, "
                       f"{self.decoder.feature_dim}], got {features.shape}")
    shape, texture = self.decoder(features)
    return {SHAPE_COEFFICIENTS: shape, TEXTURE_COEFFICIENTS: texture}

  def weight_penalty(self) -> tf.Tensor:
    """The decoder's :meth:`CoefficientDecoder.weight_penalty`."""
    return self.decoder.weight_penalty()
