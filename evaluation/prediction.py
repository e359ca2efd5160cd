"""Photos -> meshes: detect and crop every face, regress, export.

For each photo, every face MTCNN finds (FaceNet-convention crop) is regressed
and written as ``<stem>_face<k>.obj`` (vertex colours), ``.ply`` (binary) and
``.png`` (frontal render), k = 0, 1, ... in MTCNN's order.  A photo without a
face is reported, not fatal.
"""
import dataclasses
import os
from typing import List, Sequence

import numpy as np
from absl import logging
from PIL import Image

from unsup3dmm.data import face_crop
from unsup3dmm.data import real_images
from unsup3dmm.evaluation import report
from unsup3dmm.evaluation import views
from unsup3dmm.model import mesh_io

FORMATS = ("obj", "ply", "png")


@dataclasses.dataclass
class PhotoResult:
  """What happened to one photo: written files, or why nothing was."""
  source: str
  outputs: List[str]
  message: str = ""


def predict_photos(predictor, paths: Sequence[str], output_dir: str,
                   formats: Sequence[str] = FORMATS,
                   cropper: face_crop.FaceCropper = None) -> List[PhotoResult]:
  """Writes a mesh (and render) per face of every photo.

  Args:
    predictor: a :class:`unsup3dmm.evaluation.predictor.Predictor`.
    paths: photo files.
    output_dir: created if missing.
    formats: any of "obj", "ply", "png".
    cropper: face detector/cropper (default: FaceNet convention, 160 px).

  Returns:
    One :class:`PhotoResult` per photo.
  """
  unknown = set(formats) - set(FORMATS)
  if unknown or not formats:
    raise ValueError(f"--formats: expected some of {FORMATS}, got "
                     f"{list(formats)}")
  cropper = cropper or face_crop.FaceCropper()
  os.makedirs(output_dir, exist_ok=True)
  model = predictor.morphable_model
  results = []
  for path in paths:
    try:
      image, _ = real_images.load_rgb(path)
    except real_images.BadImageError as e:
      logging.warning("%s", e)
      results.append(PhotoResult(path, [], str(e)))
      continue
    faces = cropper.crop_faces(image, all_faces=True)
    if not faces:
      message = f"{path}: no face found"
      logging.warning("%s", message)
      results.append(PhotoResult(path, [], message))
      continue
    crops = np.stack([np.asarray(f.crop, np.float32) for f in faces])
    shape, texture = predictor.predict(crops)
    stem = os.path.join(output_dir,
                        os.path.splitext(os.path.basename(path))[0])
    outputs = []
    renders = (views.frontal_render(predictor, shape, texture)
               if "png" in formats else None)
    for k in range(len(faces)):
      vertices = model.vertices(shape[k])
      colors = np.clip(model.colors(texture[k]), 0.0, 1.0)
      base = f"{stem}_face{k}"
      if "obj" in formats:
        mesh_io.write_obj(base + ".obj", vertices, model.triangles, colors)
        outputs.append(base + ".obj")
      if "ply" in formats:
        mesh_io.write_ply(base + ".ply", vertices, model.triangles, colors)
        outputs.append(base + ".ply")
      if "png" in formats:
        Image.fromarray(report.to_uint8(renders[k])).save(base + ".png")
        outputs.append(base + ".png")
    logging.info("%s: %d face(s)", path, len(faces))
    results.append(PhotoResult(path, outputs))
  return results
