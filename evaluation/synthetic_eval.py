"""Evaluation on synthetic ground truth (held-out random faces).

N faces are sampled from the morphable model with a fixed seed (disjoint from
training's streams), rendered in random pose and lighting, and regressed.
Reported, for the predictor and for the mean face (all coefficients 0) as the
baseline:

* ``shape_coefficient_rmse`` / ``texture_coefficient_rmse``: root mean square
  coefficient error (units of component standard deviation);
* ``vertex_error_mm``: mean over faces of the mean per-vertex distance after a
  similarity alignment (rotation, translation, isotropic scale) of the
  prediction onto the ground truth, with its median and std over faces;
* ``region_error_mm``: the same per face region (iBUG-68 landmark groups:
  each vertex belongs to the group of its nearest landmark on the mean face;
  one region ``face`` when the model has no landmarks).
"""
import dataclasses
from typing import Dict, Tuple

import numpy as np
import tensorflow as tf

from unsup3dmm.evaluation import alignment
from unsup3dmm.renderer import render as render_lib

# iBUG-68 landmark groups (0-based ids), used to name face regions.
LANDMARK_GROUPS = {
    "jaw": range(0, 17),
    "brows": range(17, 27),
    "nose": range(27, 36),
    "eyes": range(36, 48),
    "mouth": range(48, 68),
}


@dataclasses.dataclass
class SyntheticEvalSettings:
  """Settings of the synthetic evaluation (flags of evaluate.py)."""
  faces: int = 100
  seed: int = 20180618
  # Pose range of the held-out renders, degrees.
  yaw_range_degrees: Tuple[float, float] = (-30.0, 30.0)
  pitch_range_degrees: Tuple[float, float] = (-10.0, 10.0)
  truncation: float = 3.0
  batch_size: int = 16


def vertex_regions(model) -> Dict[str, np.ndarray]:
  """Vertex ids of each face region of a MorphableModel (see module doc)."""
  if model.landmark_ids is None:
    return {"face": np.arange(model.vertex_count)}
  ids = np.asarray(model.landmark_ids)
  names, points = [], []
  for name, group in LANDMARK_GROUPS.items():
    for index in group:
      if ids[index] >= 0:
        names.append(name)
        points.append(model.shape_mean[ids[index]])
  if not points:
    return {"face": np.arange(model.vertex_count)}
  points = np.asarray(points)
  distances = np.linalg.norm(model.shape_mean[:, None, :] - points[None],
                             axis=-1)
  nearest = np.asarray(names)[np.argmin(distances, axis=1)]
  return {name: np.flatnonzero(nearest == name)
          for name in LANDMARK_GROUPS if np.any(nearest == name)}


def coefficient_metrics(true_shape, true_texture, shape, texture, model,
                        regions) -> Dict[str, float]:
  """Coefficient RMSE and aligned vertex errors of predictions.

  Args:
    true_shape, shape: float [faces, Ks] true / predicted coefficients.
    true_texture, texture: float [faces, Kt].
    model: the MorphableModel (numpy) whose vertices are compared.
    regions: name -> vertex ids (see :func:`vertex_regions`).

  Returns:
    A flat dict of metrics (mm for distances).
  """
  errors, per_region = [], {name: [] for name in regions}
  for i in range(len(true_shape)):
    target = model.vertices(true_shape[i])
    predicted = model.vertices(shape[i])
    aligned = alignment.similarity_align(predicted, target).aligned
    distances = alignment.per_vertex_distance(aligned, target)
    errors.append(distances.mean())
    for name, value in alignment.region_errors(distances, regions).items():
      per_region[name].append(value)
  errors = np.asarray(errors)
  metrics = {
      "shape_coefficient_rmse":
          float(np.sqrt(np.mean(np.square(true_shape - shape)))),
      "texture_coefficient_rmse":
          float(np.sqrt(np.mean(np.square(true_texture - texture)))),
      "vertex_error_mm": float(errors.mean()),
      "vertex_error_median_mm": float(np.median(errors)),
      "vertex_error_std_mm": float(errors.std()),
  }
  for name, values in per_region.items():
    metrics[f"region_error_mm/{name}"] = float(np.mean(values))
  return metrics


def render_held_out(predictor, settings: SyntheticEvalSettings):
  """Samples and renders the held-out faces.

  Returns:
    (images float32 [faces, H, W, 3] in [0, 1], true shape [faces, Ks],
    true texture [faces, Kt]).
  """
  cfg = dataclasses.replace(
      predictor.cfg.renderer,
      yaw_range_degrees=tuple(settings.yaw_range_degrees),
      pitch_range_degrees=tuple(settings.pitch_range_degrees))
  model = predictor.tf_morphable_model
  shape, texture = model.sample_coefficients(
      settings.faces, seed=[settings.seed, 0],
      truncation=settings.truncation or None)
  images = []
  for start in range(0, settings.faces, settings.batch_size):
    stop = min(settings.faces, start + settings.batch_size)
    count = stop - start
    poses = render_lib.sample_poses(count, [settings.seed, 1 + start], cfg)
    lights = render_lib.sample_lights(count, [settings.seed, 100000 + start],
                                      cfg)
    images.append(
        render_lib.render_coefficients(
            model, shape[start:stop], texture[start:stop], poses, lights, cfg,
            background_seed=tf.constant([settings.seed, 200000 + start],
                                        tf.int64)).images.numpy())
  return np.concatenate(images), shape.numpy(), texture.numpy()


def evaluate_synthetic(predictor, settings: SyntheticEvalSettings):
  """Runs the synthetic evaluation.

  Returns:
    (metrics dict with ``model`` and ``mean_face_baseline`` sub-dicts,
    examples dict with images / true and predicted coefficients for the
    report).
  """
  if settings.faces < 1:
    raise ValueError(f"--synthetic_faces: expected >= 1, got {settings.faces}")
  images, true_shape, true_texture = render_held_out(predictor, settings)
  shape, texture = predictor.predict(images)
  model = predictor.morphable_model
  regions = vertex_regions(model)
  metrics = {
      "faces": settings.faces,
      "seed": settings.seed,
      "yaw_range_degrees": list(settings.yaw_range_degrees),
      "model": coefficient_metrics(true_shape, true_texture, shape, texture,
                                   model, regions),
      "mean_face_baseline": coefficient_metrics(
          true_shape, true_texture, np.zeros_like(shape),
          np.zeros_like(texture), model, regions),
  }
  examples = {"images": images, "true_shape": true_shape,
              "true_texture": true_texture, "shape": shape,
              "texture": texture}
  return metrics, examples
