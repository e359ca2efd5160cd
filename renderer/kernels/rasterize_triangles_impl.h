// Visibility (z-buffer rasterisation) of clip-space triangle meshes.
//
// TensorFlow-free core of the Unsup3dmmRasterizeTriangles op: plain arrays in,
// per-pixel triangle ids and depths out.  The op shim
// (rasterize_triangles_op.cc) adds shape checks and threads; the pure
// TensorFlow backend (renderer/visibility.py) and the NumPy reference
// (renderer/reference.py) implement the very same float32 arithmetic, so all
// three give identical triangle ids.
//
// Conventions (the definition the three implementations share)
// ------------------------------------------------------------
// Vertices are homogeneous clip-space positions (x, y, z, w), i.e. already
// multiplied by the projection matrix.  An image has H rows and W columns;
// pixel (row i, column j) has row 0 at the TOP and its centre at
//   NDC x = 2 (j + 1/2) / W - 1,   NDC y = 1 - 2 (i + 1/2) / H.
// All arithmetic is float32 and is evaluated in exactly the order written
// here (no fused multiply-add; the build passes -ffp-contract=off).
//
// 1. Pixel-unit homogeneous coordinates of each vertex:
//      qx = x * (W/2),  qy = y * (H/2),  w,  z.
//    Pixel centre (i, j):  px = (j + 1/2) - W/2,  py = H/2 - (i + 1/2)
//    (= NDC x * W/2 and NDC y * H/2; both exact in float32).
// 2. 2D homogeneous rasterisation (Olano & Greer, "Triangle scan conversion
//    using 2D homogeneous coordinates", 1997): edge k of a triangle is
//    opposite vertex k and is built from the next two vertices a = k+1,
//    b = k+2 (mod 3):
//      A_k = qy_a * w_b - w_a * qy_b
//      B_k = w_a * qx_b - qx_a * w_b
//      C_k = qx_a * qy_b - qy_a * qx_b
//    det = (A_0 * qx_0 + B_0 * qy_0) + C_0 * w_0.
//    Triangles with det == 0 (degenerate or seen edge-on) or a non-finite det
//    are never drawn; det > 0 means counter-clockwise in NDC (front facing).
//    E_k(px, py) = (A_k * px + B_k * py) + C_k.  A pixel is inside when every
//    E_k has the sign of det or is zero (E_k / det >= 0).  No division by w
//    happens, so triangles crossing w = 0 are handled exactly: the parts
//    behind the camera fail the test.  Edges shared by two triangles are
//    evaluated with exactly negated coefficients, so meshes are watertight
//    (a pixel centre exactly on a shared edge belongs to both; the depth test
//    and the tie-break below pick one).
// 3. NDC depth z/w is affine in (px, py):
//      Dx = ((z_0 * A_0 + z_1 * A_1) + z_2 * A_2) / det   (Dy with B, Dc
//      with C),  depth = (Dx * px + Dy * py) + Dc,
//    and a pixel is only drawn when -1 <= depth <= 1 (near and far planes).
// 4. For triangles whose three vertices have w > 0, the pixel must also lie
//    in the bounding box of the projected vertices, measured in pixel-index
//    units:  u = qx / w + (W/2 - 1/2),  v = (H/2 - 1/2) - qy / w  (column and
//    row), min u <= j <= max u and min v <= i <= max v.  This only removes
//    pixels that float32 rounding of the edge functions would add, and lets
//    the rasteriser scan just that box.  Triangles with some w <= 0 (crossing
//    the camera plane) have no box; triangles with every w <= 0 are behind
//    the camera and never drawn.  Triangles with a non-finite vertex
//    coordinate are never drawn.
// 5. Depth test: the smallest depth wins; equal depths go to the lower
//    triangle id.  Empty pixels get id -1 and depth 1 (the far plane).
// 6. Backface culling (optional, off by default) drops triangles with
//    det < 0 (clockwise in NDC).

#ifndef UNSUP3DMM_RENDERER_KERNELS_RASTERIZE_TRIANGLES_IMPL_H_
#define UNSUP3DMM_RENDERER_KERNELS_RASTERIZE_TRIANGLES_IMPL_H_

#include <cstdint>

namespace unsup3dmm {

// Largest image height or width, pixels.  Keeps every pixel-centre
// coordinate and bounding-box bound exactly representable in float32 and
// int32 arithmetic with a wide margin.
constexpr int kMaxImageDimension = 1 << 15;

// Values per vertex in each buffer written by PrepareVertices.
constexpr int kPreparedStride = 4;

// Depth stored for pixels that no triangle covers (the far plane, NDC).
constexpr float kEmptyDepth = 1.0f;

// Per-vertex set-up, done once per image.
//
// clip_vertices: [vertex_count, 4] float32 clip-space (x, y, z, w).
// box: output [vertex_count, kPreparedStride] float32.  For a finite vertex
//   with w > 0: ceil(u), -floor(u), ceil(v), -floor(v) of convention step 4,
//   with u clamped to [-1, image_width] and v to [-1, image_height] (ceil and
//   floor are monotonic, so a triangle's box bounds are the lane-wise minima
//   of its vertices' entries, negated back for the upper bounds).
//   Otherwise all four entries are a marker below -1 (w <= 0, or some
//   coordinate non-finite).
// homogeneous: output [vertex_count, kPreparedStride] float32: (qx, qy, w, z)
//   of convention step 1.
void PrepareVertices(const float* clip_vertices, int64_t vertex_count,
                     int image_height, int image_width, float* box,
                     float* homogeneous);

// Rasterises all triangles into rows [row_begin, row_end) of one image.
//
// box, homogeneous: the buffers filled by PrepareVertices for this image.
// triangles: [triangle_count, 3] int32 vertex indices, each in
//   [0, vertex_count) (the caller checks).
// triangle_ids: [image_height, image_width] int32 output; rows in
//   [row_begin, row_end) are overwritten with the nearest triangle's id or -1.
// depth: [image_height, image_width] float32 output, NDC z/w of the nearest
//   triangle or kEmptyDepth, same rows.
// The z-buffer lives in a per-thread scratch buffer (kept between calls), so
// calls on different threads may fill disjoint rows of the same image.  The
// result does not depend on how rows are split: each pixel keeps the nearest
// triangle and, among equal depths, the first in id order.
void RasterizeTriangleRows(const float* box, const float* homogeneous,
                           const int32_t* triangles, int64_t triangle_count,
                           int image_height, int image_width,
                           bool cull_backfaces, int row_begin, int row_end,
                           int32_t* triangle_ids, float* depth);

}  // namespace unsup3dmm

#endif  // UNSUP3DMM_RENDERER_KERNELS_RASTERIZE_TRIANGLES_IMPL_H_
