"""Runs the selected evaluations of a trained model and writes the report.

Library entry point of ``evaluate.py``: :func:`run_evaluation`.  Output, in
``model_dir/eval/``: ``metrics.json``, PNG figures and ``report.html``.
"""
import dataclasses
import os
from typing import Dict, List, Optional

import numpy as np
from absl import logging

from unsup3dmm.evaluation import identity_eval
from unsup3dmm.evaluation import report
from unsup3dmm.evaluation import scans_eval
from unsup3dmm.evaluation import synthetic_eval
from unsup3dmm.evaluation import views
from unsup3dmm.evaluation.predictor import Predictor
from unsup3dmm.training import real_data

EVAL_SUBDIR = "eval"
# Per-vertex error (mm) shown as full red in the error maps.
ERROR_MAP_MAX_MM = 5.0
REPORT_EXAMPLES = 6


@dataclasses.dataclass
class EvaluationRequest:
  """What to evaluate (the flags of evaluate.py)."""
  model_dir: str
  facenet_weights: str = ""
  synthetic: synthetic_eval.SyntheticEvalSettings = dataclasses.field(
      default_factory=synthetic_eval.SyntheticEvalSettings)
  scans: str = ""
  identity_images: str = ""
  recognizer_model: str = identity_eval.DEFAULT_RECOGNIZER
  recognizer_weights: str = ""
  now_images: str = ""
  cache_dir: str = ""


def _synthetic_figure(predictor, metrics, examples) -> Dict:
  count = min(REPORT_EXAMPLES, len(examples["images"]))
  model = predictor.morphable_model
  rows = []
  for i in range(count):
    true_vertices = model.vertices(examples["true_shape"][i])
    predicted = model.vertices(examples["shape"][i])
    errors = np.linalg.norm(
        synthetic_eval.alignment.similarity_align(predicted,
                                                  true_vertices).aligned -
        true_vertices, axis=1)
    rows.append([
        examples["images"][i],
        views.frontal_render(predictor, examples["shape"][i:i + 1],
                             examples["texture"][i:i + 1])[0],
        views.vertex_color_render(
            predictor, examples["shape"][i:i + 1],
            report.error_colormap(errors, ERROR_MAP_MAX_MM)[None])[0],
    ])
  return {
      "name": "synthetic_examples",
      "title": "Synthetic ground truth: input | prediction | error map",
      "caption": (f"Held-out synthetic faces; error map blue 0 mm to red "
                  f">= {ERROR_MAP_MAX_MM} mm after similarity alignment. "
                  f"Mean vertex error {metrics['model']['vertex_error_mm']:.2f}"
                  f" mm (mean face: "
                  f"{metrics['mean_face_baseline']['vertex_error_mm']:.2f} mm)."
                 ),
      "image": report.grid(rows),
  }


def _identity_figures(metrics, examples) -> List[Dict]:
  count = min(REPORT_EXAMPLES, len(examples["photos"]))
  rows = [[examples["photos"][i], examples["renders"][i]]
          for i in range(count)]
  return [{
      "name": "identity_examples",
      "title": "Identity: photo | frontal render of the prediction",
      "caption": (f"top1 {metrics['top1']:.2f}, render-photo cosine "
                  f"{metrics['render_photo_similarity']:.3f}"),
      "image": report.grid(rows),
  }, {
      "name": "identity_distributions",
      "title": "Cosine similarity distributions",
      "caption": ("render vs own photo; same-person and different-person "
                  "photo pairs, under the recognition network"),
      "image": report.histogram_png({
          "render-photo": examples["render_photo_similarity"],
          "same person": examples["same_person"],
          "different person": examples["different_person"],
      }),
  }]


def run_evaluation(request: EvaluationRequest,
                   predictor: Optional[Predictor] = None,
                   recognizer=None) -> Dict:
  """Runs every requested evaluation; returns the metrics dict.

  Args:
    request: what to evaluate.
    predictor: an already loaded predictor (tests); default: loaded from
      ``request.model_dir``.
    recognizer: an already built recognition network (tests).
  """
  predictor = predictor or Predictor.from_model_dir(request.model_dir,
                                                    request.facenet_weights)
  cache_dir = real_data.default_cache_dir(request.cache_dir)
  metrics = {"model_source": predictor.source,
             "morphable_model": predictor.cfg.model.morphable_model}
  figures = []
  if request.synthetic.faces:
    synthetic_metrics, examples = synthetic_eval.evaluate_synthetic(
        predictor, request.synthetic)
    metrics["synthetic"] = synthetic_metrics
    figures.append(_synthetic_figure(predictor, synthetic_metrics, examples))
    logging.info("Synthetic evaluation: %s", synthetic_metrics["model"])
  if request.scans:
    metrics["scans"] = scans_eval.evaluate_scans(predictor, request.scans,
                                                 cache_dir)
  if request.identity_images:
    recognizer = recognizer or identity_eval.build_recognizer(
        request.recognizer_model, request.recognizer_weights)
    identity_metrics, examples = identity_eval.evaluate_identity(
        predictor, request.identity_images, recognizer, cache_dir)
    identity_metrics["recognizer"] = getattr(recognizer, "model_name",
                                             recognizer.name)
    metrics["identity"] = identity_metrics
    figures.extend(_identity_figures(identity_metrics, examples))
  eval_dir = os.path.join(request.model_dir, EVAL_SUBDIR)
  if request.now_images:
    metrics["now"] = views.export_now_folder(
        predictor, request.now_images, os.path.join(eval_dir, "now"),
        cache_dir)
  if len(metrics) == 2:
    raise ValueError("Nothing to evaluate: give --synthetic_faces > 0, "
                     "--scans, --identity_images or --now_images")
  report.write_report(eval_dir, metrics, figures)
  logging.info("Wrote %s", eval_dir)
  return metrics
