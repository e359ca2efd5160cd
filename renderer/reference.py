"""A small NumPy reference rasteriser for testing the visibility backends.

It implements the convention documented in ``kernels/rasterize_triangles_impl.h``
(and :func:`unsup3dmm.renderer.visibility.rasterize`) literally: for every
triangle in id order it evaluates the edge functions, the NDC depth and the
bounding-box rule at *every* pixel centre of the image (no bounding-box
scanning, no chunking) with the same float32 expressions, and keeps the nearest
triangle with a strict ``<`` so that equal depths go to the lower id.  It is
slow (a loop over triangles) and meant for meshes of a few dozen triangles.
"""
from typing import Sequence, Tuple

import numpy as np

EMPTY_DEPTH = np.float32(1.0)


def _edge_coefficients(h: np.ndarray, a: int, b: int):
  """A, B, C of the edge through vertices a and b of h = [3, (qx, qy, w, z)]."""
  qx_a, qy_a, w_a = h[a, 0], h[a, 1], h[a, 2]
  qx_b, qy_b, w_b = h[b, 0], h[b, 1], h[b, 2]
  return (qy_a * w_b - w_a * qy_b, w_a * qx_b - qx_a * w_b,
          qx_a * qy_b - qy_a * qx_b)


def rasterize_reference(clip_vertices: np.ndarray, triangles: np.ndarray,
                        image_size: Sequence[int],
                        cull_backfaces: bool = False
                        ) -> Tuple[np.ndarray, np.ndarray]:
  """Per-pixel nearest triangle ids and NDC depths, computed plainly.

  Args:
    clip_vertices: float32 array [batch, vertex_count, 4], clip-space
      (x, y, z, w) per image.
    triangles: int array [triangle_count, 3] of vertex indices.
    image_size: (height, width) in pixels.
    cull_backfaces: drop triangles that are clockwise in NDC.

  Returns:
    triangle_ids: int32 [batch, height, width], -1 where empty.
    depth: float32 [batch, height, width], NDC z/w, 1 where empty.
  """
  clip_vertices = np.asarray(clip_vertices, np.float32)
  triangles = np.asarray(triangles, np.int64)
  height, width = (int(s) for s in image_size)
  half_width = np.float32(width / 2)
  half_height = np.float32(height / 2)
  column_offset = half_width - np.float32(0.5)
  row_offset = half_height - np.float32(0.5)
  rows = np.arange(height, dtype=np.float32)[:, None]
  columns = np.arange(width, dtype=np.float32)[None, :]
  # Pixel centres in pixel units about the image centre, y up; exact.
  px = (columns + np.float32(0.5)) - half_width
  py = half_height - (rows + np.float32(0.5))

  batch = clip_vertices.shape[0]
  all_ids = np.full((batch, height, width), -1, np.int32)
  all_depth = np.full((batch, height, width), EMPTY_DEPTH, np.float32)
  with np.errstate(all="ignore"):
    for image in range(batch):
      x, y, z, w = np.moveaxis(clip_vertices[image], -1, 0)
      homogeneous = np.stack([x * half_width, y * half_height, w, z], axis=-1)
      finite = np.all(np.isfinite(clip_vertices[image]), axis=-1)
      in_front = finite & (w > 0)
      u = homogeneous[:, 0] / w + column_offset
      v = row_offset - homogeneous[:, 1] / w
      nearest = np.full((height, width), np.inf, np.float32)
      ids = all_ids[image]
      for triangle_id, corners in enumerate(triangles):
        if not np.all(finite[corners]) or not np.any(in_front[corners]):
          continue
        h = homogeneous[corners]
        edges = [_edge_coefficients(h, (k + 1) % 3, (k + 2) % 3)
                 for k in range(3)]
        a0, b0, c0 = edges[0]
        det = (a0 * h[0, 0] + b0 * h[0, 1]) + c0 * h[0, 2]
        if not np.isfinite(det) or det == 0:
          continue
        if cull_backfaces and det < 0:
          continue
        zs = h[:, 3]
        plane = [((zs[0] * edges[0][c] + zs[1] * edges[1][c]) +
                  zs[2] * edges[2][c]) / det for c in range(3)]
        covered = np.ones((height, width), bool)
        for a, b, c in edges:
          value = (a * px + b * py) + c
          covered &= (value >= 0) if det > 0 else (value <= 0)
        depth = (plane[0] * px + plane[1] * py) + plane[2]
        covered &= (depth >= -1) & (depth <= 1)
        if np.all(in_front[corners]):
          covered &= ((columns >= u[corners].min()) &
                      (columns <= u[corners].max()) &
                      (rows >= v[corners].min()) & (rows <= v[corners].max()))
        update = covered & (depth < nearest)
        nearest[update] = depth[update]
        ids[update] = triangle_id
      all_depth[image] = np.where(ids >= 0, nearest, EMPTY_DEPTH)
  return all_ids, all_depth
