"""Loads the compiled rasteriser op (the only module that does).

The op library ``_rasterize_triangles_op<suffix>.so`` is built from
``renderer/kernels/*.cc`` by ``setup.py`` (``pip install --no-build-isolation
-e .``, ``python setup.py build_ext --inplace`` or ``bash tools/bootstrap.sh``)
and lives next to this file.  Nothing is compiled on import: when the library is
missing or does not load (for example "undefined symbol" after a TensorFlow
upgrade), :func:`load_op_library` raises :class:`OpNotAvailableError` naming
the file and the command that rebuilds it.

Most code should call :func:`unsup3dmm.renderer.visibility.rasterize`, which
checks its inputs and can fall back to the pure TensorFlow backend.
"""
import glob
import importlib.machinery
import os
import types
from typing import Optional, Tuple

import tensorflow as tf

OP_NAME = "Unsup3dmmRasterizeTriangles"
LIBRARY_BASENAME = "_rasterize_triangles_op"
REBUILD_COMMAND = ("python setup.py build_ext --inplace  (from the repository "
                   "root; or: bash tools/bootstrap.sh)")

# Folder searched for the library; a module attribute so tests can point it
# elsewhere.
_LIBRARY_DIR = os.path.dirname(os.path.abspath(__file__))
_library: Optional[types.ModuleType] = None

# Neither output has a gradient: ids are integers and depth is only used for
# the depth test.  (Registered by op name, so it holds before loading; the
# registry is global, so a second import of this file finds it registered.)
try:
  tf.no_gradient(OP_NAME)
except KeyError:
  pass


class OpNotAvailableError(ImportError):
  """The compiled rasteriser op library is missing or failed to load."""


def expected_library_path() -> str:
  """Path the library gets when built for this Python interpreter."""
  suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
  return os.path.join(_LIBRARY_DIR, LIBRARY_BASENAME + suffix)


def _find_library() -> str:
  expected = expected_library_path()
  if os.path.exists(expected):
    return expected
  # Any other build of it (e.g. the plain ``.so`` Bazel writes).
  candidates = sorted(
      glob.glob(os.path.join(_LIBRARY_DIR, LIBRARY_BASENAME + "*.so")))
  if candidates:
    return candidates[0]
  raise OpNotAvailableError(
      f"The rasteriser op library was not found: expected {expected!r}. "
      f"Build it with: {REBUILD_COMMAND}.")


def load_op_library() -> types.ModuleType:
  """Loads (once) and returns the op library module.

  Returns:
    The module from ``tf.load_op_library``; its function
    ``unsup3dmm_rasterize_triangles`` runs the op.

  Raises:
    OpNotAvailableError: the library file is missing or cannot be loaded; the
      message names the file and the rebuild command.
  """
  global _library
  if _library is None:
    path = _find_library()
    try:
      _library = tf.load_op_library(path)
    except (tf.errors.NotFoundError, OSError) as e:
      raise OpNotAvailableError(
          f"The rasteriser op library {path!r} failed to load ({e}). It was "
          "probably built against another TensorFlow version; rebuild it "
          f"with: {REBUILD_COMMAND}.") from e
  return _library


def is_available() -> bool:
  """Whether :func:`load_op_library` succeeds."""
  try:
    load_op_library()
  except OpNotAvailableError:
    return False
  return True


def rasterize_triangles(clip_vertices: tf.Tensor, triangles: tf.Tensor,
                        image_height: int, image_width: int,
                        cull_backfaces: bool) -> Tuple[tf.Tensor, tf.Tensor]:
  """Runs the op as is (no Python-side checks; the op checks its inputs).

  Args:
    clip_vertices: float32 [batch, vertex_count, 4] clip-space (x, y, z, w).
    triangles: int32 [triangle_count, 3] vertex indices.
    image_height: output height in pixels, in [1, 32768].
    image_width: output width in pixels, in [1, 32768].
    cull_backfaces: drop triangles that are clockwise in NDC.

  Returns:
    triangle_ids: int32 [batch, image_height, image_width], -1 where empty.
    depth: float32 [batch, image_height, image_width] NDC z/w, 1 where empty.
    Neither has a gradient.

  Raises:
    OpNotAvailableError: the library cannot be loaded.
    tf.errors.InvalidArgumentError: from the op, for bad shapes, image sizes
      or out-of-range triangle indices.
  """
  return load_op_library().unsup3dmm_rasterize_triangles(
      clip_vertices=clip_vertices,
      triangles=triangles,
      image_height=image_height,
      image_width=image_width,
      cull_backfaces=cull_backfaces)
