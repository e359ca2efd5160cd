"""Visibility: which triangle each pixel sees, and at what depth.

The first stage of the renderer.  :func:`rasterize` takes a batch of meshes in
clip space and returns a :class:`Visibility` record; later stages
(barycentrics, interpolation, shading) are differentiable, this one is not.

Conventions (shared bit for bit by both backends and by the NumPy reference in
``reference.py``; the float32 formulas are spelled out in
``kernels/rasterize_triangles_impl.h``):

* Pixel (row i, column j) has row 0 at the TOP of the image; its centre is at
  NDC x = 2 (j + 1/2) / W - 1, y = 1 - 2 (i + 1/2) / H.  A triangle covers the
  pixels whose centre lies inside it (pixels exactly on an edge are covered).
* 2D homogeneous rasterisation (Olano & Greer 1997): edge functions are built
  from the clip-space (x, y, w) of the vertices without dividing by w, so
  triangles crossing the camera plane (some w <= 0) are drawn correctly and
  triangles entirely behind the camera are not drawn.
* Depth is NDC z/w; only pixels with -1 <= z/w <= 1 are drawn (near and far
  clipping).  The smallest depth wins; equal depths go to the LOWER triangle
  id.
* Degenerate triangles (zero area on screen, or seen edge-on) and triangles
  with non-finite vertex coordinates are never drawn.
* Backface culling is off by default; with ``cull_backfaces=True`` triangles
  that are clockwise in NDC (y up) are dropped, i.e. counter-clockwise is the
  front face (OpenGL's default).

Backends:

* ``"op"``: the compiled C++ op (``rasterize_op.py``), CPU only, fastest on CPU.
  It has no XLA kernel: inside ``tf.function(jit_compile=True)`` use ``"tf"``.
* ``"tf"``: plain TensorFlow ops (a segment-min z-buffer over each triangle's
  candidate pixels: nearest depth first, then lowest id), runs on any device,
  works under ``tf.function`` and with large triangles (candidates are
  processed in fixed-size chunks).  20 to 50 times slower than the op on CPU.
* ``"auto"``: ``"tf"`` when a GPU or TPU is visible, else ``"op"``; when the op
  library cannot be loaded it falls back to ``"tf"`` with a one-time warning.

The backends give identical triangle ids and depths on CPU, eagerly and under
``tf.function``.  (Under XLA or on GPUs that fuse multiply-adds, a pixel centre
within float32 rounding of an edge can differ.)
"""
import logging
import numbers
from typing import NamedTuple, Sequence

import numpy as np
import tensorflow as tf

from unsup3dmm.renderer import rasterize_op
from unsup3dmm.renderer.config import RendererConfig

BACKENDS = ("auto", "op", "tf")

# Largest image height or width, pixels; equals kMaxImageDimension of the op
# (kernels/rasterize_triangles_impl.h) so both backends accept the same sizes.
MAX_IMAGE_DIMENSION = 1 << 15

# Candidate pixels the "tf" backend evaluates per loop iteration.  Only memory
# (about 150 bytes per candidate) and speed depend on it, never the result.
DEFAULT_TF_CANDIDATES_PER_CHUNK = 1 << 20

# Depth reported where no triangle is visible: the far plane, NDC.
EMPTY_DEPTH = 1.0

_INT32_MAX = np.iinfo(np.int32).max
_FLOAT32_MAX = np.finfo(np.float32).max

_logger = logging.getLogger(__name__)
_warned_op_unavailable = False


class Visibility(NamedTuple):
  """Per-pixel visibility of a batch of meshes.  No gradients flow.

  Attributes:
    triangle_ids: int32 [batch, height, width]; index into the triangle list
      of the nearest triangle, -1 where no triangle is visible.
    depth: float32 [batch, height, width]; NDC depth z/w in [-1, 1] of the
      nearest triangle, 1.0 (the far plane) where no triangle is visible.
    mask: float32 [batch, height, width]; 1 where a triangle is visible,
      else 0.
  """
  triangle_ids: tf.Tensor
  depth: tf.Tensor
  mask: tf.Tensor


# Plain Python around TensorFlow ops (tf.while_loop is explicit), so
# AutoGraph has nothing to convert when this is called inside tf.function.
@tf.autograph.experimental.do_not_convert
def rasterize(clip_vertices, triangles, image_size: Sequence[int],
              backend: str = RendererConfig.backend,
              cull_backfaces: bool = False,
              tf_candidates_per_chunk: int = DEFAULT_TF_CANDIDATES_PER_CHUNK
              ) -> Visibility:
  """Finds the nearest triangle and its depth at every pixel centre.

  Args:
    clip_vertices: float32 [batch, vertex_count, 4]; homogeneous clip-space
      positions (x, y, z, w), i.e. after each image's view and projection
      matrices.  The 4th coordinate is required.  No gradient flows back.
    triangles: int32 [triangle_count, 3]; vertex indices in
      [0, vertex_count), shared by the batch.  A triangle's id is its row.
    image_size: (height, width) in pixels, ints in [1, 32768].
    backend: "auto", "op" or "tf" (see the module docstring).
    cull_backfaces: drop triangles that are clockwise in NDC.
    tf_candidates_per_chunk: candidate pixels per iteration of the "tf"
      backend (memory/speed trade-off only).

  Returns:
    A :class:`Visibility` with tensors of shape [batch, height, width].

  Raises:
    ValueError: naming the argument, for a bad rank, last dimension, dtype,
      (static) triangle index, image size, backend or chunk size.
    rasterize_op.OpNotAvailableError: backend="op" and the op library cannot
      be loaded.
  """
  if backend not in BACKENDS:
    raise ValueError(
        f"backend must be one of {BACKENDS}, got {backend!r}")
  height, width = _check_image_size(image_size)
  if not isinstance(cull_backfaces, bool):
    raise ValueError(
        f"cull_backfaces must be a bool, got {cull_backfaces!r}")
  if (not isinstance(tf_candidates_per_chunk, numbers.Integral) or
      isinstance(tf_candidates_per_chunk, bool) or
      tf_candidates_per_chunk < 1):
    raise ValueError("tf_candidates_per_chunk must be a positive int, got "
                     f"{tf_candidates_per_chunk!r}")
  clip_vertices = _check_tensor(clip_vertices, "clip_vertices", tf.float32,
                                "[batch, vertex_count, 4]", 4)
  triangles = _check_tensor(triangles, "triangles", tf.int32,
                            "[triangle_count, 3]", 3)
  _check_static_indices(triangles, clip_vertices.shape[1])
  clip_vertices = tf.stop_gradient(clip_vertices)

  if _resolve_backend(backend) == "op":
    triangle_ids, depth = rasterize_op.rasterize_triangles(
        clip_vertices, triangles, height, width, cull_backfaces)
  else:
    triangle_ids, depth = _rasterize_tf(clip_vertices, triangles, height,
                                        width, cull_backfaces,
                                        int(tf_candidates_per_chunk))
  mask = tf.cast(triangle_ids >= 0, tf.float32)
  return Visibility(triangle_ids=triangle_ids, depth=depth, mask=mask)


def _check_image_size(image_size):
  if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2 or
      not all(isinstance(s, numbers.Integral) and not isinstance(s, bool)
              for s in image_size) or
      not all(1 <= s <= MAX_IMAGE_DIMENSION for s in image_size)):
    raise ValueError(
        "image_size must be (height, width), two ints in "
        f"[1, {MAX_IMAGE_DIMENSION}], got {image_size!r}")
  return int(image_size[0]), int(image_size[1])


def _check_tensor(value, name, dtype, shape_text, last_dim):
  if isinstance(value, (tf.Tensor, tf.Variable)) or hasattr(value, "dtype"):
    tensor = tf.convert_to_tensor(value)
  else:
    tensor = tf.convert_to_tensor(value, dtype=dtype)
  if tensor.dtype != dtype:
    raise ValueError(
        f"{name} must be {dtype.name}, got {tensor.dtype.name}")
  rank = len(shape_text.split(","))
  if tensor.shape.rank != rank or tensor.shape[-1] != last_dim:
    raise ValueError(
        f"{name} must have shape {shape_text} (rank and last dimension known "
        f"statically), got {tensor.shape}")
  return tensor


def _check_static_indices(triangles, vertex_count):
  values = tf.get_static_value(triangles)
  if values is None or values.size == 0:
    return
  low, high = int(values.min()), int(values.max())
  if low < 0 or (vertex_count is not None and high >= vertex_count):
    raise ValueError(
        f"triangles must index vertices in [0, {vertex_count}), got indices "
        f"in [{low}, {high}]")


def _resolve_backend(backend):
  """The backend to use for "auto", and checks that "op" can load."""
  global _warned_op_unavailable
  if backend == "op":
    rasterize_op.load_op_library()
    return "op"
  if backend == "tf":
    return "tf"
  if (tf.config.list_logical_devices("GPU") or
      tf.config.list_logical_devices("TPU")):
    return "tf"
  try:
    rasterize_op.load_op_library()
  except rasterize_op.OpNotAvailableError as e:
    if not _warned_op_unavailable:
      _logger.warning("Falling back to the slower pure TensorFlow "
                      "rasteriser: %s", e)
      _warned_op_unavailable = True
    return "tf"
  return "op"


def _sum_of_products(a, b, c, d, e):
  """(a * b + c * d) + e, rounded in exactly this order, also in tf.function.

  Grappler's arithmetic optimizer rewrites a tree of additions into one AddN
  whose operands it may reorder, which changes float32 rounding and would let
  the "tf" backend disagree with the op (and with itself in eager mode).  The
  inner addition is therefore written as a subtraction of (-c) * d, which is
  exactly -(c * d); a subtraction whose operand is a product is left alone, and
  the outer sum has only two operands.
  """
  return (a * b - tf.negative(c) * d) + e


def _rasterize_tf(clip_vertices, triangles, height, width, cull_backfaces,
                  candidates_per_chunk):
  """Pure TensorFlow z-buffer; same arithmetic as the op (see the header).

  Every triangle gets a box of candidate pixels (its exact pixel-index
  bounding box when all w > 0, the whole image when it crosses the camera
  plane, nothing when it cannot be drawn).  The candidates of all triangles of
  all images are numbered consecutively; a tf.while_loop walks them in chunks
  of `candidates_per_chunk` (static shapes inside the loop), evaluates the
  coverage test and keeps, per pixel, the smallest depth and then the smallest
  triangle id at that depth, with two unsorted_segment_min reductions merged
  into the running z-buffer.

  Returns int32 ids and float32 depth, [batch, height, width].
  """
  half_width = np.float32(width / 2)
  half_height = np.float32(height / 2)
  column_offset = half_width - np.float32(0.5)
  row_offset = half_height - np.float32(0.5)
  static_batch = clip_vertices.shape[0]
  batch = tf.shape(clip_vertices, out_type=tf.int64)[0]
  triangle_count = tf.shape(triangles, out_type=tf.int64)[0]
  flat_count = batch * triangle_count  # triangles of all images
  pixel_count = batch * height * width

  # Per-vertex set-up (header steps 1 and 4), [batch, vertex_count] each.
  x, y, z, w = tf.unstack(clip_vertices, axis=-1)
  qx = x * half_width
  qy = y * half_height
  finite = tf.reduce_all(tf.math.is_finite(clip_vertices), axis=-1)
  in_front = tf.logical_and(finite, w > 0)
  u = qx / w + column_offset
  v = row_offset - qy / w
  # Per quantity, gather [batch, corner, triangle] and split the corners:
  # corners[k][q] is quantity q of corner k for every triangle of every image,
  # [batch * triangle_count], flat index b * triangle_count + t.
  def per_corner(quantities):
    corners = [[], [], []]
    for quantity in quantities:
      gathered = tf.gather(quantity, tf.transpose(triangles), axis=1)
      for k, corner in enumerate(tf.unstack(gathered, num=3, axis=1)):
        corners[k].append(tf.reshape(corner, [-1]))
    return corners

  corners = per_corner([qx, qy, w, z, u, v])
  qx, qy, w, z, u, v = ([corner[q] for corner in corners] for q in range(6))
  flags = per_corner([tf.cast(finite, tf.int32), tf.cast(in_front, tf.int32)])
  finite_count = (flags[0][0] + flags[1][0]) + flags[2][0]
  front_count = (flags[0][1] + flags[1][1]) + flags[2][1]
  all_finite = tf.equal(finite_count, 3)
  all_in_front = tf.logical_and(all_finite, tf.equal(front_count, 3))

  # Edge k from corners a = k + 1 and b = k + 2 (mod 3) (header step 2).
  edges = []
  for k in range(3):
    a, b = (k + 1) % 3, (k + 2) % 3
    edges.append((qy[a] * w[b] - w[a] * qy[b],
                  w[a] * qx[b] - qx[a] * w[b],
                  qx[a] * qy[b] - qy[a] * qx[b]))
  det = _sum_of_products(edges[0][0], qx[0], edges[0][1], qy[0],
                         edges[0][2] * w[0])
  # Depth plane (header step 3): Dx, Dy, Dc.
  plane = [_sum_of_products(z[0], edges[0][c], z[1], edges[1][c],
                            z[2] * edges[2][c]) / det for c in range(3)]
  drawable = tf.logical_and(tf.math.is_finite(det), tf.not_equal(det, 0.0))
  drawable = tf.logical_and(drawable,
                            tf.logical_and(all_finite, front_count > 0))
  if cull_backfaces:
    drawable = tf.logical_and(drawable, det > 0)
  # Negation is exact: testing -E >= 0 is testing E <= 0 when det < 0.
  sign = tf.where(det < 0, -1.0, 1.0)
  coefficients = [c * sign for edge in edges for c in edge]  # A0 B0 C0 A1..

  # Candidate boxes, inclusive pixel bounds.  The all-w>0 box is the bounding
  # box rule of header step 4 (so it is exact, not just conservative); the
  # values are clamped to one pixel beyond the image before the int cast.
  def box_bounds(values, size):
    limit = float(size)
    low = tf.minimum(tf.minimum(values[0], values[1]), values[2])
    high = tf.maximum(tf.maximum(values[0], values[1]), values[2])
    low = tf.where(all_in_front, low, 0.0)
    high = tf.where(all_in_front, high, 0.0)
    first = tf.cast(tf.math.ceil(tf.clip_by_value(low, -1.0, limit)),
                    tf.int64)
    last = tf.cast(tf.math.floor(tf.clip_by_value(high, -1.0, limit)),
                   tf.int64)
    first = tf.where(all_in_front, tf.maximum(first, 0), 0)
    last = tf.where(all_in_front, tf.minimum(last, size - 1), size - 1)
    return first, last

  first_column, last_column = box_bounds(u, width)
  first_row, last_row = box_bounds(v, height)
  box_width = tf.maximum(last_column - first_column + 1, 0)
  box_height = tf.maximum(last_row - first_row + 1, 0)
  counts = tf.where(drawable, box_width * box_height, 0)
  nonempty = counts > 0
  starts = tf.cumsum(counts, exclusive=True)
  total = tf.reduce_sum(counts)
  # order[r]: flat index of the r-th triangle with candidates.
  rank = tf.cumsum(tf.cast(nonempty, tf.int64)) - 1
  order = tf.math.unsorted_segment_max(
      tf.range(flat_count), tf.where(nonempty, rank, flat_count),
      flat_count + 1)
  box_table = [first_column, first_row, tf.maximum(box_width, 1)]
  coefficient_table = coefficients + plane  # A0 B0 C0 A1 .. C2 Dx Dy Dc

  chunk = candidates_per_chunk

  def body(chunk_start, started_before, nearest_depth, nearest_id):
    # Which triangle owns each candidate of the chunk: mark where triangles
    # start, count the marks (starts increase with the rank).
    offset = starts - chunk_start
    starts_here = tf.logical_and(
        nonempty, tf.logical_and(offset >= 0, offset < chunk))
    marks = tf.math.unsorted_segment_sum(
        tf.cast(starts_here, tf.int64), tf.where(starts_here, offset, chunk),
        chunk + 1)[:-1]
    owner_rank = started_before + tf.cumsum(marks) - 1
    flat = tf.gather(order, tf.clip_by_value(owner_rank, 0, flat_count - 1))
    index = chunk_start + tf.range(chunk, dtype=tf.int64)
    valid = index < total
    local = index - tf.gather(starts, flat)
    box_column, box_row, box_width = (tf.gather(t, flat) for t in box_table)
    column = box_column + local % box_width
    row = box_row + local // box_width
    coefficient = [tf.gather(t, flat) for t in coefficient_table]
    # Exact whatever the evaluation order: small multiples of 1/2.
    px = (tf.cast(column, tf.float32) + 0.5) - half_width
    py = half_height - (tf.cast(row, tf.float32) + 0.5)
    inside = valid
    for k in range(3):
      a, b, c = coefficient[3 * k:3 * k + 3]
      inside = tf.logical_and(inside,
                              _sum_of_products(a, px, b, py, c) >= 0.0)
    depth = _sum_of_products(coefficient[9], px, coefficient[10], py,
                             coefficient[11])
    inside = tf.logical_and(inside, tf.logical_and(depth >= -1.0,
                                                   depth <= 1.0))
    pixel = ((flat // triangle_count) * height + row) * width + column
    segment = tf.where(inside, pixel, pixel_count)  # pixel_count: discarded
    chunk_depth = tf.math.unsorted_segment_min(depth, segment,
                                               pixel_count + 1)
    ties = tf.logical_and(inside,
                          tf.equal(depth, tf.gather(chunk_depth, segment)))
    triangle_id = tf.cast(flat % triangle_count, tf.int32)
    chunk_id = tf.math.unsorted_segment_min(
        tf.where(ties, triangle_id, _INT32_MAX),
        tf.where(ties, segment, pixel_count), pixel_count + 1)
    chunk_depth = chunk_depth[:-1]
    chunk_id = chunk_id[:-1]
    take = tf.logical_or(
        chunk_depth < nearest_depth,
        tf.logical_and(tf.equal(chunk_depth, nearest_depth),
                       chunk_id < nearest_id))
    return (chunk_start + chunk, started_before + tf.reduce_sum(marks),
            tf.where(take, chunk_depth, nearest_depth),
            tf.where(take, chunk_id, nearest_id))

  # Empty pixels hold the identities of unsorted_segment_min.
  _, _, nearest_depth, nearest_id = tf.while_loop(
      lambda chunk_start, *_: chunk_start < total, body,
      (tf.constant(0, tf.int64), tf.constant(0, tf.int64),
       tf.fill([pixel_count], _FLOAT32_MAX),
       tf.fill([pixel_count], tf.constant(_INT32_MAX, tf.int32))))
  visible = nearest_id < _INT32_MAX
  triangle_ids = tf.where(visible, nearest_id, -1)
  depth = tf.where(visible, nearest_depth, EMPTY_DEPTH)
  shape = [static_batch, height, width]
  image_shape = tf.stack([batch, height, width])
  triangle_ids = tf.ensure_shape(tf.reshape(triangle_ids, image_shape), shape)
  depth = tf.ensure_shape(tf.reshape(depth, image_shape), shape)
  return triangle_ids, depth
