"""Differentiable barycentrics and interpolation: references and Jacobians."""
import math

import numpy as np
import pytest
import tensorflow as tf

from unsup3dmm.renderer import barycentrics as barycentrics_lib
from unsup3dmm.renderer import camera as camera_lib
from unsup3dmm.renderer import visibility
from unsup3dmm.renderer.camera import Camera

BACKENDS = ("tf", "op")


def pixel_centers(height, width):
  x = 2.0 * (np.arange(width) + 0.5) / width - 1.0
  y = 1.0 - 2.0 * (np.arange(height) + 0.5) / height
  return np.meshgrid(x, y)


def reference_barycentrics(clip, triangles, ids):
  """Solves sum_k beta_k (x_k, y_k, w_k) = s (p_x, p_y, 1), normalises."""
  clip = np.asarray(clip, np.float64)
  batch, height, width = ids.shape
  px, py = pixel_centers(height, width)
  out = np.zeros((batch, height, width, 3))
  for b, i, j in zip(*np.nonzero(ids >= 0)):
    corners = clip[b, triangles[ids[b, i, j]]][:, [0, 1, 3]]   # [3, xyw]
    beta = np.linalg.solve(corners.T, [px[i, j], py[i, j], 1.0])
    out[b, i, j] = beta / beta.sum()
  return out


def perspective_triangles():
  """Two triangles in clip space with different w per vertex, batch 2."""
  clip = np.array([
      [[-0.8, -0.7, 0.1, 1.0], [1.6, -0.4, 0.5, 2.0], [0.1, 1.9, 0.7, 2.5],
       [-0.9, 0.2, 0.3, 1.2]],
      [[-1.2, -1.0, 0.2, 1.5], [0.9, -0.9, 0.2, 1.1], [0.3, 0.8, 0.4, 1.0],
       [-0.5, 1.4, 0.9, 2.2]],
  ], np.float32)
  triangles = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
  return clip, triangles


def rasterized(clip, triangles, size):
  return visibility.rasterize(clip, triangles, size,
                              backend="op").triangle_ids.numpy()


@pytest.mark.parametrize("backend", BACKENDS)
def test_barycentrics_match_linear_solve_inside(backend):
  clip, triangles = perspective_triangles()
  ids = rasterized(clip, triangles, (20, 24))
  assert (ids >= 0).sum() > 200 and set(np.unique(ids)) == {-1, 0, 1}
  weights = barycentrics_lib.compute_barycentrics(clip, triangles, ids,
                                                  backend).numpy()
  covered = ids >= 0
  np.testing.assert_allclose(weights.sum(-1)[covered], 1.0, atol=1e-6)
  assert np.all(weights[covered] >= -1e-6)
  assert np.all(weights[~covered] == 0)
  np.testing.assert_allclose(weights,
                             reference_barycentrics(clip, triangles, ids),
                             atol=2e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_barycentrics_outside_the_triangle_are_negative(backend):
  clip, triangles = perspective_triangles()
  ids = np.zeros((2, 9, 11), np.int32)         # triangle 0 everywhere
  weights = barycentrics_lib.compute_barycentrics(clip, triangles, ids,
                                                  backend).numpy()
  inside = rasterized(clip, triangles[:1], (9, 11)) == 0
  outside = ~inside
  assert outside.sum() > 20
  assert np.all(weights[outside].min(-1) < 0)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(weights,
                             reference_barycentrics(clip, triangles, ids),
                             rtol=1e-5, atol=1e-5)


def test_perspective_correct_interpolation_of_a_tilted_plane():
  """A plane z = 0.5 x seen from 3 units: interpolated world x is exact."""
  height, width = 24, 32
  camera = Camera(image_size=(height, width), fov_y_degrees=60.0,
                  distance_mm=3.0, near_mm=0.1, far_mm=10.0,
                  look_at_mm=(0.0, 0.0, 0.0),
                  rotation_center_mm=(0.0, 0.0, 0.0))
  corners = np.array([[-1.5, 1.2], [1.5, 1.2], [-1.5, -1.2], [1.5, -1.2]])
  vertices = np.concatenate([corners, 0.5 * corners[:, :1]], 1)
  triangles = np.array([[0, 2, 3], [0, 3, 1]], np.int32)
  clip = camera_lib.clip_space_vertices(
      vertices[None].astype(np.float32), camera_lib.frontal_poses(1), camera)
  ids = rasterized(clip, triangles, (height, width))
  covered = ids[0] >= 0
  assert covered.sum() > 300
  px, _ = pixel_centers(height, width)
  # NDC x = f_x X / (3 - Z) on the plane Z = X / 2: X = 3 p / (f_x + p / 2).
  focal_x = 1.0 / math.tan(math.radians(30.0)) * height / width
  expected = 3.0 * px / (focal_x + 0.5 * px)
  # Screen-space (affine) interpolation would be far off: X is not affine in
  # the pixel position.
  fit = np.polyval(np.polyfit(px[covered], expected[covered], 1), px)
  assert np.abs(fit - expected)[covered].max() > 0.02
  for backend in BACKENDS:
    weights = barycentrics_lib.compute_barycentrics(clip, triangles, ids,
                                                    backend)
    values = barycentrics_lib.interpolate(
        vertices[None, :, :1].astype(np.float32), triangles, ids, weights,
        backend).numpy()[0, ..., 0]
    np.testing.assert_allclose(values[covered], expected[covered], atol=1e-4)


def finite_difference_jacobian(function, value, step):
  value = np.asarray(value, np.float32)
  columns = []
  for index in np.ndindex(value.shape):
    plus, minus = value.copy(), value.copy()
    plus[index] += step
    minus[index] -= step
    columns.append((np.asarray(function(plus), np.float64) -
                    np.asarray(function(minus), np.float64)).ravel() /
                   (2 * step))
  return np.stack(columns, axis=1)


def analytic_jacobian(function, value):
  value = tf.constant(value)
  with tf.GradientTape() as tape:
    tape.watch(value)
    output = function(value)
  return tf.reshape(tape.jacobian(output, value),
                    [tf.size(output), tf.size(value)]).numpy()


@pytest.mark.parametrize("backend", BACKENDS)
def test_barycentric_jacobian_matches_finite_differences(backend):
  clip, triangles = perspective_triangles()
  clip = clip[:1]
  ids = rasterized(clip, triangles, (6, 7))
  ids[0, 0, 0] = 1 - max(ids[0, 0, 0], 0)      # one pixel outside its triangle

  def function(value):
    return barycentrics_lib.compute_barycentrics(value, triangles, ids,
                                                 backend)

  analytic = analytic_jacobian(function, clip)
  numeric = finite_difference_jacobian(function, clip, 1e-3)
  np.testing.assert_allclose(analytic, numeric, rtol=1e-2, atol=2e-3)
  # z has no influence; x, y and w do.
  assert np.all(analytic.reshape(-1, 4, 4)[..., 2] == 0)
  assert np.abs(analytic).max() > 0.1


@pytest.mark.parametrize("backend", BACKENDS)
def test_interpolate_values_and_jacobians(backend):
  clip, triangles = perspective_triangles()
  ids = rasterized(clip, triangles, (5, 6))
  attributes = np.random.default_rng(0).normal(size=(2, 4, 2)).astype(
      np.float32)
  weights = barycentrics_lib.compute_barycentrics(clip, triangles, ids,
                                                  backend).numpy()
  values = barycentrics_lib.interpolate(attributes, triangles, ids, weights,
                                        backend).numpy()
  expected = np.zeros((2, 5, 6, 2))
  for b, i, j in zip(*np.nonzero(ids >= 0)):
    expected[b, i, j] = weights[b, i, j] @ attributes[b, triangles[ids[b, i,
                                                                       j]]]
  np.testing.assert_allclose(values, expected, atol=1e-6)

  def of_attributes(value):
    return barycentrics_lib.interpolate(value, triangles, ids, weights,
                                        backend)

  np.testing.assert_allclose(
      analytic_jacobian(of_attributes, attributes),
      finite_difference_jacobian(of_attributes, attributes, 1e-2),
      atol=1e-3)

  def of_weights(value):
    return barycentrics_lib.interpolate(attributes, triangles, ids, value,
                                        backend)

  np.testing.assert_allclose(
      analytic_jacobian(of_weights, weights),
      finite_difference_jacobian(of_weights, weights, 1e-2), atol=1e-3)


def test_backends_agree_on_values_and_gradients():
  clip, triangles = perspective_triangles()
  ids = rasterized(clip, triangles, (16, 18))
  ids[1, :3, :3] = 0                             # some pixels outside
  rng = np.random.default_rng(1)
  attributes = tf.constant(rng.normal(size=(2, 4, 5)).astype(np.float32))
  upstream = tf.constant(rng.normal(size=(2, 16, 18, 5)).astype(np.float32))
  clip = tf.constant(clip)
  results = {}
  for backend in BACKENDS:
    with tf.GradientTape() as tape:
      tape.watch([clip, attributes])
      weights = barycentrics_lib.compute_barycentrics(clip, triangles, ids,
                                                      backend)
      values = barycentrics_lib.interpolate(attributes, triangles, ids,
                                            weights, backend)
      loss = tf.reduce_sum(values * upstream)
    results[backend] = [values] + tape.gradient(loss, [clip, attributes])
  for op_value, tf_value in zip(results["op"], results["tf"]):
    np.testing.assert_allclose(tf.convert_to_tensor(op_value),
                               tf.convert_to_tensor(tf_value), rtol=1e-4,
                               atol=1e-4)


def test_tf_function_matches_eager():
  clip, triangles = perspective_triangles()
  ids = rasterized(clip, triangles, (8, 8))
  for backend in BACKENDS:
    graph = tf.function(lambda c, i, b=backend: barycentrics_lib.
                        compute_barycentrics(c, triangles, i, b))
    np.testing.assert_array_equal(
        graph(tf.constant(clip), tf.constant(ids)),
        barycentrics_lib.compute_barycentrics(clip, triangles, ids, backend))


@pytest.mark.parametrize("call, message", [
    (lambda: barycentrics_lib.compute_barycentrics(
        np.zeros((1, 4, 3), np.float32), [[0, 1, 2]],
        np.zeros((1, 2, 2), np.int32)), "clip_vertices"),
    (lambda: barycentrics_lib.compute_barycentrics(
        np.zeros((1, 4, 4), np.float32), [[0, 1]],
        np.zeros((1, 2, 2), np.int32)), "triangles"),
    (lambda: barycentrics_lib.compute_barycentrics(
        np.zeros((1, 4, 4), np.float32), [[0, 1, 2]],
        np.zeros((1, 2), np.int32)), "triangle_ids"),
    (lambda: barycentrics_lib.compute_barycentrics(
        np.zeros((2, 4, 4), np.float32), [[0, 1, 2]],
        np.zeros((1, 2, 2), np.int32)), "batch size"),
    (lambda: barycentrics_lib.compute_barycentrics(
        np.zeros((1, 4, 4), np.float32), [[0, 1, 2]],
        np.zeros((1, 2, 2), np.int32), backend="auto"), "backend"),
    (lambda: barycentrics_lib.interpolate(
        np.zeros((1, 4), np.float32), [[0, 1, 2]],
        np.zeros((1, 2, 2), np.int32), np.zeros((1, 2, 2, 3), np.float32)),
     "attributes"),
    (lambda: barycentrics_lib.interpolate(
        np.zeros((1, 4, 2), np.float32), [[0, 1, 2]],
        np.zeros((1, 2, 2), np.int32), np.zeros((1, 2, 3, 3), np.float32)),
     "pixel_barycentrics"),
])
def test_bad_inputs_raise_value_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_op_rejects_out_of_range_ids():
  with pytest.raises(tf.errors.InvalidArgumentError, match="triangle_ids"):
    barycentrics_lib.compute_barycentrics(
        np.zeros((1, 4, 4), np.float32), [[0, 1, 2]],
        np.full((1, 2, 2), 1, np.int32), backend="op")
