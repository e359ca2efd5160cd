"""Tests of evaluation/alignment.py: Umeyama similarity, region errors, ICP."""
import math

import numpy as np
import pytest

from unsup3dmm.evaluation import alignment


def rotation_about(axis, degrees):
  axis = np.asarray(axis, dtype=np.float64)
  axis = axis / np.linalg.norm(axis)
  x, y, z = axis
  cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
  angle = math.radians(degrees)
  return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * (
      cross @ cross)


def rotation_error_degrees(estimate, truth):
  cosine = (np.trace(estimate.T @ truth) - 1.0) / 2.0
  return math.degrees(math.acos(np.clip(cosine, -1.0, 1.0)))


def face_height(x, y):
  """A smooth, asymmetric face-like height field (mm)."""
  return (40.0 * np.exp(-(x**2 + y**2) / (2 * 35.0**2)) +
          10.0 * np.exp(-(x**2 / (2 * 7.0**2) + (y + 5.0)**2 /
                          (2 * 14.0**2))) +
          3.0 * np.sin(x / 9.0 + 0.3) * np.cos(y / 13.0))


def face_points(spacing, extent, offset=0.0):
  """Grid samples of `face_height` on [-extent, extent]^2 (mm)."""
  ticks = np.arange(-extent + offset, extent + 1e-9, spacing)
  x, y = np.meshgrid(ticks, ticks, indexing="ij")
  x, y = x.ravel(), y.ravel()
  return np.stack([x, y, face_height(x, y)], axis=1)


def face_normals(points):
  """Analytic unit normals of the height field at `points`."""
  step = 1e-4
  x, y = points[:, 0], points[:, 1]
  dzdx = (face_height(x + step, y) - face_height(x - step, y)) / (2 * step)
  dzdy = (face_height(x, y + step) - face_height(x, y - step)) / (2 * step)
  normals = np.stack([-dzdx, -dzdy, np.ones_like(x)], axis=1)
  return normals / np.linalg.norm(normals, axis=1, keepdims=True)


TRUE_SCALE = 1.12
TRUE_ROTATION = rotation_about([0.3, -1.0, 0.2], 25.0)
TRUE_TRANSLATION = np.array([12.0, -30.0, 55.0])


def transform(points, scale=TRUE_SCALE, rotation=TRUE_ROTATION,
              translation=TRUE_TRANSLATION):
  return scale * points @ rotation.T + translation


def perturbed_start():
  """About 10 degrees, 10 mm and 5 % away from the true transform."""
  rotation = rotation_about([1.0, 1.0, -0.5], 10.0) @ TRUE_ROTATION
  translation = TRUE_TRANSLATION + np.array([6.0, -6.0, 5.0])
  return TRUE_SCALE * 1.05, rotation, translation


# ----------------------------- similarity_align -----------------------------


def test_similarity_align_recovers_known_transform_exactly():
  source = np.random.default_rng(0).normal(size=(50, 3)) * 30.0
  fit = alignment.similarity_align(source, transform(source))
  assert fit.scale == pytest.approx(TRUE_SCALE, abs=1e-12)
  np.testing.assert_allclose(fit.rotation, TRUE_ROTATION, atol=1e-12)
  np.testing.assert_allclose(fit.translation, TRUE_TRANSLATION, atol=1e-10)
  np.testing.assert_allclose(fit.aligned, transform(source), atol=1e-10)
  scale, rotation, translation, aligned = fit  # Unpacks as a 4-tuple.
  np.testing.assert_allclose(
      aligned, alignment.apply_similarity(source, scale, rotation,
                                          translation), atol=1e-12)


def test_similarity_align_without_scale_fixes_scale_to_one():
  source = np.random.default_rng(1).normal(size=(40, 3)) * 20.0
  target = transform(source, scale=1.0)
  fit = alignment.similarity_align(source, target, with_scale=False)
  assert fit.scale == 1.0
  np.testing.assert_allclose(fit.rotation, TRUE_ROTATION, atol=1e-12)


def test_similarity_align_never_returns_a_reflection():
  source = np.random.default_rng(2).normal(size=(30, 3)) * 10.0
  mirrored = source * np.array([-1.0, 1.0, 1.0])
  fit = alignment.similarity_align(source, mirrored)
  assert np.linalg.det(fit.rotation) == pytest.approx(1.0, abs=1e-12)
  np.testing.assert_allclose(fit.rotation @ fit.rotation.T, np.eye(3),
                             atol=1e-12)
  # A proper rotation cannot reproduce a mirror image of a 3-D cloud.
  assert np.abs(fit.aligned - mirrored).max() > 1.0
  # The guard picks the best proper rotation: nothing in a dense sample of
  # nearby rotations does better.
  best = np.sum((fit.aligned - mirrored)**2)
  rng = np.random.default_rng(3)
  for _ in range(200):
    rotation = rotation_about(rng.normal(size=3), rng.uniform(0, 10)) @ (
        fit.rotation)
    candidate = fit.scale * source @ rotation.T + fit.translation
    assert np.sum((candidate - mirrored)**2) >= best - 1e-9


def test_similarity_align_zero_weights_ignore_outliers():
  rng = np.random.default_rng(4)
  source = rng.normal(size=(20, 3)) * 25.0
  target = transform(source)
  target[:4] += rng.normal(size=(4, 3)) * 50.0  # Outliers.
  weights = np.ones(20)
  weights[:4] = 0.0
  fit = alignment.similarity_align(source, target, weights=weights)
  assert fit.scale == pytest.approx(TRUE_SCALE, abs=1e-12)
  np.testing.assert_allclose(fit.rotation, TRUE_ROTATION, atol=1e-12)
  unweighted = alignment.similarity_align(source, target)
  assert abs(unweighted.scale - TRUE_SCALE) > 1e-3


@pytest.mark.parametrize("source, target, weights, message", [
    (np.zeros((5, 2)), np.zeros((5, 2)), None, "source must have shape"),
    (np.eye(3), np.eye(4, 3), None, "same shape"),
    (np.eye(3)[:2], np.eye(3)[:2], None, "at least 3 points"),
    ([[0, 0, 0], [1, 1, 1], [2, 2, 2]], np.eye(3), None, "collinear"),
    (np.eye(3), np.eye(3), [1.0, -1.0, 1.0], "non-negative"),
    (np.eye(3), np.eye(3), [0.0, 0.0, 0.0], "not all be zero"),
    (np.eye(3), np.eye(3), [1.0, 1.0], "weights must have shape"),
    ([[0, 0, np.nan], [1, 0, 0], [0, 1, 0]], np.eye(3), None, "NaN"),
])
def test_similarity_align_rejects_bad_input(source, target, weights, message):
  with pytest.raises(ValueError, match=message):
    alignment.similarity_align(source, target, weights=weights)


# ------------------------- distances and regions ---------------------------


def test_per_vertex_distance_hand_values():
  predicted = [[0, 0, 0], [1, 2, 2], [3, 4, 0]]
  target = [[0, 0, 0], [0, 0, 0], [0, 0, 0]]
  np.testing.assert_allclose(
      alignment.per_vertex_distance(predicted, target), [0.0, 3.0, 5.0])
  with pytest.raises(ValueError, match="same shape"):
    alignment.per_vertex_distance(predicted, target[:2])


def test_region_errors_from_labels_and_from_mapping():
  distances = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
  assert alignment.region_errors(distances, np.array([0, 0, 0, 7, 7])) == {
      0: 2.0, 7: 15.0}
  assert alignment.region_errors(distances, {
      "nose": [0, 3],
      "all": [0, 1, 2, 3, 4]
  }) == {"nose": 5.5, "all": 7.2}
  with pytest.raises(ValueError, match="region 'eyes' has vertex ids"):
    alignment.region_errors(distances, {"eyes": [5]})
  with pytest.raises(ValueError, match="non-empty"):
    alignment.region_errors(distances, {"eyes": []})
  with pytest.raises(ValueError, match="integer label array"):
    alignment.region_errors(distances, np.zeros(4, dtype=int))


# ----------------------------------- ICP -----------------------------------


@pytest.mark.parametrize("given_normals", [True, False])
def test_icp_recovers_transform_from_perturbed_start(given_normals):
  source = face_points(spacing=3.0, extent=60.0)
  target = transform(source)
  normals = face_normals(source) @ TRUE_ROTATION.T if given_normals else None
  result = alignment.icp_align(source, target, target_normals=normals,
                               init_transform=perturbed_start(),
                               options=alignment.IcpOptions(trim_fraction=1.0))
  assert result.converged
  assert result.scale == pytest.approx(TRUE_SCALE, rel=1e-5)
  assert rotation_error_degrees(result.rotation, TRUE_ROTATION) < 1e-3
  np.testing.assert_allclose(result.translation, TRUE_TRANSLATION, atol=1e-3)
  np.testing.assert_allclose(result.aligned, target, atol=1e-3)
  assert result.mean_distance_mm < 1e-3


def test_icp_start_is_really_perturbed():
  """The perturbed start alone is far off: ICP did the work above."""
  source = face_points(spacing=3.0, extent=60.0)
  start = alignment.apply_similarity(source, *perturbed_start())
  assert np.linalg.norm(start - transform(source), axis=1).mean() > 10.0


@pytest.mark.parametrize("given_normals", [True, False])
def test_icp_with_different_vertex_densities(given_normals):
  # Target: the surface resampled on a finer, shifted grid.  Source: a third
  # as many points, on another grid, inside the target's extent.
  target_grid = face_points(spacing=1.5, extent=66.0, offset=0.4)
  source = face_points(spacing=1.5 * math.sqrt(3.0), extent=55.0, offset=0.9)
  assert abs(source.shape[0] * 3 / target_grid.shape[0] - 1.0) < 0.45
  target = transform(target_grid)
  normals = (face_normals(target_grid) @ TRUE_ROTATION.T
             if given_normals else None)
  result = alignment.icp_align(source, target, target_normals=normals,
                               init_transform=perturbed_start())
  # Measured: 0.0013 degrees, 2e-4 relative scale, 0.016 mm.
  assert rotation_error_degrees(result.rotation, TRUE_ROTATION) < 0.01
  assert result.scale == pytest.approx(TRUE_SCALE, rel=1e-3)
  assert np.abs(result.aligned - transform(source)).max() < 0.05


def test_icp_trimming_handles_partial_overlap():
  # The source covers a larger area than the target (like a predicted face
  # against a cropped scan): about half of it has no counterpart.
  target_grid = face_points(spacing=1.5, extent=42.0, offset=0.4)
  source = face_points(spacing=2.5, extent=60.0, offset=0.9)
  target = transform(target_grid)
  normals = face_normals(target_grid) @ TRUE_ROTATION.T
  trimmed = alignment.icp_align(
      source, target, target_normals=normals, init_transform=perturbed_start(),
      options=alignment.IcpOptions(trim_fraction=0.45))
  untrimmed = alignment.icp_align(
      source, target, target_normals=normals, init_transform=perturbed_start(),
      options=alignment.IcpOptions(trim_fraction=1.0))
  trimmed_error = np.abs(trimmed.aligned - transform(source)).max()
  untrimmed_error = np.abs(untrimmed.aligned - transform(source)).max()
  # Measured: 0.021 mm trimmed, 4.7 mm untrimmed.
  assert trimmed_error < 0.05
  assert untrimmed_error > 1.0


def test_icp_distance_gate_also_rejects_outliers():
  target_grid = face_points(spacing=1.5, extent=42.0, offset=0.4)
  source = face_points(spacing=2.5, extent=60.0, offset=0.9)
  normals = face_normals(target_grid) @ TRUE_ROTATION.T
  gated = alignment.icp_align(
      source, transform(target_grid), target_normals=normals,
      init_transform=perturbed_start(),
      options=alignment.IcpOptions(trim_fraction=1.0,
                                   max_correspondence_mm=3.0))
  # Without trimming, only the 3 mm gate keeps the source points beyond the
  # target's border out of the fit (measured error: 0.022 mm).
  assert np.abs(gated.aligned - transform(source)).max() < 0.05


def test_icp_landmark_initialisation_from_a_far_start():
  source = face_points(spacing=3.0, extent=60.0)
  # A pose far outside ICP's basin: 120 degrees and 300 mm away.
  scale, rotation = 0.8, rotation_about([0.0, 1.0, 0.1], 120.0)
  translation = np.array([300.0, 20.0, -100.0])
  target = transform(source, scale, rotation, translation)
  normals = face_normals(source) @ rotation.T
  landmark_ids = [100, 500, 840, 1200, 1600]
  landmarks = (source[landmark_ids] + np.random.default_rng(5).normal(
      size=(5, 3)) * 1.0, target[landmark_ids])
  result = alignment.icp_align(source, target, target_normals=normals,
                               init_landmarks=landmarks)
  assert rotation_error_degrees(result.rotation, rotation) < 1e-3
  assert result.scale == pytest.approx(scale, rel=1e-5)
  np.testing.assert_allclose(result.aligned, target, atol=1e-3)
  without = alignment.icp_align(source, target, target_normals=normals)
  assert np.abs(without.aligned - target).max() > 10.0


def test_icp_without_scale_keeps_scale_one():
  source = face_points(spacing=3.0, extent=60.0)
  target = transform(source, scale=1.0)
  start = (1.0,) + perturbed_start()[1:]
  result = alignment.icp_align(source, target, with_scale=False,
                               target_normals=face_normals(source) @
                               TRUE_ROTATION.T, init_transform=start)
  assert result.scale == 1.0
  np.testing.assert_allclose(result.aligned, target, atol=1e-3)


def test_estimate_normals_match_analytic_normals_up_to_sign():
  points = face_points(spacing=1.5, extent=40.0)
  estimated = alignment.estimate_normals(points)
  cosines = np.abs(np.sum(estimated * face_normals(points), axis=1))
  # Worst at the curved nose tip (measured 0.989, i.e. 8 degrees).
  assert cosines.min() > 0.98
  assert np.median(cosines) > 0.9999
  np.testing.assert_allclose(np.linalg.norm(estimated, axis=1), 1.0,
                             atol=1e-12)
  with pytest.raises(ValueError, match="neighbor_count"):
    alignment.estimate_normals(points, neighbor_count=2)


def test_icp_rejects_bad_input():
  points = face_points(spacing=10.0, extent=30.0)
  with pytest.raises(ValueError, match="target_normals must have the shape"):
    alignment.icp_align(points, points, target_normals=points[:3])
  with pytest.raises(ValueError, match="at most one"):
    alignment.icp_align(points, points, init_transform=(1.0, np.eye(3),
                                                        np.zeros(3)),
                        init_landmarks=(points[:3], points[:3]))
  with pytest.raises(ValueError, match="proper rotation"):
    alignment.icp_align(points, points,
                        init_transform=(1.0, np.diag([1.0, 1.0, -1.0]),
                                        np.zeros(3)))
  with pytest.raises(ValueError, match="trim_fraction"):
    alignment.icp_align(points, points,
                        options=alignment.IcpOptions(trim_fraction=0.0))
  with pytest.raises(ValueError, match="max_correspondence_mm"):
    alignment.icp_align(points, points + 100.0,
                        init_transform=(1.0, np.eye(3), np.zeros(3)),
                        options=alignment.IcpOptions(max_correspondence_mm=1.0))
