"""Real photos for stage 2: crops, and their cached encoder features.

The encoder is frozen, so the features (decoder input) and embeddings
(identity-loss target) of a real photo never change: :func:`encode_crops`
computes them once per (crop set, encoder variant) and stores them as a
``.npz`` in the cache folder; later runs load it.
"""
import dataclasses
import hashlib
import os
from typing import List, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from unsup3dmm.data import pipeline
from unsup3dmm.data import real_images


@dataclasses.dataclass
class RealFaceSet:
  """Prepared real photos.

  Attributes:
    crop_paths: PNG paths of the 160x160 face crops.
    stats: what happened to every input file.
    features: float32 [count, feature_dim] encoder features, or None when the
      feature cache is off.
    embeddings: float32 [count, embedding_dim] L2-normalised embeddings, or
      None when the feature cache is off.
  """
  crop_paths: List[str]
  stats: real_images.PreparationStats
  features: Optional[np.ndarray] = None
  embeddings: Optional[np.ndarray] = None

  def __len__(self):
    return len(self.crop_paths)


def default_cache_dir(configured: str = "") -> str:
  """TrainingConfig.cache_dir, else $UNSUP3DMM_CACHE, else ~/.cache/unsup3dmm."""
  if configured:
    return os.path.expanduser(configured)
  return os.environ.get("UNSUP3DMM_CACHE",
                        os.path.join(os.path.expanduser("~"), ".cache",
                                     "unsup3dmm"))


def list_real_images(spec: str, cache_dir: str) -> List[str]:
  """Files named by ``--real_images``; empty: the 5-identity photo set."""
  if spec:
    return real_images.list_image_files(spec)
  from unsup3dmm.data import celebrity_faces  # pylint: disable=import-outside-toplevel
  records = celebrity_faces.fetch_celebrity_faces(cache_dir=cache_dir)
  return sorted(r.path for r in records if r.split == "train")


def prepare_real_faces(spec: str, already_cropped: bool, cache_dir: str,
                       crop_size: int = 160) -> RealFaceSet:
  """Lists, validates and face-crops the real photos (cached)."""
  paths = list_real_images(spec, cache_dir)
  crops, stats = real_images.prepare_crops(
      paths, os.path.join(cache_dir, "crops"), already_cropped, crop_size)
  if not crops:
    raise ValueError(
        f"--real_images: none of the {stats.found} images is usable "
        f"({stats.as_dict()}); stage 2 needs real face photos")
  return RealFaceSet(crop_paths=crops, stats=stats)


def encode_crops(face_set: RealFaceSet, encoder, cache_dir: str,
                 encoder_name: str, batch_size: int = 32) -> RealFaceSet:
  """Fills ``features`` and ``embeddings``, from the cache when possible."""
  key = hashlib.sha256(
      ("\n".join(os.path.basename(p) for p in face_set.crop_paths) + "\n" +
       encoder_name).encode()).hexdigest()[:24]
  path = os.path.join(cache_dir, "features", f"{key}.npz")
  if os.path.exists(path):
    try:
      with np.load(path) as cached:
        face_set.features = cached["features"]
        face_set.embeddings = cached["embeddings"]
      logging.info("Loaded cached features of %d real faces from %s",
                   len(face_set), path)
      return face_set
    except (OSError, KeyError, ValueError) as e:
      logging.warning("Ignoring unreadable feature cache %s (%s)", path, e)
  encode = tf.function(encoder)
  features, embeddings = [], []
  ds = pipeline.crop_dataset(face_set.crop_paths, batch_size, seed=0,
                             shuffle=False, repeat=False,
                             drop_remainder=False)
  for images, _ in ds:
    f, e = encode(images)
    features.append(f.numpy())
    embeddings.append(e.numpy())
  face_set.features = np.concatenate(features).astype(np.float32)
  face_set.embeddings = np.concatenate(embeddings).astype(np.float32)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(tmp, features=face_set.features, embeddings=face_set.embeddings)
  os.replace(tmp, path)
  logging.info("Encoded %d real faces; cached at %s", len(face_set), path)
  return face_set
