"""Similarity alignment of point sets: closed-form (Umeyama) and ICP.

Pure NumPy/SciPy; nothing here imports TensorFlow and no gradients flow.

Transform convention used throughout: a similarity ``(scale, rotation,
translation)`` maps a point ``x`` (a row vector) to
``scale * rotation @ x + translation``, i.e. for an array of points
``scale * points @ rotation.T + translation``.  ``rotation`` is a proper
rotation (``det = +1``, never a reflection).  All coordinates are in the same
unit as the inputs (millimetres for faces and scans in this project).
"""
import dataclasses
import math
from typing import Dict, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
from scipy import spatial


class SimilarityAlignment(NamedTuple):
  """Result of :func:`similarity_align` (unpacks as a 4-tuple).

  Attributes:
    scale: float > 0, isotropic scale (unitless).
    rotation: float64 [3, 3], proper rotation matrix.
    translation: float64 [3], same unit as the points.
    aligned: float64 [point_count, 3], the transformed source points.
  """
  scale: float
  rotation: np.ndarray
  translation: np.ndarray
  aligned: np.ndarray


def _as_points(value, name: str, min_count: int = 1) -> np.ndarray:
  """float64 [count, 3] copy of `value`; ValueError naming `name` otherwise."""
  try:
    points = np.array(value, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name} must be a numeric array of shape [count, 3]; "
                     f"got {type(value).__name__}") from e
  if points.ndim != 2 or points.shape[1] != 3:
    raise ValueError(f"{name} must have shape [count, 3]; got shape "
                     f"{points.shape}")
  if points.shape[0] < min_count:
    raise ValueError(f"{name} needs at least {min_count} points; got "
                     f"{points.shape[0]}")
  if not np.all(np.isfinite(points)):
    raise ValueError(f"{name} contains NaN or infinite coordinates")
  return points


def apply_similarity(points, scale: float, rotation,
                     translation) -> np.ndarray:
  """Applies ``x -> scale * rotation @ x + translation`` to every point.

  Args:
    points: float [point_count, 3].
    scale: isotropic scale, unitless.
    rotation: float [3, 3].
    translation: float [3], same unit as `points`.

  Returns:
    float64 [point_count, 3], same unit as `points`.
  """
  points = np.asarray(points, dtype=np.float64)
  return (float(scale) * points @ np.asarray(rotation, np.float64).T +
          np.asarray(translation, np.float64))


def _umeyama(source: np.ndarray, target: np.ndarray, weights: np.ndarray,
             with_scale: bool) -> Tuple[float, np.ndarray, np.ndarray]:
  """Weighted least-squares similarity (Umeyama 1991, Eqs. 34-43)."""
  weights = weights / weights.sum()
  source_mean = weights @ source
  target_mean = weights @ target
  source_centred = source - source_mean
  target_centred = target - target_mean
  covariance = (target_centred * weights[:, None]).T @ source_centred
  u, singular_values, vt = np.linalg.svd(covariance)
  # Reflection guard (Umeyama Eq. 39): flip the weakest axis when the best
  # orthogonal fit would be a reflection.
  signs = np.ones(3)
  if np.linalg.det(u) * np.linalg.det(vt) < 0:
    signs[2] = -1.0
  rotation = (u * signs) @ vt
  if with_scale:
    source_variance = float(weights @ np.sum(source_centred**2, axis=1))
    scale = float(np.sum(singular_values * signs) / source_variance)
  else:
    scale = 1.0
  translation = target_mean - scale * rotation @ source_mean
  return scale, rotation, translation


def similarity_align(source, target, weights=None,
                     with_scale: bool = True) -> SimilarityAlignment:
  """Least-squares similarity transform taking `source` onto `target`.

  Minimises ``sum_i w_i |scale * R @ source_i + t - target_i|^2`` in closed
  form (Umeyama, "Least-squares estimation of transformation parameters
  between two point patterns", TPAMI 1991), with the reflection guard, so
  `rotation` is always a proper rotation.

  Args:
    source: float [point_count, 3], points to move (any unit; mm here).
    target: float [point_count, 3], corresponding points (same unit).
    weights: optional float [point_count], non-negative, not all zero.
    with_scale: estimate the isotropic scale (True) or fix it to 1.

  Returns:
    A :class:`SimilarityAlignment` ``(scale, rotation, translation,
    aligned)``; ``aligned = scale * source @ rotation.T + translation``.

  Raises:
    ValueError: on shape mismatch, fewer than 3 points, non-finite values,
      bad weights, or a source that is collinear (rotation undetermined).
  """
  source = _as_points(source, "source", min_count=3)
  target = _as_points(target, "target", min_count=3)
  if source.shape != target.shape:
    raise ValueError(f"source and target must have the same shape; got "
                     f"{source.shape} and {target.shape}")
  if weights is None:
    weights = np.ones(source.shape[0])
  else:
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (source.shape[0],):
      raise ValueError(f"weights must have shape [{source.shape[0]}]; got "
                       f"{weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
      raise ValueError("weights must be finite and non-negative")
    if weights.sum() <= 0:
      raise ValueError("weights must not all be zero")
  normalised = weights / weights.sum()
  centred = (source - normalised @ source) * np.sqrt(normalised)[:, None]
  spread = np.linalg.svd(centred, compute_uv=False)
  if spread[0] == 0 or spread[1] <= 1e-9 * spread[0]:
    raise ValueError("source points (with non-zero weight) are coincident or "
                     "collinear; the rotation is undetermined")
  scale, rotation, translation = _umeyama(source, target, weights, with_scale)
  aligned = apply_similarity(source, scale, rotation, translation)
  return SimilarityAlignment(scale, rotation, translation, aligned)


def per_vertex_distance(predicted, target) -> np.ndarray:
  """Euclidean distance between corresponding vertices.

  Args:
    predicted: float [vertex_count, 3] (mm).
    target: float [vertex_count, 3] (mm), same vertex order.

  Returns:
    float64 [vertex_count], distances >= 0 in the input unit (mm).
  """
  predicted = _as_points(predicted, "predicted")
  target = _as_points(target, "target")
  if predicted.shape != target.shape:
    raise ValueError(f"predicted and target must have the same shape; got "
                     f"{predicted.shape} and {target.shape}")
  return np.linalg.norm(predicted - target, axis=1)


def region_errors(
    distances,
    regions: Union[Sequence[int], np.ndarray, Mapping[str, Sequence[int]]],
) -> Dict[Union[str, int], float]:
  """Mean distance per face region.

  Args:
    distances: float [vertex_count], per-vertex errors (mm), e.g. from
      :func:`per_vertex_distance`.
    regions: either an integer array [vertex_count] giving every vertex a
      region label (result keyed by the int label), or a mapping
      ``region_name -> vertex ids`` (result keyed by the name; regions may
      overlap and need not cover every vertex).

  Returns:
    dict ``region -> mean distance`` (float, mm).

  Raises:
    ValueError: on a shape mismatch, an out-of-range vertex id or an empty
      region.
  """
  distances = np.asarray(distances, dtype=np.float64)
  if distances.ndim != 1:
    raise ValueError(f"distances must have shape [vertex_count]; got "
                     f"{distances.shape}")
  vertex_count = distances.shape[0]
  result = {}
  if isinstance(regions, Mapping):
    for name, ids in regions.items():
      ids = np.asarray(ids)
      if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"region {name!r} must be a non-empty 1-D list of "
                         "vertex ids")
      if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"region {name!r} must hold integer vertex ids; got "
                         f"dtype {ids.dtype}")
      if ids.min() < 0 or ids.max() >= vertex_count:
        raise ValueError(f"region {name!r} has vertex ids outside "
                         f"[0, {vertex_count})")
      result[name] = float(distances[ids].mean())
    return result
  labels = np.asarray(regions)
  if labels.shape != (vertex_count,) or not np.issubdtype(
      labels.dtype, np.integer):
    raise ValueError(f"regions must be an integer label array of shape "
                     f"[{vertex_count}] or a mapping name -> vertex ids; got "
                     f"shape {labels.shape}, dtype {labels.dtype}")
  for label in np.unique(labels):
    result[int(label)] = float(distances[labels == label].mean())
  return result


@dataclasses.dataclass(frozen=True)
class IcpOptions:
  """Settings of :func:`icp_align`.

  Attributes:
    max_iterations: upper bound on correspondence/update rounds.
    trim_fraction: in (0, 1]; each round keeps only this fraction of the
      source points, those closest to the target (Trimmed ICP, Chetverikov et
      al., ICPR 2002), so points without a counterpart (partial overlap, e.g.
      a predicted face against a 95 mm scan crop) do not pull the fit.
    max_correspondence_mm: correspondences farther apart than this (mm) are
      also dropped; None: no distance gate.
    tolerance_mm: stop when the mean displacement of the source points in
      one round falls below this (mm).
  """
  max_iterations: int = 100
  trim_fraction: float = 0.9
  max_correspondence_mm: Optional[float] = None
  tolerance_mm: float = 1e-5

  def validate(self) -> None:
    """Raises ValueError naming the first out-of-range field."""
    if not (isinstance(self.max_iterations, int) and self.max_iterations >= 1):
      raise ValueError(f"IcpOptions.max_iterations must be an int >= 1; got "
                       f"{self.max_iterations!r}")
    if not 0 < self.trim_fraction <= 1:
      raise ValueError(f"IcpOptions.trim_fraction must be in (0, 1]; got "
                       f"{self.trim_fraction!r}")
    if (self.max_correspondence_mm is not None and
        not self.max_correspondence_mm > 0):
      raise ValueError(f"IcpOptions.max_correspondence_mm must be > 0 or "
                       f"None; got {self.max_correspondence_mm!r}")
    if not self.tolerance_mm >= 0:
      raise ValueError(f"IcpOptions.tolerance_mm must be >= 0; got "
                       f"{self.tolerance_mm!r}")


class IcpResult(NamedTuple):
  """Result of :func:`icp_align`.

  Attributes:
    scale: float > 0 (1 when ``with_scale=False``).
    rotation: float64 [3, 3], proper rotation.
    translation: float64 [3] (mm).
    aligned: float64 [source_count, 3], the source under the transform (mm).
    mean_distance_mm: mean Euclidean distance from the kept (trimmed) aligned
      source points to their nearest target vertex, at the final transform.
    iterations: number of update rounds run.
    converged: whether the displacement tolerance was reached before
      ``max_iterations``.
  """
  scale: float
  rotation: np.ndarray
  translation: np.ndarray
  aligned: np.ndarray
  mean_distance_mm: float
  iterations: int
  converged: bool


def _rotation_from_vector(omega: np.ndarray) -> np.ndarray:
  """Rodrigues' formula: rotation by |omega| radians about omega."""
  angle = float(np.linalg.norm(omega))
  if angle == 0.0:
    return np.eye(3)
  x, y, z = omega / angle
  cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
  return (np.eye(3) + math.sin(angle) * cross +
          (1.0 - math.cos(angle)) * cross @ cross)


def _trimmed_mask(distances: np.ndarray, options: IcpOptions) -> np.ndarray:
  """Boolean mask of the correspondences kept this round."""
  keep_count = max(1, int(math.ceil(options.trim_fraction * distances.size)))
  if keep_count < distances.size:
    cutoff = np.partition(distances, keep_count - 1)[keep_count - 1]
    keep = distances <= cutoff
  else:
    keep = np.ones(distances.size, dtype=bool)
  if options.max_correspondence_mm is not None:
    keep &= distances <= options.max_correspondence_mm
  return keep


def _point_to_plane_step(points: np.ndarray, matches: np.ndarray,
                         normals: np.ndarray, with_scale: bool
                         ) -> Tuple[float, np.ndarray, np.ndarray]:
  """One linearised point-to-plane update (Low 2004, extended by scale).

  The increment ``x -> c + exp(delta) R(omega) (x - c) + tau`` about the
  centroid ``c`` of `points` is linearised to
  ``x + delta (x - c) + omega x (x - c) + tau``; the residual along the
  target normal is linear in ``(omega, delta, tau)`` and solved by least
  squares.  The solution is then applied exactly (Rodrigues, exp).
  """
  centre = points.mean(axis=0)
  offsets = points - centre
  # Column scaling by the point-set radius keeps the system well conditioned.
  radius = float(np.sqrt(np.mean(np.sum(offsets**2, axis=1)))) or 1.0
  offsets_scaled = offsets / radius
  columns = [np.cross(offsets_scaled, normals)]
  if with_scale:
    columns.append(np.sum(offsets_scaled * normals, axis=1, keepdims=True))
  columns.append(normals)
  system = np.concatenate(columns, axis=1)
  residual = -np.sum((points - matches) * normals, axis=1)
  solution = np.linalg.lstsq(system, residual, rcond=None)[0]
  rotation = _rotation_from_vector(solution[:3] / radius)
  scale = float(np.exp(solution[3] / radius)) if with_scale else 1.0
  tau = solution[-3:]
  translation = centre + tau - scale * rotation @ centre
  return scale, rotation, translation


def estimate_normals(points, neighbor_count: int = 12) -> np.ndarray:
  """Unit normals of a sampled surface by local principal component analysis.

  The normal at each point is the direction of least variance of it and its
  ``neighbor_count - 1`` nearest neighbours.  The sign is arbitrary, which is
  all the point-to-plane distance of :func:`icp_align` needs.

  Args:
    points: float [point_count, 3], samples of a surface (mm).
    neighbor_count: neighbourhood size including the point itself, >= 3.

  Returns:
    float64 [point_count, 3], unit length.
  """
  points = _as_points(points, "points", min_count=3)
  if not (isinstance(neighbor_count, int) and
          3 <= neighbor_count <= points.shape[0]):
    raise ValueError(f"neighbor_count must be an int in [3, "
                     f"{points.shape[0]}]; got {neighbor_count!r}")
  _, neighbours = spatial.cKDTree(points).query(points, k=neighbor_count)
  patches = points[neighbours]
  patches = patches - patches.mean(axis=1, keepdims=True)
  covariances = np.einsum("nki,nkj->nij", patches, patches)
  # eigh sorts eigenvalues ascending: column 0 is the least-variance axis.
  return np.linalg.eigh(covariances)[1][:, :, 0]


def icp_align(source_vertices,
              target_vertices,
              target_normals=None,
              with_scale: bool = True,
              options: IcpOptions = IcpOptions(),
              init_transform: Optional[Tuple[float, np.ndarray,
                                             np.ndarray]] = None,
              init_landmarks: Optional[Tuple[np.ndarray, np.ndarray]] = None
              ) -> IcpResult:
  """Point-to-plane iterative closest point alignment with isotropic scale.

  Each round matches every transformed source point to its nearest target
  vertex (``scipy.spatial.cKDTree``), drops the farthest correspondences
  (see :class:`IcpOptions`) and takes a linearised least-squares step for
  rotation, log-scale and translation that minimises the distances of the
  source points to the tangent planes of their target vertices (Chen and
  Medioni 1992; linearisation as in Low 2004, extended by scale).  Measuring
  along the target normal rather than to the target vertex makes the result
  insensitive to the target's vertex spacing, so meshes of different
  densities align to well below their spacing; point-to-point updates
  stall at about the spacing.

  Start: `init_transform`, else the similarity fitted to `init_landmarks`,
  else the translation that matches the two centroids (scale 1, identity
  rotation).  ICP is local: start within roughly 15 degrees and a few
  centimetres of the answer.

  Args:
    source_vertices: float [source_count, 3] (mm), points to move (e.g. the
      predicted mesh).
    target_vertices: float [target_count, 3] (mm), fixed (e.g. the cropped
      scan).
    target_normals: optional float [target_count, 3], unit normals of the
      target vertices (e.g. ``scan_metrics.vertex_normals``); None: estimated
      from the target points by :func:`estimate_normals`.
    with_scale: also estimate an isotropic scale.
    options: iteration settings, see :class:`IcpOptions`.
    init_transform: optional ``(scale, rotation [3, 3], translation [3])``.
    init_landmarks: optional ``(source_landmarks [L, 3], target_landmarks
      [L, 3])`` with L >= 3 corresponding points (mm); not with
      `init_transform`.

  Returns:
    :class:`IcpResult`; the total transform maps the original
    `source_vertices` (not the initialised ones) onto the target.

  Raises:
    ValueError: on malformed inputs, both initialisations at once, or when
      fewer than 7 correspondences survive the trimming.
  """
  source = _as_points(source_vertices, "source_vertices", min_count=3)
  target = _as_points(target_vertices, "target_vertices", min_count=3)
  options.validate()
  if target_normals is None:
    normals = estimate_normals(target, min(12, target.shape[0]))
  else:
    normals = _as_points(target_normals, "target_normals")
    if normals.shape != target.shape:
      raise ValueError(f"target_normals must have the shape of "
                       f"target_vertices {target.shape}; got {normals.shape}")
  if init_transform is not None and init_landmarks is not None:
    raise ValueError("pass at most one of init_transform and init_landmarks")
  if init_transform is not None:
    if len(init_transform) != 3:
      raise ValueError("init_transform must be (scale, rotation [3, 3], "
                       "translation [3])")
    scale = float(init_transform[0])
    rotation = np.asarray(init_transform[1], dtype=np.float64)
    translation = np.asarray(init_transform[2], dtype=np.float64)
    if not (scale > 0 and rotation.shape == (3, 3) and translation.shape ==
            (3,)):
      raise ValueError(f"init_transform must be (scale > 0, rotation [3, 3], "
                       f"translation [3]); got scale {scale}, rotation shape "
                       f"{rotation.shape}, translation shape "
                       f"{translation.shape}")
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6) or (
        np.linalg.det(rotation) <= 0):
      raise ValueError("init_transform rotation must be a proper rotation "
                       "matrix (orthonormal, det +1)")
  elif init_landmarks is not None:
    if len(init_landmarks) != 2:
      raise ValueError("init_landmarks must be (source_landmarks [L, 3], "
                       "target_landmarks [L, 3])")
    fit = similarity_align(init_landmarks[0], init_landmarks[1],
                           with_scale=with_scale)
    scale, rotation, translation = fit.scale, fit.rotation, fit.translation
  else:
    scale, rotation = 1.0, np.eye(3)
    translation = target.mean(axis=0) - source.mean(axis=0)

  tree = spatial.cKDTree(target)
  current = apply_similarity(source, scale, rotation, translation)
  converged = False
  iterations = 0
  for iterations in range(1, options.max_iterations + 1):
    distances, indices = tree.query(current)
    keep = _trimmed_mask(distances, options)
    if np.count_nonzero(keep) < 7:
      raise ValueError(
          f"ICP kept only {np.count_nonzero(keep)} correspondences (need 7); "
          f"raise IcpOptions.max_correspondence_mm (now "
          f"{options.max_correspondence_mm}) or improve the initialisation")
    step_scale, step_rotation, step_translation = _point_to_plane_step(
        current[keep], target[indices[keep]], normals[indices[keep]],
        with_scale)
    updated = apply_similarity(current, step_scale, step_rotation,
                               step_translation)
    scale = step_scale * scale
    rotation = step_rotation @ rotation
    translation = step_scale * step_rotation @ translation + step_translation
    displacement = float(np.mean(np.linalg.norm(updated - current, axis=1)))
    current = updated
    if displacement < options.tolerance_mm:
      converged = True
      break
  # Re-derive the points from the accumulated transform so that `aligned`
  # and (scale, rotation, translation) agree to rounding.
  aligned = apply_similarity(source, scale, rotation, translation)
  distances = tree.query(aligned)[0]
  keep = _trimmed_mask(distances, options)
  mean_distance = float(distances[keep].mean()) if keep.any() else math.inf
  return IcpResult(float(scale), rotation, translation, aligned,
                   mean_distance, iterations, converged)
