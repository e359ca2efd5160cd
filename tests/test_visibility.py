"""Tests of the visibility stage: both backends against the NumPy reference.

Images are small and non-square (height 16, width 20) so that swapped axes
show up.  The backends must agree with the reference bit for bit: same ids and
same depths.
"""
import logging

import numpy as np
import pytest
import tensorflow as tf

from unsup3dmm.renderer import camera as camera_lib
from unsup3dmm.renderer import primitives
from unsup3dmm.renderer import rasterize_op
from unsup3dmm.renderer import reference
from unsup3dmm.renderer import visibility
from unsup3dmm.renderer.config import RendererConfig

HEIGHT, WIDTH = 16, 20
BACKENDS = ("op", "tf")


def _random_scene(rng, batch):
  """Clip-space meshes mixing every case the convention covers.

  Returns float32 clip vertices [batch, vertex_count, 4] and int32 triangles
  [triangle_count, 3]: random triangles crossing the image border and the
  depth range, one covering the whole image, degenerate ones (repeated vertex,
  collinear vertices), one entirely behind the camera and some crossing the
  camera plane (one or two vertices with w < 0).
  """
  random_count = 24
  w = rng.uniform(0.5, 3.0, (batch, random_count))
  ndc = rng.uniform(-1.3, 1.3, (batch, random_count, 2))
  ndc_depth = rng.uniform(-1.2, 1.2, (batch, random_count))
  random_vertices = np.concatenate(
      [ndc * w[..., None], (ndc_depth * w)[..., None], w[..., None]], -1)
  # Whole-image triangle at NDC depth 0.9 (behind most others), w = 2.
  big = np.array([[-8.0, -8.0, 1.8, 2.0], [8.0, -8.0, 1.8, 2.0],
                  [0.0, 8.0, 1.8, 2.0]])
  # Collinear vertices (zero area on screen).
  collinear = np.array([[-0.5, -0.5, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0],
                        [0.5, 0.5, 0.0, 1.0]])
  # A front-facing triangle mirrored through the camera centre: same NDC
  # position, but every w < 0, so it is behind the camera.
  behind = -np.array([[-0.8, -0.6, 0.2, 1.0], [0.7, -0.5, 0.2, 1.0],
                      [0.0, 0.9, 0.2, 1.0]])
  # Crossing the camera plane: one vertex, then two vertices behind.
  crossing = np.array([[-0.4, -0.3, 0.1, 1.0], [0.5, -0.2, 0.3, 1.5],
                       [0.2, 0.6, -0.9, -0.5], [0.6, 0.4, -0.8, -0.3]])
  fixed = np.concatenate([big, collinear, behind, crossing])
  vertices = np.concatenate(
      [random_vertices, np.broadcast_to(fixed, (batch,) + fixed.shape)], 1)
  random_triangles = rng.integers(0, random_count, (30, 3))
  base = random_count
  fixed_triangles = np.array([
      [base, base + 1, base + 2],            # whole image
      [base + 3, base + 4, base + 5],        # collinear
      [base + 3, base + 3, base + 4],        # repeated vertex
      [base + 6, base + 7, base + 8],        # behind the camera
      [base + 9, base + 10, base + 11],      # one vertex behind
      [base + 9, base + 11, base + 12],      # two vertices behind
  ])
  triangles = np.concatenate([random_triangles[:12], fixed_triangles,
                              random_triangles[12:]])
  return vertices.astype(np.float32), triangles.astype(np.int32)


def _rasterize(clip_vertices, triangles, backend, image_size=(HEIGHT, WIDTH),
               **kwargs):
  """(ids, depth, mask) as NumPy arrays from a backend or the reference."""
  if backend == "reference":
    ids, depth = reference.rasterize_reference(clip_vertices, triangles,
                                               image_size, **kwargs)
    return ids, depth, (ids >= 0).astype(np.float32)
  result = visibility.rasterize(clip_vertices, triangles, image_size,
                                backend=backend, **kwargs)
  return (result.triangle_ids.numpy(), result.depth.numpy(),
          result.mask.numpy())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cull_backfaces", [False, True])
def test_backends_match_the_reference_on_random_scenes(backend,
                                                       cull_backfaces):
  clip_vertices, triangles = _random_scene(np.random.default_rng(7), batch=3)
  ref_ids, ref_depth = reference.rasterize_reference(
      clip_vertices, triangles, (HEIGHT, WIDTH), cull_backfaces=cull_backfaces)
  ids, depth, mask = _rasterize(clip_vertices, triangles, backend,
                                cull_backfaces=cull_backfaces)
  # The scene is not trivial: many triangles win somewhere, and the big
  # background triangle fills what the others leave.
  assert len(np.unique(ref_ids)) > 10
  np.testing.assert_array_equal(ids, ref_ids)
  np.testing.assert_array_equal(depth, ref_depth)
  np.testing.assert_array_equal(mask, (ref_ids >= 0).astype(np.float32))
  assert ids.dtype == np.int32 and depth.dtype == np.float32


def test_the_special_triangles_of_the_random_scene_behave():
  clip_vertices, triangles = _random_scene(np.random.default_rng(7), batch=1)
  ids, _ = reference.rasterize_reference(clip_vertices, triangles,
                                         (HEIGHT, WIDTH))
  shown = set(np.unique(ids))
  assert -1 not in shown                   # the big triangle fills the image
  assert 12 in shown                       # ... and is visible somewhere
  assert not {13, 14, 15} & shown         # degenerate, behind the camera
  assert 16 in shown                       # crossing the camera plane


@pytest.mark.parametrize("chunk", [1, 97, 100000])
def test_tf_backend_result_does_not_depend_on_the_chunk_size(chunk):
  clip_vertices, triangles = _random_scene(np.random.default_rng(3), batch=2)
  ref_ids, ref_depth = reference.rasterize_reference(clip_vertices, triangles,
                                                     (HEIGHT, WIDTH))
  result = visibility.rasterize(clip_vertices, triangles, (HEIGHT, WIDTH),
                                backend="tf", tf_candidates_per_chunk=chunk)
  np.testing.assert_array_equal(result.triangle_ids.numpy(), ref_ids)
  np.testing.assert_array_equal(result.depth.numpy(), ref_depth)


@pytest.mark.parametrize("grid", [231, 25])
def test_tf_backend_matches_the_op_on_a_face_sized_mesh(grid):
  # grid 231: sub-pixel triangles, most boxes hold zero or one pixel centre
  # (the dense first-candidate pass); grid 25: triangles of tens of pixels
  # (mostly the chunked pass).
  config = RendererConfig(image_size=(96, 80))
  vertices, triangles = primitives.face_sized_mesh(
      grid=grid, center_mm=config.look_at_mm)
  camera = camera_lib.Camera.from_config(config)
  clip = camera_lib.project_to_clip(camera_lib.camera_space_vertices(
      np.tile(vertices[None], [2, 1, 1]),
      camera_lib.sample_poses(2, 5, config), camera), camera)
  results = [visibility.rasterize(clip, triangles, config.image_size,
                                  backend=backend) for backend in BACKENDS]
  np.testing.assert_array_equal(results[0].triangle_ids,
                                results[1].triangle_ids)
  np.testing.assert_array_equal(results[0].depth, results[1].depth)
  assert 0.2 < np.mean(results[0].mask) < 0.9


def test_depth_id_keys_order_by_depth_then_id_and_decode_back():
  tiny = np.float32(1e-45)                 # the smallest subnormal
  depth = np.array([1.0, -1.0, 0.5, -0.5, -0.0, 0.0, tiny, -tiny, 0.0, -0.0,
                    0.25, 0.25, 1e-30, -1e-30], np.float32)
  ids = np.array([3, 9, 2, 4, 8, 7, 1, 6, 0, 5, 11, 10, 12, 13], np.int32)
  keys = visibility._depth_id_keys(tf.constant(depth), tf.constant(ids))
  order = np.argsort(keys.numpy(), kind="stable")
  # -0 ties with +0, and so do subnormals (TensorFlow flushes them to zero on
  # CPU, in the op too); the lower id wins a tie.
  flushed = np.where(np.abs(depth) < np.finfo(np.float32).tiny, np.float32(0),
                     depth)
  np.testing.assert_array_equal(order, np.lexsort((ids, flushed)))
  decoded_ids, decoded_depth = visibility._decode_keys(
      tf.concat([keys, [visibility._EMPTY_KEY]], 0))
  np.testing.assert_array_equal(decoded_ids, np.append(ids, -1))
  np.testing.assert_array_equal(
      decoded_depth.numpy().view(np.int32),
      np.append(flushed, np.float32(visibility.EMPTY_DEPTH)).view(np.int32))


def _pixel_centre_ndc(row, column, height, width):
  return 2 * (column + 0.5) / width - 1, 1 - 2 * (row + 0.5) / height


def _square_quad(order):
  """A square on an 8 x 16 image whose corners are pixel centres.

  Corners at (row, column) (1, 2), (1, 7), (6, 7), (6, 2); triangle "upper"
  is above the diagonal from (1, 2) to (6, 7), "lower" below it.  Depth is
  0.5 everywhere, exactly.  Both triangles are clockwise in NDC.
  """
  corners = [(1, 2), (1, 7), (6, 7), (6, 2)]
  vertices = np.array(
      [[*_pixel_centre_ndc(r, c, 8, 16), 0.5, 1.0] for r, c in corners],
      np.float32)
  upper, lower = [0, 1, 2], [0, 2, 3]
  triangles = [upper, lower] if order == "upper_first" else [lower, upper]
  return vertices[None], np.array(triangles, np.int32)


@pytest.mark.parametrize("backend", BACKENDS + ("reference",))
@pytest.mark.parametrize("order", ["upper_first", "lower_first"])
def test_quad_covers_exactly_its_pixels_and_ties_go_to_the_lower_id(
    backend, order):
  clip_vertices, triangles = _square_quad(order)
  ids, depth, mask = _rasterize(clip_vertices, triangles, backend,
                                image_size=(8, 16))
  rows, columns = np.mgrid[0:8, 0:16]
  inside = (rows >= 1) & (rows <= 6) & (columns >= 2) & (columns <= 7)
  above = columns - 2 > rows - 1
  on_diagonal = columns - 2 == rows - 1
  upper_id, lower_id = (0, 1) if order == "upper_first" else (1, 0)
  expected = np.full((8, 16), -1)
  expected[inside & above] = upper_id
  expected[inside & ~above & ~on_diagonal] = lower_id
  expected[inside & on_diagonal] = 0  # equal depth: the lower id wins
  np.testing.assert_array_equal(ids[0], expected)
  np.testing.assert_array_equal(mask[0], inside.astype(np.float32))
  np.testing.assert_array_equal(depth[0], np.where(inside, 0.5, 1.0))


@pytest.mark.parametrize("backend", BACKENDS + ("reference",))
def test_backface_culling_drops_clockwise_triangles_only(backend):
  clip_vertices, triangles = _square_quad("upper_first")
  ids, _, _ = _rasterize(clip_vertices, triangles, backend, image_size=(8, 16),
                         cull_backfaces=True)
  assert np.all(ids == -1)  # both triangles are clockwise in NDC
  ids, _, _ = _rasterize(clip_vertices, triangles[:, ::-1], backend,
                         image_size=(8, 16), cull_backfaces=True)
  assert np.sum(ids >= 0) == 36


@pytest.mark.parametrize("backend", BACKENDS + ("reference",))
def test_depth_matches_the_analytic_plane(backend):
  # A triangle covering the whole image with different w at each vertex; NDC
  # depth z/w is affine in NDC (x, y) through the projected vertices.
  ndc = np.array([[-5.0, -4.0], [6.0, -3.0], [0.5, 7.0]])
  ndc_depth = np.array([0.3, -0.6, 0.8])
  w = np.array([1.5, 0.7, 2.5])
  clip_vertices = np.concatenate(
      [ndc * w[:, None], (ndc_depth * w)[:, None], w[:, None]], -1)
  _, depth, mask = _rasterize(clip_vertices[None].astype(np.float32),
                              np.array([[0, 1, 2]], np.int32), backend)
  plane = np.linalg.solve(np.c_[ndc, np.ones(3)], ndc_depth)
  rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH]
  x, y = _pixel_centre_ndc(rows, columns, HEIGHT, WIDTH)
  analytic = plane[0] * x + plane[1] * y + plane[2]
  assert np.all(np.abs(analytic) < 1)  # everything inside the clip range
  np.testing.assert_array_equal(mask[0], np.ones((HEIGHT, WIDTH)))
  np.testing.assert_allclose(depth[0], analytic, rtol=0, atol=2e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_near_clipping_and_camera_plane_crossing_match_float64_geometry(
    backend):
  # Pixel (x, y) is covered when the clip-space point sum_k l_k V_k with
  # l_k >= 0 projects onto it in front of the camera (w > 0) with
  # -1 <= z/w <= 1.  Solve for l in float64 per pixel and compare, away from
  # edges, with the float32 rasterisers.
  clip_vertices = np.array([[-0.9, -0.7, -0.5, 1.0], [1.2, -0.4, 1.4, 1.6],
                            [0.3, 0.8, -1.0, -0.6]])
  ids, _, _ = _rasterize(clip_vertices[None].astype(np.float32),
                         np.array([[0, 1, 2]], np.int32), backend)
  rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH]
  x, y = _pixel_centre_ndc(rows, columns, HEIGHT, WIDTH)
  xyw = clip_vertices[:, [0, 1, 3]].T
  weights = np.linalg.solve(xyw, np.stack([x, y, np.ones_like(x)]).reshape(
      3, -1)).reshape(3, HEIGHT, WIDTH)
  # In front of the camera: all weights positive (the w-normalised point
  # has w = 1 / sum(weights) > 0).
  in_front = np.all(weights > 0, axis=0)
  z_over_w = np.einsum("k,kij->ij", clip_vertices[:, 2], weights)
  covered = in_front & (np.abs(z_over_w) <= 1)
  margin = np.min(np.abs(weights), axis=0) / np.sum(np.abs(weights), axis=0)
  clear = (margin > 1e-3) & (np.abs(np.abs(z_over_w) - 1) > 1e-3)
  assert covered.sum() > 20 and (~covered & clear).sum() > 20
  np.testing.assert_array_equal((ids[0] == 0)[clear], covered[clear])


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_equals_each_image_alone(backend):
  clip_vertices, triangles = _random_scene(np.random.default_rng(11), batch=3)
  together, depth_together, _ = _rasterize(clip_vertices, triangles, backend)
  for b in range(3):
    alone, depth_alone, _ = _rasterize(clip_vertices[b:b + 1], triangles,
                                       backend)
    np.testing.assert_array_equal(together[b], alone[0])
    np.testing.assert_array_equal(depth_together[b], depth_alone[0])
  assert not np.array_equal(together[0], together[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_tf_function_and_eager_agree(backend):
  clip_vertices, triangles = _random_scene(np.random.default_rng(5), batch=2)

  @tf.function(input_signature=[
      tf.TensorSpec([None, None, 4], tf.float32),
      tf.TensorSpec([None, 3], tf.int32)
  ])
  def traced(v, t):
    return visibility.rasterize(v, t, (HEIGHT, WIDTH), backend=backend,
                                tf_candidates_per_chunk=50)

  graph_result = traced(clip_vertices, triangles)
  eager_result = visibility.rasterize(clip_vertices, triangles,
                                      (HEIGHT, WIDTH), backend=backend)
  assert graph_result.triangle_ids.shape.as_list() == [2, HEIGHT, WIDTH]
  for graph, eager in zip(graph_result, eager_result):
    np.testing.assert_array_equal(graph.numpy(), eager.numpy())


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_mesh_and_empty_batch(backend):
  ids, depth, mask = _rasterize(np.zeros((2, 3, 4), np.float32),
                                np.zeros((0, 3), np.int32), backend)
  np.testing.assert_array_equal(ids, np.full((2, HEIGHT, WIDTH), -1))
  np.testing.assert_array_equal(depth, np.ones((2, HEIGHT, WIDTH)))
  np.testing.assert_array_equal(mask, np.zeros((2, HEIGHT, WIDTH)))
  ids, _, _ = _rasterize(np.zeros((0, 3, 4), np.float32),
                         np.array([[0, 1, 2]], np.int32), backend)
  assert ids.shape == (0, HEIGHT, WIDTH)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_gradient_flows(backend):
  clip_vertices, triangles = _random_scene(np.random.default_rng(1), batch=1)
  clip_vertices = tf.Variable(clip_vertices)
  with tf.GradientTape() as tape:
    result = visibility.rasterize(clip_vertices, triangles, (HEIGHT, WIDTH),
                                  backend=backend)
    total = tf.reduce_sum(result.depth) + tf.reduce_sum(result.mask)
  assert tape.gradient(total, clip_vertices) is None


def test_auto_uses_the_op_on_cpu_and_falls_back_to_tf_with_one_warning(
    monkeypatch, caplog):
  clip_vertices, triangles = _random_scene(np.random.default_rng(2), batch=1)
  expected, _ = reference.rasterize_reference(clip_vertices, triangles,
                                              (HEIGHT, WIDTH))
  calls = []

  def fake_tf_backend(*args):
    calls.append("tf")
    return real_tf_backend(*args)

  real_tf_backend = visibility._rasterize_tf
  monkeypatch.setattr(visibility, "_rasterize_tf", fake_tf_backend)
  result = visibility.rasterize(clip_vertices, triangles, (HEIGHT, WIDTH))
  np.testing.assert_array_equal(result.triangle_ids.numpy(), expected)
  assert calls == []  # CPU only: the op ran

  def missing():
    raise rasterize_op.OpNotAvailableError("no library here")

  monkeypatch.setattr(rasterize_op, "load_op_library", missing)
  monkeypatch.setattr(visibility, "_warned_op_unavailable", False)
  with caplog.at_level(logging.WARNING, logger=visibility.__name__):
    for _ in range(2):
      result = visibility.rasterize(clip_vertices, triangles, (HEIGHT, WIDTH))
      np.testing.assert_array_equal(result.triangle_ids.numpy(), expected)
  assert calls == ["tf", "tf"]
  warnings = [r for r in caplog.records if "no library here" in r.message]
  assert len(warnings) == 1
  with pytest.raises(rasterize_op.OpNotAvailableError, match="no library"):
    visibility.rasterize(clip_vertices, triangles, (HEIGHT, WIDTH),
                         backend="op")


_GOOD_VERTICES = np.zeros((1, 4, 4), np.float32)
_GOOD_TRIANGLES = np.array([[0, 1, 2], [1, 2, 3]], np.int32)


@pytest.mark.parametrize("kwargs, message", [
    (dict(clip_vertices=np.zeros((4, 4), np.float32)),
     r"clip_vertices must have shape \[batch, vertex_count, 4\]"),
    (dict(clip_vertices=np.zeros((1, 4, 3), np.float32)),
     r"clip_vertices must have shape \[batch, vertex_count, 4\]"),
    (dict(clip_vertices=np.zeros((1, 4, 4), np.float64)),
     "clip_vertices must be float32, got float64"),
    (dict(triangles=np.array([0, 1, 2], np.int32)),
     r"triangles must have shape \[triangle_count, 3\]"),
    (dict(triangles=np.array([[0, 1, 2, 3]], np.int32)),
     r"triangles must have shape \[triangle_count, 3\]"),
    (dict(triangles=np.array([[0, 1, 2]], np.int64)),
     "triangles must be int32, got int64"),
    (dict(triangles=np.array([[0, 1, 4]], np.int32)),
     r"triangles must index vertices in \[0, 4\), got indices in \[0, 4\]"),
    (dict(triangles=np.array([[0, -1, 2]], np.int32)),
     r"triangles must index vertices in \[0, 4\)"),
    (dict(image_size=(0, 20)), "image_size must be"),
    (dict(image_size=(16,)), "image_size must be"),
    (dict(image_size=(16.0, 20)), "image_size must be"),
    (dict(image_size=(True, 20)), "image_size must be"),
    (dict(image_size=(16, 32769)), r"image_size must be .*\[1, 32768\]"),
    (dict(backend="cuda"), "backend must be one of"),
    (dict(cull_backfaces=1), "cull_backfaces must be a bool"),
    (dict(tf_candidates_per_chunk=0), "tf_candidates_per_chunk"),
])
def test_bad_arguments_raise_value_errors_naming_them(kwargs, message):
  arguments = dict(clip_vertices=_GOOD_VERTICES, triangles=_GOOD_TRIANGLES,
                   image_size=(16, 20))
  arguments.update(kwargs)
  with pytest.raises(ValueError, match=message):
    visibility.rasterize(**arguments)


def test_unknown_rank_is_rejected_under_tf_function():

  @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
  def traced(v):
    return visibility.rasterize(v, _GOOD_TRIANGLES, (16, 20))

  with pytest.raises(ValueError, match="clip_vertices must have shape"):
    traced(_GOOD_VERTICES)
