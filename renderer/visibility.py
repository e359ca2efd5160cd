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
* ``"tf"``: plain TensorFlow ops, no XLA (a segment-min z-buffer over each
  triangle's candidate pixels, keyed by depth then triangle id; the first
  candidate of every triangle is tested densely, the rest in fixed-size
  chunks, so large triangles work), runs on any device and under
  ``tf.function``.  On the 2-core CPU of the benchmark (BFM-sized mesh,
  224 x 224, batch 32) it rasterises about 4 times slower than the op (0.2 s
  against 0.05 s a batch).
* ``"auto"``: ``"tf"`` when a GPU or TPU is visible, else ``"op"``; when the op
  library cannot be loaded it falls back to ``"tf"`` with a one-time warning.

The backends give identical triangle ids and depths on CPU, eagerly and under
``tf.function``.  (Under XLA, which contracts products and sums into fused
multiply-adds on CPU, or on GPUs that do so, a pixel centre within float32
rounding of an edge can differ; that is why this backend is not compiled
with XLA.)
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
# and speed depend on it, never the result.
DEFAULT_TF_CANDIDATES_PER_CHUNK = 1 << 20

# Depth reported where no triangle is visible: the far plane, NDC.
EMPTY_DEPTH = 1.0


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


# Largest int64 key (see _depth_id_keys): "no triangle" in the z-buffer.
_EMPTY_KEY = np.iinfo(np.int64).max
_KEY_SHIFT = 1 << 32


def _depth_id_keys(depth, triangle_id):
  """int64 keys ordered by (depth, triangle id), for one segment-min z-buffer.

  The float32 depth's bits, made order-preserving as an int32 (negative
  floats: all bits but the sign flipped; -0 is first made +0 so that it ties
  with +0), go to the high 32 bits and the triangle id (>= 0) to the low 32.
  The smallest key is the nearest depth, then the lowest id: the op's rule.
  (Subnormal depths compare equal to 0 on CPU, where TensorFlow flushes
  them, in the op too; here they also become 0.)
  """
  depth = tf.where(tf.equal(depth, 0.0), 0.0, depth)
  bits = tf.bitcast(depth, tf.int32)
  ordered = tf.where(bits < 0, tf.bitwise.bitwise_xor(bits, 0x7fffffff),
                     bits)
  return (tf.cast(ordered, tf.int64) * _KEY_SHIFT +
          tf.cast(triangle_id, tf.int64))


def _decode_keys(keys):
  """(triangle ids, depth) of z-buffer keys; -1 and EMPTY_DEPTH if empty."""
  visible = keys < _EMPTY_KEY
  ids = tf.cast(tf.bitwise.bitwise_and(keys, _KEY_SHIFT - 1), tf.int32)
  ordered = tf.cast(tf.bitwise.right_shift(keys, 32), tf.int32)
  bits = tf.where(ordered < 0, tf.bitwise.bitwise_xor(ordered, 0x7fffffff),
                  ordered)
  depth = tf.bitcast(bits, tf.float32)
  return (tf.where(visible, ids, -1),
          tf.where(visible, depth, EMPTY_DEPTH))


def _rasterize_tf(clip_vertices, triangles, height, width, cull_backfaces,
                  candidates_per_chunk):
  """Pure TensorFlow z-buffer; same arithmetic as the op (see the header).

  Layout: every per-triangle quantity is a [triangle_count, batch] tensor
  (one gather of the vertices' (qx, qy, w, z), vertex-major so that each
  gathered slice is a row of `batch` floats).  Every triangle gets a box of
  candidate pixels (its exact pixel-index bounding box when all w > 0, the
  whole image when it crosses the camera plane, nothing when it cannot be
  drawn).  The first candidate of every box is tested densely, for all
  triangles at once: at face-mesh resolutions that is nearly all the work
  (most triangles cover at most one pixel centre).  The other candidates, of
  the few triangles with more than one, are numbered consecutively and
  walked by a tf.while_loop in chunks of `candidates_per_chunk`.  Each
  candidate inside its triangle and the depth range yields a key (depth,
  then triangle id, in one int64) and the z-buffer keeps the smallest key
  per pixel with unsorted_segment_min.

  Returns int32 ids and float32 depth, [batch, height, width].
  """
  half_width = np.float32(width / 2)
  half_height = np.float32(height / 2)
  column_offset = half_width - np.float32(0.5)
  row_offset = half_height - np.float32(0.5)
  static_batch = clip_vertices.shape[0]
  batch = tf.shape(clip_vertices, out_type=tf.int64)[0]
  triangle_count = tf.shape(triangles, out_type=tf.int64)[0]
  pixel_count = batch * height * width

  # Per-vertex set-up (header step 1), vertex-major [vertex_count, batch];
  # then one gather gives each corner's values, [triangle_count, batch].
  x, y, z, w = tf.unstack(tf.transpose(clip_vertices, [2, 1, 0]), num=4)
  per_vertex = tf.stack([x * half_width, y * half_height, w, z])
  gathered = tf.gather(per_vertex, tf.transpose(triangles), axis=1)
  qx, qy, w, z = (tf.unstack(q, num=3) for q in tf.unstack(gathered, num=4))

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
  # A non-finite x, y or w of a corner makes det non-finite (every term of
  # det multiplies it); a non-finite z makes the depth plane, hence every
  # candidate's depth, non-finite, so no candidate passes the depth test.
  # The op's "all coordinates finite" test is thus implied.
  in_front = [w[k] > 0 for k in range(3)]
  all_in_front = tf.logical_and(tf.logical_and(in_front[0], in_front[1]),
                                in_front[2])
  drawable = tf.logical_and(tf.math.is_finite(det), tf.not_equal(det, 0.0))
  drawable = tf.logical_and(drawable, tf.logical_or(
      tf.logical_or(in_front[0], in_front[1]), in_front[2]))
  if cull_backfaces:
    drawable = tf.logical_and(drawable, det > 0)
  # Negation is exact, so testing sign * E >= 0 with E from the unsigned
  # coefficients is testing E' >= 0 with E' from the sign-flipped ones.
  sign = tf.where(det < 0, -1.0, 1.0)

  # Candidate boxes, inclusive pixel bounds.  The all-w>0 box is the bounding
  # box rule of header step 4 (so it is exact, not just conservative); the
  # values are clamped to the image, or one pixel beyond it, before the int
  # cast: ceil(clip(low, 0, size)) is max(ceil(clip(low, -1, size)), 0) and
  # floor(clip(high, -1, size - 1)) is min(floor(clip(high, -1, size)),
  # size - 1), in fewer passes.
  def box_bounds(values, size):
    """First pixel index and pixel count of a box side, as float32 (exact
    small integers: one int cast per accepted candidate, not per box)."""
    low = tf.minimum(tf.minimum(values[0], values[1]), values[2])
    high = tf.maximum(tf.maximum(values[0], values[1]), values[2])
    first = tf.math.ceil(tf.clip_by_value(low, 0.0, float(size)))
    last = tf.math.floor(tf.clip_by_value(high, -1.0, float(size - 1)))
    first = tf.where(all_in_front, first, 0.0)
    last = tf.where(all_in_front, last, float(size - 1))
    return first, tf.maximum(last - first + 1.0, 0.0)

  first_column, box_width = box_bounds(
      [qx[k] / w[k] + column_offset for k in range(3)], width)
  first_row, box_height = box_bounds(
      [row_offset - qy[k] / w[k] for k in range(3)], height)
  # Only compared with 0 and 1 (the product of whole numbers, rounded, is
  # above 1 exactly when the product is); exact counts are int64, below.
  counts = tf.where(drawable, box_width * box_height, 0.0)

  def candidate_keys(row, column, coefficient, plane, sign, valid, locate):
    """(z-buffer key, pixel) of the candidates that pass.

    `locate` maps flat indices into the candidate arrays to the int64
    (triangle id, image index) of those candidates.
    """
    # Exact whatever the evaluation order: small multiples of 1/2.
    px = (column + 0.5) - half_width
    py = half_height - (row + 0.5)
    inside = valid
    for a, b, c in coefficient:
      inside = tf.logical_and(
          inside, _sum_of_products(a, px, b, py, c) * sign >= 0.0)
    depth = _sum_of_products(plane[0], px, plane[1], py, plane[2])
    inside = tf.logical_and(inside, tf.logical_and(depth >= -1.0,
                                                   depth <= 1.0))
    # Only the accepted candidates (about a third at face-mesh sizes) go on
    # to the keys and to the (serial) segment-min.
    accepted = tf.where(tf.reshape(inside, [-1]))[:, 0]
    def take(value):
      return tf.gather(tf.reshape(value, [-1]), accepted)
    triangle_id, image = locate(accepted)
    pixel = (image * height + tf.cast(take(row), tf.int64)) * width + (
        tf.cast(take(column), tf.int64))
    return _depth_id_keys(take(depth), triangle_id), pixel

  # The first candidate of every triangle, densely; flat index
  # triangle * batch + image.
  keys, pixels = candidate_keys(
      first_row, first_column, edges, plane, sign, counts > 0,
      lambda flat: (flat // batch, flat % batch))
  zbuffer = tf.math.unsorted_segment_min(keys, pixels, pixel_count)

  # The other candidates of the triangles with more than one.
  many = tf.reshape(tf.where(tf.reshape(counts, [-1]) > 1), [-1])
  def select(value):
    return tf.gather(tf.reshape(value, [-1]), many)
  box_table = [select(first_column), select(first_row),
               tf.cast(select(box_width), tf.int32)]
  rest = tf.cast(box_table[2], tf.int64) * tf.cast(
      select(box_height), tf.int64) - 1
  ends = tf.cumsum(rest)
  total = tf.reduce_sum(rest)
  starts = ends - rest
  chunk = tf.minimum(tf.cast(candidates_per_chunk, tf.int64), total)
  edge_table = [[select(c) for c in edge] for edge in edges]
  plane_table = [select(c) for c in plane]
  sign_table = select(sign)

  def body(chunk_start, zbuffer):
    index = chunk_start + tf.range(chunk, dtype=tf.int64)
    valid = index < total
    owner = tf.minimum(
        tf.searchsorted(ends, index, side="right", out_type=tf.int64),
        tf.size(ends, out_type=tf.int64) - 1)
    def own(t):
      return tf.gather(t, owner)
    box_column, box_row, width_of_box = (own(t) for t in box_table)
    local = tf.cast(1 + index - own(starts), tf.int32)
    def locate(flat):
      owner_flat = tf.gather(many, tf.gather(owner, flat))
      return owner_flat // batch, owner_flat % batch
    keys, pixels = candidate_keys(
        box_row + tf.cast(local // width_of_box, tf.float32),
        box_column + tf.cast(local % width_of_box, tf.float32),
        [[own(c) for c in edge] for edge in edge_table],
        [own(c) for c in plane_table], own(sign_table), valid, locate)
    return chunk_start + chunk, tf.minimum(
        zbuffer, tf.math.unsorted_segment_min(keys, pixels, pixel_count))

  _, zbuffer = tf.while_loop(lambda chunk_start, _: chunk_start < total,
                             body, (tf.constant(0, tf.int64), zbuffer))
  triangle_ids, depth = _decode_keys(zbuffer)
  shape = [static_batch, height, width]
  image_shape = tf.stack([batch, height, width])
  triangle_ids = tf.ensure_shape(tf.reshape(triangle_ids, image_shape), shape)
  depth = tf.ensure_shape(tf.reshape(depth, image_shape), shape)
  return triangle_ids, depth
