"""Identity metrics on face-recognition embeddings, in NumPy.

Inputs are embeddings of an *independent* recognition network (not the one
used in the training loss): photos of known identities and frontal renders of
the predicted faces.  Genova et al. (CVPR 2018) compare the render-to-photo
similarity with the photo-to-photo similarities of the same and of different
people, and test whether renders retrieve photos of their identity.

Nothing here imports TensorFlow and no gradients flow.
"""
from typing import Dict, Sequence, Tuple

import numpy as np


def _as_embeddings(value, name: str) -> np.ndarray:
  """float64 [count, dim] with finite, non-zero rows."""
  try:
    embeddings = np.array(value, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name} must be a numeric array of shape [count, dim]"
                     ) from e
  if embeddings.ndim != 2 or embeddings.shape[0] == 0 or (
      embeddings.shape[1] == 0):
    raise ValueError(f"{name} must have shape [count, dim] with count, dim "
                     f">= 1; got {embeddings.shape}")
  if not np.all(np.isfinite(embeddings)):
    raise ValueError(f"{name} contains NaN or infinite values")
  norms = np.linalg.norm(embeddings, axis=1)
  if np.any(norms == 0):
    raise ValueError(f"{name} row {int(np.flatnonzero(norms == 0)[0])} is all "
                     "zeros; its cosine similarity is undefined")
  return embeddings


def _as_labels(value, count: int, name: str) -> np.ndarray:
  labels = np.asarray(value)
  if labels.shape != (count,):
    raise ValueError(f"{name} must have shape [{count}]; got {labels.shape}")
  return labels


def _normalise(embeddings: np.ndarray) -> np.ndarray:
  return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)


def cosine_similarity_matrix(a, b) -> np.ndarray:
  """All pairwise cosine similarities.

  Args:
    a: float [count_a, dim] embeddings (any scale; rows must be non-zero).
    b: float [count_b, dim] embeddings.

  Returns:
    float64 [count_a, count_b], entry ``(i, j) = a_i . b_j / (|a_i| |b_j|)``,
    in [-1, 1].
  """
  a = _as_embeddings(a, "a")
  b = _as_embeddings(b, "b")
  if a.shape[1] != b.shape[1]:
    raise ValueError(f"a and b must have the same embedding size; got "
                     f"{a.shape[1]} and {b.shape[1]}")
  return np.clip(_normalise(a) @ _normalise(b).T, -1.0, 1.0)


def render_photo_similarity(render_embeddings, photo_embeddings) -> np.ndarray:
  """Cosine similarity between each photo and the render of its prediction.

  Args:
    render_embeddings: float [count, dim], row i embeds the frontal render of
      the face predicted from photo i.
    photo_embeddings: float [count, dim], row i embeds photo i.

  Returns:
    float64 [count], in [-1, 1].
  """
  renders = _as_embeddings(render_embeddings, "render_embeddings")
  photos = _as_embeddings(photo_embeddings, "photo_embeddings")
  if renders.shape != photos.shape:
    raise ValueError(f"render_embeddings and photo_embeddings must have the "
                     f"same shape; got {renders.shape} and {photos.shape}")
  return np.clip(np.sum(_normalise(renders) * _normalise(photos), axis=1),
                 -1.0, 1.0)


def pair_distributions(embeddings, labels) -> Tuple[np.ndarray, np.ndarray]:
  """Cosine similarities of all same-person and different-person pairs.

  Every unordered pair ``i < j`` of distinct rows counts once.

  Args:
    embeddings: float [count, dim], e.g. photo embeddings.
    labels: [count] identity labels (any hashable dtype numpy compares).

  Returns:
    ``(same_person [same_pair_count], different_person [different_pair_count])``
    float64 similarities in [-1, 1], ordered by (i, j).

  Raises:
    ValueError: on malformed inputs or when either kind of pair is missing
      (needs some identity with two embeddings and at least two identities).
  """
  embeddings = _as_embeddings(embeddings, "embeddings")
  labels = _as_labels(labels, embeddings.shape[0], "labels")
  similarities = cosine_similarity_matrix(embeddings, embeddings)
  first, second = np.triu_indices(embeddings.shape[0], k=1)
  same = labels[first] == labels[second]
  if not same.any():
    raise ValueError("labels have no identity with two or more embeddings: "
                     "no same-person pairs")
  if same.all():
    raise ValueError("labels hold a single identity: no different-person "
                     "pairs")
  pair_similarities = similarities[first, second]
  return pair_similarities[same], pair_similarities[~same]


def _as_samples(value, name: str) -> np.ndarray:
  samples = np.asarray(value, dtype=np.float64)
  if samples.ndim != 1 or samples.size == 0:
    raise ValueError(f"{name} must be a non-empty 1-D array; got shape "
                     f"{samples.shape}")
  if not np.all(np.isfinite(samples)):
    raise ValueError(f"{name} contains NaN or infinite values")
  return samples


def earth_movers_distance(samples_a, samples_b) -> float:
  """Earth mover's (Wasserstein-1) distance of two 1-D empirical distributions.

  Each sample carries mass ``1 / count`` of its set; sample counts may
  differ.  In one dimension the distance equals the area between the two
  cumulative distribution functions, ``integral |F_a(x) - F_b(x)| dx``, which
  is evaluated exactly: both CDFs are step functions constant between
  consecutive pooled sample values.

  Args:
    samples_a: float [count_a], e.g. render-photo similarities.
    samples_b: float [count_b], e.g. same-person photo-pair similarities.

  Returns:
    float >= 0, in the unit of the samples.
  """
  a = np.sort(_as_samples(samples_a, "samples_a"))
  b = np.sort(_as_samples(samples_b, "samples_b"))
  pooled = np.sort(np.concatenate([a, b]))
  widths = np.diff(pooled)
  # CDF values on each interval [pooled[k], pooled[k + 1]).
  cdf_a = np.searchsorted(a, pooled[:-1], side="right") / a.size
  cdf_b = np.searchsorted(b, pooled[:-1], side="right") / b.size
  return float(np.sum(np.abs(cdf_a - cdf_b) * widths))


def identity_recall(render_embeddings, render_labels, photo_embeddings,
                    photo_labels, ks: Sequence[int] = (1, 5)
                    ) -> Dict[str, float]:
  """Top-k identity recall of renders among photos.

  For each render, all photos are ranked by cosine similarity to it (highest
  first; ties keep the photos' input order).  The render is a hit at k if at
  least one of the first k photos has the render's label.  Nothing is
  excluded from the ranking: renders and photos are different sets, so even
  the photo the render was predicted from stays a candidate.  Recall at k is
  the fraction of renders that are hits.

  Args:
    render_embeddings: float [render_count, dim].
    render_labels: [render_count] identity labels; every label must occur
      among `photo_labels`.
    photo_embeddings: float [photo_count, dim].
    photo_labels: [photo_count] identity labels.
    ks: ranks to report, each in [1, photo_count].

  Returns:
    ``{"top{k}": recall}`` for each k (e.g. ``{"top1": .., "top5": ..}``),
    recall in [0, 1].
  """
  renders = _as_embeddings(render_embeddings, "render_embeddings")
  photos = _as_embeddings(photo_embeddings, "photo_embeddings")
  render_labels = _as_labels(render_labels, renders.shape[0], "render_labels")
  photo_labels = _as_labels(photo_labels, photos.shape[0], "photo_labels")
  ks = tuple(ks)
  if not ks:
    raise ValueError("ks must name at least one rank")
  for k in ks:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not (
        1 <= k <= photos.shape[0]):
      raise ValueError(f"every k in ks must be an int in [1, "
                       f"{photos.shape[0]}] (the photo count); got {k!r}")
  missing = np.setdiff1d(render_labels, photo_labels)
  if missing.size:
    raise ValueError(f"render_labels {missing[:5].tolist()} have no photo "
                     "with the same label")
  similarities = cosine_similarity_matrix(renders, photos)
  order = np.argsort(-similarities, axis=1, kind="stable")
  matches = photo_labels[order] == render_labels[:, None]
  # First rank (0-based) at which a photo of the same identity appears.
  first_hit = np.argmax(matches, axis=1)
  return {f"top{int(k)}": float(np.mean(first_hit < k)) for k in ks}
