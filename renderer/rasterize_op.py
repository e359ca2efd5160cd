"""Loads the compiled ops of the renderer (the only module that does so).

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
  """A compiled op library of the renderer is missing or failed to load."""


def expected_library_path(basename: str = LIBRARY_BASENAME,
                          library_dir: Optional[str] = None) -> str:
  """Path an op library gets when built for this Python interpreter
  (default: the rasteriser's)."""
  suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
  return os.path.join(library_dir or _LIBRARY_DIR, basename + suffix)


def find_library(basename: str, library_dir: str, description: str) -> str:
  """Path of the op library ``basename`` in ``library_dir``.

  Prefers the file named for this interpreter's extension suffix, then any
  other build of it (e.g. the plain ``.so`` Bazel writes).

  Raises:
    OpNotAvailableError: naming the expected file and the rebuild command.
  """
  expected = expected_library_path(basename, library_dir)
  if os.path.exists(expected):
    return expected
  candidates = sorted(glob.glob(os.path.join(library_dir, basename + "*.so")))
  if candidates:
    return candidates[0]
  raise OpNotAvailableError(
      f"The {description} op library was not found: expected {expected!r}. "
      f"Build it with: {REBUILD_COMMAND}.")


@tf.autograph.experimental.do_not_convert
def load_library(basename: str, library_dir: str,
                 description: str) -> types.ModuleType:
  """Finds and loads an op library of this package (no caching).

  Raises:
    OpNotAvailableError: the file is missing or does not load; the message
      names the file and the rebuild command.
  """
  path = find_library(basename, library_dir, description)
  try:
    return tf.load_op_library(path)
  except (tf.errors.NotFoundError, OSError) as e:
    raise OpNotAvailableError(
        f"The {description} op library {path!r} failed to load ({e}). It "
        "was probably built against another TensorFlow version; rebuild it "
        f"with: {REBUILD_COMMAND}.") from e


@tf.autograph.experimental.do_not_convert
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
    _library = load_library(LIBRARY_BASENAME, _LIBRARY_DIR, "rasteriser")
  return _library


@tf.autograph.experimental.do_not_convert
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
