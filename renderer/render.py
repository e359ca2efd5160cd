"""The rendering pipeline: coefficients or vertices -> RGB images.

Stages (each a function of this package, handing over small records)::

    camera.camera_space_vertices / project_to_clip     (differentiable)
    visibility.rasterize            -> Visibility      (no gradient)
    shading.vertex_normals          -> [B, V, 3]       (differentiable)
    shading.deferred_shading        -> images          (differentiable)
      (barycentrics, interpolation of albedo, normal and position, Phong
      shading, clipping to [0, 1], background; one kernel with the op
      backend)
    with supersampling or a background image: average the supersamples,
      then composite over the background

Gradients of the images flow to the vertices, colours, poses, lights and
tensor-valued camera fields; the visibility itself (which triangle a pixel
sees, the silhouette) is piecewise constant, as in Genova et al. (2018).
"""
import logging
from typing import NamedTuple, Optional

import numpy as np
import tensorflow as tf

from unsup3dmm.renderer import barycentrics as barycentrics_lib
from unsup3dmm.renderer import camera as camera_lib
from unsup3dmm.renderer import lighting
from unsup3dmm.renderer import rasterize_op
from unsup3dmm.renderer import shading
from unsup3dmm.renderer import shading_op
from unsup3dmm.renderer import visibility as visibility_lib
from unsup3dmm.renderer.camera import Camera, Poses, sample_poses
from unsup3dmm.renderer.config import RendererConfig
from unsup3dmm.renderer.lighting import Lights, sample_lights

__all__ = ["Framebuffer", "RenderResult", "render", "render_coefficients",
           "resolve_backend", "sample_backgrounds", "sample_lights",
           "sample_poses"]

_logger = logging.getLogger(__name__)
_warned_op_unavailable = False


class Framebuffer(NamedTuple):
  """Per-pixel intermediate results at the rendering resolution (debugging).

  The rendering resolution is the output size times ``config.supersampling``.
  All are 0 where no triangle is visible.

  Attributes:
    barycentrics: float32 ``[batch, H, W, 3]``.
    albedo: float32 ``[batch, H, W, 3]`` interpolated vertex colours.
    normals: float32 ``[batch, H, W, 3]`` interpolated unit vertex normals
      (not renormalised), camera space.
    positions_mm: float32 ``[batch, H, W, 3]`` camera-space surface points.
  """
  barycentrics: tf.Tensor
  albedo: tf.Tensor
  normals: tf.Tensor
  positions_mm: tf.Tensor


class RenderResult(NamedTuple):
  """Rendered images and what produced them.

  Attributes:
    images: float32 ``[batch, height, width, 3]`` RGB in [0, 1], the face
      composited over the background.
    alpha: float32 ``[batch, height, width, 1]`` in [0, 1], coverage of the
      face (fractional at the silhouette only with supersampling).  No
      gradient.
    visibility: :class:`Visibility` (triangle ids, depth, mask) at the
      rendering resolution (output size times ``config.supersampling``).
    framebuffer: :class:`Framebuffer`, or None unless requested.
  """
  images: tf.Tensor
  alpha: tf.Tensor
  visibility: visibility_lib.Visibility
  framebuffer: Optional[Framebuffer]


def resolve_backend(backend: str) -> str:
  """"op" or "tf" for a backend name ("auto", "op" or "tf").

  "auto" is "tf" when a GPU or TPU is visible (the ops are CPU only) or when
  either compiled library (rasteriser, shading) cannot be loaded (with a
  one-time warning), else "op".

  Raises:
    ValueError: unknown backend name.
    OpNotAvailableError: "op" requested and a library cannot be loaded.
  """
  global _warned_op_unavailable
  if backend not in visibility_lib.BACKENDS:
    raise ValueError(f"backend must be one of {visibility_lib.BACKENDS}, got "
                     f"{backend!r}")
  if backend == "op":
    rasterize_op.load_op_library()
    shading_op.load_op_library()
    return "op"
  if backend == "tf" or tf.config.list_logical_devices(
      "GPU") or tf.config.list_logical_devices("TPU"):
    return "tf"
  try:
    rasterize_op.load_op_library()
    shading_op.load_op_library()
  except ImportError as e:
    if not _warned_op_unavailable:
      _logger.warning("Rendering with the slower pure TensorFlow backend: %s",
                      e)
      _warned_op_unavailable = True
    return "tf"
  return "op"


def _check_config(config: RendererConfig):
  if not isinstance(config, RendererConfig):
    raise ValueError(f"config must be a RendererConfig, got "
                     f"{type(config).__name__}")
  if isinstance(config.supersampling, bool) or not isinstance(
      config.supersampling, int) or config.supersampling < 1:
    raise ValueError("config.supersampling must be a positive int, got "
                     f"{config.supersampling!r}")
  if config.background not in ("constant", "random"):
    raise ValueError("config.background must be 'constant' or 'random', got "
                     f"{config.background!r}")


def sample_backgrounds(batch_size: int, seed, config: RendererConfig
                       ) -> tf.Tensor:
  """Background colours per image.

  Args:
    batch_size: positive int.
    seed: int, pair of ints or int ``[2]`` tensor (stateless RNG seed).
    config: :class:`RendererConfig`: with ``background="random"`` each image
      gets an RGB colour uniform in ``background_value_range`` per channel,
      with ``"constant"`` every image gets ``background_color``.

  Returns:
    float32 ``[batch_size, 3]`` RGB in [0, 1].  No gradient.

  Raises:
    ValueError: for a bad batch size, seed or background config.
  """
  batch_size = camera_lib.check_batch_size(batch_size)
  _check_config(config)
  if config.background == "constant":
    return tf.tile(_constant_background(config)[None], [batch_size, 1])
  camera_lib.check_range(config.background_value_range,
                          "config.background_value_range", 0.0, 1.0)
  low, high = config.background_value_range
  return low + (high - low) * tf.random.stateless_uniform(
      [batch_size, 3], camera_lib.seed_pair(seed))


def _constant_background(config):
  color = np.asarray(config.background_color, np.float32)
  if color.shape != (3,) or color.min() < 0 or color.max() > 1:
    raise ValueError("config.background_color must be 3 values in [0, 1], "
                     f"got {config.background_color!r}")
  return tf.constant(color)


def _backgrounds(background, background_seed, vertices, config):
  """The background as colours [batch, 3], or else as images.

  Returns:
    ``(colors, images)``: one is None; colors float32 ``[batch, 3]``, images
    float32 ``[batch, height, width, 3]``.
  """
  batch_size = vertices.shape[0]
  per_image = [tf.shape(vertices)[0], 3]
  if background is None:
    if background_seed is None:
      return tf.broadcast_to(_constant_background(config), per_image), None
    if batch_size is None:
      raise ValueError("background_seed needs vertices with a static batch "
                       "size")
    return sample_backgrounds(batch_size, background_seed, config), None
  background = tf.convert_to_tensor(background, tf.float32)
  height, width = config.image_size
  shapes = ([3], [batch_size, 3], [batch_size, height, width, 3])
  if not any(background.shape.is_compatible_with(s) for s in shapes):
    raise ValueError("background must have shape [3], [batch, 3] or [batch, "
                     f"{height}, {width}, 3], got {background.shape}")
  if background.shape.rank == 4:
    return None, background
  return tf.broadcast_to(background, per_image), None


def render(vertices, colors, triangles, poses: Poses, lights: Lights,
           config: RendererConfig, backend: Optional[str] = None,
           background=None, background_seed=None,
           camera: Optional[Camera] = None,
           with_framebuffer: bool = False) -> RenderResult:
  """Renders a batch of meshes with Phong shading (deferred, differentiable).

  Args:
    vertices: float32 ``[batch, vertex_count, 3]``, model space, mm.
    colors: float32 ``[batch, vertex_count, 3]``, per-vertex linear RGB
      albedo, nominally in [0, 1].
    triangles: int32 ``[triangle_count, 3]``, counter-clockwise seen from
      outside, shared by the batch.
    poses: :class:`Poses` with ``[batch]`` angles, degrees.
    lights: :class:`Lights`, camera space.
    config: :class:`RendererConfig` (image size, camera, material,
      supersampling, background).
    backend: "auto", "op" or "tf"; None: ``config.backend``.
    background: None, or float32 RGB in [0, 1] of shape ``[3]``,
      ``[batch, 3]`` or ``[batch, height, width, 3]``.
    background_seed: used when ``background`` is None: with a seed the
      backgrounds come from :func:`sample_backgrounds` (random colours when
      ``config.background == "random"``); without one, every image gets
      ``config.background_color``.
    camera: None (the camera of ``config``), or a :class:`Camera` whose fields
      may be tensors (gradients then flow to them); its image size must be
      ``config.image_size``.
    with_framebuffer: also return the per-pixel barycentrics, albedo, normals
      and positions (extra work, for debugging).

  Returns:
    :class:`RenderResult`.  Gradients of ``images`` flow to ``vertices``,
    ``colors``, ``poses``, ``lights``, ``background`` and tensor fields of
    ``camera``; not through which triangle is visible where.

  Raises:
    ValueError: for badly shaped inputs or a bad config.
    OpNotAvailableError: backend "op" and a compiled library is missing.
  """
  _check_config(config)
  backend = resolve_backend(config.backend if backend is None else backend)
  if camera is None:
    camera = Camera.from_config(config)
  else:
    camera_lib.check_camera(camera)
    if tuple(camera.image_size) != tuple(config.image_size):
      raise ValueError(f"camera.image_size {camera.image_size} differs from "
                       f"config.image_size {config.image_size}")
  material = shading.Material.from_config(config)
  vertices = camera_lib.check_vertices_and_poses(vertices, poses)
  colors = tf.convert_to_tensor(colors, tf.float32)
  if not colors.shape.is_compatible_with(vertices.shape):
    raise ValueError(f"colors must have the shape of vertices "
                     f"{vertices.shape}, got {colors.shape}")
  triangles = barycentrics_lib.check_triangles(triangles)
  batch_size = vertices.shape[0]
  lights = lighting.check_lights(lights, batch_size)
  shading.check_light_count(lights, backend)
  background_colors, background_images = _backgrounds(
      background, background_seed, vertices, config)

  factor = config.supersampling
  height, width = config.image_size
  render_size = (height * factor, width * factor)
  camera_vertices = camera_lib.camera_space_vertices_unchecked(vertices, poses,
                                                              camera)
  clip_vertices = camera_lib.project_to_clip(
      camera_vertices, camera.with_image_size(render_size))
  visible = visibility_lib.rasterize(clip_vertices, triangles, render_size,
                                     backend=backend)
  normals = (shading_op.vertex_normals(camera_vertices, triangles)
             if backend == "op" else
             shading.vertex_normals_tf(camera_vertices, triangles))
  alpha = visible.mask[..., None]
  if factor == 1 and background_images is None:
    # The hot path: one fused pass writes the final images.
    images = shading.deferred_shading_unchecked(
        clip_vertices, colors, normals, camera_vertices, triangles,
        visible.triangle_ids, lights, material, background_colors, backend)
  else:
    face = shading.deferred_shading_unchecked(
        clip_vertices, colors, normals, camera_vertices, triangles,
        visible.triangle_ids, lights, material,
        tf.zeros_like(lights.ambient), backend)
    if factor > 1:
      face = tf.nn.avg_pool2d(face, factor, factor, "VALID")
      alpha = tf.nn.avg_pool2d(alpha, factor, factor, "VALID")
    if background_images is None:
      background_images = background_colors[:, None, None, :]
    # The face is 0 where empty (premultiplied by alpha): "over" compositing.
    images = face + (1.0 - alpha) * background_images
  framebuffer = None
  if with_framebuffer:
    weights = barycentrics_lib.compute_barycentrics(
        clip_vertices, triangles, visible.triangle_ids, backend)
    framebuffer = Framebuffer(weights, *(
        barycentrics_lib.interpolate(attribute, triangles,
                                     visible.triangle_ids, weights, backend)
        for attribute in (colors, normals, camera_vertices)))
  return RenderResult(images=images, alpha=alpha, visibility=visible,
                      framebuffer=framebuffer)


def render_coefficients(tf_morphable_model, shape_coefficients,
                        texture_coefficients, poses: Poses, lights: Lights,
                        config: RendererConfig, backend: Optional[str] = None,
                        background=None, background_seed=None,
                        camera: Optional[Camera] = None,
                        with_framebuffer: bool = False) -> RenderResult:
  """Renders faces of a morphable model from their coefficients.

  Args:
    tf_morphable_model: a ``TFMorphableModel`` (``vertices``, ``colors``,
      ``triangles``).
    shape_coefficients: float32 ``[batch, shape_components]``.
    texture_coefficients: float32 ``[batch, texture_components]``.
    poses, lights, config, backend, background, background_seed, camera,
      with_framebuffer: as in :func:`render`.

  Returns:
    :class:`RenderResult`; gradients flow to both coefficient sets (and as in
    :func:`render`).  The albedo is clipped to [0, 1] only through the final
    image clipping.
  """
  return render(tf_morphable_model.vertices(shape_coefficients),
                tf_morphable_model.colors(texture_coefficients),
                tf_morphable_model.triangles, poses, lights, config,
                backend=backend, background=background,
                background_seed=background_seed, camera=camera,
                with_framebuffer=with_framebuffer)
