// See rasterize_triangles_impl.h for the conventions implemented here.  The
// float32 expressions must stay in the order written in the header: the pure
// TensorFlow backend and the NumPy reference evaluate the same ones and the
// tests require identical triangle ids.

#include "rasterize_triangles_impl.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace unsup3dmm {
namespace {

// Four float32 / int32 lanes (GCC and Clang vector extensions); lane-wise
// arithmetic is plain IEEE float32, exactly as in scalar code.
typedef float Float4 __attribute__((vector_size(16)));
typedef int32_t Int4 __attribute__((vector_size(16)));

template <typename Vector, typename Scalar>
inline Vector LoadUnaligned(const Scalar* p) {
  Vector v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename Vector, typename Scalar>
inline void StoreUnaligned(Scalar* p, Vector v) {
  std::memcpy(p, &v, sizeof(v));
}

inline Float4 Min(Float4 a, Float4 b) { return a < b ? a : b; }

inline Float4 Max(Float4 a, Float4 b) { return a > b ? a : b; }

// Lane k of v in all four lanes.
template <int k>
inline Float4 Broadcast(Float4 v) {
  return __builtin_shufflevector(v, v, k, k, k, k);
}

// Rotates lanes 0..2: lane k gets lane k + 1 (Next1) or k + 2 (Next2),
// mod 3; lane 3 stays.
inline Float4 Next1(Float4 v) {
  return __builtin_shufflevector(v, v, 1, 2, 0, 3);
}

inline Float4 Next2(Float4 v) {
  return __builtin_shufflevector(v, v, 2, 0, 1, 3);
}

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

// Whether a triangle with some vertex off screen is drawn at all: it needs
// finite vertices, at least one of them in front of the camera.
inline bool CrossesCameraPlane(float m0, float m1, float m2) {
  if (m0 == kNonFinite || m1 == kNonFinite || m2 == kNonFinite) return false;
  return m0 != kBehind || m1 != kBehind || m2 != kBehind;
}

// Per-thread z-buffer for one band of rows, with rows padded by three pixels
// so that four-pixel vectors starting at any column stay inside the row.
struct ZBuffer {
  int64_t stride = 0;
  std::vector<float> depth;  // +inf where empty
  std::vector<int32_t> ids;  // -1 where empty

  void Reset(int rows, int width) {
    stride = width + 3;
    depth.assign(rows * stride, std::numeric_limits<float>::infinity());
    ids.assign(rows * stride, -1);
  }
};

}  // namespace

void PrepareVertices(const float* clip_vertices, int64_t vertex_count,
                     int image_height, int image_width, float* box,
                     float* homogeneous) {
  const float half_width = 0.5f * static_cast<float>(image_width);
  const float half_height = 0.5f * static_cast<float>(image_height);
  // (qx, qy, w, z) of step 1 from (x, y, z, w).
  const Float4 to_pixel_units = {half_width, half_height, 1.0f, 1.0f};
  // (column, column, row, row) = (u, u, v, v) of step 4 are
  // qx / w + (W/2 - 1/2) and -(qy / w) + (H/2 - 1/2).
  const Float4 sign = {1.0f, 1.0f, -1.0f, -1.0f};
  const Float4 offset = {half_width - 0.5f, half_width - 0.5f,
                         half_height - 0.5f, half_height - 0.5f};
  // Bounds are clamped to one pixel beyond the image before converting to
  // int, which keeps the conversion defined for huge or infinite values.
  const Float4 lower = {-1.0f, -1.0f, -1.0f, -1.0f};
  const Float4 upper = {static_cast<float>(image_width),
                        static_cast<float>(image_width),
                        static_cast<float>(image_height),
                        static_cast<float>(image_height)};
  const Float4 one = {1.0f, 1.0f, 1.0f, 1.0f};
  const Float4 zero = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t v = 0; v < vertex_count; ++v) {
    const Float4 clip = LoadUnaligned<Float4>(clip_vertices + 4 * v);
    const Float4 scaled = clip * to_pixel_units;  // (qx, qy, z, w)
    const Float4 h = __builtin_shufflevector(scaled, scaled, 0, 1, 3, 2);
    StoreUnaligned(homogeneous + kPreparedStride * v, h);
    float* b = box + kPreparedStride * v;
    // x - x is 0 for finite x and NaN for infinities and NaN.
    if (LaneMask(clip - clip == zero) != 15u) {
      b[0] = b[1] = b[2] = b[3] = kNonFinite;
    } else if (h[2] > 0.0f) {
      const Float4 projected = h / Broadcast<2>(h);  // qx / w, qy / w
      const Float4 position =
          __builtin_shufflevector(projected, projected, 0, 0, 1, 1) * sign +
          offset;
      const Float4 clamped = Max(Min(position, upper), lower);
      const Float4 truncated =
          __builtin_convertvector(__builtin_convertvector(clamped, Int4),
                                  Float4);
      const Float4 ceil = truncated + (truncated < clamped ? one : zero);
      const Float4 floor = truncated - (truncated > clamped ? one : zero);
      // ceil(u), -floor(u), ceil(v), -floor(v).
      StoreUnaligned(b, __builtin_shufflevector(ceil, -floor, 0, 5, 2, 7));
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
  if (row_begin >= row_end) return;
  thread_local ZBuffer zbuffer;
  zbuffer.Reset(row_end - row_begin, image_width);
  const int64_t stride = zbuffer.stride;

  const float half_width = 0.5f * static_cast<float>(image_width);
  const float half_height = 0.5f * static_cast<float>(image_height);
  // Lower limits of (first column, -last column, first row, -last row).
  const Float4 image_box = {0.0f, -static_cast<float>(image_width - 1),
                            static_cast<float>(row_begin),
                            -static_cast<float>(row_end - 1)};
  const Float4 lane_offsets = {0.0f, 1.0f, 2.0f, 3.0f};
  const Int4 lane_indices = {0, 1, 2, 3};

  for (int64_t t = 0; t < triangle_count; ++t) {
    const int32_t* tri = triangles + 3 * t;
    const float* box0 = box + kPreparedStride * tri[0];
    const float* box1 = box + kPreparedStride * tri[1];
    const float* box2 = box + kPreparedStride * tri[2];
    // Inclusive pixel bounds; convention step 4 when all w > 0.
    const Float4 bounds =
        Min(Min(LoadUnaligned<Float4>(box0), LoadUnaligned<Float4>(box1)),
            LoadUnaligned<Float4>(box2));
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

    // One lane per corner k: (qx_k, qy_k, w_k, z_k) of step 1; lane 3 zero.
    const Float4 h0 =
        LoadUnaligned<Float4>(homogeneous + kPreparedStride * tri[0]);
    const Float4 h1 =
        LoadUnaligned<Float4>(homogeneous + kPreparedStride * tri[1]);
    const Float4 h2 =
        LoadUnaligned<Float4>(homogeneous + kPreparedStride * tri[2]);
    const Float4 zero = {0.0f, 0.0f, 0.0f, 0.0f};
    const Float4 lo01 = __builtin_shufflevector(h0, h1, 0, 4, 1, 5);
    const Float4 hi01 = __builtin_shufflevector(h0, h1, 2, 6, 3, 7);
    const Float4 lo2 = __builtin_shufflevector(h2, zero, 0, 4, 1, 5);
    const Float4 hi2 = __builtin_shufflevector(h2, zero, 2, 6, 3, 7);
    const Float4 qx = __builtin_shufflevector(lo01, lo2, 0, 1, 4, 5);
    const Float4 qy = __builtin_shufflevector(lo01, lo2, 2, 3, 6, 7);
    const Float4 w = __builtin_shufflevector(hi01, hi2, 0, 1, 4, 5);
    const Float4 z = __builtin_shufflevector(hi01, hi2, 2, 3, 6, 7);
    // One lane per edge k, from corners a = k + 1 and b = k + 2 (step 2).
    const Float4 qx_a = Next1(qx), qy_a = Next1(qy), w_a = Next1(w);
    const Float4 qx_b = Next2(qx), qy_b = Next2(qy), w_b = Next2(w);
    Float4 edge_a = qy_a * w_b - w_a * qy_b;
    Float4 edge_b = w_a * qx_b - qx_a * w_b;
    Float4 edge_c = qx_a * qy_b - qy_a * qx_b;
    const Float4 det_terms = (edge_a * qx + edge_b * qy) + edge_c * w;
    const float det = det_terms[0];  // (A_0 qx_0 + B_0 qy_0) + C_0 w_0
    if (!std::isfinite(det) || det == 0.0f) continue;
    if (cull_backfaces && det < 0.0f) continue;

    // Depth plane (Dx, Dy, Dc) of step 3: per coefficient, the sum over
    // corners k of z_k times edge k's coefficient, in corner order.
    const Float4 za = z * edge_a, zb = z * edge_b, zc = z * edge_c;
    const Float4 ab01 = __builtin_shufflevector(za, zb, 0, 4, 1, 5);
    const Float4 ab2 = __builtin_shufflevector(za, zb, 2, 6, 2, 6);
    const Float4 corner0 = __builtin_shufflevector(ab01, zc, 0, 1, 4, 7);
    const Float4 corner1 = __builtin_shufflevector(ab01, zc, 2, 3, 5, 7);
    const Float4 corner2 = __builtin_shufflevector(ab2, zc, 0, 1, 6, 7);
    const Float4 plane = ((corner0 + corner1) + corner2) / det;
    if (det < 0.0f) {
      // Negation is exact, so testing -E >= 0 equals testing E <= 0.
      edge_a = -edge_a;
      edge_b = -edge_b;
      edge_c = -edge_c;
    }
    const Float4 a0 = Broadcast<0>(edge_a), a1 = Broadcast<1>(edge_a),
                 a2 = Broadcast<2>(edge_a);
    const Float4 c0 = Broadcast<0>(edge_c), c1 = Broadcast<1>(edge_c),
                 c2 = Broadcast<2>(edge_c);
    const Float4 plane_x = Broadcast<0>(plane), plane_c = Broadcast<2>(plane);
    const int32_t id = static_cast<int32_t>(t);
    const Int4 ids = {id, id, id, id};

    // Rows of pixels, four columns per vector; lanes beyond the box are
    // masked (they lie in the row padding at the image's right edge).
    for (int i = first_row; i <= last_row; ++i) {
      const float py = half_height - (static_cast<float>(i) + 0.5f);
      const Float4 row_terms = edge_b * py;  // B_k * py
      const Float4 b0 = Broadcast<0>(row_terms), b1 = Broadcast<1>(row_terms),
                   b2 = Broadcast<2>(row_terms);
      const Float4 plane_row = Broadcast<1>(plane) * py;  // Dy * py
      float* depth_row = zbuffer.depth.data() + (i - row_begin) * stride;
      int32_t* id_row = zbuffer.ids.data() + (i - row_begin) * stride;
      for (int j = column_begin; j <= column_end; j += 4) {
        // px = (j + 1/2) - W/2, then + 0, 1, 2, 3: all exact.
        const Float4 px =
            ((static_cast<float>(j) + 0.5f) - half_width) + lane_offsets;
        const Float4 pixel_depth = (plane_x * px + plane_row) + plane_c;
        const Float4 stored_depth = LoadUnaligned<Float4>(depth_row + j);
        const Int4 stored_ids = LoadUnaligned<Int4>(id_row + j);
        // Inside all three edges, in the box, within the clip range, and
        // nearer than the stored depth (+inf where empty).  Branch-free:
        // the outcome is data dependent and would mispredict often.
        const Int4 draw = (lane_indices <= column_end - j) &
                          ((a0 * px + b0) + c0 >= 0.0f) &
                          ((a1 * px + b1) + c1 >= 0.0f) &
                          ((a2 * px + b2) + c2 >= 0.0f) &
                          (pixel_depth >= -1.0f) & (pixel_depth <= 1.0f) &
                          (pixel_depth < stored_depth);
        StoreUnaligned(depth_row + j, draw ? pixel_depth : stored_depth);
        StoreUnaligned(id_row + j, draw ? ids : stored_ids);
      }
    }
  }

  const int64_t width = image_width;
  for (int i = row_begin; i < row_end; ++i) {
    const int32_t* id_row = zbuffer.ids.data() + (i - row_begin) * stride;
    const float* depth_row = zbuffer.depth.data() + (i - row_begin) * stride;
    for (int j = 0; j < image_width; ++j) {
      triangle_ids[i * width + j] = id_row[j];
      depth[i * width + j] = id_row[j] >= 0 ? depth_row[j] : kEmptyDepth;
    }
  }
}

}  // namespace unsup3dmm
