// See rasterize_triangles_impl.h for the conventions implemented here.  The
// float32 expressions must stay in the order written in the header: the pure
// TensorFlow backend and the NumPy reference evaluate the same ones and the
// tests require identical triangle ids.

#include "rasterize_triangles_impl.h"

#include <algorithm>
#include <cmath>

namespace unsup3dmm {
namespace {

// Markers in box[0] for vertices without a screen position; both are below
// -1, the smallest ceil(u) of a vertex in front of the camera.
constexpr int32_t kBehind = -(1 << 20);      // finite, w <= 0
constexpr int32_t kNonFinite = -(1 << 28);   // some coordinate NaN or inf

// ceil and floor for finite x within int range, without a libm call.
inline int32_t CeilToInt(float x) {
  const int32_t t = static_cast<int32_t>(x);
  return static_cast<float>(t) < x ? t + 1 : t;
}

inline int32_t FloorToInt(float x) {
  const int32_t t = static_cast<int32_t>(x);
  return static_cast<float>(t) > x ? t - 1 : t;
}

// x (not NaN, may be infinite) clamped to [lo, hi].
inline float Clamp(float x, float lo, float hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

inline int32_t Min3(int32_t a, int32_t b, int32_t c) {
  return std::min(std::min(a, b), c);
}

inline int32_t Max3(int32_t a, int32_t b, int32_t c) {
  return std::max(std::max(a, b), c);
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

// Whether a triangle with some vertex off screen (box[0] < -1) is drawn at
// all: it needs finite vertices, at least one of them in front.
inline bool CrossesCameraPlane(int32_t c0, int32_t c1, int32_t c2) {
  if (c0 == kNonFinite || c1 == kNonFinite || c2 == kNonFinite) return false;
  return c0 != kBehind || c1 != kBehind || c2 != kBehind;
}

}  // namespace

void PrepareVertices(const float* clip_vertices, int64_t vertex_count,
                     int image_height, int image_width, int32_t* box,
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
    int32_t* b = box + kPreparedStride * v;
    if (!(std::isfinite(x) && std::isfinite(y) && std::isfinite(z) &&
          std::isfinite(w))) {
      b[0] = b[1] = b[2] = b[3] = kNonFinite;
    } else if (w > 0.0f) {
      const float u = Clamp(qx / w + column_offset, -1.0f, column_limit);
      const float row = Clamp(row_offset - qy / w, -1.0f, row_limit);
      b[0] = CeilToInt(u);
      b[1] = FloorToInt(u);
      b[2] = CeilToInt(row);
      b[3] = FloorToInt(row);
    } else {
      b[0] = b[1] = b[2] = b[3] = kBehind;
    }
  }
}

void RasterizeTriangleRows(const int32_t* box, const float* homogeneous,
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

  for (int64_t t = 0; t < triangle_count; ++t) {
    const int32_t* tri = triangles + 3 * t;
    const int32_t* b0 = box + kPreparedStride * tri[0];
    const int32_t* b1 = box + kPreparedStride * tri[1];
    const int32_t* b2 = box + kPreparedStride * tri[2];
    // Inclusive pixel bounds; convention step 4 when all w > 0.
    int column_begin = Min3(b0[0], b1[0], b2[0]);
    int column_end, first_row, last_row;
    if (column_begin >= -1) {
      column_begin = std::max(column_begin, 0);
      column_end = std::min(Max3(b0[1], b1[1], b2[1]), image_width - 1);
      first_row = std::max(Min3(b0[2], b1[2], b2[2]), row_begin);
      last_row = std::min(Max3(b0[3], b1[3], b2[3]), row_end - 1);
      if (column_begin > column_end || first_row > last_row) continue;
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
    // The depth plane (step 3) costs three divisions; many small triangles
    // cover no pixel centre, so it is computed at the first covered pixel.
    bool have_plane = false;
    float dx = 0.0f, dy = 0.0f, dc = 0.0f;
    const Edge plane_a = e0, plane_b = e1, plane_c = e2;
    if (det < 0.0f) {
      // Negation is exact, so testing -E >= 0 equals testing E <= 0.
      e0 = Edge{-e0.a, -e0.b, -e0.c};
      e1 = Edge{-e1.a, -e1.b, -e1.c};
      e2 = Edge{-e2.a, -e2.b, -e2.c};
    }
    const int32_t id = static_cast<int32_t>(t);

    for (int i = first_row; i <= last_row; ++i) {
      const float py = half_height - (static_cast<float>(i) + 0.5f);
      int32_t* id_row = triangle_ids + i * width;
      float* depth_row = depth + i * width;
      for (int j = column_begin; j <= column_end; ++j) {
        const float px = (static_cast<float>(j) + 0.5f) - half_width;
        if (!((e0.a * px + e0.b * py) + e0.c >= 0.0f &&
              (e1.a * px + e1.b * py) + e1.c >= 0.0f &&
              (e2.a * px + e2.b * py) + e2.c >= 0.0f)) {
          continue;
        }
        if (!have_plane) {
          dx = ((h0[3] * plane_a.a + h1[3] * plane_b.a) + h2[3] * plane_c.a) /
               det;
          dy = ((h0[3] * plane_a.b + h1[3] * plane_b.b) + h2[3] * plane_c.b) /
               det;
          dc = ((h0[3] * plane_a.c + h1[3] * plane_b.c) + h2[3] * plane_c.c) /
               det;
          have_plane = true;
        }
        const float z = (dx * px + dy * py) + dc;
        // Nearer than the stored depth, or the pixel is still empty (its
        // stored depth is the far plane, which a triangle at z == 1 ties).
        if ((z < depth_row[j] || id_row[j] < 0) && z >= -1.0f && z <= 1.0f) {
          id_row[j] = id;
          depth_row[j] = z;
        }
      }
    }
  }
}

}  // namespace unsup3dmm
