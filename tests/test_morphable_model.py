"""Tests of the BFM-2017-layout reader/writer, container and TF module."""
import dataclasses
import os
import re

import h5py
import numpy as np
import pytest
import tensorflow as tf

from unsup3dmm.model import landmarks as landmarks_lib
from unsup3dmm.model import morphable_model as mm
from unsup3dmm.model.config import ModelConfig


def _h5(path, name):
  with h5py.File(path, "r") as f:
    return f[name][()]


def _walk(path):
  """{dataset path: (dtype kind, item size, rank)} of an HDF5 file."""
  out = {}

  def visit(name, item):
    if isinstance(item, h5py.Dataset):
      size = 0 if item.dtype.kind == "S" else item.dtype.itemsize
      out[name] = (item.dtype.kind, size, item.ndim)

  with h5py.File(path, "r") as f:
    f.visititems(visit)
  return out


def test_fixture_has_the_bfm2017_layout(tiny_bfm_file):
  with h5py.File(tiny_bfm_file, "r") as f:
    assert f["shape/model/mean"].shape == (300,)
    assert f["shape/model/pcaBasis"].shape == (300, 199)
    assert f["color/model/pcaBasis"].shape == (300, 199)
    assert f["expression/model/pcaBasis"].shape == (300, 100)
    assert f["shape/representer/points"].shape == (3, 100)
    assert f["shape/representer/cells"].dtype == np.int32
    assert f["shape/model/pcaBasis"].dtype == np.float32
    assert f["shape/representer"].attrs["datasetType"] == b"POLYGON_MESH"


def test_load_scales_basis_by_sqrt_variance(tiny_bfm_file):
  model = mm.load_morphable_model(tiny_bfm_file)
  assert model.vertex_count == 100
  assert model.triangle_count == 162
  assert model.shape_components == 199
  assert model.texture_components == 199
  assert model.landmark_ids is None
  assert model.name == os.path.basename(tiny_bfm_file)
  mean = _h5(tiny_bfm_file, "shape/model/mean")
  basis = _h5(tiny_bfm_file, "shape/model/pcaBasis")
  variance = _h5(tiny_bfm_file, "shape/model/pcaVariance")
  np.testing.assert_array_equal(model.shape_mean[7], mean[21:24])
  np.testing.assert_allclose(model.shape_basis[5, 7],
                             basis[21:24, 5] * np.sqrt(variance[5]), rtol=1e-6)
  np.testing.assert_allclose(
      model.shape_basis.reshape(199, -1).T,
      basis * np.sqrt(variance), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(model.shape_variance, variance)
  np.testing.assert_array_equal(
      model.triangles, _h5(tiny_bfm_file, "shape/representer/cells").T)
  color_basis = _h5(tiny_bfm_file, "color/model/pcaBasis")
  color_variance = _h5(tiny_bfm_file, "color/model/pcaVariance")
  np.testing.assert_allclose(model.color_basis[3].ravel(),
                             color_basis[:, 3] * np.sqrt(color_variance[3]),
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(model.color_mean.ravel(),
                                _h5(tiny_bfm_file, "color/model/mean"))


def test_load_keeps_first_k_components(tiny_bfm_file):
  full = mm.load_morphable_model(tiny_bfm_file)
  model = mm.load_morphable_model(tiny_bfm_file, shape_components=5,
                                  texture_components=7)
  assert model.shape_basis.shape == (5, 100, 3)
  assert model.color_basis.shape == (7, 100, 3)
  assert model.shape_variance.shape == (5,)
  np.testing.assert_array_equal(model.shape_basis, full.shape_basis[:5])
  np.testing.assert_array_equal(model.color_variance, full.color_variance[:7])


@pytest.mark.parametrize("kwargs,pattern", [
    ({"shape_components": 200}, "shape_components=200 .* 199 shape"),
    ({"texture_components": 0}, "texture_components=0"),
    ({"shape_components": 2.5}, "shape_components must be a positive"),
])
def test_too_many_components_names_the_argument(tiny_bfm_file, kwargs,
                                                pattern):
  with pytest.raises(ValueError, match=pattern):
    mm.load_morphable_model(tiny_bfm_file, **kwargs)


def _corrupt(path, name, action):
  with h5py.File(path, "a") as f:
    if action == "delete":
      del f[name]
    elif action == "shorten":
      data = f[name][()]
      del f[name]
      f.create_dataset(name, data=data[:-3])
    elif action == "nan":
      data = f[name][()]
      data.flat[4] = np.nan
      f[name][...] = data
    elif action == "negative":
      data = f[name][()]
      data[-1] = -1.0
      f[name][...] = data
    elif action == "scale_basis":
      f[name][...] = f[name][()] * 3.0
    elif action == "out_of_range":
      data = f[name][()]
      data[0, 0] = 100
      f[name][...] = data
    elif action == "as_group":
      del f[name]
      f.create_group(name)


@pytest.mark.parametrize("name,action,message", [
    ("shape/model/pcaBasis", "delete", "is missing"),
    ("color/model/mean", "delete", "is missing"),
    ("shape/representer/cells", "delete", "is missing"),
    ("color/model/mean", "shorten", r"has shape \(297,\), expected \(300,\)"),
    ("shape/model/pcaVariance", "shorten", "has shape"),
    ("shape/model/mean", "shorten", r"has shape \(297,\), expected \(300,\)"),
    ("shape/representer/points", "delete", "is missing"),
    ("shape/model/pcaBasis", "nan", "NaN"),
    ("color/model/pcaVariance", "nan", "NaN"),
    ("shape/model/pcaVariance", "negative", "must be positive"),
    ("color/model/pcaBasis", "scale_basis", "orthonormal"),
    ("shape/representer/cells", "out_of_range", r"outside \[0, 100\)"),
    ("shape/model/mean", "as_group", "is not a dataset"),
])
def test_malformed_file_error_names_file_and_dataset(tiny_bfm_file, name,
                                                     action, message):
  _corrupt(tiny_bfm_file, name, action)
  with pytest.raises(ValueError) as error:
    mm.load_morphable_model(tiny_bfm_file)
  text = str(error.value)
  assert tiny_bfm_file in text
  assert f"'{name}'" in text
  assert re.search(message, text), text


def test_colour_values_out_of_unit_range_are_rejected(tiny_bfm_file):
  with h5py.File(tiny_bfm_file, "a") as f:
    f["color/model/mean"][...] = f["color/model/mean"][()] * 255.0
  with pytest.raises(ValueError, match="'color/model/mean'.*in \\[0, 1\\]"):
    mm.load_morphable_model(tiny_bfm_file)


def test_not_hdf5_and_missing_files(tmp_path):
  text_file = tmp_path / "model.h5"
  text_file.write_text("not an HDF5 file\n")
  with pytest.raises(ValueError, match=f"{text_file}.* not a readable HDF5"):
    mm.load_morphable_model(str(text_file))
  missing = tmp_path / "nope.h5"
  with pytest.raises(ValueError, match=f"{missing}.* does not exist"):
    mm.load_morphable_model(str(missing))
  with pytest.raises(ValueError, match="is a directory"):
    mm.load_morphable_model(str(tmp_path))
  with pytest.raises(ValueError, match="path_or_demo"):
    mm.load_morphable_model(None)


def test_writer_round_trip_and_layout(tiny_bfm_file, tmp_path):
  model = mm.load_morphable_model(tiny_bfm_file)
  ids = np.full(68, -1, np.int32)
  ids[[8, 30, 36, 45]] = [5, 55, 61, 68]
  model = dataclasses.replace(model, landmark_ids=ids)
  out = mm.write_bfm2017_layout(str(tmp_path / "sub" / "copy.h5"), model,
                                build_time="then")
  again = mm.load_morphable_model(out)
  np.testing.assert_array_equal(again.shape_mean, model.shape_mean)
  np.testing.assert_allclose(again.shape_basis, model.shape_basis, rtol=1e-5,
                             atol=1e-4)
  np.testing.assert_allclose(again.color_basis, model.color_basis, rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_array_equal(again.shape_variance, model.shape_variance)
  np.testing.assert_array_equal(again.triangles, model.triangles)
  np.testing.assert_array_equal(again.landmark_ids, ids)
  # Same names, dtypes and ranks as the real layout (the fixture), less the
  # expression model, plus our iBUG-68 dataset.
  written, real = _walk(out), _walk(tiny_bfm_file)
  expected = {k: v for k, v in real.items()
              if not k.startswith(("expression", "catalog/MorphableModel.ex"))}
  expected[mm.LANDMARKS_DATASET] = ("i", 4, 1)
  assert written == expected
  with h5py.File(out, "r") as f, h5py.File(tiny_bfm_file, "r") as g:
    for group in ("shape/representer", "color/representer"):
      assert dict(f[group].attrs) == dict(g[group].attrs)
    assert f["shape/model/pcaBasis"].shape == (300, 199)
    assert f["shape/model/noiseVariance"].shape == (1,)
    assert f["color/representer/cells"].shape == (3, 162)
    assert b"ibug68.31" in f["metadata/landmarks/json"][()]
  assert not os.path.exists(out + ".tmp")


def test_landmark_mapping_file(tiny_bfm_file, tmp_path):
  mapping = tmp_path / "ibug.txt"
  mapping.write_text("# comment\n[landmark_mappings]\n 9 = 47  # chin\n"
                     "#18 =  \n31 = 55\n\n[contour_landmarks]\nright = [ 1,\n"
                     "  2 ]\n")
  model = mm.load_morphable_model(tiny_bfm_file, landmarks_path=str(mapping))
  expected = np.full(68, -1)
  expected[8], expected[30] = 47, 55
  np.testing.assert_array_equal(model.landmark_ids, expected)
  assert model.landmark_ids.dtype == np.int32
  config = ModelConfig(morphable_model=tiny_bfm_file, shape_components=4,
                       landmarks_path=str(mapping))
  from_config = mm.load_from_config(config)
  assert from_config.shape_components == 4
  np.testing.assert_array_equal(from_config.landmark_ids, expected)
  assert mm.load_from_config(
      dataclasses.replace(config, landmarks_path="")).landmark_ids is None


@pytest.mark.parametrize("text,message", [
    ("[landmark_mappings]\n31 = 100\n", r"ibug.txt:2: vertex id 100"),
    ("[landmark_mappings]\n69 = 1\n", "iBUG id 69"),
    ("[landmark_mappings]\n31 = 1\n31 = 2\n", "mapped twice"),
    ("[landmark_mappings]\n31 : 1\n", "expected '<ibug id> = <vertex id>'"),
    ("31 = 1\n", "no \\[landmark_mappings\\] section"),
    ("[landmark_mappings]\n# 31 = 1\n", "maps no landmark"),
])
def test_landmark_mapping_errors(tmp_path, text, message):
  path = tmp_path / "ibug.txt"
  path.write_text(text)
  with pytest.raises(ValueError, match=message):
    landmarks_lib.read_ibug_mapping(str(path), vertex_count=100)
  with pytest.raises(ValueError, match="Cannot read"):
    landmarks_lib.read_ibug_mapping(str(tmp_path / "none.txt"), 100)


def test_bfm2017_eos_mapping_file(shared_asset):
  path = shared_asset("bfm2017_aux/ibug_to_bfm2017-1_bfm_nomouth.txt")
  ids = landmarks_lib.read_ibug_mapping(path, vertex_count=53149)
  assert ids[landmarks_lib.NOSE_TIP] == 8156
  assert ids[landmarks_lib.CHIN] == 47846
  assert ids[landmarks_lib.RIGHT_EYE_OUTER_CORNER] == 2602
  assert ids[landmarks_lib.LEFT_EYE_OUTER_CORNER] == 13481
  assert ids[landmarks_lib.RIGHT_MOUTH_CORNER] == 5522
  assert ids[67] == 7719
  assert np.count_nonzero(ids >= 0) == 26
  assert np.all(ids[list(landmarks_lib.JAW)[:8]] == -1)


def _tiny_model(k_shape=3, k_color=2):
  rng = np.random.default_rng(0)
  return mm.MorphableModel(
      shape_mean=rng.normal(size=(4, 3)),
      shape_basis=rng.normal(size=(k_shape, 4, 3)),
      shape_variance=np.arange(k_shape, 0, -1.0),
      color_mean=rng.uniform(size=(4, 3)),
      color_basis=0.1 * rng.normal(size=(k_color, 4, 3)),
      color_variance=np.ones(k_color),
      triangles=np.array([[0, 1, 2], [0, 2, 3]]), name="tiny")


@pytest.mark.parametrize("field,value,message", [
    ("shape_mean", np.zeros((4, 2)),
     r"shape_mean must have shape \(\?, 3\), got \(4, 2\)"),
    ("shape_basis", np.zeros((3, 5, 3)), r"shape_basis must have shape"),
    ("shape_variance", np.array([1.0, 0.0, 1.0]), "must be positive"),
    ("color_variance", np.ones(3), "color_variance must have shape"),
    ("color_mean", np.full((4, 3), np.nan), "color_mean contains NaN"),
    ("triangles", np.array([[0, 1, 4]]), r"outside \[0, 4\)"),
    ("triangles", np.array([[0.0, 1.0, 2.0]]), "must be integers"),
    ("landmark_ids", np.zeros(67, np.int32), r"\(68,\)"),
    ("landmark_ids", np.full(68, 4), r"landmark_ids\[0\] = 4"),
])
def test_container_validates_fields(field, value, message):
  with pytest.raises(ValueError, match=message):
    dataclasses.replace(_tiny_model(), **{field: value})


def test_container_is_read_only():
  model = _tiny_model()
  with pytest.raises(ValueError):
    model.shape_mean[0, 0] = 1.0
  with pytest.raises(dataclasses.FrozenInstanceError):
    model.name = "other"


def test_tf_vertices_and_colors_match_numpy(tiny_bfm_file):
  model = mm.load_morphable_model(tiny_bfm_file, shape_components=20,
                                  texture_components=10)
  tf_model = mm.TFMorphableModel(model)
  rng = np.random.default_rng(1)
  s = rng.normal(size=(3, 20)).astype(np.float32)
  t = rng.normal(size=(3, 10)).astype(np.float32)
  vertices = tf_model.vertices(s).numpy()
  colors = tf_model.colors(t).numpy()
  assert vertices.shape == (3, 100, 3) and colors.shape == (3, 100, 3)
  reference = model.shape_mean + np.einsum("bk,kvd->bvd", s,
                                           model.shape_basis)
  np.testing.assert_allclose(vertices, reference, rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(vertices, model.vertices(s), rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(
      colors, model.color_mean + np.einsum("bk,kvd->bvd", t, model.color_basis),
      rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(tf_model.vertices(np.zeros((1, 20)))[0],
                                model.shape_mean)
  np.testing.assert_array_equal(tf_model.triangles.numpy(), model.triangles)


def test_tf_gradient_is_the_basis(tiny_bfm_file):
  model = mm.load_morphable_model(tiny_bfm_file, shape_components=6,
                                  texture_components=4)
  tf_model = mm.TFMorphableModel(model)
  rng = np.random.default_rng(2)
  weights = rng.normal(size=(2, 100, 3)).astype(np.float32)
  s = tf.Variable(rng.normal(size=(2, 6)).astype(np.float32))
  t = tf.Variable(rng.normal(size=(2, 4)).astype(np.float32))
  with tf.GradientTape(persistent=True) as tape:
    v = tf.reduce_sum(tf_model.vertices(s) * weights)
    c = tf.reduce_sum(tf_model.colors(t) * weights)
  np.testing.assert_allclose(
      tape.gradient(v, s), np.einsum("kvd,bvd->bk", model.shape_basis,
                                     weights), rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(
      tape.gradient(c, t), np.einsum("kvd,bvd->bk", model.color_basis,
                                     weights), rtol=1e-4, atol=1e-5)


def test_tf_rejects_wrong_coefficient_shapes(tiny_bfm_file):
  tf_model = mm.TFMorphableModel(
      mm.load_morphable_model(tiny_bfm_file, shape_components=6))
  with pytest.raises(ValueError, match=r"shape_coefficients must have shape "
                     r"\[batch, 6\]"):
    tf_model.vertices(np.zeros((2, 5), np.float32))
  with pytest.raises(ValueError, match="texture_coefficients"):
    tf_model.colors(np.zeros(199, np.float32))
  with pytest.raises(ValueError, match="MorphableModel"):
    mm.TFMorphableModel("demo")


def test_sampling_is_deterministic_and_truncated():
  tf_model = mm.TFMorphableModel(_tiny_model(k_shape=3, k_color=2))
  s1, t1 = tf_model.sample_coefficients(4, seed=7)
  s2, t2 = tf_model.sample_coefficients(4, seed=[7, 0])
  s3, _ = tf_model.sample_coefficients(4, seed=8)
  assert s1.shape == (4, 3) and t1.shape == (4, 2)
  assert s1.dtype == tf.float32
  np.testing.assert_array_equal(s1, s2)
  np.testing.assert_array_equal(t1, t2)
  assert not np.allclose(s1, s3)
  assert not np.allclose(s1[:, :2], t1)
  samples = mm.sample_standard_normal([20000], seed=3, truncation=1.0).numpy()
  assert np.abs(samples).max() <= 1.0
  # Standard normal truncated to [-1, 1]:
  # std = sqrt(1 - 2 phi(1) / erf(1 / sqrt(2))) = 0.5377.
  assert abs(samples.std() - 0.5377) < 0.01
  assert abs(samples.mean()) < 0.01
  full = mm.sample_standard_normal([20000], seed=3).numpy()
  assert abs(full.std() - 1.0) < 0.02
  assert np.abs(full).max() > 3.0
  truncated, _ = tf_model.sample_coefficients(2000, seed=1, truncation=2.0)
  assert np.abs(truncated.numpy()).max() <= 2.0
  assert np.abs(truncated.numpy()).max() > 1.9


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": 0, "seed": 1}, "batch_size"),
    ({"batch_size": 2, "seed": 1, "truncation": -1.0}, "truncation"),
    ({"batch_size": 2, "seed": 1.5}, "seed"),
    ({"batch_size": 2, "seed": [1, 2, 3]}, "seed"),
])
def test_sampling_rejects_bad_arguments(kwargs, message):
  tf_model = mm.TFMorphableModel(_tiny_model())
  with pytest.raises(ValueError, match=message):
    tf_model.sample_coefficients(**kwargs)


def test_numpy_helpers_and_components():
  model = _tiny_model(k_shape=3, k_color=2)
  c = np.array([1.0, -2.0, 0.5])
  np.testing.assert_allclose(
      model.vertices(c), model.shape_mean + 1.0 * model.shape_basis[0] -
      2.0 * model.shape_basis[1] + 0.5 * model.shape_basis[2], rtol=1e-6)
  with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
    model.vertices(np.zeros(2))
  smaller = model.with_components(2, 1)
  assert (smaller.shape_components, smaller.texture_components) == (2, 1)
  assert model.with_components() is model
  with pytest.raises(ValueError, match="texture_components=3"):
    model.with_components(texture_components=3)
