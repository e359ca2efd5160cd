"""Tests of evaluate.py's library: synthetic evaluation, report, prediction,
and a short train-then-evaluate run."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from unsup3dmm.config import Config
from unsup3dmm.data import face_crop
from unsup3dmm.evaluation import prediction
from unsup3dmm.evaluation import runner
from unsup3dmm.evaluation import synthetic_eval
from unsup3dmm.evaluation.predictor import Predictor
from unsup3dmm.model import mesh_io
from unsup3dmm.model import morphable_model as mm_lib
from unsup3dmm.training import trainer as trainer_lib


def _rigid_mode_model(path):
  """A 12x12 face-sized grid whose shape modes are translations and scale.

  Every shape mode is a similarity transform of the mean, so after similarity
  alignment the mean face matches every sampled face exactly: the analytic
  aligned vertex error of the mean-face predictor is 0.
  """
  xs, ys = np.meshgrid(np.linspace(-70, 70, 12), np.linspace(-90, 90, 12))
  zs = 60.0 - 0.004 * (xs**2 + ys**2)
  mean = np.stack([xs, ys, zs], -1).reshape(-1, 3)
  mean = mean - mean.mean(axis=0)
  count = mean.shape[0]
  directions = []
  for axis in range(3):
    d = np.zeros_like(mean)
    d[:, axis] = 1.0
    directions.append(d)
  directions.append(mean.copy())  # isotropic scale about the centroid
  orthonormal = []
  for d in directions:
    d = d.ravel()
    for o in orthonormal:
      d = d - (d @ o) * o
    orthonormal.append(d / np.linalg.norm(d))
  variance = np.array([400.0, 300.0, 200.0, 0.5 * np.sum(mean**2) * 0.01])
  shape_basis = (np.stack(orthonormal) * np.sqrt(variance)[:, None]).reshape(
      4, count, 3)
  color_direction = np.full((1, count, 3), 1.0 / np.sqrt(3 * count))
  triangles = []
  for r in range(11):
    for c in range(11):
      a = r * 12 + c
      triangles += [[a, a + 12, a + 1], [a + 1, a + 12, a + 13]]
  model = mm_lib.MorphableModel(
      shape_mean=mean, shape_basis=shape_basis, shape_variance=variance,
      color_mean=np.full((count, 3), 0.6), color_basis=color_direction * 0.1,
      color_variance=np.array([0.01]), triangles=np.array(triangles),
      name="rigid-mode test model")
  mm_lib.write_bfm2017_layout(path, model)
  return model


def _mean_face_predictor(model_path, feature_dim=8):
  """The predictor that always answers the mean face (all coefficients 0)."""
  cfg = Config().override([f"model.morphable_model={model_path}"])
  model = mm_lib.load_from_config(cfg.model)

  def encode(images):
    n = len(images)
    return np.zeros((n, feature_dim), np.float32), np.zeros((n, 4), np.float32)

  def decode(features):
    n = len(features)
    return (np.zeros((n, model.shape_components), np.float32),
            np.zeros((n, model.texture_components), np.float32))

  return Predictor(cfg, encode, decode, "mean face", model)


def test_mean_face_synthetic_evaluation_matches_analytic_values(tmp_path):
  _rigid_mode_model(str(tmp_path / "rigid.h5"))
  predictor = _mean_face_predictor(str(tmp_path / "rigid.h5"))
  settings = synthetic_eval.SyntheticEvalSettings(faces=40, seed=5,
                                                  batch_size=20)
  metrics, examples = synthetic_eval.evaluate_synthetic(predictor, settings)
  m = metrics["model"]
  # All modes are similarity transforms: aligned error is exactly 0.
  assert m["vertex_error_mm"] == pytest.approx(0.0, abs=1e-3)
  assert m["region_error_mm/face"] == pytest.approx(0.0, abs=1e-3)
  # Coefficient RMSE of the zero predictor is the RMS of the true values...
  true_shape = examples["true_shape"]
  assert m["shape_coefficient_rmse"] == pytest.approx(
      np.sqrt(np.mean(true_shape**2)), rel=1e-6)
  # ... whose expectation for N(0, 1) truncated at +-3 is 0.9866.
  assert m["shape_coefficient_rmse"] == pytest.approx(0.9866, rel=0.15)
  assert metrics["mean_face_baseline"] == m
  assert examples["images"].shape == (40, 160, 160, 3)


def test_run_evaluation_writes_metrics_figures_and_report(tmp_path):
  _rigid_mode_model(str(tmp_path / "rigid.h5"))
  predictor = _mean_face_predictor(str(tmp_path / "rigid.h5"))
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  request = runner.EvaluationRequest(
      model_dir=str(model_dir),
      synthetic=synthetic_eval.SyntheticEvalSettings(faces=6, batch_size=6))
  metrics = runner.run_evaluation(request, predictor=predictor)
  eval_dir = model_dir / "eval"
  saved = json.loads((eval_dir / "metrics.json").read_text())
  assert saved["synthetic"]["faces"] == 6
  assert saved["synthetic"]["model"] == pytest.approx(
      metrics["synthetic"]["model"])
  figure = Image.open(eval_dir / "synthetic_examples.png")
  assert figure.size[0] > 3 * 160 and figure.size[1] > 6 * 160
  html = (eval_dir / "report.html").read_text()
  assert html.startswith("<!DOCTYPE html>") and html.count(
      "data:image/png;base64,") == 1
  assert "vertex_error_mm" in html
  with pytest.raises(ValueError, match="Nothing to evaluate"):
    runner.run_evaluation(
        runner.EvaluationRequest(
            model_dir=str(model_dir),
            synthetic=synthetic_eval.SyntheticEvalSettings(faces=0)),
        predictor=predictor)


class _FakeCropper:
  """Finds two 'faces' in every photo whose top-left pixel is not black."""

  def crop_faces(self, image, all_faces=False):
    if image[0, 0].sum() == 0:
      return []
    crop = np.full((160, 160, 3), 0.5, np.float32)
    faces = [face_crop.FaceCrop(crop, (0, 0, 10, 10), 0.99, (0, 0, 10, 10)),
             face_crop.FaceCrop(crop * 0.5, (5, 5, 20, 20), 0.98,
                                (5, 5, 20, 20))]
    return faces if all_faces else faces[:1]


def test_predict_writes_a_readable_mesh_per_face(tmp_path):
  model = _rigid_mode_model(str(tmp_path / "rigid.h5"))
  predictor = _mean_face_predictor(str(tmp_path / "rigid.h5"))
  Image.fromarray(np.full((50, 40, 3), 200, np.uint8)).save(tmp_path / "a.jpg")
  Image.fromarray(np.zeros((50, 40, 3), np.uint8)).save(tmp_path / "none.png")
  results = prediction.predict_photos(
      predictor, [str(tmp_path / "a.jpg"), str(tmp_path / "none.png")],
      str(tmp_path / "out"), cropper=_FakeCropper())
  assert results[1].outputs == [] and "no face found" in results[1].message
  outputs = sorted(os.path.basename(p) for p in results[0].outputs)
  assert outputs == ["a_face0.obj", "a_face0.ply", "a_face0.png",
                     "a_face1.obj", "a_face1.ply", "a_face1.png"]
  for name in ("a_face0.obj", "a_face1.ply"):
    vertices, triangles, colors = mesh_io.read_mesh(str(tmp_path / "out" /
                                                        name))
    np.testing.assert_allclose(vertices, model.shape_mean, atol=1e-3)
    np.testing.assert_array_equal(triangles, model.triangles)
    assert colors is not None and colors.shape == vertices.shape
  assert Image.open(tmp_path / "out" / "a_face0.png").size == (160, 160)
  with pytest.raises(ValueError, match="--formats"):
    prediction.predict_photos(predictor, [], str(tmp_path), formats=["gif"])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, facenet_encoder, few_photos):
  """A few steps of both stages on the demo model (real FaceNet)."""
  root = tmp_path_factory.mktemp("trained")
  cfg = Config().override([
      "training.stage1_steps=2", "training.stage2_steps=1",
      "training.batch_size=4", "training.stage1_bank_batch_size=8",
      "training.synthetic_bank_size=16", f"training.cache_dir={root}/cache",
      f"training.real_images={few_photos}",
      f"model.facenet_weights={facenet_encoder.weights_path}"
  ])
  model_dir = str(root / "run")
  trainer_lib.Trainer(cfg, model_dir, encoder=facenet_encoder).run()
  return model_dir


def test_train_then_evaluate_end_to_end(trained_run, facenet_encoder,
                                        few_photos, tmp_path):
  predictor = Predictor.from_model_dir(trained_run, encoder=facenet_encoder)
  assert predictor.source.endswith("ckpt-3")
  request = runner.EvaluationRequest(
      model_dir=trained_run, identity_images=few_photos,
      cache_dir=str(tmp_path / "cache"),
      synthetic=synthetic_eval.SyntheticEvalSettings(faces=4, batch_size=4))
  # No independent recogniser is available offline: the test uses the
  # training encoder as the recognition network.
  metrics = runner.run_evaluation(request, predictor=predictor,
                                  recognizer=facenet_encoder)
  synthetic = metrics["synthetic"]["model"]
  assert np.isfinite(synthetic["vertex_error_mm"])
  assert synthetic["vertex_error_mm"] > 0
  identity = metrics["identity"]
  assert identity["photos"] >= 4 and identity["identities"] == 2
  assert 0.0 <= identity["top1"] <= identity["top5"] <= 1.0
  assert identity["same_person"] > identity["different_person"]
  saved = json.load(open(os.path.join(trained_run, "eval", "metrics.json")))
  assert set(saved) >= {"synthetic", "identity", "model_source"}
  for name in ("synthetic_examples.png", "identity_examples.png",
               "identity_distributions.png", "report.html"):
    assert os.path.exists(os.path.join(trained_run, "eval", name)), name


def test_saved_model_predictor_matches_checkpoint(trained_run,
                                                  facenet_encoder, tmp_path):
  from_checkpoint = Predictor.from_model_dir(trained_run,
                                             encoder=facenet_encoder)
  export_only = tmp_path / "export_only"
  export_only.mkdir()
  os.symlink(os.path.join(trained_run, "export"), export_only / "export")
  Config.load(trained_run).save(str(export_only))
  from_export = Predictor.from_model_dir(str(export_only))
  assert from_export.source.endswith("export")
  images = np.random.default_rng(1).uniform(0, 1, (2, 160, 160, 3))
  for a, b in zip(from_checkpoint.predict(images.astype(np.float32)),
                  from_export.predict(images.astype(np.float32))):
    np.testing.assert_allclose(a, b, atol=1e-4)
  with pytest.raises(ValueError, match="neither a checkpoint"):
    empty = tmp_path / "empty"
    empty.mkdir()
    Config().save(str(empty))
    Predictor.from_model_dir(str(empty))


def test_scan_protocol_recovers_a_scaled_shifted_scan(tmp_path):
  """MICC layout end to end: MTCNN on rendered frames, feature averaging,
  95 mm crops, ICP with scale, symmetric point-to-plane distance.  The
  mean-face predictor against a scan that *is* the mean face, scaled by 1.04
  and shifted, must come out at ~0 mm."""
  from unsup3dmm.evaluation import scans_eval
  from unsup3dmm.evaluation import views
  cfg = Config()
  model = mm_lib.load_from_config(cfg.model)

  def encode(images):
    return (np.zeros((len(images), 8), np.float32),
            np.zeros((len(images), 4), np.float32))

  def decode(features):
    return (np.zeros((len(features), model.shape_components), np.float32),
            np.zeros((len(features), model.texture_components), np.float32))

  predictor = Predictor(cfg, encode, decode, "mean face", model)
  subject = tmp_path / "scans" / "subject01"
  (subject / "cooperative").mkdir(parents=True)
  frames = views.frontal_render(predictor,
                                np.zeros((2, model.shape_components)),
                                np.zeros((2, model.texture_components)))
  for k, frame in enumerate(frames):
    Image.fromarray((frame * 255).astype(np.uint8)).save(
        subject / "cooperative" / f"frame{k}.png")
  scan = model.shape_mean * 1.04 + np.array([3.0, -2.0, 5.0])
  mesh_io.write_obj(str(subject / "scan.obj"), scan, model.triangles)
  summary = scans_eval.evaluate_scans(predictor, str(tmp_path / "scans"),
                                      str(tmp_path / "cache"))
  result = summary["subjects"]["subject01/cooperative"]
  assert result["frames"] == 2
  assert result["icp_scale"] == pytest.approx(1.04, rel=2e-3)
  assert result["mean_mm"] == pytest.approx(0.0, abs=0.05)
  assert summary["overall"]["subject_count"] == 1
  assert summary["per_setting"]["cooperative"]["mean_mm"] == pytest.approx(
      result["mean_mm"])
  with pytest.raises(ValueError, match="--scans: .*has no scan.obj"):
    (tmp_path / "scans" / "subject02" / "indoor").mkdir(parents=True)
    scans_eval.evaluate_scans(predictor, str(tmp_path / "scans"),
                              str(tmp_path / "cache"))
