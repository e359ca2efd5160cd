"""Tests of the compiled op itself: its checks, shapes and the loader."""
import os

import numpy as np
import pytest
import tensorflow as tf

from unsup3dmm.renderer import rasterize_op
from unsup3dmm.renderer import reference

_VERTICES = np.array([[[-0.5, -0.5, 0.1, 1.0], [0.5, -0.5, 0.2, 1.0],
                       [0.0, 0.5, 0.3, 1.0], [0.9, 0.9, 0.0, 1.0]]],
                     np.float32)
_TRIANGLES = np.array([[0, 1, 2], [1, 3, 2]], np.int32)


def _run(vertices=_VERTICES, triangles=_TRIANGLES, height=16, width=20,
         cull_backfaces=False):
  return rasterize_op.rasterize_triangles(vertices, triangles, height, width,
                                          cull_backfaces)


def test_op_matches_the_reference_for_one_and_many_images():
  # Batch 1 runs bands of rows on several threads, larger batches one image
  # per thread; both must give the reference result.
  rng = np.random.default_rng(0)
  vertices = np.concatenate(
      [rng.uniform(-1.2, 1.2, (5, 30, 3)), np.ones((5, 30, 1))], -1)
  triangles = rng.integers(0, 30, (40, 3)).astype(np.int32)
  vertices = vertices.astype(np.float32)
  for batch in (1, 5):
    ids, depth = _run(vertices[:batch], triangles, 37, 23)
    ref_ids, ref_depth = reference.rasterize_reference(vertices[:batch],
                                                       triangles, (37, 23))
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    np.testing.assert_array_equal(depth.numpy(), ref_depth)


def test_shape_function_gives_batch_height_width():

  @tf.function(input_signature=[
      tf.TensorSpec([None, None, 4], tf.float32),
      tf.TensorSpec([None, 3], tf.int32)
  ])
  def traced(v, t):
    ids, depth = _run(v, t, 16, 20)
    assert ids.shape.as_list() == [None, 16, 20]
    assert depth.shape.as_list() == [None, 16, 20]
    assert ids.dtype == tf.int32 and depth.dtype == tf.float32
    return ids

  assert traced(_VERTICES, _TRIANGLES).shape == (1, 16, 20)


def test_shape_function_rejects_bad_static_shapes():
  with tf.Graph().as_default():
    with pytest.raises(ValueError, match="must be rank 3"):
      _run(tf.compat.v1.placeholder(tf.float32, [4, 4]))
    with pytest.raises(ValueError, match="must be 4"):
      _run(tf.compat.v1.placeholder(tf.float32, [1, 4, 3]))
    with pytest.raises(ValueError, match="must be 3"):
      _run(triangles=tf.compat.v1.placeholder(tf.int32, [2, 4]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(vertices=_VERTICES[0]),
     r"clip_vertices must have shape \[batch, vertex_count, 4\], got \[4,4\]"),
    (dict(vertices=_VERTICES[..., :3]),
     r"clip_vertices must have shape \[batch, vertex_count, 4\], "
     r"got \[1,4,3\]"),
    (dict(triangles=_TRIANGLES[:, :2]),
     r"triangles must have shape \[triangle_count, 3\], got \[2,2\]"),
    (dict(triangles=np.array([[0, 1, 2], [1, 2, 4]], np.int32)),
     r"triangles\[1, 2\] = 4 is out of range \[0, 4\)"),
    (dict(triangles=np.array([[0, -3, 2]], np.int32)),
     r"triangles\[0, 1\] = -3 is out of range \[0, 4\)"),
    (dict(height=0), r"image_height must be in \[1, 32768\], got 0"),
    (dict(width=40000), r"image_width must be in \[1, 32768\], got 40000"),
])
def test_op_errors_name_the_problem(kwargs, message):
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    _run(**kwargs)


def test_missing_library_error_names_the_file_and_the_rebuild_command(
    monkeypatch, tmp_path):
  monkeypatch.setattr(rasterize_op, "_LIBRARY_DIR", str(tmp_path))
  monkeypatch.setattr(rasterize_op, "_library", None)
  expected = os.path.join(str(tmp_path), "_rasterize_triangles_op")
  with pytest.raises(rasterize_op.OpNotAvailableError) as error:
    rasterize_op.load_op_library()
  message = str(error.value)
  assert expected in message
  assert rasterize_op.expected_library_path() in message
  assert "python setup.py build_ext --inplace" in message
  assert "tools/bootstrap.sh" in message
  assert isinstance(error.value, ImportError)
  assert not rasterize_op.is_available()


def test_unloadable_library_error_names_the_file_and_the_rebuild_command(
    monkeypatch, tmp_path):
  monkeypatch.setattr(rasterize_op, "_LIBRARY_DIR", str(tmp_path))
  monkeypatch.setattr(rasterize_op, "_library", None)
  path = rasterize_op.expected_library_path()
  with open(path, "wb") as f:
    f.write(b"this is not a shared library")
  with pytest.raises(rasterize_op.OpNotAvailableError) as error:
    rasterize_op.load_op_library()
  message = str(error.value)
  assert path in message and "failed to load" in message
  assert "python setup.py build_ext --inplace" in message


def test_library_is_built_and_loaded_once():
  first = rasterize_op.load_op_library()
  assert rasterize_op.is_available()
  assert rasterize_op.load_op_library() is first
  library = rasterize_op.expected_library_path()
  assert os.path.dirname(library) == os.path.dirname(
      os.path.abspath(rasterize_op.__file__))
