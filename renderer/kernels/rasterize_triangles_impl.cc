// See rasterize_triangles_impl.h for the conventions implemented here.  The
// float32 expressions must stay in the order written in the header: the pure
// TensorFlow backend and the NumPy reference evaluate the same ones and the
// tests require identical triangle ids.

#include "rasterize_triangles_impl.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace unsup3dmm {
namespace {

// Four float32 / int32 lanes (GCC and Clang vector extensions); lane-wise
// arithmetic is plain IEEE float32, exactly as in scalar code.
typedef float Float4 __attribute__((vector_size(16)));
typedef int32_t Int4 __attribute__((vector_size(16)));

inline Float4 Load(const float* p) {
  Float4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline Float4 Min(Float4 a, Float4 b) { return a < b ? a : b; }

inline Float4 Max(Float4 a, Float4 b) { return a > b ? a : b; }

// Bit k set when lane k of a comparison result is true (all ones).
inline unsigned LaneMask(Int4 m) {
#if defined(__SSE2__)
  return static_cast<unsigned>(_mm_movemask_ps(reinterpret_cast<__m128>(m)));
#else
  return (m[0] & 1u) | (m[1] & 2u) | (m[2] & 4u) | (m[3] & 8u);
#endif
}

// Markers in the box buffer for vertices without a screen position; both are
// below -1, the smallest ceil(u) of a vertex in front of the camera.
constexpr float kBehind = -1048576.0f;       // finite, w <= 0
constexpr float kNonFinite = -268435456.0f;  // some coordinate NaN or inf

// ceil and floor for finite x within int range, without a libm call.
inline float Ceil(float x) {
  const float t = static_cast<float>(static_cast<int32_t>(x));
  return t < x ? t + 1.0f : t;
}

inline float Floor(float x) {
  const float t = static_cast<float>(static_cast<int32_t>(x));
  return t > x ? t - 1.0f : t;
}

// x (not NaN, may be infinite) clamped to [lo, hi].
inline float Clamp(float x, float lo, float hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

// Rotates lanes (0, 1, 2) by one or two places: lane k gets lane k + shift
// (mod 3); lane 3 stays.
inline Float4 Next1(Float4 v) { return __builtin_shufflevector(v, v, 1, 2, 0, 3); }
inline Float4 Next2(Float4 v) { return __builtin_shufflevector(v, v, 2, 0, 1, 3); }

// Whether a triangle with some vertex off screen is drawn at all: it needs
// finite vertices, at least one of them in front of the camera.
inline bool CrossesCameraPlane(float m0, float m1, float m2) {
  if (m0 == kNonFinite || m1 == kNonFinite || m2 == kNonFinite) return false;
  return m0 != kBehind || m1 != kBehind || m2 != kBehind;
}

}  // namespace

void PrepareVertices(const float* clip_vertices, int64_t vertex_count,
                     int image_height, int image_width, float* box,
                     float* homogeneous) {
  const float half_width = 0.5f * static_cast<float>(image_width);
  const float half_height = 0.5f * static_cast<float>(image_height);
  const float column_offset = half_width - 0.5f;
  const float row_offset = half_height - 0.5f;
  // Bounds are clamped to one pixel beyond the image before converting to
  // int, which keeps the conversion defined for huge or infinite values.
  const float column_limit = static_cast<float>(image_width);
  const float row_limit = static_cast<float>(image_height);
  for (int64_t v = 0; v < vertex_count; ++v) {
    const float* clip = clip_vertices + 4 * v;
    const float x = clip[0], y = clip[1], z = clip[2], w = clip[3];
    const float qx = x * half_width;
    const float qy = y * half_height;
    float* h = homogeneous + kPreparedStride * v;
    h[0] = qx;
    h[1] = qy;
    h[2] = w;
    h[3] = z;
    float* b = box + kPreparedStride * v;
    if (!(std::isfinite(x) && std::isfinite(y) && std::isfinite(z) &&
          std::isfinite(w))) {
      b[0] = b[1] = b[2] = b[3] = kNonFinite;
    } else if (w > 0.0f) {
      const float u = Clamp(qx / w + column_offset, -1.0f, column_limit);
      const float row = Clamp(row_offset - qy / w, -1.0f, row_limit);
      b[0] = Ceil(u);
      b[1] = -Floor(u);
      b[2] = Ceil(row);
      b[3] = -Floor(row);
    } else {
      b[0] = b[1] = b[2] = b[3] = kBehind;
    }
  }
}

void RasterizeTriangleRows(const float* box, const float* homogeneous,
                           const int32_t* triangles, int64_t triangle_count,
                           int image_height, int image_width,
                           bool cull_backfaces, int row_begin, int row_end,
                           int32_t* triangle_ids, float* depth) {
  const int64_t width = image_width;
  std::fill(triangle_ids + row_begin * width, triangle_ids + row_end * width,
            -1);
  std::fill(depth + row_begin * width, depth + row_end * width, kEmptyDepth);
  if (row_begin >= row_end) return;
  const float half_width = 0.5f * static_cast<float>(image_width);
  const float half_height = 0.5f * static_cast<float>(image_height);
  // Lower limits of (first column, -last column, first row, -last row).
  const Float4 image_box = {0.0f, -static_cast<float>(image_width - 1),
                            static_cast<float>(row_begin),
                            -static_cast<float>(row_end - 1)};

  for (int64_t t = 0; t < triangle_count; ++t) {
    const int32_t* tri = triangles + 3 * t;
    const float* box0 = box + kPreparedStride * tri[0];
    const float* box1 = box + kPreparedStride * tri[1];
    const float* box2 = box + kPreparedStride * tri[2];
    // Inclusive pixel bounds; convention step 4 when all w > 0.
    const Float4 bounds = Min(Min(Load(box0), Load(box1)), Load(box2));
    int column_begin, column_end, first_row, last_row;
    if (bounds[0] >= -1.0f) {
      const Float4 clipped = Max(bounds, image_box);
      // Empty when first > last, i.e. first + (-last) > 0 (exact: integers).
      const Float4 spans =
          clipped + __builtin_shufflevector(clipped, clipped, 1, 0, 3, 2);
      if (LaneMask(spans > 0.0f)) continue;
      const Int4 integers = __builtin_convertvector(clipped, Int4);
      column_begin = integers[0];
      column_end = -integers[1];
      first_row = integers[2];
      last_row = -integers[3];
    } else if (CrossesCameraPlane(box0[0], box1[0], box2[0])) {
      // No finite box: scan every pixel.
      column_begin = 0;
      column_end = image_width - 1;
      first_row = row_begin;
      last_row = row_end - 1;
    } else {
      continue;  // behind the camera, or a non-finite vertex
    }

    const float* h0 = homogeneous + kPreparedStride * tri[0];
    const float* h1 = homogeneous + kPreparedStride * tri[1];
    const float* h2 = homogeneous + kPreparedStride * tri[2];
    // One lane per corner k: (qx_k, qy_k, w_k, z_k) of step 1, lane 3 zero.
    const Float4 qx = {h0[0], h1[0], h2[0], 0.0f};
    const Float4 qy = {h0[1], h1[1], h2[1], 0.0f};
    const Float4 w = {h0[2], h1[2], h2[2], 0.0f};
    const Float4 z = {h0[3], h1[3], h2[3], 0.0f};
    // One lane per edge k, from corners a = k + 1 and b = k + 2 (step 2).
    const Float4 qx_a = Next1(qx), qy_a = Next1(qy), w_a = Next1(w);
    const Float4 qx_b = Next2(qx), qy_b = Next2(qy), w_b = Next2(w);
    Float4 edge_a = qy_a * w_b - w_a * qy_b;
    Float4 edge_b = w_a * qx_b - qx_a * w_b;
    Float4 edge_c = qx_a * qy_b - qy_a * qx_b;
    const float det =
        (edge_a[0] * h0[0] + edge_b[0] * h0[1]) + edge_c[0] * h0[2];
    if (!std::isfinite(det) || det == 0.0f) continue;
    if (cull_backfaces && det < 0.0f) continue;
    // Depth plane of step 3: lane-wise over (A, B, C) the sum over corners
    // of z_k times edge k's coefficient.
    const Float4 za = z * edge_a, zb = z * edge_b, zc = z * edge_c;
    const Float4 plane =
        ((Float4{za[0], zb[0], zc[0], 0.0f} + Float4{za[1], zb[1], zc[1], 0.0f}) +
         Float4{za[2], zb[2], zc[2], 0.0f}) / det;
    if (det < 0.0f) {
      // Negation is exact, so testing -E >= 0 equals testing E <= 0.
      edge_a = -edge_a;
      edge_b = -edge_b;
      edge_c = -edge_c;
    }
    const float plane_x = plane[0], plane_y = plane[1], plane_c = plane[2];
    const int32_t id = static_cast<int32_t>(t);

    for (int i = first_row; i <= last_row; ++i) {
      const float py = half_height - (static_cast<float>(i) + 0.5f);
      const Float4 edge_row = edge_b * py;
      const float depth_row_term = plane_y * py;
      int32_t* id_row = triangle_ids + i * width;
      float* depth_row = depth + i * width;
      // px of column j is (j + 1/2) - W/2; adding 1 to it is exact.
      float px = (static_cast<float>(column_begin) + 0.5f) - half_width;
      for (int j = column_begin; j <= column_end; ++j, px += 1.0f) {
        const Float4 edges = (edge_a * px + edge_row) + edge_c;
        const float pixel_depth = (plane_x * px + depth_row_term) + plane_c;
        // Inside all three edges, within the clip range, and nearer than the
        // stored depth or the pixel is still empty (its stored depth is the
        // far plane, which a triangle at depth 1 ties).  Branch-free: the
        // outcome is data dependent and would mispredict often.
        const bool draw =
            ((LaneMask(edges >= 0.0f) & 7u) == 7u) &
            (pixel_depth >= -1.0f) & (pixel_depth <= 1.0f) &
            ((pixel_depth < depth_row[j]) | (id_row[j] < 0));
        const int32_t keep = static_cast<int32_t>(draw) - 1;  // 0 or ~0
        int32_t old_depth_bits, new_depth_bits;
        std::memcpy(&old_depth_bits, &depth_row[j], sizeof(float));
        std::memcpy(&new_depth_bits, &pixel_depth, sizeof(float));
        const int32_t depth_bits =
            (old_depth_bits & keep) | (new_depth_bits & ~keep);
        id_row[j] = (id_row[j] & keep) | (id & ~keep);
        std::memcpy(&depth_row[j], &depth_bits, sizeof(float));
      }
    }
  }
}

}  // namespace unsup3dmm
