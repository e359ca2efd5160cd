"""Simple analytic meshes for tests, benchmarks and demonstrations.

All are NumPy arrays: vertices float32 ``[vertex_count, 3]`` (mm or any unit),
triangles int32 ``[triangle_count, 3]`` counter-clockwise seen from outside
(right-hand normals point outwards, towards +z for the front-facing grids).
"""
from typing import Tuple

import numpy as np

Mesh = Tuple[np.ndarray, np.ndarray]


def grid_triangles(rows: int, columns: int) -> np.ndarray:
  """Triangles of a ``rows x columns`` vertex grid in row-major order.

  Row 0 is the top row (largest y) and columns go towards +x, so the
  triangles are counter-clockwise seen from +z.

  Returns:
    int32 ``[2 (rows - 1) (columns - 1), 3]``.
  """
  index = np.arange(rows * columns).reshape(rows, columns)
  a, b = index[:-1, :-1], index[:-1, 1:]
  c, d = index[1:, :-1], index[1:, 1:]
  return np.concatenate([np.stack([a, c, d], -1).reshape(-1, 3),
                         np.stack([a, d, b], -1).reshape(-1, 3)]).astype(
                             np.int32)


def uv_sphere(radius: float, segments: int, rings: int,
              center=(0.0, 0.0, 0.0)) -> Mesh:
  """A latitude-longitude sphere.

  Args:
    radius: sphere radius.
    segments: vertices per ring (around the y axis), >= 3.
    rings: latitude bands between the poles, >= 2.
    center: (x, y, z) centre.

  Returns:
    ``(vertices, triangles)``: ``2 + segments (rings - 1)`` vertices, poles
    on the y axis, ``2 segments (rings - 1)`` triangles.
  """
  theta = np.linspace(0.0, np.pi, rings + 1)[1:-1]            # from +y
  phi = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
  sin_t, cos_t = np.sin(theta)[:, None], np.cos(theta)[:, None]
  x = sin_t * np.sin(phi)[None, :]
  ring = np.stack([x, np.broadcast_to(cos_t, x.shape),
                   sin_t * np.cos(phi)[None, :]], -1).reshape(-1, 3)
  vertices = np.concatenate([[[0.0, 1.0, 0.0]], ring, [[0.0, -1.0, 0.0]]])
  vertices = vertices * radius + np.asarray(center)
  last = len(vertices) - 1
  triangles = []
  for j in range(segments):
    k = (j + 1) % segments
    triangles.append([0, 1 + j, 1 + k])
  for i in range(rings - 2):
    for j in range(segments):
      k = (j + 1) % segments
      a, b = 1 + i * segments + j, 1 + i * segments + k
      c, d = a + segments, b + segments
      triangles += [[a, c, d], [a, d, b]]
  base = 1 + (rings - 2) * segments
  for j in range(segments):
    triangles.append([last, base + (j + 1) % segments, base + j])
  return vertices.astype(np.float32), np.asarray(triangles, np.int32)


def face_sized_mesh(grid: int = 231, semi_axes_mm=(80.0, 107.0, 90.0),
                    center_mm=(0.0, 0.0, 0.0)) -> Mesh:
  """A face-sized stand-in: a grid draped over the front of an ellipsoid.

  A ``grid x grid`` vertex grid over the square [-1, 1]^2 is mapped to the
  unit disc (elliptical grid mapping) and lifted onto the front half of an
  ellipsoid with the given semi-axes (width, height, depth), whose centre is
  placed ``semi_axes_mm[2] / 2`` behind ``center_mm`` so that the surface
  spans depths ``center_mm[2] +- semi_axes_mm[2] / 2``.  The default
  (231^2 = 53,361 vertices, 105,800 triangles) has the size of the Basel Face
  Model 2017 (53,149 vertices, 105,694 triangles); its 160 x 214 x 90 mm
  covers as much of a default render as the demo face does (58% of the
  image at random poses).

  Returns:
    ``(vertices, triangles)`` in mm, facing +z.
  """
  u, v = np.meshgrid(np.linspace(-1, 1, grid), np.linspace(1, -1, grid))
  x = u * np.sqrt(1 - v ** 2 / 2)
  y = v * np.sqrt(1 - u ** 2 / 2)
  z = np.sqrt(np.maximum(1 - x ** 2 - y ** 2, 0))
  vertices = np.stack([x, y, z], -1).reshape(-1, 3) * np.asarray(semi_axes_mm)
  vertices += np.asarray(center_mm) - [0.0, 0.0, 0.5 * semi_axes_mm[2]]
  return vertices.astype(np.float32), grid_triangles(grid, grid)
