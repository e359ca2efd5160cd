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

// Coefficients of one edge function E = (A * px + B * py) + C, built from the
// pixel-unit homogeneous coordinates (qx, qy, w, z) of its two vertices.
struct Edge {
  float a;
  float b;
  float c;
};

inline Edge MakeEdge(const float* va, const float* vb) {
  return Edge{va[1] * vb[2] - va[2] * vb[1],   // qy_a * w_b - w_a * qy_b
              va[2] * vb[0] - va[0] * vb[2],   // w_a * qx_b - qx_a * w_b
              va[0] * vb[1] - va[1] * vb[0]};  // qx_a * qy_b - qy_a * qx_b
}

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
    const float* b0 = box + kPreparedStride * tri[0];
    const float* b1 = box + kPreparedStride * tri[1];
    const float* b2 = box + kPreparedStride * tri[2];
    // Inclusive pixel bounds; convention step 4 when all w > 0.
    const Float4 bounds = Min(Min(Load(b0), Load(b1)), Load(b2));
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
    } else if (CrossesCameraPlane(b0[0], b1[0], b2[0])) {
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
    Edge e0 = MakeEdge(h1, h2);
    Edge e1 = MakeEdge(h2, h0);
    Edge e2 = MakeEdge(h0, h1);
    const float det = (e0.a * h0[0] + e0.b * h0[1]) + e0.c * h0[2];
    if (!std::isfinite(det) || det == 0.0f) continue;
    if (cull_backfaces && det < 0.0f) continue;
    float plane_det = det;
    if (det < 0.0f) {
      // Negation is exact, so testing -E >= 0 equals testing E <= 0, and the
      // depth plane below, computed from negated edges and det, is unchanged.
      e0 = Edge{-e0.a, -e0.b, -e0.c};
      e1 = Edge{-e1.a, -e1.b, -e1.c};
      e2 = Edge{-e2.a, -e2.b, -e2.c};
      plane_det = -det;
    }
    // The depth plane (step 3) costs three divisions; many small triangles
    // cover no pixel centre, so it is computed at the first covered pixel.
    bool have_plane = false;
    float dx = 0.0f, dy = 0.0f, dc = 0.0f;
    const int32_t id = static_cast<int32_t>(t);

    // 2 x 2 pixel tiles, one pixel per vector lane: lane = 2 * row + column.
    for (int i = first_row; i <= last_row; i += 2) {
      const Float4 py = half_height - (static_cast<float>(i) +
                                       Float4{0.5f, 0.5f, 1.5f, 1.5f});
      const Int4 row_in_box = (i + Int4{0, 0, 1, 1}) <= last_row;
      for (int j = column_begin; j <= column_end; j += 2) {
        const Float4 px = (static_cast<float>(j) +
                           Float4{0.5f, 1.5f, 0.5f, 1.5f}) - half_width;
        const Int4 covered =
            row_in_box & ((j + Int4{0, 1, 0, 1}) <= column_end) &
            ((e0.a * px + e0.b * py) + e0.c >= 0.0f) &
            ((e1.a * px + e1.b * py) + e1.c >= 0.0f) &
            ((e2.a * px + e2.b * py) + e2.c >= 0.0f);
        unsigned lanes = LaneMask(covered);
        if (lanes == 0) continue;
        if (!have_plane) {
          dx = ((h0[3] * e0.a + h1[3] * e1.a) + h2[3] * e2.a) / plane_det;
          dy = ((h0[3] * e0.b + h1[3] * e1.b) + h2[3] * e2.b) / plane_det;
          dc = ((h0[3] * e0.c + h1[3] * e1.c) + h2[3] * e2.c) / plane_det;
          have_plane = true;
        }
        const Float4 z = (dx * px + dy * py) + dc;
        lanes &= LaneMask((z >= -1.0f) & (z <= 1.0f));
        for (; lanes != 0; lanes &= lanes - 1) {
          const int lane = __builtin_ctz(lanes);
          const int64_t pixel = (i + (lane >> 1)) * width + j + (lane & 1);
          // Nearer than the stored depth, or the pixel is still empty (its
          // stored depth is the far plane, which a triangle at z == 1 ties).
          if (z[lane] < depth[pixel] || triangle_ids[pixel] < 0) {
            triangle_ids[pixel] = id;
            depth[pixel] = z[lane];
          }
        }
      }
    }
  }
}

}  // namespace unsup3dmm
