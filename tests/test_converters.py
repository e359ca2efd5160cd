"""Tests of the model converters and the unsup3dmm-convert command line."""
import numpy as np
import pytest

from unsup3dmm.model import converters
from unsup3dmm.model import morphable_model as mm
from unsup3dmm.tools import convert_model

ICT = "ict_facekit/ict_facekit_light_face_head_neck.npz"
SFM = "sfm/sfm_shape_3448.npz"


def _orthonormal(basis, variance):
  u = basis.reshape(len(variance), -1).astype(np.float64) / np.sqrt(
      variance.astype(np.float64))[:, None]
  return np.abs(u @ u.T - np.eye(len(variance))).max()


def test_ict_facekit_conversion_through_the_command_line(shared_asset,
                                                         tmp_path, capsys):
  source = shared_asset(ICT)
  out = str(tmp_path / "ict.h5")
  assert convert_model.run(["--source", "ict", "--input", source,
                            "--output", out]) == 0
  assert "11248 vertices" in capsys.readouterr().out
  model = mm.load_morphable_model(out)
  data = np.load(source)
  neutral_cm = data["neutral"].astype(np.float64)
  assert model.vertex_count == 11248
  assert model.triangle_count == 22288
  assert model.shape_components == 100
  # Millimetres: coefficient 0 is the neutral mesh times 10.
  np.testing.assert_allclose(model.vertices(np.zeros(100)), neutral_cm * 10.0,
                             rtol=1e-6, atol=1e-4)
  extent_cm = neutral_cm.max(0) - neutral_cm.min(0)
  extent = model.shape_mean.max(0) - model.shape_mean.min(0)
  np.testing.assert_allclose(extent / extent_cm, 10.0, rtol=1e-5)
  np.testing.assert_array_equal(model.triangles, data["triangles"])
  np.testing.assert_array_equal(model.landmark_ids,
                                data["landmarks_multipie68"])
  # Orthonormal directions, decreasing variances, and the same distribution
  # as the sqrt-scaled deltas: r^T D D^T r == r^T B B^T r for any r.
  assert _orthonormal(model.shape_basis, model.shape_variance) < 1e-4
  assert np.all(np.diff(model.shape_variance) < 0)
  deltas = data["identity_deltas"].reshape(100, -1).astype(np.float64) * 10.0
  basis = model.shape_basis.reshape(100, -1).astype(np.float64)
  probes = np.random.default_rng(0).normal(size=(3, deltas.shape[1]))
  np.testing.assert_allclose(np.sum((probes @ deltas.T)**2, axis=1),
                             np.sum((probes @ basis.T)**2, axis=1), rtol=1e-4)
  # Synthetic colours, in [0, 1], darker brows than forehead skin.
  assert model.color_mean.min() >= 0 and model.color_mean.max() <= 1
  brow = model.color_mean[model.landmark_ids[19]]
  forehead = model.color_mean[np.argmax(model.shape_mean[:, 1] *
                                        (np.abs(model.shape_mean[:, 0]) < 10) *
                                        (model.shape_mean[:, 2] > 60))]
  assert brow.sum() < forehead.sum() - 0.3


def test_surrey_conversion_keeps_the_orthonormal_basis(shared_asset,
                                                       tmp_path):
  source = shared_asset(SFM)
  data = np.load(source)
  model = converters.convert("sfm", source, str(tmp_path / "sfm.h5"))
  assert (model.vertex_count, model.triangle_count) == (3448, 6736)
  assert model.shape_components == 63
  np.testing.assert_allclose(model.shape_mean, data["mean"], atol=1e-5)
  expected = np.transpose(data["orthonormal_basis"], (2, 0, 1)) * np.sqrt(
      data["eigenvalues"])[:, None, None]
  np.testing.assert_allclose(model.shape_basis, expected, rtol=1e-5,
                             atol=1e-4)
  np.testing.assert_allclose(model.shape_variance, data["eigenvalues"],
                             rtol=1e-6)
  ids = model.landmark_ids
  assert np.count_nonzero(ids >= 0) == 50
  assert ids[30] == data["ibug68_vertex"][list(data["ibug68_ids"]).index(31)]
  assert np.all(ids[:8] == -1)
  loaded = mm.load_morphable_model(str(tmp_path / "sfm.h5"))
  np.testing.assert_array_equal(loaded.landmark_ids, ids)
  np.testing.assert_allclose(loaded.shape_basis, model.shape_basis,
                             rtol=1e-4, atol=1e-4)


def _small(rng, k=4, v=10):
  mean = rng.normal(size=(v, 3)) * 50
  triangles = np.array([[i, i + 1, i + 2] for i in range(v - 2)])
  return mean, triangles


def test_deviations_are_orthonormalised_with_the_same_covariance():
  rng = np.random.default_rng(1)
  mean, triangles = _small(rng)
  deviations = rng.normal(size=(4, 10, 3))
  deviations[1] += 0.8 * deviations[0]  # not orthogonal
  model = converters.convert_arrays(mean, triangles,
                                    shape_deviations=deviations,
                                    scale_to_mm=10.0, name="small")
  d = deviations.reshape(4, -1) * 10.0
  b = model.shape_basis.reshape(4, -1).astype(np.float64)
  np.testing.assert_allclose(b.T @ b, d.T @ d, atol=1e-3)
  assert _orthonormal(model.shape_basis, model.shape_variance) < 1e-5
  np.testing.assert_allclose(model.shape_mean, mean * 10.0, rtol=1e-6)
  assert model.texture_components > 0
  # Linearly dependent deltas: the null direction is dropped.
  deviations[3] = deviations[0] - deviations[2]
  assert converters.convert_arrays(
      mean, triangles, shape_deviations=deviations).shape_components == 3


def test_orthonormal_basis_and_colour_arrays_are_used_as_given(tmp_path):
  rng = np.random.default_rng(2)
  mean, triangles = _small(rng)
  q, _ = np.linalg.qr(rng.normal(size=(30, 5)))
  basis = q.T.reshape(5, 10, 3)
  variance = np.array([1.0, 9.0, 4.0, 16.0, 2.0])
  cq, _ = np.linalg.qr(rng.normal(size=(30, 2)))
  path = tmp_path / "model.npz"
  np.savez(path, shape_mean=mean, triangles=triangles, shape_basis=basis,
           shape_variance=variance, color_mean=np.full((10, 3), 0.5),
           color_basis=cq.T.reshape(2, 10, 3), color_variance=[0.01, 0.02],
           landmark_ids=np.full(68, -1))
  model = converters.convert_npz(str(path), units="cm")
  assert model.name == "model"
  np.testing.assert_allclose(model.shape_variance, [1600, 900, 400, 200, 100])
  np.testing.assert_allclose(model.shape_basis[0], basis[3] * 4.0 * 10.0,
                             atol=1e-5)
  np.testing.assert_allclose(model.color_variance, [0.02, 0.01])
  np.testing.assert_allclose(model.color_basis[0],
                             cq[:, 1].reshape(10, 3) * np.sqrt(0.02),
                             atol=1e-6)
  out = str(tmp_path / "model.h5")
  assert convert_model.run(["--source", "npz", "--input", str(path),
                            "--units", "cm", "--output", out]) == 0
  np.testing.assert_allclose(mm.load_morphable_model(out).shape_mean,
                             mean * 10.0, rtol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    ({}, "either shape_deviations, or shape_basis"),
    ({"shape_basis": np.ones((2, 10, 3)), "shape_variance": [1.0, 1.0]},
     "not orthonormal"),
    ({"shape_basis": np.eye(30)[:2].reshape(2, 10, 3)}, "needs shape_variance"),
    ({"shape_deviations": np.ones((2, 9, 3))}, r"\[K, 10, 3\]"),
    ({"shape_deviations": np.ones((2, 10, 3)), "color_mean": np.ones((10, 3))},
     "color_mean needs color_basis"),
    ({"shape_deviations": np.ones((2, 10, 3)), "scale_to_mm": 0.0},
     "scale_to_mm"),
    ({"shape_deviations": np.ones((2, 10, 3)),
      "landmark_ids": np.full(68, 10)}, r"landmark_ids\[0\] = 10"),
])
def test_convert_arrays_errors(kwargs, message):
  mean, triangles = _small(np.random.default_rng(3))
  with pytest.raises(ValueError, match=message):
    converters.convert_arrays(mean, triangles, **kwargs)


def test_npz_and_command_line_errors(tmp_path, capsys):
  path = tmp_path / "bad.npz"
  np.savez(path, shape_mean=np.zeros((3, 3)))
  with pytest.raises(ValueError, match="bad.npz.*'triangles'"):
    converters.convert_npz(str(path))
  np.savez(path, shape_mean=np.zeros((3, 3)), triangles=[[0, 1, 2]], foo=1)
  with pytest.raises(ValueError, match="unknown arrays \\['foo'\\]"):
    converters.convert_npz(str(path))
  with pytest.raises(ValueError, match="units"):
    converters.convert_npz(str(path), units="inch")
  with pytest.raises(ValueError, match="does not exist"):
    converters.convert_ict_facekit(str(tmp_path / "none.npz"))
  assert convert_model.run(["--source", "sfm", "--output",
                            str(tmp_path / "x.h5")]) == 2
  assert "--source sfm needs --input" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    convert_model.run(["--source", "bfm", "--output", "x.h5"])


def test_command_line_writes_the_demo_model(tmp_path):
  out = str(tmp_path / "demo.h5")
  assert convert_model.run(["--source", "demo", "--output", out]) == 0
  model = mm.load_morphable_model(out, shape_components=3)
  demo = mm.load_morphable_model("demo", shape_components=3)
  np.testing.assert_array_equal(model.shape_mean, demo.shape_mean)
  assert model.landmark_ids is not None
