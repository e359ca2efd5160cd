"""Shape error against 3D scans, MICC Florence protocol (Genova et al., Sec. 5).

Expected layout of ``--scans`` (arrange MICC Florence, or any scan set, so)::

  <scans>/<subject>/scan.obj | scan.ply | scan.wrl   ground truth, mm
  <scans>/<subject>/landmarks.txt                     optional: "x y z" rows,
                                                      1 row (nose tip) or 68
                                                      (iBUG-68), scan frame, mm
  <scans>/<subject>/<setting>/*.jpg|png               photos or video frames,
                                                      setting e.g. cooperative,
                                                      indoor, outdoor

For each subject and setting: every frame is face-cropped (MTCNN) and encoded;
the encoder features are averaged over the frames before decoding (as in the
paper).  The scan is cropped to 95 mm around its nose tip (from the landmarks,
else the vertex nearest the viewer, i.e. largest z); the prediction likewise
around its own nose tip (iBUG point 31 of the morphable model, else largest
z).  ICP with isotropic scale aligns the prediction to the scan, started from
the landmarks when 68 are given (and the model has them), else from the nose
tips.  The error is the symmetric point-to-plane distance in mm over the
overlapping region; mean +- std over subjects, overall and per setting.
"""
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from unsup3dmm.data import pipeline
from unsup3dmm.data import real_images
from unsup3dmm.evaluation import alignment
from unsup3dmm.evaluation import scan_io
from unsup3dmm.evaluation import scan_metrics

SCAN_NAMES = ("scan.obj", "scan.ply", "scan.wrl", "scan.vrml")
# iBUG-68 nose tip (point 31, 0-based 30).
NOSE_TIP_LANDMARK = 30


def find_subjects(folder: str) -> List[Tuple[str, str, Dict[str, str]]]:
  """(subject, scan path, {setting: frames folder}) for each subject.

  Raises:
    ValueError: naming ``--scans`` when the layout is wrong.
  """
  if not os.path.isdir(folder):
    raise ValueError(f"--scans: {folder!r} is not a folder")
  subjects = []
  for subject in sorted(os.listdir(folder)):
    base = os.path.join(folder, subject)
    if not os.path.isdir(base):
      continue
    scans = [os.path.join(base, n) for n in SCAN_NAMES
             if os.path.isfile(os.path.join(base, n))]
    if not scans:
      raise ValueError(f"--scans: subject folder {base!r} has no "
                       f"{' / '.join(SCAN_NAMES)}")
    settings = {s: os.path.join(base, s) for s in sorted(os.listdir(base))
                if os.path.isdir(os.path.join(base, s))}
    if not settings:
      raise ValueError(f"--scans: subject folder {base!r} has no setting "
                       "sub-folders of photos (e.g. cooperative/)")
    subjects.append((subject, scans[0], settings))
  if not subjects:
    raise ValueError(f"--scans: no subject folders in {folder!r}")
  return subjects


def read_landmarks(path: str) -> Optional[np.ndarray]:
  """float64 [1 or 68, 3] landmarks, or None when the file is absent."""
  if not os.path.exists(path):
    return None
  try:
    points = np.loadtxt(path, dtype=np.float64, ndmin=2)
  except ValueError as e:
    raise ValueError(f"{path}: expected rows of 'x y z' ({e})") from None
  if points.shape not in ((1, 3), (68, 3)):
    raise ValueError(f"{path}: expected 1 (nose tip) or 68 (iBUG-68) rows of "
                     f"'x y z', got shape {points.shape}")
  return points


def _nose_tip(vertices, landmark_ids=None):
  if landmark_ids is not None and landmark_ids[NOSE_TIP_LANDMARK] >= 0:
    return vertices[landmark_ids[NOSE_TIP_LANDMARK]]
  return vertices[np.argmax(vertices[:, 2])]


def evaluate_subject(predictor, scan_path, frames_folder, cache_dir,
                     landmarks=None, radius_mm=scan_metrics.MICC_CROP_RADIUS_MM
                     ) -> Dict[str, float]:
  """Error of one subject in one setting (see the module docstring)."""
  frames = real_images.list_image_files(frames_folder, "--scans")
  crops, _ = real_images.prepare_crops(frames, os.path.join(cache_dir, "crops"),
                                       already_cropped=False)
  if not crops:
    raise ValueError(f"--scans: no face found in any frame of "
                     f"{frames_folder!r}")
  images = np.stack([pipeline.decode_crop(tf.constant(c), 160).numpy()
                     for c in crops])
  features, _ = predictor.encode(images)
  shape, _ = predictor.decode(features.mean(axis=0, keepdims=True))
  model = predictor.morphable_model
  predicted = model.vertices(shape[0]).astype(np.float64)
  landmark_ids = (None if model.landmark_ids is None else
                  np.asarray(model.landmark_ids))
  scan_vertices, scan_triangles = scan_io.read_scan(scan_path)
  scan_nose = (landmarks[NOSE_TIP_LANDMARK if len(landmarks) == 68 else 0]
               if landmarks is not None else _nose_tip(scan_vertices))
  scan_vertices, scan_triangles, _ = scan_metrics.crop_to_radius(
      scan_vertices, scan_triangles, scan_nose, radius_mm)
  predicted_nose = _nose_tip(predicted, landmark_ids)
  pred_vertices, pred_triangles, _ = scan_metrics.crop_to_radius(
      predicted, model.triangles, predicted_nose, radius_mm)
  init = {}
  if (landmarks is not None and len(landmarks) == 68 and
      landmark_ids is not None and np.sum(landmark_ids >= 0) >= 3):
    valid = landmark_ids >= 0
    init["init_landmarks"] = (predicted[landmark_ids[valid]], landmarks[valid])
  else:
    init["init_transform"] = (1.0, np.eye(3), scan_nose - predicted_nose)
  result = alignment.icp_align(
      pred_vertices, scan_vertices,
      scan_metrics.vertex_normals(scan_vertices, scan_triangles),
      with_scale=True, **init)
  distance = scan_metrics.symmetric_point_to_plane_distance(
      (result.aligned, pred_triangles), (scan_vertices, scan_triangles))
  distance["frames"] = len(crops)
  distance["icp_scale"] = float(result.scale)
  return distance


def evaluate_scans(predictor, folder: str, cache_dir: str) -> Dict:
  """Runs the scan evaluation over every subject and setting."""
  per_subject = []
  details = {}
  for subject, scan_path, settings in find_subjects(folder):
    landmarks = read_landmarks(os.path.join(os.path.dirname(scan_path),
                                            "landmarks.txt"))
    for setting, frames in settings.items():
      result = evaluate_subject(predictor, scan_path, frames, cache_dir,
                                landmarks)
      logging.info("Scan %s / %s: %.2f mm", subject, setting,
                   result["mean_mm"])
      details[f"{subject}/{setting}"] = result
      per_subject.append((subject, setting, result["mean_mm"]))
  summary = scan_metrics.summarize_by_setting(per_subject)
  summary["subjects"] = details
  return summary
