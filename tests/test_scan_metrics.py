"""Tests of evaluation/scan_metrics.py: normals, crop, point-to-plane error."""
import math

import numpy as np
import pytest
from scipy import spatial

from unsup3dmm.evaluation import alignment
from unsup3dmm.evaluation import scan_metrics


def grid_mesh(spacing, extent, offset=0.0, height=None):
  """Triangulated grid on [-extent, extent]^2 + offset, counter-clockwise
  seen from +z; z = height(x, y) or 0."""
  ticks = np.arange(-extent + offset, extent + offset + 1e-9, spacing)
  count = ticks.size
  x, y = np.meshgrid(ticks, ticks, indexing="ij")
  x, y = x.ravel(), y.ravel()
  z = np.zeros_like(x) if height is None else height(x, y)
  ids = np.arange(count * count).reshape(count, count)
  a, b = ids[:-1, :-1].ravel(), ids[1:, :-1].ravel()
  c, d = ids[1:, 1:].ravel(), ids[:-1, 1:].ravel()
  triangles = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
  return np.stack([x, y, z], axis=1), triangles


def sphere_mesh(radius, point_count):
  """Closed triangulated sphere on a Fibonacci lattice, outward winding."""
  index = np.arange(point_count) + 0.5
  polar = np.arccos(1.0 - 2.0 * index / point_count)
  azimuth = math.pi * (1.0 + math.sqrt(5.0)) * index
  vertices = radius * np.stack([np.sin(polar) * np.cos(azimuth),
                                np.sin(polar) * np.sin(azimuth),
                                np.cos(polar)], axis=1)
  triangles = spatial.ConvexHull(vertices).simplices
  corners = vertices[triangles]
  normals = np.cross(corners[:, 1] - corners[:, 0],
                     corners[:, 2] - corners[:, 0])
  inward = np.sum(normals * corners.mean(axis=1), axis=1) < 0
  triangles[inward] = triangles[inward][:, ::-1]
  return vertices, triangles


def face_height(x, y):
  return (40.0 * np.exp(-(x**2 + y**2) / (2 * 35.0**2)) +
          10.0 * np.exp(-(x**2 / (2 * 7.0**2) + (y + 5.0)**2 /
                          (2 * 14.0**2))) +
          3.0 * np.sin(x / 9.0 + 0.3) * np.cos(y / 13.0))


# ------------------------------ vertex normals -----------------------------


def test_vertex_normals_of_plane_sphere_and_flipped_winding():
  vertices, triangles = grid_mesh(1.0, 3.0)
  np.testing.assert_allclose(
      scan_metrics.vertex_normals(vertices, triangles),
      np.tile([0.0, 0.0, 1.0], (vertices.shape[0], 1)), atol=1e-15)
  np.testing.assert_allclose(
      scan_metrics.vertex_normals(vertices, triangles[:, ::-1]),
      np.tile([0.0, 0.0, -1.0], (vertices.shape[0], 1)), atol=1e-15)
  vertices, triangles = sphere_mesh(50.0, 2000)
  normals = scan_metrics.vertex_normals(vertices, triangles)
  radial = vertices / 50.0
  assert np.sum(normals * radial, axis=1).min() > 0.9995


def test_vertex_normals_zero_for_unused_vertex_and_area_weighting():
  # A large and a small triangle share vertex 0; an unused vertex 4.
  vertices = np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 1],
                       [5, 5, 5]])
  triangles = np.array([[0, 1, 2], [0, 1, 3]])  # Normals +z (area 50), -y.
  normals = scan_metrics.vertex_normals(vertices, triangles)
  expected = np.array([0.0, -1.0 * 5.0, 50.0]) / math.hypot(5.0, 50.0)
  np.testing.assert_allclose(normals[0], expected, atol=1e-12)
  np.testing.assert_allclose(normals[2], [0.0, 0.0, 1.0], atol=1e-12)
  np.testing.assert_allclose(normals[3], [0.0, -1.0, 0.0], atol=1e-12)
  np.testing.assert_array_equal(normals[4], [0.0, 0.0, 0.0])


def test_boundary_vertex_mask():
  vertices, triangles = grid_mesh(1.0, 1.0)  # 3 x 3 vertices.
  mask = scan_metrics.boundary_vertex_mask(vertices.shape[0], triangles)
  np.testing.assert_array_equal(mask, [True] * 4 + [False] + [True] * 4)
  vertices, triangles = sphere_mesh(10.0, 50)
  assert not scan_metrics.boundary_vertex_mask(vertices.shape[0],
                                               triangles).any()


# ---------------------------------- crop -----------------------------------


def test_crop_to_radius_honours_radius_and_reindexes():
  vertices, triangles = grid_mesh(4.0, 120.0, height=face_height)
  center = np.array([3.0, -5.0, 48.0])
  cropped, cropped_triangles, kept = scan_metrics.crop_to_radius(
      vertices, triangles, center)
  distances = np.linalg.norm(vertices - center, axis=1)
  assert np.all(np.linalg.norm(cropped - center, axis=1) <= 95.0)
  dropped = np.setdiff1d(np.arange(vertices.shape[0]), kept)
  assert dropped.size > 0 and np.all(distances[dropped] > 95.0)
  np.testing.assert_array_equal(kept, np.flatnonzero(distances <= 95.0))
  np.testing.assert_array_equal(cropped, vertices[kept])
  inside = np.all(distances[triangles] <= 95.0, axis=1)
  # Same triangles, same corner positions, in the original order.
  assert cropped_triangles.shape == (np.count_nonzero(inside), 3)
  np.testing.assert_array_equal(cropped[cropped_triangles],
                                vertices[triangles[inside]])
  # A different radius really changes the result.
  assert scan_metrics.crop_to_radius(vertices, triangles, center,
                                     radius_mm=50.0)[2].size < kept.size


@pytest.mark.parametrize("center, radius, message", [
    ([0.0, 0.0], 95.0, "center must be"),
    ([0.0, 0.0, np.inf], 95.0, "center must be"),
    ([0.0, 0.0, 0.0], 0.0, "radius_mm must be > 0"),
])
def test_crop_to_radius_rejects_bad_input(center, radius, message):
  vertices, triangles = grid_mesh(1.0, 2.0)
  with pytest.raises(ValueError, match=message):
    scan_metrics.crop_to_radius(vertices, triangles, center, radius)


def test_crop_rejects_out_of_range_triangles():
  vertices, triangles = grid_mesh(1.0, 2.0)
  with pytest.raises(ValueError, match="outside"):
    scan_metrics.crop_to_radius(vertices, triangles + 100, [0, 0, 0])


# -------------------- symmetric point-to-plane distance --------------------


def test_distance_of_mesh_to_itself_is_zero():
  mesh = grid_mesh(2.0, 40.0, height=face_height)
  result = scan_metrics.symmetric_point_to_plane_distance(mesh, mesh)
  assert result["mean_mm"] == 0.0
  assert result["a_to_b_mm"] == 0.0 and result["b_to_a_mm"] == 0.0
  # Every vertex matches itself; the border ring of the 41 x 41 grid is on
  # the boundary and so outside the overlap.
  assert result["a_overlap_fraction"] == pytest.approx(39**2 / 41**2)


def test_distance_to_plane_offset_by_2mm_with_different_densities():
  plane_a = grid_mesh(2.0, 40.0)  # 41 x 41 vertices, z = 0.
  vertices_b, triangles_b = grid_mesh(3.0, 30.0, offset=0.4)  # 21 x 21.
  vertices_b[:, 2] = 2.0
  result = scan_metrics.symmetric_point_to_plane_distance(
      plane_a, (vertices_b, triangles_b))
  assert result["a_to_b_mm"] == pytest.approx(2.0, abs=1e-12)
  assert result["b_to_a_mm"] == pytest.approx(2.0, abs=1e-12)
  assert result["mean_mm"] == pytest.approx(2.0, abs=1e-12)
  # B lies inside A: every B vertex finds an interior A vertex.
  assert result["b_overlap_fraction"] == 1.0
  # An A vertex overlaps iff its nearest B grid node is not on B's border;
  # B's nodes are at 0.4 + 3 k (k = -10..10) on each axis.
  ticks = np.arange(-40.0, 40.0 + 1e-9, 2.0)
  nearest_k = np.clip(np.round((ticks - 0.4) / 3.0), -10, 10)
  interior = np.abs(nearest_k) < 10
  assert result["a_overlap_fraction"] == pytest.approx(
      np.count_nonzero(interior)**2 / ticks.size**2)


def test_overlap_threshold_excludes_far_correspondences():
  plane_a = grid_mesh(2.0, 20.0)
  vertices_b, triangles_b = grid_mesh(2.0, 20.0)
  vertices_b[:, 2] = 12.0
  far = scan_metrics.symmetric_point_to_plane_distance(
      plane_a, (vertices_b, triangles_b))  # Default threshold 10 mm.
  assert far["a_overlap_fraction"] == 0.0 and math.isnan(far["mean_mm"])
  near = scan_metrics.symmetric_point_to_plane_distance(
      plane_a, (vertices_b, triangles_b), overlap_threshold_mm=15.0)
  assert near["mean_mm"] == pytest.approx(12.0, abs=1e-12)


def test_distance_between_concentric_spheres_2mm_apart():
  inner = sphere_mesh(50.0, 2000)
  outer = sphere_mesh(52.0, 3000)
  result = scan_metrics.symmetric_point_to_plane_distance(inner, outer)
  # Nearest-vertex tangent planes approximate the sphere: a point at angle
  # theta from its match is off by about +-25 theta^2 mm (theta ~ 2 mm /
  # 50 mm), with opposite signs on the two sides (measured 2.017, 1.973).
  assert result["a_to_b_mm"] == pytest.approx(2.0, abs=0.05)
  assert result["b_to_a_mm"] == pytest.approx(2.0, abs=0.05)
  assert result["mean_mm"] == pytest.approx(2.0, abs=0.01)
  assert result["a_overlap_fraction"] == 1.0
  assert result["b_overlap_fraction"] == 1.0


def test_symmetric_distance_is_symmetric_and_rejects_bad_meshes():
  mesh_a = grid_mesh(2.0, 20.0, height=face_height)
  vertices_b, triangles_b = grid_mesh(3.0, 18.0, offset=0.4,
                                      height=face_height)
  vertices_b[:, 2] += 1.0
  forward = scan_metrics.symmetric_point_to_plane_distance(
      mesh_a, (vertices_b, triangles_b))
  backward = scan_metrics.symmetric_point_to_plane_distance(
      (vertices_b, triangles_b), mesh_a)
  assert forward["mean_mm"] == pytest.approx(backward["mean_mm"], abs=1e-12)
  assert forward["a_to_b_mm"] == backward["b_to_a_mm"]
  with pytest.raises(ValueError, match="mesh_b must be a"):
    scan_metrics.symmetric_point_to_plane_distance(mesh_a, vertices_b)
  with pytest.raises(ValueError, match="mesh_a triangles"):
    scan_metrics.symmetric_point_to_plane_distance(
        (mesh_a[0], mesh_a[1][:, :2]), mesh_a)
  with pytest.raises(ValueError, match="no triangle of non-zero area"):
    scan_metrics.symmetric_point_to_plane_distance(
        mesh_a, (vertices_b, np.zeros((1, 3), dtype=int)))
  with pytest.raises(ValueError, match="overlap_threshold_mm"):
    scan_metrics.symmetric_point_to_plane_distance(mesh_a, mesh_a, 0.0)


def test_protocol_crop_icp_and_distance_end_to_end():
  """A scan and a differently sampled, moved prediction of one surface."""
  scan = grid_mesh(1.5, 110.0, offset=0.4, height=face_height)
  nose_tip = np.array([0.0, -2.0, face_height(0.0, -2.0)])
  cropped, cropped_triangles, _ = scan_metrics.crop_to_radius(
      scan[0], scan[1], nose_tip)
  prediction_vertices, prediction_triangles = grid_mesh(
      2.5, 80.0, offset=0.9, height=face_height)
  angle = math.radians(8.0)
  moved = (0.95 * prediction_vertices @ np.array(
      [[math.cos(angle), 0.0, math.sin(angle)], [0.0, 1.0, 0.0],
       [-math.sin(angle), 0.0, math.cos(angle)]]).T + [5.0, -4.0, 6.0])
  before = scan_metrics.symmetric_point_to_plane_distance(
      (moved, prediction_triangles), (cropped, cropped_triangles))
  fit = alignment.icp_align(
      moved, cropped,
      target_normals=scan_metrics.vertex_normals(cropped, cropped_triangles),
      options=alignment.IcpOptions(trim_fraction=0.8),
      init_transform=(1.0, np.eye(3), np.zeros(3)))
  after = scan_metrics.symmetric_point_to_plane_distance(
      (fit.aligned, prediction_triangles), (cropped, cropped_triangles))
  # Measured: 3.6 mm before, 0.006 mm after ICP.
  assert before["mean_mm"] > 2.0
  assert after["mean_mm"] < 0.05
  assert fit.scale == pytest.approx(1 / 0.95, rel=1e-3)


# --------------------------- summarize_by_setting --------------------------


def test_summarize_by_setting_hand_values():
  results = [
      scan_metrics.SubjectResult("s1", "cooperative", 1.0),
      scan_metrics.SubjectResult("s1", "cooperative", 3.0),  # s1 coop: 2.
      ("s2", "cooperative", 4.0),
      ("s1", "outdoor", 5.0),
      ("s2", "outdoor", 7.0),
      ("s3", "indoor", 2.5),
  ]
  summary = scan_metrics.summarize_by_setting(results)
  assert list(summary["per_setting"]) == ["cooperative", "outdoor", "indoor"]
  assert summary["per_setting"]["cooperative"] == {
      "mean_mm": 3.0, "std_mm": 1.0, "subject_count": 2}
  assert summary["per_setting"]["outdoor"] == {
      "mean_mm": 6.0, "std_mm": 1.0, "subject_count": 2}
  assert summary["per_setting"]["indoor"] == {
      "mean_mm": 2.5, "std_mm": 0.0, "subject_count": 1}
  # Per subject: s1 (2 + 5) / 2 = 3.5, s2 (4 + 7) / 2 = 5.5, s3 2.5.
  overall = summary["overall"]
  assert overall["subject_count"] == 3
  assert overall["mean_mm"] == pytest.approx(11.5 / 3)
  assert overall["std_mm"] == pytest.approx(np.std([3.5, 5.5, 2.5]))


@pytest.mark.parametrize("results, message", [
    ([], "empty"),
    ([("s1", "indoor")], r"per_subject_results\[0\]"),
    ([("s1", "indoor", float("nan"))], "non-finite"),
    ([("s1", "indoor", "abc")], r"per_subject_results\[0\]"),
])
def test_summarize_by_setting_rejects_bad_input(results, message):
  with pytest.raises(ValueError, match=message):
    scan_metrics.summarize_by_setting(results)
