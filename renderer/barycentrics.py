"""Differentiable perspective-correct barycentrics and attribute interpolation.

The visibility stage (:func:`unsup3dmm.renderer.rasterize`) says which
triangle covers each pixel but has no gradient.  Here the barycentric
coordinates of each pixel centre in its triangle are recomputed from the
clip-space vertices with differentiable operations, so that gradients of the
image reach the vertex positions (Genova et al., CVPR 2018, Sec. 3.4; the
formulation of tf_mesh_renderer).

2D homogeneous formulation (Olano & Greer 1997): with ``v_k = (x_k, y_k, w_k)``
the clip coordinates of the triangle's vertices and ``p = (p_x, p_y, 1)`` the
pixel centre in normalised device coordinates, the perspective-correct
barycentrics are::

    b_k = e_k / (e_0 + e_1 + e_2),   e_k = p . (v_{k+1} x v_{k+2})

(indices mod 3).  ``b`` are the coordinates of the 3D point where the
pixel's ray meets the triangle's plane, so interpolating camera- or
model-space attributes with them is exact for attributes linear on the
triangle.  Subtracting ``w_k p`` from each ``v_k`` leaves the determinants
unchanged, so equivalently ``e_k = d_{k+1} x d_{k+2}``, the 2D cross product
of ``d_k = (x_k - w_k p_x, y_k - w_k p_y)`` (the vertices' offsets from the
pixel, scaled by w); that form is cheaper and loses less float32 precision
(no cancellation of large terms), and is what both backends evaluate.  The
formula has no per-pixel matrix inverse, is smooth in the vertices and is
defined for any pixel, including pixels outside the triangle (where some
``b_k < 0``).  The denominator is guarded: its magnitude is at least
:data:`DENOMINATOR_EPSILON` (it is only that small for triangles seen edge-on).

Two backends compute the same values and gradients: ``"tf"`` (TensorFlow ops:
one gather of the covered pixels' corner data, then elementwise products) and
``"op"`` (the C++ kernels of renderer/kernels, with registered gradients; CPU
only).
"""
import tensorflow as tf

from unsup3dmm.renderer import camera as camera_lib
from unsup3dmm.renderer import shading_op

# Lower bound of |e_0 + e_1 + e_2|, in clip units squared.
DENOMINATOR_EPSILON = 1e-12

BACKENDS = ("op", "tf")


def check_backend(backend: str, name: str = "backend") -> str:
  """Raises ValueError unless ``backend`` is "op" or "tf"."""
  if backend not in BACKENDS:
    raise ValueError(f"{name} must be one of {BACKENDS} here, got "
                     f"{backend!r}")
  return backend


def check_triangles(triangles) -> tf.Tensor:
  """Returns int32 ``[triangle_count, 3]`` triangles, or raises ValueError."""
  triangles = tf.convert_to_tensor(triangles)
  if not triangles.dtype.is_integer or triangles.shape.rank != 2 or (
      triangles.shape[1] != 3):
    raise ValueError("triangles must be an int32 tensor of shape "
                     f"[triangle_count, 3], got {triangles.dtype.name} "
                     f"{triangles.shape}")
  return tf.cast(triangles, tf.int32)


def check_triangles_and_ids(triangles, triangle_ids, batch_size):
  """Checks triangles and ``[batch, height, width]`` integer triangle ids.

  Returns:
    Both as int32 tensors.

  Raises:
    ValueError: naming the argument with a bad dtype, rank or batch size.
  """
  triangles = check_triangles(triangles)
  triangle_ids = tf.convert_to_tensor(triangle_ids)
  if not triangle_ids.dtype.is_integer or triangle_ids.shape.rank != 3:
    raise ValueError("triangle_ids must be an int32 tensor of shape [batch, "
                     f"height, width], got {triangle_ids.dtype.name} "
                     f"{triangle_ids.shape}")
  if (batch_size is not None and triangle_ids.shape[0] is not None and
      triangle_ids.shape[0] != batch_size):
    raise ValueError(f"triangle_ids must have batch size {batch_size}, got "
                     f"shape {triangle_ids.shape}")
  return triangles, tf.cast(triangle_ids, tf.int32)


def compute_barycentrics(clip_vertices, triangles, triangle_ids,
                         backend: str = "tf") -> tf.Tensor:
  """Perspective-correct barycentrics of every pixel centre.

  Args:
    clip_vertices: float32 ``[batch, vertex_count, 4]``, clip space
      ``(x, y, z, w)`` (z is not used).
    triangles: int32 ``[triangle_count, 3]`` vertex indices.
    triangle_ids: int32 ``[batch, height, width]``, the visible triangle of
      each pixel, -1 where empty (from :func:`rasterize`).
    backend: "tf" or "op".

  Returns:
    float32 ``[batch, height, width, 3]``: the barycentrics of each pixel
    centre with respect to its triangle's vertices (in the triangle's vertex
    order), summing to 1; pixel centres that lie outside their triangle (at
    silhouettes) get some negative coordinates; 0 at empty pixels.
    Gradients flow to ``clip_vertices`` (x, y and w).

  Raises:
    ValueError: for badly shaped or typed inputs or an unknown backend.
  """
  clip_vertices = check_clip_vertices(clip_vertices)
  triangles, triangle_ids = check_triangles_and_ids(
      triangles, triangle_ids, clip_vertices.shape[0])
  if check_backend(backend) == "op":
    return shading_op.barycentrics(clip_vertices, triangles, triangle_ids)
  return barycentrics_tf(clip_vertices, triangles, triangle_ids)


def check_clip_vertices(clip_vertices) -> tf.Tensor:
  """Returns float32 ``[batch, vertex_count, 4]`` clip vertices, or raises."""
  clip_vertices = tf.convert_to_tensor(clip_vertices, tf.float32)
  if clip_vertices.shape.rank != 3 or clip_vertices.shape[-1] != 4:
    raise ValueError("clip_vertices must have shape [batch, vertex_count, 4], "
                     f"got {clip_vertices.shape}")
  return clip_vertices


def interpolate(attributes, triangles, triangle_ids, pixel_barycentrics,
                backend: str = "tf") -> tf.Tensor:
  """Interpolates per-vertex attributes at every pixel.

  Args:
    attributes: float32 ``[batch, vertex_count, channels]``, any per-vertex
      quantity (colours, normals, positions).
    triangles: int32 ``[triangle_count, 3]`` vertex indices.
    triangle_ids: int32 ``[batch, height, width]``, -1 where empty.
    pixel_barycentrics: float32 ``[batch, height, width, 3]`` from
      :func:`compute_barycentrics`.
    backend: "tf" or "op".

  Returns:
    float32 ``[batch, height, width, channels]``:
    ``sum_k b_k attributes[triangle[k]]``; 0 at empty pixels.  Gradients flow
    to ``attributes`` and ``pixel_barycentrics``.

  Raises:
    ValueError: for badly shaped or typed inputs or an unknown backend.
  """
  attributes = tf.convert_to_tensor(attributes, tf.float32)
  if attributes.shape.rank != 3:
    raise ValueError("attributes must have shape [batch, vertex_count, "
                     f"channels], got {attributes.shape}")
  triangles, triangle_ids = check_triangles_and_ids(
      triangles, triangle_ids, attributes.shape[0])
  pixel_barycentrics = tf.convert_to_tensor(pixel_barycentrics, tf.float32)
  shape = pixel_barycentrics.shape
  if shape.rank != 4 or shape[-1] != 3 or (
      not shape[:3].is_compatible_with(triangle_ids.shape)):
    raise ValueError("pixel_barycentrics must have shape [batch, height, "
                     f"width, 3] matching triangle_ids {triangle_ids.shape}, "
                     f"got {pixel_barycentrics.shape}")
  if check_backend(backend) == "op":
    return shading_op.interpolate(attributes, triangles, triangle_ids,
                                  pixel_barycentrics)
  return interpolate_tf(attributes, triangles, triangle_ids,
                        pixel_barycentrics)


# ---------------------------------------------------------------------------
# TensorFlow backend.  The work is done on the covered pixels only (a face
# covers about half of the image): their coordinates come from tf.where, their
# corner data from one gather, and the result goes back with scatter_nd.


def _covered_pixels(triangle_ids, triangles, vertex_count):
  """Covered pixels and the flat vertex rows of their triangles' corners.

  Returns:
    where: int64 [pixels, 3] (batch, row, column) of covered pixels.
    rows: int32 [pixels, 3] indices into a [batch * vertex_count, ...] table.
  """
  where = tf.where(triangle_ids >= 0)
  ids = tf.gather_nd(triangle_ids, where)
  batch_index = tf.cast(where[:, 0], tf.int32)
  rows = tf.gather(triangles, ids) + (batch_index * vertex_count)[:, None]
  return where, rows


def _flat(per_vertex):
  """[batch, vertex_count, channels] -> [batch * vertex_count, channels]."""
  return tf.reshape(per_vertex, [-1, tf.shape(per_vertex)[-1]])


def _pixel_weights(corners, where, image_shape):
  """Barycentrics [N, 3] of covered pixels from their corners' clip (x, y, w).

  Args:
    corners: float32 [N, 3, 3+] whose first 3 channels are clip x, y, w.
    where: int64 [N, 3] (batch, row, column) of the pixels.
    image_shape: int [3] (batch, height, width).
  """
  x_ndc, y_ndc = camera_lib.pixel_centers_ndc((image_shape[1],
                                               image_shape[2]))
  p = tf.stack([tf.gather(x_ndc, where[:, 2]), tf.gather(y_ndc, where[:, 1])],
               axis=-1)                                     # [N, 2]
  # d_k = (x_k - w_k p_x, y_k - w_k p_y).
  offsets = corners[..., 0:2] - corners[..., 2:3] * p[:, None, :]
  e, total = edge_values(tf.unstack(offsets[..., 0], num=3, axis=1),
                         tf.unstack(offsets[..., 1], num=3, axis=1))
  return tf.stack(e, axis=-1) / total[:, None]


def edge_values(dx, dy):
  """The e_k of the module docstring and their guarded sum.

  Args:
    dx, dy: three float32 tensors each (one per corner k, any common shape),
      ``x_k - w_k p_x`` and ``y_k - w_k p_y``.

  Returns:
    ``(e, total)``: the list ``e_k = d_{k+1} x d_{k+2}`` and ``e_0 + e_1 + e_2``
    pushed away from 0 to magnitude :data:`DENOMINATOR_EPSILON`; the
    barycentrics are ``e_k / total``.
  """
  e = [dx[(k + 1) % 3] * dy[(k + 2) % 3] - dy[(k + 1) % 3] * dx[(k + 2) % 3]
       for k in range(3)]
  total = (e[0] + e[1]) + e[2]
  total = tf.where(tf.abs(total) < DENOMINATOR_EPSILON,
                   tf.where(total < 0, -DENOMINATOR_EPSILON,
                            DENOMINATOR_EPSILON), total)
  return e, total


def barycentrics_tf(clip_vertices, triangles, triangle_ids) -> tf.Tensor:
  """TensorFlow backend of :func:`compute_barycentrics` (no checks)."""
  image_shape = tf.shape(triangle_ids)
  where, rows = _covered_pixels(triangle_ids, triangles,
                                tf.shape(clip_vertices)[1])
  xyw = tf.gather(clip_vertices, [0, 1, 3], axis=-1)
  weights = _pixel_weights(tf.gather(_flat(xyw), rows), where, image_shape)
  return tf.scatter_nd(where, weights,
                       tf.concat([tf.cast(image_shape, tf.int64), [3]], 0))


def interpolate_tf(attributes, triangles, triangle_ids,
                   pixel_barycentrics) -> tf.Tensor:
  """TensorFlow backend of :func:`interpolate` (same contract, no checks)."""
  where, rows = _covered_pixels(triangle_ids, triangles,
                                tf.shape(attributes)[1])
  corners = tf.gather(_flat(attributes), rows)              # [N, 3, C]
  weights = tf.gather_nd(pixel_barycentrics, where)         # [N, 3]
  values = tf.reduce_sum(weights[..., None] * corners, axis=1)
  shape = tf.concat([tf.cast(tf.shape(triangle_ids), tf.int64),
                     tf.shape(attributes, out_type=tf.int64)[2:]], 0)
  return tf.scatter_nd(where, values, shape)
