"""Vertex normals and deferred Phong shading.

Shading happens per pixel ("deferred") on the interpolated albedo, normal and
camera-space position of the visible surface, with point lights and an ambient
term (Phong 1975)::

    n = normalize(normal),  v = normalize(-position)   (towards the camera)
    k_s = specular_strength * lerp(0.04, Y(albedo), specular_diffuse_mix)
    colour = albedo * ambient
           + sum_l [n.l_l > 0] * (albedo * c_l * (n.l_l)
                                  + k_s * c_l * max(r_l.v, 0)^shininess)
    l_l = normalize(light_l - position),  r_l = 2 (n.l_l) n - l_l

where ``c_l`` is light ``l``'s RGB colour times intensity and ``Y`` the Rec. 709
luminance.  The specular colour is grey (a dielectric reflects the light's
colour), 0.04 being the normal-incidence reflectance of a dielectric of
refractive index ~1.5; mixing in the diffuse luminance is a heuristic that
makes dark skin less shiny.  Lights have no distance fall-off: they are a few
metres away, so it would vary by a few percent across a face.

Both backends ("tf": TensorFlow ops; "op": C++ kernels with registered
gradients, CPU only) compute the same values and gradients, to float32
rounding.  The "tf" backend's vertex normals and fused deferred shading (the
renderer's hot path) are compiled with XLA (``jit_compile``), which runs on
CPU, GPU and TPU and fuses their per-element work and its gradient: about
three times faster than the same ops run one by one on CPU.  The separate
stages (:func:`phong_shade`, and ``barycentrics.compute_barycentrics`` and
``interpolate``) run as plain TensorFlow ops.
"""
from typing import NamedTuple

import tensorflow as tf

from unsup3dmm.renderer import barycentrics as barycentrics_lib
from unsup3dmm.renderer import camera as camera_lib
from unsup3dmm.renderer import lighting
from unsup3dmm.renderer import shading_op
from unsup3dmm.renderer.config import RendererConfig

# Normal-incidence reflectance of a dielectric (refractive index ~1.5).
DIELECTRIC_REFLECTANCE = 0.04
# Most lights the "op" backend shades with (kernels: kMaxLights).
MAX_LIGHTS_OP = 16
# Squared-length floor of vectors before normalisation (as
# tf.math.l2_normalize): keeps zero vectors (empty pixels) finite.
NORMALIZE_EPSILON = 1e-12


class Material(NamedTuple):
  """Phong material constants (Python floats, no gradient).

  Attributes:
    shininess: Phong exponent, >= 1.
    specular_strength: scale of the specular albedo, >= 0.
    specular_diffuse_mix: in [0, 1], weight of the diffuse luminance in the
      specular albedo.
  """
  shininess: float
  specular_strength: float
  specular_diffuse_mix: float

  @classmethod
  def from_config(cls, config: RendererConfig) -> "Material":
    material = cls(float(config.shininess), float(config.specular_strength),
                   float(config.specular_diffuse_mix))
    check_material(material, "config")
    return material


def check_material(material: Material, name: str = "material"):
  """Raises ValueError for out-of-range material constants."""
  if not isinstance(material, Material):
    raise ValueError(f"{name} must be a Material, got {type(material)}")
  if not material.shininess >= 1.0:
    raise ValueError(f"{name}.shininess must be >= 1, got "
                     f"{material.shininess}")
  if not material.specular_strength >= 0.0:
    raise ValueError(f"{name}.specular_strength must be >= 0, got "
                     f"{material.specular_strength}")
  if not 0.0 <= material.specular_diffuse_mix <= 1.0:
    raise ValueError(f"{name}.specular_diffuse_mix must be in [0, 1], got "
                     f"{material.specular_diffuse_mix}")


def vertex_normals(vertices, triangles, backend: str = "tf") -> tf.Tensor:
  """Unit vertex normals: area-weighted face normals summed at the vertices.

  Args:
    vertices: float32 ``[batch, vertex_count, 3]``, any space (the normals are
      in the same space), e.g. camera space, mm.
    triangles: int32 ``[triangle_count, 3]``; counter-clockwise seen from
      outside (the normal points outwards).
    backend: "tf" or "op".

  Returns:
    float32 ``[batch, vertex_count, 3]`` unit normals; zero for vertices in no
    (non-degenerate) triangle.  Differentiable with respect to ``vertices``.

  Raises:
    ValueError: for badly shaped inputs or an unknown backend.
  """
  vertices = tf.convert_to_tensor(vertices, tf.float32)
  if vertices.shape.rank != 3 or vertices.shape[-1] != 3:
    raise ValueError("vertices must have shape [batch, vertex_count, 3], got "
                     f"{vertices.shape}")
  triangles = barycentrics_lib.check_triangles(triangles)
  if barycentrics_lib.check_backend(backend) == "op":
    return shading_op.vertex_normals(vertices, triangles)
  return vertex_normals_tf(vertices, triangles)


def _normalize(vectors):
  """Unit vectors along the last axis; zero stays zero (see epsilon).

  Divides by the square root (both correctly rounded) rather than
  multiplying by tf.math.rsqrt, whose vectorised and scalar kernels round
  differently: results then do not depend on the batch size, and match the
  C++ kernels.
  """
  return vectors / tf.sqrt(tf.maximum(
      tf.reduce_sum(vectors * vectors, axis=-1, keepdims=True),
      NORMALIZE_EPSILON))


def vertex_normals_tf(vertices, triangles) -> tf.Tensor:
  """TensorFlow backend of :func:`vertex_normals` (no checks).

  Compiled with XLA, which fuses the gathers, cross products, scatter-add
  and normalisation (and their gradients): 2 to 3 times faster on CPU than
  the same ops run one by one.  Works vertex-major
  (``[vertex_count, batch, 3]``) so that the gathers and the segment sum
  move whole rows of ``batch * 3`` floats.
  """
  return _vertex_normals_xla(vertices, triangles)


@tf.function(jit_compile=True, autograph=False)
def _vertex_normals_xla(vertices, triangles):
  """:func:`vertex_normals_tf`."""
  batch_size = tf.shape(vertices)[0]
  vertex_count = tf.shape(vertices)[1]
  by_vertex = tf.reshape(tf.transpose(vertices, [1, 0, 2]),
                         [vertex_count, batch_size, 3])
  p0, p1, p2 = (tf.gather(by_vertex, triangles[:, k]) for k in range(3))
  face = tf.linalg.cross(p1 - p0, p2 - p0)        # [T, B, 3], |.| = 2 area
  summed = tf.math.unsorted_segment_sum(
      tf.concat([face, face, face], axis=0),
      tf.concat([triangles[:, 0], triangles[:, 1], triangles[:, 2]], axis=0),
      vertex_count)
  return tf.transpose(_normalize(summed), [1, 0, 2])


def check_pixel_inputs(albedo, normals, positions, mask, lights):
  """Shape checks of :func:`phong_shade`'s inputs; returns them as tensors."""
  albedo = tf.convert_to_tensor(albedo, tf.float32)
  if albedo.shape.rank != 4 or albedo.shape[-1] != 3:
    raise ValueError("albedo must have shape [batch, height, width, 3], got "
                     f"{albedo.shape}")
  normals = tf.convert_to_tensor(normals, tf.float32)
  positions = tf.convert_to_tensor(positions, tf.float32)
  for name, value in (("normals", normals), ("positions_mm", positions)):
    if not value.shape.is_compatible_with(albedo.shape):
      raise ValueError(f"{name} must have the shape of albedo "
                       f"{albedo.shape}, got {value.shape}")
  mask = tf.convert_to_tensor(mask, tf.float32)
  if not mask.shape.is_compatible_with(albedo.shape[:3]):
    raise ValueError(f"mask must have shape {albedo.shape[:3]}, got "
                     f"{mask.shape}")
  lights = lighting.check_lights(lights, albedo.shape[0])
  return albedo, normals, positions, mask, lights


def phong_shade(albedo, normals, positions_mm, mask, lights: lighting.Lights,
                material: Material, backend: str = "tf") -> tf.Tensor:
  """Deferred Phong shading of every pixel (see the module docstring).

  Args:
    albedo: float32 ``[batch, height, width, 3]``, linear RGB diffuse albedo,
      nominally in [0, 1].
    normals: float32 ``[batch, height, width, 3]``, camera space, any length
      (normalised here).
    positions_mm: float32 ``[batch, height, width, 3]``, camera space, mm.
    mask: float32 ``[batch, height, width]``, 1 where a surface is visible,
      0 where empty (output 0, no gradient).
    lights: :class:`Lights` in camera space.
    material: :class:`Material`.
    backend: "tf" or "op".

  Returns:
    float32 ``[batch, height, width, 3]`` linear RGB radiance, >= 0, not
    clipped; 0 where ``mask`` is 0.  Gradients flow to albedo, normals,
    positions and the lights' positions, colours and ambient term (not to
    ``mask``).

  Raises:
    ValueError: for badly shaped inputs, a bad material or unknown backend.
  """
  albedo, normals, positions_mm, mask, lights = check_pixel_inputs(
      albedo, normals, positions_mm, mask, lights)
  check_material(material)
  check_light_count(lights, barycentrics_lib.check_backend(backend))
  if backend == "op":
    return shading_op.phong_shade(albedo, normals, positions_mm, mask, lights,
                                  material)
  return phong_shade_tf(albedo, normals, positions_mm, mask, lights, material)


def phong_shade_tf(albedo, normals, positions_mm, mask, lights, material
                   ) -> tf.Tensor:
  """TensorFlow backend of :func:`phong_shade` (no checks)."""
  radiance = _phong(albedo, normals, positions_mm,
                    lights.positions_mm[:, None, None],
                    lights.colors[:, None, None],
                    lights.ambient[:, None, None], material)
  return radiance * mask[..., None]


def _phong(albedo, normals, positions_mm, light_positions, light_colors,
           ambient, material):
  """Phong radiance of surface points (no mask).

  Args:
    albedo, normals, positions_mm: float32 ``[..., 3]``.
    light_positions, light_colors: float32 ``[..., light_count, 3]``
      broadcastable against the points (static light_count).
    ambient: float32 ``[..., 3]`` broadcastable.
    material: :class:`Material`.

  Returns:
    float32 ``[..., 3]``.
  """
  n = _normalize(normals)
  to_camera = _normalize(-positions_mm)
  luminance = tf.reduce_sum(
      albedo * tf.constant(lighting.LUMINANCE_WEIGHTS), axis=-1,
      keepdims=True)
  specular_albedo = material.specular_strength * (
      (1.0 - material.specular_diffuse_mix) * DIELECTRIC_REFLECTANCE +
      material.specular_diffuse_mix * luminance)
  radiance = albedo * ambient
  for position, color in zip(tf.unstack(light_positions, axis=-2),
                             tf.unstack(light_colors, axis=-2)):
    to_light = _normalize(position - positions_mm)
    cosine = tf.reduce_sum(n * to_light, axis=-1, keepdims=True)
    lit = cosine > 0.0
    reflected = 2.0 * cosine * n - to_light
    alignment = tf.reduce_sum(reflected * to_camera, axis=-1, keepdims=True)
    highlight = tf.where(
        tf.logical_and(lit, alignment > 0.0),
        tf.pow(tf.maximum(alignment, NORMALIZE_EPSILON), material.shininess),
        0.0)
    radiance += color * (albedo * tf.where(lit, cosine, 0.0) +
                         specular_albedo * highlight)
  return radiance


def deferred_shading(clip_vertices, colors, normals, positions_mm, triangles,
                     triangle_ids, lights: lighting.Lights, material: Material,
                     background=None, backend: str = "tf") -> tf.Tensor:
  """Barycentrics, interpolation, Phong shading and background in one step.

  Equal to ``clip(phong_shade(interpolate(colors), interpolate(normals),
  interpolate(positions_mm), mask=triangle_ids >= 0, ...), 0, 1)`` with the
  barycentrics of :func:`compute_barycentrics` where a triangle is visible,
  and ``background`` elsewhere, without the intermediate images (the
  renderer's hot path; the "op" backend fuses it in one kernel).

  Args:
    clip_vertices: float32 ``[batch, vertex_count, 4]``, clip space.
    colors: float32 ``[batch, vertex_count, 3]``, linear RGB albedo.
    normals: float32 ``[batch, vertex_count, 3]``, camera space.
    positions_mm: float32 ``[batch, vertex_count, 3]``, camera space, mm.
    triangles: int32 ``[triangle_count, 3]``.
    triangle_ids: int32 ``[batch, height, width]``, -1 where empty.
    lights: :class:`Lights`, camera space.
    material: :class:`Material`.
    background: None (black) or float32 ``[batch, 3]`` RGB of the pixels
      where no triangle is visible.
    backend: "tf" or "op".

  Returns:
    float32 ``[batch, height, width, 3]`` linear RGB: the radiance clipped
    per channel to [0, 1] (as ``tf.clip_by_value``) where a triangle is
    visible, the background elsewhere.  Gradients flow to the clip vertices
    (x, y, w), colours, normals, positions, lights (not through clipped
    channels) and background.

  Raises:
    ValueError: for badly shaped inputs, a bad material or unknown backend.
  """
  clip_vertices = barycentrics_lib.check_clip_vertices(clip_vertices)
  per_vertex = []
  for name, value in (("colors", colors), ("normals", normals),
                      ("positions_mm", positions_mm)):
    value = tf.convert_to_tensor(value, tf.float32)
    if value.shape.rank != 3 or value.shape[-1] != 3 or (
        not value.shape[:2].is_compatible_with(clip_vertices.shape[:2])):
      raise ValueError(f"{name} must have shape [batch, vertex_count, 3] = "
                       f"{clip_vertices.shape[:2] + [3]}, got {value.shape}")
    per_vertex.append(value)
  triangles, triangle_ids = barycentrics_lib.check_triangles_and_ids(
      triangles, triangle_ids, clip_vertices.shape[0])
  lights = lighting.check_lights(lights, clip_vertices.shape[0])
  check_material(material)
  if background is None:
    background = tf.zeros_like(lights.ambient)
  background = tf.convert_to_tensor(background, tf.float32)
  if not background.shape.is_compatible_with(lights.ambient.shape):
    raise ValueError("background must have shape [batch, 3] = "
                     f"{lights.ambient.shape}, got {background.shape}")
  backend = barycentrics_lib.check_backend(backend)
  check_light_count(lights, backend)
  return deferred_shading_unchecked(clip_vertices, *per_vertex, triangles,
                                    triangle_ids, lights, material,
                                    background, backend)


def deferred_shading_unchecked(clip_vertices, colors, normals, positions_mm,
                               triangles, triangle_ids, lights, material,
                               background, backend):
  """:func:`deferred_shading` without input checks (background required)."""
  if backend == "op":
    return shading_op.deferred_shading(clip_vertices, colors, normals,
                                       positions_mm, triangles, triangle_ids,
                                       lights, material, background)
  return _deferred_shading_xla(
      tf.concat([tf.gather(clip_vertices, [0, 1, 3], axis=-1), colors,
                 normals, positions_mm], axis=-1),
      triangles, triangle_ids, lights.positions_mm, lights.colors,
      lights.ambient, background, material.shininess,
      material.specular_strength, material.specular_diffuse_mix)


# The TensorFlow backend of the renderer's hot path, compiled with XLA (on
# CPU, GPU and TPU): XLA fuses the per-pixel arithmetic and its gradient into
# a few loops, about three times faster than the same ops run one by one.
# Every pixel is shaded (XLA wants static shapes); an empty pixel shades the
# centroid of its image's triangle 0, which keeps its values and gradients
# finite, and is then replaced by the background.  The material constants are
# Python floats (one compilation per material and input shape).
@tf.function(jit_compile=True, autograph=False)
def _deferred_shading_xla(table, triangles, triangle_ids, light_positions,
                          light_colors, ambient, background, shininess,
                          specular_strength, specular_diffuse_mix):
  """Args: table float32 [batch, vertex_count, 12] (clip x, y, w, colour,
  normal, position); the rest as :func:`deferred_shading`."""
  covered = triangle_ids >= 0
  rows = tf.gather(triangles, tf.maximum(triangle_ids, 0))     # [B, H, W, 3]
  corners = tf.gather(table, rows, batch_dims=1)             # [B, H, W, 3, 12]
  shape = tf.shape(triangle_ids)
  x_ndc, y_ndc = camera_lib.pixel_centers_ndc((shape[1], shape[2]))
  x, y, w = (corners[..., c] for c in range(3))              # [B, H, W, 3]
  # Barycentrics e_k / total, as barycentrics.compute_barycentrics.
  e, total = barycentrics_lib.edge_values(
      tf.unstack(x - w * x_ndc[:, None], num=3, axis=-1),
      tf.unstack(y - w * y_ndc[:, None, None], num=3, axis=-1))
  total = tf.where(covered, total, 1.0)
  weights = tf.stack([tf.where(covered, e_k / total, 1.0 / 3.0) for e_k in e],
                     axis=-1)                                 # [B, H, W, 3]
  values = tf.reduce_sum(weights[..., None] * corners[..., 3:], axis=-2)
  radiance = _phong(values[..., 0:3], values[..., 3:6], values[..., 6:9],
                    light_positions[:, None, None],
                    light_colors[:, None, None], ambient[:, None, None],
                    Material(shininess, specular_strength,
                             specular_diffuse_mix))
  return tf.where(covered[..., None], tf.clip_by_value(radiance, 0.0, 1.0),
                  background[:, None, None, :])


def check_light_count(lights, backend):
  """The TF backend unrolls the lights; the op shades at most MAX_LIGHTS_OP."""
  count = lights.positions_mm.shape[1]
  if count is None:
    raise ValueError("lights.positions_mm must have a static light count, "
                     f"got shape {lights.positions_mm.shape}")
  if backend == "op" and count > MAX_LIGHTS_OP:
    raise ValueError(f"the op backend shades at most {MAX_LIGHTS_OP} lights, "
                     f"got lights.positions_mm of shape "
                     f"{lights.positions_mm.shape}")
