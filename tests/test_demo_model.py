"""Tests of the procedural demo morphable model."""
import numpy as np
import pytest

from unsup3dmm.model import demo_model
from unsup3dmm.model import landmarks as lm
from unsup3dmm.model import morphable_model as mm


@pytest.fixture(scope="module")
def demo():
  return demo_model.build_demo_model()


def test_size_and_topology(demo):
  assert 8000 <= demo.vertex_count <= 15000
  assert demo.triangle_count > 1.9 * demo.vertex_count
  assert demo.name == "demo"
  assert demo.shape_components == 49
  assert demo.texture_components == 40
  # Every vertex is used, no degenerate triangle.
  assert np.unique(demo.triangles).size == demo.vertex_count
  v = demo.shape_mean[demo.triangles]
  areas = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]),
                               axis=1)
  assert areas.min() > 0.05  # mm^2
  # Counter-clockwise seen from outside: normals point away from the axis.
  normals = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
  outward = v.mean(axis=1) * np.array([1.0, 0.0, 1.0])
  assert np.mean(np.sum(normals * outward, axis=1) > 0) > 0.98


def test_mean_is_left_right_symmetric(demo):
  mirror = demo_model.mirror_permutation()
  assert sorted(mirror) == list(range(demo.vertex_count))
  np.testing.assert_array_equal(mirror[mirror], np.arange(demo.vertex_count))
  fixed = np.count_nonzero(mirror == np.arange(demo.vertex_count))
  assert 0 < fixed < 200  # only the midline column maps to itself
  reflected = demo.shape_mean[mirror] * np.array([-1.0, 1.0, 1.0])
  np.testing.assert_allclose(reflected, demo.shape_mean, atol=1e-4)
  np.testing.assert_allclose(demo.color_mean[mirror], demo.color_mean,
                             atol=1e-4)
  # Mirrored triangles are triangles of the mesh (same faces, reversed).
  triangles = {tuple(sorted(t)) for t in demo.triangles.tolist()}
  assert {tuple(sorted(t)) for t in mirror[demo.triangles].tolist()} == (
      triangles)
  ids = demo.landmark_ids
  assert ids[lm.LEFT_EYE_OUTER_CORNER] == mirror[ids[lm.RIGHT_EYE_OUTER_CORNER]]
  assert ids[lm.LEFT_MOUTH_CORNER] == mirror[ids[lm.RIGHT_MOUTH_CORNER]]
  assert mirror[ids[lm.NOSE_TIP]] == ids[lm.NOSE_TIP]


def test_human_size_in_millimetres(demo):
  v = demo.shape_mean
  width = v[:, 0].max() - v[:, 0].min()
  height = v[:, 1].max() - v[:, 1].min()
  assert 130 < width < 160
  assert 180 < height < 215
  p = v[demo.landmark_ids]
  nose_tip = p[lm.NOSE_TIP]
  assert abs(nose_tip[2] - v[:, 2].max()) < 2.0  # the nose tip sticks out
  assert 95 < nose_tip[2] < 125
  outer = np.linalg.norm(p[lm.RIGHT_EYE_OUTER_CORNER] -
                         p[lm.LEFT_EYE_OUTER_CORNER])
  assert 80 < outer < 100
  eye_centres = (p[list(lm.LEFT_EYE)].mean(0) - p[list(lm.RIGHT_EYE)].mean(0))
  assert 55 < eye_centres[0] < 70
  mouth_width = np.linalg.norm(p[lm.RIGHT_MOUTH_CORNER] -
                               p[lm.LEFT_MOUTH_CORNER])
  assert 40 < mouth_width < 60
  # Vertical order: brows > eyes > nose tip > mouth > chin.
  brow_y = p[list(lm.RIGHT_BROW)][:, 1].mean()
  eye_y = p[list(lm.RIGHT_EYE)][:, 1].mean()
  mouth_y = p[lm.RIGHT_MOUTH_CORNER][1]
  assert brow_y > eye_y > nose_tip[1] > mouth_y > p[lm.CHIN][1]
  assert 110 < eye_y - p[lm.CHIN][1] < 135  # eye to chin, mm


def test_landmarks_are_complete_and_sided(demo):
  ids = demo.landmark_ids
  assert ids.shape == (68,) and ids.dtype == np.int32
  assert np.all(ids >= 0)
  assert np.unique(ids).size == 68
  p = demo.shape_mean[ids]
  assert np.all(p[list(lm.RIGHT_EYE), 0] < 0)  # subject's right is -x
  assert np.all(p[list(lm.LEFT_EYE), 0] > 0)
  assert np.all(p[list(lm.RIGHT_BROW), 0] < 0)
  assert np.all(np.diff(p[list(lm.JAW), 0]) > 0)  # jaw runs right to left
  assert p[lm.RIGHT_EYE_OUTER_CORNER, 0] < p[lm.RIGHT_EYE_INNER_CORNER, 0]
  np.testing.assert_allclose(p[list(lm.NOSE_BRIDGE), 0], 0.0, atol=1e-4)


def test_colours_show_eyes_lips_and_brows(demo):
  c = demo.color_mean
  assert c.min() >= 0.0 and c.max() <= 1.0
  p = demo.shape_mean
  ids = demo.landmark_ids
  for eye in (lm.RIGHT_EYE, lm.LEFT_EYE):
    corners = p[ids[[eye[0], eye[3]]]]
    centre = corners.mean(axis=0)
    pupil = np.argmin(np.linalg.norm(p[:, :2] - centre[:2], axis=1))
    assert c[pupil].max() < 0.15  # dark pupil
    # Sclera halfway between the iris and each corner.
    for corner in corners:
      point = 0.45 * corner + 0.55 * centre
      white = np.argmin(np.linalg.norm(p[:, :2] - point[:2], axis=1))
      assert c[white].min() > 0.7, c[white]
  skin = c[np.argmin(np.linalg.norm(p - np.array([0.0, 70.0, 95.0]), axis=1))]
  # Middle of the lower lip: between iBUG 58 (outer) and 67 (inner).
  lower_lip = c[np.argmin(np.linalg.norm(
      p[:, :2] - 0.5 * (p[ids[57], :2] + p[ids[66], :2]), axis=1))]
  assert lower_lip[0] - lower_lip[1] > skin[0] - skin[1] + 0.1  # redder
  brow = c[ids[19]]
  assert brow.sum() < 0.6 * skin.sum()


def test_bases_are_orthonormal_with_decreasing_variance(demo):
  for basis, variance in ((demo.shape_basis, demo.shape_variance),
                          (demo.color_basis, demo.color_variance)):
    assert np.all(variance > 0)
    assert np.all(np.diff(variance) < 0)
    u = basis.reshape(len(variance), -1).astype(np.float64) / np.sqrt(
        variance.astype(np.float64))[:, None]
    np.testing.assert_allclose(u @ u.T, np.eye(len(variance)), atol=1e-4)
  # The largest shape mode moves vertices by millimetres, not metres.
  assert 1.0 < np.abs(demo.shape_basis[0]).max() < 10.0


def test_random_faces_stay_plausible(demo):
  rng = np.random.default_rng(5)
  s = np.clip(rng.normal(size=(20, demo.shape_components)), -3, 3)
  t = np.clip(rng.normal(size=(20, demo.texture_components)), -3, 3)
  offsets = np.linalg.norm(demo.vertices(s) - demo.shape_mean, axis=-1)
  assert offsets.max() < 30.0
  assert np.median(offsets) > 1.0
  colors = demo.colors(t)
  assert np.mean((colors >= 0) & (colors <= 1)) > 0.99


def test_builds_are_deterministic(demo):
  demo_model.build_demo_model.cache_clear()
  again = demo_model.build_demo_model()
  assert again is not demo
  for field in ("shape_mean", "shape_basis", "shape_variance", "color_mean",
                "color_basis", "color_variance", "triangles", "landmark_ids"):
    np.testing.assert_array_equal(getattr(again, field), getattr(demo, field))
  other = demo_model.build_demo_model(seed=3)
  assert other.name == "demo-seed3"
  np.testing.assert_array_equal(other.shape_mean, demo.shape_mean)
  assert not np.allclose(other.shape_variance, demo.shape_variance)
  with pytest.raises(ValueError, match="seed"):
    demo_model.build_demo_model(seed="zero")


def test_load_demo_and_file_round_trip(demo, tmp_path):
  loaded = mm.load_morphable_model("demo", shape_components=10,
                                   texture_components=5)
  assert loaded.shape_components == 10 and loaded.texture_components == 5
  np.testing.assert_array_equal(loaded.shape_basis, demo.shape_basis[:10])
  path = demo_model.write_demo_model(str(tmp_path / "demo.h5"))
  from_file = mm.load_morphable_model(path)
  assert from_file.name == "demo.h5"
  np.testing.assert_array_equal(from_file.shape_mean, demo.shape_mean)
  np.testing.assert_allclose(from_file.shape_basis, demo.shape_basis,
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(from_file.color_basis, demo.color_basis,
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(from_file.landmark_ids, demo.landmark_ids)
  np.testing.assert_array_equal(from_file.triangles, demo.triangles)
