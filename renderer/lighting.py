"""Point lights with colour temperatures, and their random sampler.

Lights live in camera space (origin at the camera centre, mm, +x image right,
+y image up, camera looking along -z; see renderer/camera.py), so a light
stays put in the image while the head turns.
"""
import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from unsup3dmm.renderer import camera as camera_lib
from unsup3dmm.renderer.config import RendererConfig

# Rec. 709 / sRGB luminance weights of linear R, G, B.
LUMINANCE_WEIGHTS = (0.2126, 0.7152, 0.0722)


class Lights(NamedTuple):
  """Point lights plus an ambient term (a ``tf.nest`` structure of tensors).

  Attributes:
    positions_mm: float32 ``[batch, light_count, 3]``, camera space, mm.
    colors: float32 ``[batch, light_count, 3]``, linear RGB radiance scale of
      each light (colour times intensity), >= 0.
    ambient: float32 ``[batch, 3]``, linear RGB ambient light, >= 0.
  Gradients flow to all three.
  """
  positions_mm: tf.Tensor
  colors: tf.Tensor
  ambient: tf.Tensor


def kelvin_to_rgb(kelvin) -> tf.Tensor:
  """Approximate RGB colour of a black body at a colour temperature.

  Tanner Helland's fit ("How to convert temperature (K) to RGB", 2012) of
  Mitchell Charity's blackbody table: piecewise power and log curves in
  ``t = kelvin / 100``, valid for 1000 K to 40000 K:

      red   = 1 for t <= 66, else 1.29294 (t - 60)^-0.13320
      green = 0.39008 ln t - 0.63184 for t <= 66,
              else 1.12989 (t - 60)^-0.07551
      blue  = 1 for t >= 66, 0 for t <= 19,
              else 0.54321 ln(t - 10) - 1.19625

  each clipped to [0, 1].  6500 K gives nearly white (1, 0.997, 0.981).

  Args:
    kelvin: float32 tensor ``[...]``, colour temperature, kelvin, in
      [1000, 40000].

  Returns:
    float32 ``[..., 3]`` RGB in [0, 1].  Piecewise differentiable.
  """
  t = tf.clip_by_value(tf.convert_to_tensor(kelvin, tf.float32) / 100.0,
                       10.0, 400.0)
  warm = t <= 66.0
  above = tf.maximum(t - 60.0, 1e-3)
  red = tf.where(warm, tf.ones_like(t), 1.29293618606 * above ** -0.1332047592)
  green = tf.where(warm, 0.39008157876 * tf.math.log(t) - 0.63184144378,
                   1.12989086089 * above ** -0.0755148492)
  blue = tf.where(
      t >= 66.0, tf.ones_like(t),
      tf.where(t <= 19.0, tf.zeros_like(t),
               0.54320678911 * tf.math.log(tf.maximum(t - 10.0, 1e-3)) -
               1.19625408914))
  return tf.clip_by_value(tf.stack([red, green, blue], axis=-1), 0.0, 1.0)


def light_color(kelvin, white_balance_kelvin) -> tf.Tensor:
  """Light colour seen by a camera white-balanced at ``white_balance_kelvin``.

  ``kelvin_to_rgb(kelvin) / kelvin_to_rgb(white_balance_kelvin)`` (von Kries
  scaling), normalised to unit luminance so that the colour temperature
  changes the hue and not the brightness.

  Args:
    kelvin: float32 ``[...]``, light colour temperature, kelvin.
    white_balance_kelvin: float32 scalar, kelvin.

  Returns:
    float32 ``[..., 3]`` linear RGB with luminance 1.
  """
  rgb = kelvin_to_rgb(kelvin) / kelvin_to_rgb(white_balance_kelvin)
  luminance = tf.reduce_sum(rgb * tf.constant(LUMINANCE_WEIGHTS), axis=-1,
                            keepdims=True)
  return rgb / luminance


def white_balance(colors, strength) -> tf.Tensor:
  """Partial automatic white balance of each image's light colours.

  Cameras scale the colour channels so that the scene's light looks white;
  ``strength`` is the fraction (in the log domain) of the colour cast they
  remove, the cast being the mean colour of the image's lights:
  ``colors / cast^strength`` (von Kries scaling), renormalised to unit
  luminance.

  Args:
    colors: float32 ``[batch, light_count, 3]`` light colours of unit
      luminance (from :func:`light_color`).
    strength: float in [0, 1]; 0 leaves the colours, 1 makes the mean
      light white (before each light is renormalised to unit luminance).

  Returns:
    float32 ``[batch, light_count, 3]`` with unit luminance.
  """
  cast = tf.reduce_mean(colors, axis=1, keepdims=True)
  balanced = colors * tf.pow(cast, -float(strength))
  luminance = tf.reduce_sum(balanced * tf.constant(LUMINANCE_WEIGHTS),
                            axis=-1, keepdims=True)
  return balanced / luminance


def _check_config(config: RendererConfig):
  camera_lib.check_range(config.light_distance_range_mm,
                          "config.light_distance_range_mm", 0.0)
  if config.light_distance_range_mm[0] <= 0:
    raise ValueError("config.light_distance_range_mm must be positive, got "
                     f"{config.light_distance_range_mm}")
  camera_lib.check_range(config.light_intensity_range,
                          "config.light_intensity_range", 0.0)
  camera_lib.check_range(config.ambient_intensity_range,
                          "config.ambient_intensity_range", 0.0)
  if not 0.0 <= config.light_max_angle_degrees <= 90.0:
    raise ValueError("config.light_max_angle_degrees must be in [0, 90], got "
                     f"{config.light_max_angle_degrees}")
  if isinstance(config.light_count, bool) or not isinstance(
      config.light_count, int) or config.light_count < 1:
    raise ValueError("config.light_count must be a positive int, got "
                     f"{config.light_count!r}")
  sources = config.light_sources_kelvin
  if not sources:
    raise ValueError("config.light_sources_kelvin must list at least one "
                     "(min, max) range")
  jitter = config.color_temperature_jitter_kelvin
  if jitter < 0:
    raise ValueError("config.color_temperature_jitter_kelvin must be >= 0, "
                     f"got {jitter}")
  for source in sources:
    camera_lib.check_range(tuple(source),
                            "each range of config.light_sources_kelvin",
                            1000.0 + jitter, 40000.0 - jitter)
  if not 0.0 <= config.auto_white_balance <= 1.0:
    raise ValueError("config.auto_white_balance must be in [0, 1], got "
                     f"{config.auto_white_balance}")
  if not 1000.0 <= config.white_balance_kelvin <= 40000.0:
    raise ValueError("config.white_balance_kelvin must be in [1000, 40000], "
                     f"got {config.white_balance_kelvin}")


def sample_lights(batch_size: int, seed, config: RendererConfig) -> Lights:
  """Random point lights in front of the face, with random colours.

  Per image and light: a direction from the face centre (the camera's
  look-at point, ``(0, 0, -camera_distance_mm)`` in camera space) uniform on
  the spherical cap within ``light_max_angle_degrees`` of the direction to the
  camera; a distance uniform in ``light_distance_range_mm``; an intensity
  uniform in ``light_intensity_range``; a source picked uniformly from
  ``light_sources_kelvin``, a temperature uniform in its range plus a uniform
  jitter of +-``color_temperature_jitter_kelvin``, turned into a colour by
  :func:`light_color` and :func:`white_balance` (``auto_white_balance``).
  The ambient light has an intensity uniform in ``ambient_intensity_range``
  and the mean colour of the image's point lights.

  Args:
    batch_size: positive int.
    seed: int, pair of ints or int ``[2]`` tensor (stateless RNG seed).
    config: :class:`RendererConfig`.

  Returns:
    :class:`Lights` with ``[batch_size, config.light_count, ...]`` tensors,
    camera space.  Random, no gradient.

  Raises:
    ValueError: for a bad batch size, seed or lighting config.
  """
  batch_size = camera_lib.check_batch_size(batch_size)
  _check_config(config)
  count = config.light_count
  seeds = tf.random.experimental.stateless_split(
      camera_lib.seed_pair(seed), 2)
  unit = tf.random.stateless_uniform([7, batch_size, count], seeds[0])
  # Direction: uniform on the cap cos(theta) in [cos(max_angle), 1].
  cos_max = math.cos(math.radians(config.light_max_angle_degrees))
  cos_theta = 1.0 - unit[0] * (1.0 - cos_max)
  sin_theta = tf.sqrt(tf.maximum(1.0 - cos_theta ** 2, 0.0))
  phi = 2.0 * math.pi * unit[1]
  direction = tf.stack([sin_theta * tf.cos(phi), sin_theta * tf.sin(phi),
                        cos_theta], axis=-1)
  low, high = config.light_distance_range_mm
  distance = low + (high - low) * unit[2]
  face_center = tf.constant([0.0, 0.0, -float(config.camera_distance_mm)])
  positions = face_center + direction * distance[..., None]
  low, high = config.light_intensity_range
  intensity = low + (high - low) * unit[3]
  sources = np.asarray(config.light_sources_kelvin, np.float32)   # [S, 2]
  index = tf.minimum(tf.cast(unit[4] * len(sources), tf.int32),
                     len(sources) - 1)
  source_low = tf.gather(sources[:, 0], index)
  source_high = tf.gather(sources[:, 1], index)
  jitter = config.color_temperature_jitter_kelvin * (2.0 * unit[5] - 1.0)
  kelvin = source_low + (source_high - source_low) * unit[6] + jitter
  chroma = white_balance(light_color(kelvin, config.white_balance_kelvin),
                         config.auto_white_balance)          # [B, L, 3]
  low, high = config.ambient_intensity_range
  ambient_intensity = low + (high - low) * tf.random.stateless_uniform(
      [batch_size, 1], seeds[1])
  return Lights(positions_mm=positions,
                colors=chroma * intensity[..., None],
                ambient=tf.reduce_mean(chroma, axis=1) * ambient_intensity)


def check_lights(lights, batch_size=None, name: str = "lights") -> Lights:
  """Converts a :class:`Lights` to float32 tensors, checking shapes.

  Raises:
    ValueError: naming the field whose shape is not ``[batch, lights, 3]`` /
      ``[batch, 3]``.
  """
  if not isinstance(lights, Lights):
    raise ValueError(f"{name} must be a Lights record, got "
                     f"{type(lights).__name__}")
  positions = tf.convert_to_tensor(lights.positions_mm, tf.float32)
  colors = tf.convert_to_tensor(lights.colors, tf.float32)
  ambient = tf.convert_to_tensor(lights.ambient, tf.float32)
  if positions.shape.rank != 3 or positions.shape[-1] != 3:
    raise ValueError(f"{name}.positions_mm must have shape [batch, "
                     f"light_count, 3], got {positions.shape}")
  if not colors.shape.is_compatible_with(positions.shape):
    raise ValueError(f"{name}.colors must have the shape of positions_mm "
                     f"{positions.shape}, got {colors.shape}")
  if ambient.shape.rank != 2 or ambient.shape[-1] != 3:
    raise ValueError(f"{name}.ambient must have shape [batch, 3], got "
                     f"{ambient.shape}")
  for field, value in (("positions_mm", positions), ("ambient", ambient)):
    if (batch_size is not None and value.shape[0] is not None and
        value.shape[0] != batch_size):
      raise ValueError(f"{name}.{field} must have batch size {batch_size}, "
                       f"got shape {value.shape}")
  return Lights(positions, colors, ambient)
