"""Loads the compiled deferred-shading ops and registers their gradients.

The library ``_shading_kernels_op<suffix>.so`` is built from
``renderer/kernels/shading_kernels_*.cc`` by ``setup.py`` (``pip install
--no-build-isolation -e .`` or ``python setup.py build_ext --inplace``) and
lives next to this file.  Nothing is compiled on import: when the library is
missing or does not load, :func:`load_op_library` raises
:class:`OpNotAvailableError` (the rasteriser's, so one ``except`` catches
both) naming the file and the rebuild command.

The ops (CPU only) compute the same values and gradients as the TensorFlow
backends in renderer/barycentrics.py and renderer/shading.py; each forward op
has a ``*Grad`` op registered as its gradient here.  The wrappers below run
the ops as they are: check inputs with the public functions
(:func:`unsup3dmm.renderer.compute_barycentrics`, :func:`interpolate`,
:func:`vertex_normals`, :func:`phong_shade`).
"""
import os
import types
from typing import Optional

import tensorflow as tf

from unsup3dmm.renderer import rasterize_op
from unsup3dmm.renderer.rasterize_op import OpNotAvailableError

LIBRARY_BASENAME = "_shading_kernels_op"

# Folder searched for the library; a module attribute so tests can point it
# elsewhere.
_LIBRARY_DIR = os.path.dirname(os.path.abspath(__file__))
_library: Optional[types.ModuleType] = None


@tf.autograph.experimental.do_not_convert
def load_op_library() -> types.ModuleType:
  """Loads (once) and returns the op library module.

  Raises:
    OpNotAvailableError: the library is missing or cannot be loaded; the
      message names the file and the rebuild command.
  """
  global _library
  if _library is None:
    _library = rasterize_op.load_library(LIBRARY_BASENAME, _LIBRARY_DIR,
                                         "shading")
  return _library


@tf.autograph.experimental.do_not_convert
def is_available() -> bool:
  """Whether :func:`load_op_library` succeeds."""
  try:
    load_op_library()
  except OpNotAvailableError:
    return False
  return True


# ---------------------------------------------------------------------------
# Wrappers (no checks; shapes as in the public functions).


def barycentrics(clip_vertices, triangles, triangle_ids):
  """[B,V,4], [T,3], [B,H,W] -> float32 [B,H,W,3]."""
  return load_op_library().unsup3dmm_barycentrics(
      clip_vertices=clip_vertices, triangles=triangles,
      triangle_ids=triangle_ids)


def interpolate(attributes, triangles, triangle_ids, pixel_barycentrics):
  """[B,V,C], [T,3], [B,H,W], [B,H,W,3] -> float32 [B,H,W,C]."""
  return load_op_library().unsup3dmm_interpolate(
      attributes=attributes, triangles=triangles, triangle_ids=triangle_ids,
      barycentrics=pixel_barycentrics)


def vertex_normals(vertices, triangles):
  """[B,V,3], [T,3] -> float32 [B,V,3] unit normals."""
  return load_op_library().unsup3dmm_vertex_normals(vertices=vertices,
                                                    triangles=triangles)


def phong_shade(albedo, normals, positions_mm, mask, lights, material):
  """Per-pixel [B,H,W,3] inputs, mask [B,H,W], Lights -> [B,H,W,3]."""
  return load_op_library().unsup3dmm_phong_shade(
      albedo=albedo, normals=normals, positions=positions_mm, mask=mask,
      light_positions=lights.positions_mm, light_colors=lights.colors,
      ambient=lights.ambient, shininess=material.shininess,
      specular_strength=material.specular_strength,
      specular_diffuse_mix=material.specular_diffuse_mix)


def deferred_shading(clip_vertices, colors, normals, positions_mm, triangles,
                     triangle_ids, lights, material, background):
  """Fused barycentrics, interpolation and Phong shading -> [B,H,W,3]."""
  return load_op_library().unsup3dmm_deferred_shading(
      clip_vertices=clip_vertices, colors=colors, normals=normals,
      positions=positions_mm, triangles=triangles, triangle_ids=triangle_ids,
      light_positions=lights.positions_mm, light_colors=lights.colors,
      ambient=lights.ambient, background=background,
      shininess=material.shininess,
      specular_strength=material.specular_strength,
      specular_diffuse_mix=material.specular_diffuse_mix)


# ---------------------------------------------------------------------------
# Gradients (registered by op name, so they hold before the library loads).


@tf.RegisterGradient("Unsup3dmmBarycentrics")
def _barycentrics_grad(op, grad):
  clip_vertices, triangles, triangle_ids = op.inputs
  return [load_op_library().unsup3dmm_barycentrics_grad(
      grad_barycentrics=grad, clip_vertices=clip_vertices,
      triangles=triangles, triangle_ids=triangle_ids), None, None]


@tf.RegisterGradient("Unsup3dmmInterpolate")
def _interpolate_grad(op, grad):
  attributes, triangles, triangle_ids, pixel_barycentrics = op.inputs
  grad_attributes, grad_barycentrics = (
      load_op_library().unsup3dmm_interpolate_grad(
          grad_interpolated=grad, attributes=attributes, triangles=triangles,
          triangle_ids=triangle_ids, barycentrics=pixel_barycentrics))
  return [grad_attributes, None, None, grad_barycentrics]


@tf.RegisterGradient("Unsup3dmmVertexNormals")
def _vertex_normals_grad(op, grad):
  vertices, triangles = op.inputs
  return [load_op_library().unsup3dmm_vertex_normals_grad(
      grad_normals=grad, vertices=vertices, triangles=triangles), None]


@tf.RegisterGradient("Unsup3dmmPhongShade")
def _phong_shade_grad(op, grad):
  grads = load_op_library().unsup3dmm_phong_shade_grad(
      grad, *op.inputs, shininess=op.get_attr("shininess"),
      specular_strength=op.get_attr("specular_strength"),
      specular_diffuse_mix=op.get_attr("specular_diffuse_mix"))
  albedo, normals, positions, light_positions, light_colors, ambient = grads
  return [albedo, normals, positions, None, light_positions, light_colors,
          ambient]


@tf.RegisterGradient("Unsup3dmmDeferredShading")
def _deferred_shading_grad(op, grad):
  (clip_vertices, colors, normals, positions, light_positions, light_colors,
   ambient, background) = load_op_library().unsup3dmm_deferred_shading_grad(
       grad, *op.inputs, shininess=op.get_attr("shininess"),
       specular_strength=op.get_attr("specular_strength"),
       specular_diffuse_mix=op.get_attr("specular_diffuse_mix"))
  return [clip_vertices, colors, normals, positions, None, None,
          light_positions, light_colors, ambient, background]
