"""Export of predictions for the NoW challenge (Sanyal et al., CVPR 2019).

The NoW evaluation (github.com/soubhiksanyal/now_evaluation,
``compute_error.py``) reads, for each line ``<subject>/<challenge>/<image>.jpg``
of its image list, ``<predicted_mesh_folder>/<subject>/<challenge>/<image>.obj``
(the predicted mesh; ``.ply`` also accepted) and ``<image>.npy``, a (7, 3)
array of 3D landmarks on that mesh.  It aligns those 7 points to the scan's
7 annotated landmarks (Procrustes with scale), refines rigidly and measures
scan-to-mesh distances, so the landmark order must match the scan's:

  0 right eye outer corner, 1 right eye inner corner, 2 left eye inner corner,
  3 left eye outer corner, 4 nose bottom (subnasale), 5 right mouth corner,
  6 left mouth corner

(``scan2mesh_computations.py: compute_mask`` uses 4 as the nose bottom,
(1 + 2) / 2 as the nose bridge and 0, 3 as the outer eye corners).  In
0-based iBUG-68 indices these are 36, 39, 42, 45, 33, 48, 54: DECA
(github.com/YadiraF/DECA, ``decalib/trainer.py: evaluate``) takes
``landmarks_68[17:][[19, 22, 25, 28, 16, 31, 37]]`` for its NoW
submissions, i.e. 17 + those indices.  "Right"/"left" are the subject's.
"""
import os
from typing import Tuple

import numpy as np

from unsup3dmm.model import landmarks as landmarks_lib
from unsup3dmm.model import mesh_io

# 0-based iBUG-68 indices of NoW's 7 landmarks, in NoW's order (see the module
# docstring for the sources).
NOW_LANDMARKS_IBUG68 = (
    landmarks_lib.RIGHT_EYE_OUTER_CORNER,  # 36
    landmarks_lib.RIGHT_EYE_INNER_CORNER,  # 39
    landmarks_lib.LEFT_EYE_INNER_CORNER,  # 42
    landmarks_lib.LEFT_EYE_OUTER_CORNER,  # 45
    33,  # Nose bottom (subnasale), iBUG point 34.
    landmarks_lib.RIGHT_MOUTH_CORNER,  # 48
    landmarks_lib.LEFT_MOUTH_CORNER,  # 54
)
NOW_LANDMARK_NAMES = (
    "right_eye_outer_corner", "right_eye_inner_corner",
    "left_eye_inner_corner", "left_eye_outer_corner", "nose_bottom",
    "right_mouth_corner", "left_mouth_corner")


def now_landmarks(vertices, landmark_ids_ibug68) -> np.ndarray:
  """The 7 NoW landmarks of a mesh, in NoW's order.

  Args:
    vertices: float [vertex_count, 3], the mesh (mm).
    landmark_ids_ibug68: int [68], 0-based vertex id of each iBUG-68 point
      or -1 where undefined (the ``landmark_ids`` of
      :mod:`unsup3dmm.model.landmarks`); the 7 NoW points must be defined.

  Returns:
    float64 [7, 3], same unit and frame as `vertices`.

  Raises:
    ValueError: on malformed input or an undefined NoW landmark.
  """
  vertices = np.asarray(vertices, dtype=np.float64)
  if vertices.ndim != 2 or vertices.shape[1] != 3:
    raise ValueError(f"vertices must have shape [vertex_count, 3]; got "
                     f"{vertices.shape}")
  ids = landmarks_lib.check_landmark_ids(landmark_ids_ibug68,
                                         vertices.shape[0],
                                         name="landmark_ids_ibug68")
  selected = ids[list(NOW_LANDMARKS_IBUG68)]
  undefined = [f"{NOW_LANDMARK_NAMES[k]} (iBUG-68 index "
               f"{NOW_LANDMARKS_IBUG68[k]})"
               for k in np.flatnonzero(selected == landmarks_lib.UNDEFINED)]
  if undefined:
    raise ValueError("landmark_ids_ibug68 does not define the NoW landmarks "
                     + ", ".join(undefined) + "; add their vertex ids to the "
                     "model's landmark mapping")
  return vertices[selected]


def export_now(output_dir: str, image_name: str, vertices, triangles,
               landmark_ids_ibug68) -> Tuple[str, str]:
  """Writes one prediction in the NoW submission layout.

  Args:
    output_dir: the submission root (NoW's ``predicted_mesh_folder``).
    image_name: the image's path relative to the NoW image root as listed in
      NoW's image list, e.g. ``"FaMoS_180424_03335_TA/multiview_neutral/
      IMG_0101.jpg"``; its extension is dropped.  Must be relative and stay
      inside `output_dir`.
    vertices: float [vertex_count, 3], the neutral predicted mesh in mm
      (NoW's default, non-metrical protocol fits a scale, so any unit works).
    triangles: int [triangle_count, 3], 0-based vertex ids.
    landmark_ids_ibug68: int [68], see :func:`now_landmarks`.

  Returns:
    ``(obj_path, npy_path)``: ``<output_dir>/<image_name without
    extension>.obj`` and ``.npy`` (float64 [7, 3], NoW's order).
  """
  if not isinstance(image_name, str) or not image_name:
    raise ValueError("image_name must be a non-empty relative path")
  relative = os.path.normpath(os.path.splitext(image_name)[0])
  if (os.path.isabs(relative) or relative == os.curdir or
      relative.split(os.sep)[0] == os.pardir):
    raise ValueError(f"image_name must be a relative path inside output_dir; "
                     f"got {image_name!r}")
  points = now_landmarks(vertices, landmark_ids_ibug68)
  base = os.path.join(output_dir, relative)
  os.makedirs(os.path.dirname(base), exist_ok=True)
  obj_path = base + ".obj"
  npy_path = base + ".npy"
  mesh_io.write_obj(obj_path, vertices, triangles)
  np.save(npy_path, points)
  return obj_path, npy_path
