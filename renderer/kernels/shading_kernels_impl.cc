// Deferred-shading stages and their backward passes (see the header).

#include "shading_kernels_impl.h"

#include <algorithm>
#include <cmath>

namespace unsup3dmm {
namespace {

// Offsets d_k = (x_k - w_k p_x, y_k - w_k p_y) of a triangle's vertices from
// the pixel centre p, in double.  Vertex v's clip x, y and w are at
// vertices[kStride * v + {0, 1, kW}].
template <int kStride, int kW>
inline void LoadOffsets(const float* vertices, const int32_t* triangle,
                        const double p[2], double d[3][2]) {
  for (int k = 0; k < 3; ++k) {
    const float* c = vertices + kStride * static_cast<int64_t>(triangle[k]);
    d[k][0] = c[0] - static_cast<double>(c[kW]) * p[0];
    d[k][1] = c[1] - static_cast<double>(c[kW]) * p[1];
  }
}

inline void PixelCenter(int64_t pixel, int height, int width, double p[2]) {
  const int64_t row = pixel / width;
  const int64_t column = pixel - row * width;
  p[0] = (column + 0.5) * (2.0 / width) - 1.0;
  p[1] = 1.0 - (row + 0.5) * (2.0 / height);
}

// e_k = p . (v_{k+1} x v_{k+2}) = d_{k+1} x d_{k+2} (2D cross product) and
// their guarded sum.
inline void EdgeFunctions(const double d[3][2], double e[3], double* total,
                          bool* guarded) {
  for (int k = 0; k < 3; ++k) {
    const double* a = d[(k + 1) % 3];
    const double* b = d[(k + 2) % 3];
    e[k] = a[0] * b[1] - a[1] * b[0];
  }
  const double sum = e[0] + e[1] + e[2];
  *guarded = std::abs(sum) < kDenominatorEpsilon;
  *total = *guarded ? (sum < 0.0 ? -kDenominatorEpsilon : kDenominatorEpsilon)
                    : sum;
}

struct Vec3 {
  float x, y, z;
};

inline Vec3 Load(const float* p) { return {p[0], p[1], p[2]}; }
inline void Store(const Vec3& v, float* p) {
  p[0] = v.x;
  p[1] = v.y;
  p[2] = v.z;
}
inline void AddTo(const Vec3& v, float* p) {
  p[0] += v.x;
  p[1] += v.y;
  p[2] += v.z;
}
inline Vec3 operator+(const Vec3& a, const Vec3& b) {
  return {a.x + b.x, a.y + b.y, a.z + b.z};
}
inline Vec3 operator-(const Vec3& a, const Vec3& b) {
  return {a.x - b.x, a.y - b.y, a.z - b.z};
}
inline Vec3 operator-(const Vec3& a) { return {-a.x, -a.y, -a.z}; }
inline Vec3 operator*(float s, const Vec3& a) {
  return {s * a.x, s * a.y, s * a.z};
}
inline Vec3 operator*(const Vec3& a, const Vec3& b) {
  return {a.x * b.x, a.y * b.y, a.z * b.z};
}
inline float Dot(const Vec3& a, const Vec3& b) {
  return a.x * b.x + a.y * b.y + a.z * b.z;
}
inline Vec3 Cross(const Vec3& a, const Vec3& b) {
  return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z,
          a.x * b.y - a.y * b.x};
}
inline float Sum(const Vec3& a) { return a.x + a.y + a.z; }

// Normalisation as shading.py's _normalize: v / sqrt(max(|v|^2, eps)).
struct Normalized {
  Vec3 unit;
  float inverse_length;
  bool floored;  // |v|^2 < eps: the length is the constant sqrt(eps).
};

inline Normalized Normalize(const Vec3& v) {
  const float squared = Dot(v, v);
  const bool floored = !(squared >= kNormalizeEpsilon);
  const float inverse = 1.0f / std::sqrt(floored ? kNormalizeEpsilon : squared);
  return {inverse * v, inverse, floored};
}

// Backward of Normalize: gradient of v from the gradient of the unit vector.
inline Vec3 NormalizeGrad(const Normalized& n, const Vec3& grad_unit) {
  if (n.floored) return n.inverse_length * grad_unit;
  return n.inverse_length * (grad_unit - Dot(n.unit, grad_unit) * n.unit);
}

inline Vec3 LuminanceWeights() {
  return {kLuminanceWeights[0], kLuminanceWeights[1], kLuminanceWeights[2]};
}

inline float SpecularAlbedo(const Vec3& albedo, const Material& material) {
  const float mix = material.specular_diffuse_mix;
  return material.specular_strength *
         ((1.0f - mix) * kDielectricReflectance +
          mix * Dot(albedo, LuminanceWeights()));
}

// Barycentrics of one pixel in its triangle, with what the backward needs.
struct PixelBarycentrics {
  double p[2];     // pixel centre, NDC
  double d[3][2];  // vertex offsets from the pixel, scaled by w
  double e[3];     // edge functions
  double total;    // guarded e_0 + e_1 + e_2
  bool guarded;
  float b[3];
};

// Clip x, y, w at vertices[kStride * v + {0, 1, kW}] (see LoadOffsets).
template <int kStride, int kW>
inline void ComputePixelBarycentrics(const float* vertices,
                                     const int32_t* triangle, int64_t pixel,
                                     int height, int width,
                                     PixelBarycentrics* out) {
  PixelCenter(pixel, height, width, out->p);
  LoadOffsets<kStride, kW>(vertices, triangle, out->p, out->d);
  EdgeFunctions(out->d, out->e, &out->total, &out->guarded);
  for (int k = 0; k < 3; ++k) {
    out->b[k] = static_cast<float>(out->e[k] / out->total);
  }
}

// Adds the gradient of the clip x, y, w (laid out as in LoadOffsets) given
// that of b.
template <int kStride, int kW>
inline void PixelBarycentricsGrad(const PixelBarycentrics& px,
                                  const int32_t* triangle, const float grad[3],
                                  float* grad_vertices) {
  // b_k = e_k / total: d b_k / d e_j = (delta_kj - b_k [not guarded]) / total.
  double weighted = 0.0;
  if (!px.guarded) {
    for (int k = 0; k < 3; ++k) weighted += grad[k] * (px.e[k] / px.total);
  }
  for (int j = 0; j < 3; ++j) {
    const double grad_edge = (grad[j] - weighted) / px.total;
    const int a = (j + 1) % 3;
    const int b = (j + 2) % 3;
    // e_j = d_a.x d_b.y - d_a.y d_b.x with d = (x - w p_x, y - w p_y).
    const double grad_da[2] = {grad_edge * px.d[b][1], -grad_edge * px.d[b][0]};
    const double grad_db[2] = {-grad_edge * px.d[a][1], grad_edge * px.d[a][0]};
    float* out_a = grad_vertices + kStride * static_cast<int64_t>(triangle[a]);
    float* out_b = grad_vertices + kStride * static_cast<int64_t>(triangle[b]);
    out_a[0] += static_cast<float>(grad_da[0]);
    out_a[1] += static_cast<float>(grad_da[1]);
    out_a[kW] -=
        static_cast<float>(grad_da[0] * px.p[0] + grad_da[1] * px.p[1]);
    out_b[0] += static_cast<float>(grad_db[0]);
    out_b[1] += static_cast<float>(grad_db[1]);
    out_b[kW] -=
        static_cast<float>(grad_db[0] * px.p[0] + grad_db[1] * px.p[1]);
  }
}

// Interpolation of a 3-channel attribute at attributes[kStride * v + {0..2}].
template <int kStride>
inline Vec3 Interpolate3(const float* attributes, const int32_t* triangle,
                         const float b[3]) {
  const Vec3 a0 =
      Load(attributes + kStride * static_cast<int64_t>(triangle[0]));
  const Vec3 a1 =
      Load(attributes + kStride * static_cast<int64_t>(triangle[1]));
  const Vec3 a2 =
      Load(attributes + kStride * static_cast<int64_t>(triangle[2]));
  return b[0] * a0 + b[1] * a1 + b[2] * a2;
}

// Adds b_k * grad to the attribute rows of the triangle's vertices and
// grad . attribute_k to grad_b[k] (layout as Interpolate3).
template <int kStride>
inline void Interpolate3Grad(const float* attributes, const int32_t* triangle,
                             const float b[3], const Vec3& grad,
                             float* grad_attributes, float grad_b[3]) {
  for (int k = 0; k < 3; ++k) {
    const int64_t row = kStride * static_cast<int64_t>(triangle[k]);
    grad_b[k] += Dot(grad, Load(attributes + row));
    AddTo(b[k] * grad, grad_attributes + row);
  }
}

// Packed per-vertex record of the fused pass: one 64-byte cache line holding
// clip x, y, w, colour, normal and position (so a pixel touches three lines).
constexpr int kPackedStride = kPackedFloatsPerVertex;
constexpr int kPackedW = 2;
constexpr int kPackedColor = 3;
constexpr int kPackedNormal = 6;
constexpr int kPackedPosition = 9;

// Phong radiance of one surface point (formula in renderer/shading.py).
inline Vec3 ShadePixel(const Vec3& kd, const Vec3& normal,
                       const Vec3& position, const Lights& lights,
                       const Material& material) {
  const Vec3 n = Normalize(normal).unit;
  const Vec3 to_camera = Normalize(-position).unit;
  const float ks = SpecularAlbedo(kd, material);
  Vec3 total = kd * Load(lights.ambient);
  for (int l = 0; l < lights.light_count; ++l) {
    const Vec3 color = Load(lights.colors + 3 * l);
    const Vec3 to_light =
        Normalize(Load(lights.positions + 3 * l) - position).unit;
    const float cosine = Dot(n, to_light);
    if (!(cosine > 0.0f)) continue;
    const Vec3 reflected = 2.0f * cosine * n - to_light;
    const float alignment = Dot(reflected, to_camera);
    const float highlight =
        alignment > 0.0f ? std::pow(std::max(alignment, kNormalizeEpsilon),
                                    material.shininess)
                         : 0.0f;
    const float specular = ks * highlight;
    total = total + color * (cosine * kd + Vec3{specular, specular, specular});
  }
  return total;
}

// Per-light quantities of ShadePixelGrad.
struct LightTerms {
  Normalized to_light;
  float cosine;  // n . l, the light counts only when > 0
  Vec3 reflected;
  float alignment;  // reflected . view
  float highlight;  // max(alignment, eps)^shininess, or 0
};

// Backward of ShadePixel (of its value clipped to [0, 1] per channel when
// clip is set: as tf.clip_by_value, the gradient passes where 0 <= value <= 1):
// writes the gradients of kd, normal and position, adds those of the lights
// (grad_light_positions, grad_light_colors: [light_count, 3]; grad_ambient:
// [3]).  lights.light_count <= kMaxLights.
inline void ShadePixelGrad(const Vec3& kd, const Vec3& normal,
                           const Vec3& position, const Lights& lights,
                           const Material& material, bool clip,
                           Vec3 grad, Vec3* grad_kd_out,
                           Vec3* grad_normal_out, Vec3* grad_position_out,
                           float* grad_light_positions,
                           float* grad_light_colors, float* grad_ambient) {
  const float shininess = material.shininess;
  const Normalized n = Normalize(normal);
  const Normalized view = Normalize(-position);
  const float ks = SpecularAlbedo(kd, material);
  const Vec3 ambient = Load(lights.ambient);

  // Forward quantities (and the value, for the clip).
  LightTerms terms[kMaxLights];
  Vec3 total = kd * ambient;
  for (int l = 0; l < lights.light_count; ++l) {
    LightTerms& t = terms[l];
    t.to_light = Normalize(Load(lights.positions + 3 * l) - position);
    t.cosine = Dot(n.unit, t.to_light.unit);
    if (!(t.cosine > 0.0f)) continue;
    t.reflected = 2.0f * t.cosine * n.unit - t.to_light.unit;
    t.alignment = Dot(t.reflected, view.unit);
    t.highlight =
        t.alignment > 0.0f
            ? std::pow(std::max(t.alignment, kNormalizeEpsilon), shininess)
            : 0.0f;
    const float specular = ks * t.highlight;
    total = total + Load(lights.colors + 3 * l) *
                        (t.cosine * kd + Vec3{specular, specular, specular});
  }
  if (clip) {
    grad.x = (total.x >= 0.0f && total.x <= 1.0f) ? grad.x : 0.0f;
    grad.y = (total.y >= 0.0f && total.y <= 1.0f) ? grad.y : 0.0f;
    grad.z = (total.z >= 0.0f && total.z <= 1.0f) ? grad.z : 0.0f;
  }

  Vec3 grad_kd = grad * ambient;
  AddTo(grad * kd, grad_ambient);
  Vec3 grad_n = {0.0f, 0.0f, 0.0f};
  Vec3 grad_view = {0.0f, 0.0f, 0.0f};
  Vec3 grad_position = {0.0f, 0.0f, 0.0f};
  float grad_ks = 0.0f;
  for (int l = 0; l < lights.light_count; ++l) {
    const LightTerms& t = terms[l];
    if (!(t.cosine > 0.0f)) continue;
    const Vec3& light = t.to_light.unit;
    // radiance += color * (cosine * kd + ks * highlight), per channel.
    const Vec3 grad_color = grad * Load(lights.colors + 3 * l);
    grad_kd = grad_kd + t.cosine * grad_color;
    AddTo(t.cosine * (grad * kd) + (ks * t.highlight) * grad,
          grad_light_colors + 3 * l);
    float grad_cosine = Dot(grad_color, kd);
    const float grad_color_sum = Sum(grad_color);
    grad_ks += grad_color_sum * t.highlight;
    // d highlight / d alignment = shininess * highlight / alignment (0 below
    // the floor, as tf.maximum's gradient).
    const float grad_alignment =
        (t.alignment > 0.0f && t.alignment >= kNormalizeEpsilon)
            ? grad_color_sum * ks * shininess * (t.highlight / t.alignment)
            : 0.0f;
    // alignment = reflected . view, reflected = 2 cosine n - light.
    const Vec3 grad_reflected = grad_alignment * view.unit;
    grad_view = grad_view + grad_alignment * t.reflected;
    grad_cosine += 2.0f * Dot(grad_reflected, n.unit);
    grad_n = grad_n + (2.0f * t.cosine) * grad_reflected;
    // cosine = n . light.
    grad_n = grad_n + grad_cosine * light;
    const Vec3 grad_light = grad_cosine * n.unit - grad_reflected;
    // light = normalize(light_position - position).
    const Vec3 grad_offset = NormalizeGrad(t.to_light, grad_light);
    AddTo(grad_offset, grad_light_positions + 3 * l);
    grad_position = grad_position - grad_offset;
  }
  // ks = strength ((1 - mix) 0.04 + mix * luminance(kd)).
  *grad_kd_out = grad_kd + (material.specular_strength *
                            material.specular_diffuse_mix * grad_ks) *
                               LuminanceWeights();
  // view = normalize(-position).
  *grad_position_out = grad_position - NormalizeGrad(view, grad_view);
  *grad_normal_out = NormalizeGrad(n, grad_n);
}

inline Vec3 Clip01(const Vec3& v) {
  return {std::min(std::max(v.x, 0.0f), 1.0f),
          std::min(std::max(v.y, 0.0f), 1.0f),
          std::min(std::max(v.z, 0.0f), 1.0f)};
}

inline bool IsZero(const float* v, int count) {
  for (int c = 0; c < count; ++c) {
    if (v[c] != 0.0f) return false;
  }
  return true;
}

}  // namespace

void ComputeBarycentrics(const float* clip_vertices, const int32_t* triangles,
                         const int32_t* triangle_ids, int height, int width,
                         int64_t begin, int64_t end, float* barycentrics) {
  for (int64_t pixel = begin; pixel < end; ++pixel) {
    float* out = barycentrics + 3 * pixel;
    const int32_t id = triangle_ids[pixel];
    if (id < 0) {
      out[0] = out[1] = out[2] = 0.0f;
      continue;
    }
    PixelBarycentrics px;
    ComputePixelBarycentrics<4, 3>(clip_vertices,
                                   triangles + 3 * static_cast<int64_t>(id),
                                   pixel, height, width, &px);
    for (int k = 0; k < 3; ++k) out[k] = px.b[k];
  }
}

void BarycentricsGrad(const float* clip_vertices, const int32_t* triangles,
                      const int32_t* triangle_ids, int height, int width,
                      const float* grad_barycentrics,
                      float* grad_clip_vertices) {
  const int64_t pixels = static_cast<int64_t>(height) * width;
  for (int64_t pixel = 0; pixel < pixels; ++pixel) {
    const int32_t id = triangle_ids[pixel];
    const float* grad = grad_barycentrics + 3 * pixel;
    if (id < 0 || IsZero(grad, 3)) continue;
    const int32_t* triangle = triangles + 3 * static_cast<int64_t>(id);
    PixelBarycentrics px;
    ComputePixelBarycentrics<4, 3>(clip_vertices, triangle, pixel, height,
                                   width, &px);
    PixelBarycentricsGrad<4, 3>(px, triangle, grad, grad_clip_vertices);
  }
}

void Interpolate(const float* attributes, int channels,
                 const int32_t* triangles, const int32_t* triangle_ids,
                 const float* barycentrics, int64_t begin, int64_t end,
                 float* out) {
  for (int64_t pixel = begin; pixel < end; ++pixel) {
    float* value = out + channels * pixel;
    const int32_t id = triangle_ids[pixel];
    if (id < 0) {
      std::fill(value, value + channels, 0.0f);
      continue;
    }
    const int32_t* triangle = triangles + 3 * static_cast<int64_t>(id);
    const float* b = barycentrics + 3 * pixel;
    const float* a0 = attributes + channels * static_cast<int64_t>(triangle[0]);
    const float* a1 = attributes + channels * static_cast<int64_t>(triangle[1]);
    const float* a2 = attributes + channels * static_cast<int64_t>(triangle[2]);
    for (int c = 0; c < channels; ++c) {
      value[c] = b[0] * a0[c] + b[1] * a1[c] + b[2] * a2[c];
    }
  }
}

void InterpolateGrad(const float* attributes, int channels,
                     const int32_t* triangles, const int32_t* triangle_ids,
                     const float* barycentrics, const float* grad_out,
                     int64_t begin, int64_t end, float* grad_attributes,
                     float* grad_barycentrics) {
  for (int64_t pixel = begin; pixel < end; ++pixel) {
    const int32_t id = triangle_ids[pixel];
    float* grad_b =
        grad_barycentrics == nullptr ? nullptr : grad_barycentrics + 3 * pixel;
    if (id < 0) {
      if (grad_b != nullptr) grad_b[0] = grad_b[1] = grad_b[2] = 0.0f;
      continue;
    }
    const int32_t* triangle = triangles + 3 * static_cast<int64_t>(id);
    const float* b = barycentrics + 3 * pixel;
    const float* grad = grad_out + channels * pixel;
    for (int k = 0; k < 3; ++k) {
      const int64_t row = channels * static_cast<int64_t>(triangle[k]);
      if (grad_b != nullptr) {
        const float* a = attributes + row;
        float sum = 0.0f;
        for (int c = 0; c < channels; ++c) sum += grad[c] * a[c];
        grad_b[k] = sum;
      }
      if (grad_attributes != nullptr) {
        float* out = grad_attributes + row;
        for (int c = 0; c < channels; ++c) out[c] += b[k] * grad[c];
      }
    }
  }
}

namespace {

void SumFaceNormals(const float* vertices, int64_t vertex_count,
                    const int32_t* triangles, int64_t triangle_count,
                    float* sums) {
  std::fill(sums, sums + 3 * vertex_count, 0.0f);
  for (int64_t t = 0; t < triangle_count; ++t) {
    const int32_t* triangle = triangles + 3 * t;
    const Vec3 p0 = Load(vertices + 3 * static_cast<int64_t>(triangle[0]));
    const Vec3 p1 = Load(vertices + 3 * static_cast<int64_t>(triangle[1]));
    const Vec3 p2 = Load(vertices + 3 * static_cast<int64_t>(triangle[2]));
    const Vec3 face = Cross(p1 - p0, p2 - p0);
    for (int k = 0; k < 3; ++k) {
      AddTo(face, sums + 3 * static_cast<int64_t>(triangle[k]));
    }
  }
}

}  // namespace

void VertexNormals(const float* vertices, int64_t vertex_count,
                   const int32_t* triangles, int64_t triangle_count,
                   float* sums, float* normals) {
  SumFaceNormals(vertices, vertex_count, triangles, triangle_count, sums);
  for (int64_t v = 0; v < vertex_count; ++v) {
    Store(Normalize(Load(sums + 3 * v)).unit, normals + 3 * v);
  }
}

void VertexNormalsGrad(const float* vertices, int64_t vertex_count,
                       const int32_t* triangles, int64_t triangle_count,
                       const float* grad_normals, float* sums,
                       float* grad_vertices) {
  SumFaceNormals(vertices, vertex_count, triangles, triangle_count, sums);
  // sums <- gradient of the summed (unnormalised) normals.
  for (int64_t v = 0; v < vertex_count; ++v) {
    const Normalized n = Normalize(Load(sums + 3 * v));
    Store(NormalizeGrad(n, Load(grad_normals + 3 * v)), sums + 3 * v);
  }
  for (int64_t t = 0; t < triangle_count; ++t) {
    const int32_t* triangle = triangles + 3 * t;
    const int64_t i0 = 3 * static_cast<int64_t>(triangle[0]);
    const int64_t i1 = 3 * static_cast<int64_t>(triangle[1]);
    const int64_t i2 = 3 * static_cast<int64_t>(triangle[2]);
    const Vec3 grad = Load(sums + i0) + Load(sums + i1) + Load(sums + i2);
    const Vec3 p0 = Load(vertices + i0);
    const Vec3 edge1 = Load(vertices + i1) - p0;
    const Vec3 edge2 = Load(vertices + i2) - p0;
    // face = edge1 x edge2: d/d edge1 = edge2 x g, d/d edge2 = g x edge1.
    const Vec3 grad_edge1 = Cross(edge2, grad);
    const Vec3 grad_edge2 = Cross(grad, edge1);
    AddTo(grad_edge1, grad_vertices + i1);
    AddTo(grad_edge2, grad_vertices + i2);
    AddTo(-(grad_edge1 + grad_edge2), grad_vertices + i0);
  }
}

void PhongShade(const float* albedo, const float* normals,
                const float* positions, const float* mask, const Lights& lights,
                const Material& material, int64_t begin, int64_t end,
                float* radiance) {
  for (int64_t pixel = begin; pixel < end; ++pixel) {
    const float coverage = mask[pixel];
    Vec3 value = {0.0f, 0.0f, 0.0f};
    if (coverage != 0.0f) {
      value = coverage * ShadePixel(Load(albedo + 3 * pixel),
                                    Load(normals + 3 * pixel),
                                    Load(positions + 3 * pixel), lights,
                                    material);
    }
    Store(value, radiance + 3 * pixel);
  }
}

void PhongShadeGrad(const float* albedo, const float* normals,
                    const float* positions, const float* mask,
                    const Lights& lights, const Material& material,
                    const float* grad_radiance, int64_t begin, int64_t end,
                    float* grad_albedo, float* grad_normals,
                    float* grad_positions, float* grad_light_positions,
                    float* grad_light_colors, float* grad_ambient) {
  for (int64_t pixel = begin; pixel < end; ++pixel) {
    const Vec3 grad = mask[pixel] * Load(grad_radiance + 3 * pixel);
    Vec3 grad_kd = {0.0f, 0.0f, 0.0f};
    Vec3 grad_normal = grad_kd;
    Vec3 grad_position = grad_kd;
    if (mask[pixel] != 0.0f && !(grad.x == 0.0f && grad.y == 0.0f &&
                                 grad.z == 0.0f)) {
      ShadePixelGrad(Load(albedo + 3 * pixel), Load(normals + 3 * pixel),
                     Load(positions + 3 * pixel), lights, material,
                     /*clip=*/false, grad,
                     &grad_kd, &grad_normal, &grad_position,
                     grad_light_positions, grad_light_colors, grad_ambient);
    }
    Store(grad_kd, grad_albedo + 3 * pixel);
    Store(grad_normal, grad_normals + 3 * pixel);
    Store(grad_position, grad_positions + 3 * pixel);
  }
}

namespace {

// Software prefetching for the fused pass: neighbouring pixels see unrelated
// triangles, so each pixel's loads (its triangle, then the triangle's three
// vertex records) would miss the cache one after the other.  Pixel p fetches
// the triangle of pixel p + kTriangleLead and the vertex records (and, in the
// backward pass, their gradient rows) of pixel p + kVertexLead, whose triangle
// it fetched kTriangleLead - kVertexLead pixels earlier.
constexpr int64_t kTriangleLead = 16;
constexpr int64_t kVertexLead = 8;

// The prefetches only pay off when inlined into the pixel loops.
#if defined(__GNUC__)
#define UNSUP3DMM_ALWAYS_INLINE inline __attribute__((always_inline))
#define UNSUP3DMM_PREFETCH(address, write) __builtin_prefetch(address, write)
#else
#define UNSUP3DMM_ALWAYS_INLINE inline
#define UNSUP3DMM_PREFETCH(address, write) ((void)(address))
#endif

UNSUP3DMM_ALWAYS_INLINE void PrefetchAhead(const int32_t* triangles,
                          const int32_t* triangle_ids, int64_t pixel,
                          int64_t end, const float* packed,
                          const float* grad_packed) {
  if (pixel + kTriangleLead < end) {
    const int32_t id = triangle_ids[pixel + kTriangleLead];
    if (id >= 0) {
      UNSUP3DMM_PREFETCH(triangles + 3 * static_cast<int64_t>(id), 0);
    }
  }
  if (pixel + kVertexLead < end) {
    const int32_t id = triangle_ids[pixel + kVertexLead];
    if (id >= 0) {
      const int32_t* triangle = triangles + 3 * static_cast<int64_t>(id);
      for (int k = 0; k < 3; ++k) {
        const int64_t row = kPackedStride * static_cast<int64_t>(triangle[k]);
        UNSUP3DMM_PREFETCH(packed + row, 0);
        if (grad_packed != nullptr) UNSUP3DMM_PREFETCH(grad_packed + row, 1);
      }
    }
  }
}

}  // namespace

void PackVertices(const MeshAttributes& mesh, int64_t vertex_count,
                  float* packed) {
  for (int64_t v = 0; v < vertex_count; ++v) {
    float* out = packed + kPackedStride * v;
    const float* clip = mesh.clip_vertices + 4 * v;
    out[0] = clip[0];
    out[1] = clip[1];
    out[kPackedW] = clip[3];
    for (int c = 0; c < 3; ++c) {
      out[kPackedColor + c] = mesh.colors[3 * v + c];
      out[kPackedNormal + c] = mesh.normals[3 * v + c];
      out[kPackedPosition + c] = mesh.positions[3 * v + c];
    }
    std::fill(out + kPackedPosition + 3, out + kPackedStride, 0.0f);
  }
}

void DeferredShading(const float* packed, const int32_t* triangles,
                     const int32_t* triangle_ids, int height, int width,
                     const Lights& lights, const Material& material,
                     const float* background, int64_t begin, int64_t end,
                     float* image) {
  const Vec3 empty = Load(background);
  for (int64_t pixel = begin; pixel < end; ++pixel) {
    PrefetchAhead(triangles, triangle_ids, pixel, end, packed, nullptr);
    const int32_t id = triangle_ids[pixel];
    Vec3 value = empty;
    if (id >= 0) {
      const int32_t* triangle = triangles + 3 * static_cast<int64_t>(id);
      PixelBarycentrics px;
      ComputePixelBarycentrics<kPackedStride, kPackedW>(
          packed, triangle, pixel, height, width, &px);
      value = Clip01(ShadePixel(
          Interpolate3<kPackedStride>(packed + kPackedColor, triangle, px.b),
          Interpolate3<kPackedStride>(packed + kPackedNormal, triangle, px.b),
          Interpolate3<kPackedStride>(packed + kPackedPosition, triangle,
                                      px.b),
          lights, material));
    }
    Store(value, image + 3 * pixel);
  }
}

void DeferredShadingGrad(const float* packed, const int32_t* triangles,
                         const int32_t* triangle_ids, int height, int width,
                         const Lights& lights, const Material& material,
                         const float* grad_image, float* grad_packed,
                         float* grad_light_positions, float* grad_light_colors,
                         float* grad_ambient, float* grad_background) {
  const int64_t pixels = static_cast<int64_t>(height) * width;
  for (int64_t pixel = 0; pixel < pixels; ++pixel) {
    PrefetchAhead(triangles, triangle_ids, pixel, pixels, packed, grad_packed);
    const int32_t id = triangle_ids[pixel];
    const float* grad = grad_image + 3 * pixel;
    if (id < 0) {
      AddTo(Load(grad), grad_background);
      continue;
    }
    if (IsZero(grad, 3)) continue;
    const int32_t* triangle = triangles + 3 * static_cast<int64_t>(id);
    PixelBarycentrics px;
    ComputePixelBarycentrics<kPackedStride, kPackedW>(packed, triangle, pixel,
                                                      height, width, &px);
    Vec3 grad_kd, grad_normal, grad_position;
    ShadePixelGrad(
        Interpolate3<kPackedStride>(packed + kPackedColor, triangle, px.b),
        Interpolate3<kPackedStride>(packed + kPackedNormal, triangle, px.b),
        Interpolate3<kPackedStride>(packed + kPackedPosition, triangle, px.b),
        lights, material, /*clip=*/true, Load(grad), &grad_kd, &grad_normal,
        &grad_position,
        grad_light_positions, grad_light_colors, grad_ambient);
    float grad_b[3] = {0.0f, 0.0f, 0.0f};
    Interpolate3Grad<kPackedStride>(packed + kPackedColor, triangle, px.b,
                                    grad_kd, grad_packed + kPackedColor,
                                    grad_b);
    Interpolate3Grad<kPackedStride>(packed + kPackedNormal, triangle, px.b,
                                    grad_normal, grad_packed + kPackedNormal,
                                    grad_b);
    Interpolate3Grad<kPackedStride>(packed + kPackedPosition, triangle, px.b,
                                    grad_position,
                                    grad_packed + kPackedPosition, grad_b);
    PixelBarycentricsGrad<kPackedStride, kPackedW>(px, triangle, grad_b,
                                                   grad_packed);
  }
}

void UnpackGradients(const float* grad_packed, int64_t vertex_count,
                     const MeshGradients& grads) {
  for (int64_t v = 0; v < vertex_count; ++v) {
    const float* in = grad_packed + kPackedStride * v;
    float* clip = grads.clip_vertices + 4 * v;
    clip[0] = in[0];
    clip[1] = in[1];
    clip[2] = 0.0f;
    clip[3] = in[kPackedW];
    for (int c = 0; c < 3; ++c) {
      grads.colors[3 * v + c] = in[kPackedColor + c];
      grads.normals[3 * v + c] = in[kPackedNormal + c];
      grads.positions[3 * v + c] = in[kPackedPosition + c];
    }
  }
}

}  // namespace unsup3dmm
