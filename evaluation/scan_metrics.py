"""Mesh-to-scan error of the MICC Florence protocol, in NumPy/SciPy.

Protocol (the MICC evaluation of Genova et al., CVPR 2018, which follows Tran
et al., "Regressing robust and discriminative 3D morphable models", CVPR
2017): crop the ground-truth scan to a sphere of 95 mm around the nose tip
(:func:`crop_to_radius`), align the prediction to it by ICP with isotropic
scale (:func:`unsup3dmm.evaluation.alignment.icp_align`), and report the
symmetric point-to-plane distance in mm over the overlapping region
(:func:`symmetric_point_to_plane_distance`), as mean and standard deviation
over subjects, overall and per setting (:func:`summarize_by_setting`).

Meshes are ``(vertices, triangles)`` pairs: vertices float [vertex_count, 3]
in mm, triangles int [triangle_count, 3] of 0-based vertex ids.  Nothing here
imports TensorFlow and no gradients flow.
"""
from typing import Dict, Iterable, NamedTuple, Tuple

import numpy as np
from scipy import spatial

# Radius of the ground-truth crop around the nose tip, mm (MICC protocol of
# Tran et al. 2017, used by Genova et al. 2018).
MICC_CROP_RADIUS_MM = 95.0

# Nearest-vertex correspondences longer than this are outside the overlapping
# region of :func:`symmetric_point_to_plane_distance`, mm.  Well above the
# 1.5-2.5 mm errors reported for MICC, so it only removes points with no
# counterpart on the other surface, not large errors on the face.
OVERLAP_THRESHOLD_MM = 10.0


def _check_mesh(vertices, triangles, name: str
                ) -> Tuple[np.ndarray, np.ndarray]:
  """Validated float64 [V, 3] vertices and int64 [T, 3] triangles."""
  try:
    vertices = np.array(vertices, dtype=np.float64)
    triangles = np.array(triangles)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name} must be (vertices [V, 3], triangles [T, 3]) "
                     "numeric arrays") from e
  if vertices.ndim != 2 or vertices.shape[1] != 3:
    raise ValueError(f"{name} vertices must have shape [vertex_count, 3]; got "
                     f"{vertices.shape}")
  if not np.all(np.isfinite(vertices)):
    raise ValueError(f"{name} vertices contain NaN or infinite values")
  if triangles.size == 0:
    triangles = np.zeros((0, 3), dtype=np.int64)
  if triangles.ndim != 2 or triangles.shape[1] != 3:
    raise ValueError(f"{name} triangles must have shape [triangle_count, 3]; "
                     f"got {triangles.shape}")
  if not np.issubdtype(triangles.dtype, np.integer):
    raise ValueError(f"{name} triangles must hold integer vertex ids; got "
                     f"dtype {triangles.dtype}")
  triangles = triangles.astype(np.int64)
  if triangles.size and (triangles.min() < 0 or
                         triangles.max() >= vertices.shape[0]):
    raise ValueError(f"{name} triangles reference vertex ids outside "
                     f"[0, {vertices.shape[0]})")
  return vertices, triangles


def _unpack_mesh(mesh, name: str) -> Tuple[np.ndarray, np.ndarray]:
  if not isinstance(mesh, (tuple, list)) or len(mesh) != 2:
    raise ValueError(f"{name} must be a (vertices, triangles) pair")
  return _check_mesh(mesh[0], mesh[1], name)


def _vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
  corners = vertices[triangles]
  # Unnormalised cross product: its length is twice the triangle's area, so
  # the sum below weights each face by its area.
  face_normals = np.cross(corners[:, 1] - corners[:, 0],
                          corners[:, 2] - corners[:, 0])
  normals = np.zeros_like(vertices)
  for corner in range(3):
    np.add.at(normals, triangles[:, corner], face_normals)
  lengths = np.linalg.norm(normals, axis=1, keepdims=True)
  return np.divide(normals, lengths, out=np.zeros_like(normals),
                   where=lengths > 0)


def vertex_normals(vertices, triangles) -> np.ndarray:
  """Area-weighted unit vertex normals.

  Each vertex normal is the normalised sum of the (unnormalised) normals of
  the triangles that use it, oriented by the triangles' winding
  (counter-clockwise seen from the front gives a normal towards the viewer).

  Args:
    vertices: float [vertex_count, 3] (any unit).
    triangles: int [triangle_count, 3], 0-based vertex ids.

  Returns:
    float64 [vertex_count, 3], unit length; all-zero rows for vertices used by
    no triangle of non-zero area.
  """
  vertices, triangles = _check_mesh(vertices, triangles, "mesh")
  return _vertex_normals(vertices, triangles)


def boundary_vertex_mask(vertex_count: int, triangles) -> np.ndarray:
  """Which vertices lie on the mesh boundary.

  A boundary edge is an (undirected) edge used by exactly one triangle; its
  two vertices are boundary vertices.

  Args:
    vertex_count: number of vertices.
    triangles: int [triangle_count, 3], 0-based vertex ids.

  Returns:
    bool [vertex_count].
  """
  triangles = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
  edges = np.concatenate(
      [triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
  edges = np.sort(edges, axis=1)
  unique_edges, counts = np.unique(edges, axis=0, return_counts=True)
  mask = np.zeros(vertex_count, dtype=bool)
  mask[unique_edges[counts == 1].ravel()] = True
  return mask


def crop_to_radius(vertices, triangles, center,
                   radius_mm: float = MICC_CROP_RADIUS_MM
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Keeps the part of a mesh within `radius_mm` of `center`.

  A vertex is kept iff its Euclidean distance to `center` is <= `radius_mm`;
  a triangle is kept iff all three of its vertices are kept.

  Args:
    vertices: float [vertex_count, 3] (mm).
    triangles: int [triangle_count, 3], 0-based vertex ids.
    center: float [3] (mm), e.g. the scan's nose tip.
    radius_mm: crop radius > 0 (mm); default: the MICC protocol's 95 mm.

  Returns:
    ``(vertices [kept_count, 3] float64, triangles [kept_triangles, 3] int64
    re-indexed into the kept vertices, kept_index [kept_count] int64)`` where
    ``kept_index`` are the kept vertices' ids in the input, ascending.
  """
  vertices, triangles = _check_mesh(vertices, triangles, "mesh")
  center = np.asarray(center, dtype=np.float64)
  if center.shape != (3,) or not np.all(np.isfinite(center)):
    raise ValueError(f"center must be a finite point of shape [3]; got "
                     f"{center.shape}")
  if not radius_mm > 0:
    raise ValueError(f"radius_mm must be > 0; got {radius_mm!r}")
  inside = np.linalg.norm(vertices - center, axis=1) <= radius_mm
  kept_index = np.flatnonzero(inside)
  new_ids = np.full(vertices.shape[0], -1, dtype=np.int64)
  new_ids[kept_index] = np.arange(kept_index.size)
  kept_triangles = triangles[np.all(inside[triangles], axis=1)]
  return vertices[kept_index], new_ids[kept_triangles], kept_index


class _SurfaceSamples(NamedTuple):
  """A mesh's usable vertices: the ones with a defined normal."""
  points: np.ndarray
  normals: np.ndarray
  on_boundary: np.ndarray
  tree: spatial.cKDTree


def _surface_samples(vertices: np.ndarray, triangles: np.ndarray,
                     name: str) -> _SurfaceSamples:
  normals = _vertex_normals(vertices, triangles)
  usable = np.any(normals != 0, axis=1)
  if not usable.any():
    raise ValueError(f"{name} has no triangle of non-zero area")
  on_boundary = boundary_vertex_mask(vertices.shape[0], triangles)
  points = vertices[usable]
  return _SurfaceSamples(points, normals[usable], on_boundary[usable],
                         spatial.cKDTree(points))


def _one_sided(queries: _SurfaceSamples, reference: _SurfaceSamples,
               overlap_threshold_mm: float) -> Tuple[float, float]:
  """Mean point-to-plane distance of `queries` to `reference`, overlap."""
  gaps, nearest = reference.tree.query(queries.points)
  overlapping = (gaps <= overlap_threshold_mm) & ~reference.on_boundary[nearest]
  if not overlapping.any():
    return float("nan"), 0.0
  offsets = queries.points[overlapping] - reference.points[nearest[overlapping]]
  plane_distances = np.abs(
      np.sum(offsets * reference.normals[nearest[overlapping]], axis=1))
  return float(plane_distances.mean()), float(overlapping.mean())


def symmetric_point_to_plane_distance(
    mesh_a, mesh_b, overlap_threshold_mm: float = OVERLAP_THRESHOLD_MM
) -> Dict[str, float]:
  """Symmetric point-to-plane distance between two aligned meshes, in mm.

  For every vertex ``p`` of A, ``q`` is the nearest vertex of B and ``n_q``
  B's unit vertex normal there; the distance is ``|(p - q) . n_q|``, the
  distance from ``p`` to B's tangent plane at ``q``.  Vice versa for B's
  vertices against A.  Only vertices used by a triangle of non-zero area take
  part (on either side).

  Overlapping region: a vertex ``p`` of A counts (is in the overlap) iff its
  nearest B vertex ``q`` is within `overlap_threshold_mm` of ``p`` and ``q``
  is not a boundary vertex of B (a vertex of an edge used by one triangle
  only): points beyond B's border match a border vertex, so they are
  excluded rather than scored with a meaningless distance.  Likewise for B.

  Args:
    mesh_a: ``(vertices [Va, 3] float, triangles [Ta, 3] int)`` in mm, e.g.
      the ICP-aligned prediction.
    mesh_b: ``(vertices [Vb, 3], triangles [Tb, 3])`` in mm, e.g. the
      cropped scan, in the same frame.
    overlap_threshold_mm: correspondence gate (mm), > 0.

  Returns:
    dict with ``mean_mm`` (average of the two one-sided means),
    ``a_to_b_mm``, ``b_to_a_mm`` (means over the overlapping vertices; NaN
    when a side has none) and ``a_overlap_fraction``, ``b_overlap_fraction``
    (share of each mesh's usable vertices in the overlap, in [0, 1]).
  """
  vertices_a, triangles_a = _unpack_mesh(mesh_a, "mesh_a")
  vertices_b, triangles_b = _unpack_mesh(mesh_b, "mesh_b")
  if not overlap_threshold_mm > 0:
    raise ValueError(f"overlap_threshold_mm must be > 0; got "
                     f"{overlap_threshold_mm!r}")
  samples_a = _surface_samples(vertices_a, triangles_a, "mesh_a")
  samples_b = _surface_samples(vertices_b, triangles_b, "mesh_b")
  a_to_b, a_overlap = _one_sided(samples_a, samples_b, overlap_threshold_mm)
  b_to_a, b_overlap = _one_sided(samples_b, samples_a, overlap_threshold_mm)
  return {
      "mean_mm": 0.5 * (a_to_b + b_to_a),
      "a_to_b_mm": a_to_b,
      "b_to_a_mm": b_to_a,
      "a_overlap_fraction": a_overlap,
      "b_overlap_fraction": b_overlap,
  }


class SubjectResult(NamedTuple):
  """One scan error: subject id, capture setting and the error in mm."""
  subject: str
  setting: str
  distance_mm: float


def _mean_std(values) -> Dict[str, float]:
  values = np.asarray(values, dtype=np.float64)
  return {"mean_mm": float(values.mean()), "std_mm": float(values.std()),
          "subject_count": int(values.size)}


def summarize_by_setting(
    per_subject_results: Iterable[Tuple[str, str, float]]
) -> Dict[str, Dict]:
  """Mean and standard deviation over subjects, overall and per setting.

  Entries for the same (subject, setting) pair (e.g. several frames or
  videos) are first averaged, so every subject counts once per setting.  The
  overall figure averages each subject's per-setting values first, so every
  subject counts once overall.  Standard deviations are population ones
  (``ddof=0``) across subjects.

  Args:
    per_subject_results: iterable of ``(subject, setting, distance_mm)``
      (e.g. :class:`SubjectResult`), setting e.g. "cooperative", "indoor",
      "outdoor"; distance_mm finite (mm).

  Returns:
    ``{"overall": stats, "per_setting": {setting: stats}}`` where ``stats =
    {"mean_mm", "std_mm", "subject_count"}``; settings in order of first
    appearance.

  Raises:
    ValueError: when empty, or an entry is malformed or non-finite.
  """
  grouped: Dict[str, Dict[str, list]] = {}
  for position, entry in enumerate(per_subject_results):
    try:
      subject, setting, distance = entry
      distance = float(distance)
    except (TypeError, ValueError) as e:
      raise ValueError(f"per_subject_results[{position}] must be (subject, "
                       f"setting, distance_mm); got {entry!r}") from e
    if not np.isfinite(distance):
      raise ValueError(f"per_subject_results[{position}] has a non-finite "
                       f"distance {distance}")
    grouped.setdefault(str(setting), {}).setdefault(str(subject),
                                                    []).append(distance)
  if not grouped:
    raise ValueError("per_subject_results is empty")
  per_setting = {}
  per_subject: Dict[str, list] = {}
  for setting, subjects in grouped.items():
    subject_means = {s: float(np.mean(v)) for s, v in subjects.items()}
    per_setting[setting] = _mean_std(list(subject_means.values()))
    for subject, value in subject_means.items():
      per_subject.setdefault(subject, []).append(value)
  overall = _mean_std([np.mean(v) for v in per_subject.values()])
  return {"overall": overall, "per_setting": per_setting}
