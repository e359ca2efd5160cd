"""Identity evaluation (Genova et al., Sec. 5: recognisability of renders).

For photos in one folder per identity: crop faces (MTCNN, cached), regress,
render each prediction frontally under neutral light, and compare renders and
photos with an *independent* recognition network (by default a FaceNet model
other than the training encoder).  Reported:

* ``render_photo_similarity``: mean cosine similarity of each photo and the
  frontal render of its own prediction;
* ``same_person`` / ``different_person``: mean of the photo-pair similarity
  distributions, for reference;
* ``emd_render_vs_same_person``, ``emd_render_vs_different_person``,
  ``emd_same_vs_different_person``: earth mover's distances between the
  render-photo distribution and the two reference distributions;
* ``top1`` / ``top5``: identity recall of renders among the photos.
"""
import os
from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from unsup3dmm.data import pipeline
from unsup3dmm.data import real_images
from unsup3dmm.evaluation import identity_metrics
from unsup3dmm.evaluation import views
from unsup3dmm.model import encoder as encoder_lib
from unsup3dmm.model.config import ModelConfig

# Default recogniser: a FaceNet trained independently of the 128-D encoder.
DEFAULT_RECOGNIZER = "20180402-114759"


def labelled_photos(folder: str) -> List[Tuple[str, str]]:
  """(path, identity) for every image in ``folder/<identity>/``.

  Raises:
    ValueError: naming ``--identity_images`` when the layout is wrong.
  """
  if not os.path.isdir(folder):
    raise ValueError(f"--identity_images: {folder!r} is not a folder")
  out = []
  for identity in sorted(os.listdir(folder)):
    sub = os.path.join(folder, identity)
    if os.path.isdir(sub):
      for path in real_images.list_image_files(sub, "--identity_images"):
        out.append((path, identity))
  if len({identity for _, identity in out}) < 2:
    raise ValueError(f"--identity_images: {folder!r} needs one sub-folder of "
                     "photos per identity, at least two identities")
  return out


def build_recognizer(model_name: str, weights: str) -> encoder_lib.FaceNetEncoder:
  """The recognition network; says clearly when no weights are found."""
  try:
    return encoder_lib.FaceNetEncoder.from_model_config(
        ModelConfig(facenet_model=model_name, facenet_weights=weights))
  except ValueError as e:
    raise ValueError(
        f"--recognizer_model={model_name}: no usable weights for the "
        f"identity evaluation's recognition network.\n{e}\nPass "
        "--recognizer_weights, or choose --recognizer_model among the "
        f"encoder variants {sorted(encoder_lib.facenet_variants())}") from None


def _embed(recognizer, images, batch_size=32):
  out = []
  for start in range(0, len(images), batch_size):
    out.append(recognizer(tf.constant(images[start:start + batch_size]))[1]
               .numpy())
  return np.concatenate(out)


def evaluate_identity(predictor, folder: str, recognizer, cache_dir: str
                     ) -> Tuple[Dict[str, float], Dict[str, np.ndarray]]:
  """Runs the identity evaluation on ``folder``.

  Returns:
    (metrics, examples with photos, renders and labels for the report).
  """
  photos = labelled_photos(folder)
  paths = [p for p, _ in photos]
  labels_by_path = dict(photos)
  crops, stats = real_images.prepare_crops(
      paths, os.path.join(cache_dir, "crops"), already_cropped=False)
  labels = np.asarray([labels_by_path[source] for source in stats.sources])
  images = np.stack([
      pipeline.decode_crop(tf.constant(c), 160).numpy() for c in crops
  ])
  shape, texture = predictor.predict(images)
  renders = views.frontal_render(predictor, shape, texture)
  photo_embeddings = _embed(recognizer, images)
  render_embeddings = _embed(recognizer, renders)
  own = np.sum(identity_metrics.cosine_similarity_matrix(
      render_embeddings, photo_embeddings) * np.eye(len(crops)), axis=1)
  same, different = identity_metrics.pair_distributions(photo_embeddings,
                                                        labels)
  metrics = {
      "photos": len(crops),
      "identities": int(len(set(labels))),
      "skipped_images": stats.skipped_count,
      "render_photo_similarity": float(own.mean()),
      "same_person": float(same.mean()),
      "different_person": float(different.mean()),
      "emd_render_vs_same_person":
          identity_metrics.earth_movers_distance(own, same),
      "emd_render_vs_different_person":
          identity_metrics.earth_movers_distance(own, different),
      "emd_same_vs_different_person":
          identity_metrics.earth_movers_distance(same, different),
  }
  ks = tuple(k for k in (1, 5) if k <= len(crops))
  metrics.update(identity_metrics.identity_recall(
      render_embeddings, labels, photo_embeddings, labels, ks=ks))
  logging.info("Identity evaluation: %s", metrics)
  examples = {"photos": images, "renders": renders, "labels": labels,
              "render_photo_similarity": own,
              "same_person": same, "different_person": different}
  return metrics, examples

