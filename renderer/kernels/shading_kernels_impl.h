// Differentiable stages of the renderer after visibility: barycentrics,
// attribute interpolation, vertex normals and Phong shading, each with its
// backward pass.
//
// TensorFlow-free core of the Unsup3dmm{Barycentrics,Interpolate,
// VertexNormals,PhongShade,DeferredShading}[Grad] ops (shading_kernels_op.cc
// adds the shape checks and the threads).  renderer/barycentrics.py and
// renderer/shading.py define the same functions with TensorFlow ops; the two
// backends agree to float32 rounding, values and gradients, which
// tests/test_barycentrics.py and tests/test_shading.py check.
//
// Conventions: one image at a time; arrays are dense, row-major, float32
// unless stated.  An image has `height` rows and `width` columns; pixel (i, j)
// has row 0 at the top and its centre at NDC
//   x = 2 (j + 1/2) / width - 1,   y = 1 - 2 (i + 1/2) / height.
// Pixels are addressed by their flat index i * width + j.  triangle_ids[p] is
// the triangle visible at pixel p, -1 where empty; empty pixels produce zeros
// and receive no gradient.  "Grad" functions ADD into their vertex-indexed
// outputs (the caller zeroes them) and overwrite their pixel-indexed outputs.

#ifndef UNSUP3DMM_RENDERER_KERNELS_SHADING_KERNELS_IMPL_H_
#define UNSUP3DMM_RENDERER_KERNELS_SHADING_KERNELS_IMPL_H_

#include <cstdint>

namespace unsup3dmm {

// Lower bound of |e_0 + e_1 + e_2| (barycentrics.py DENOMINATOR_EPSILON).
constexpr double kDenominatorEpsilon = 1e-12;
// Squared-length floor before normalising (shading.py NORMALIZE_EPSILON).
constexpr float kNormalizeEpsilon = 1e-12f;
// Normal-incidence reflectance of a dielectric (shading.py).
constexpr float kDielectricReflectance = 0.04f;
// Rec. 709 luminance weights (lighting.py LUMINANCE_WEIGHTS).
constexpr float kLuminanceWeights[3] = {0.2126f, 0.7152f, 0.0722f};

// Perspective-correct barycentrics (2D homogeneous formulation):
//   b_k = e_k / (e_0 + e_1 + e_2),  e_k = p . (v_{k+1} x v_{k+2}),
// with v_k = (x, y, w) the clip coordinates of the triangle's vertex k and
// p = (x_ndc, y_ndc, 1) the pixel centre, evaluated (in double) as the 2D
// cross product e_k = d_{k+1} x d_{k+2} of d_k = (x_k - w_k p_x,
// y_k - w_k p_y).  The denominator's magnitude is raised to
// kDenominatorEpsilon when smaller (keeping its sign, + for 0).
//   clip_vertices: [vertex_count, 4] (x, y, z, w).
//   triangles: int32 [triangle_count, 3].
//   triangle_ids: int32 [height * width].
//   barycentrics: [height * width, 3], written for pixels [begin, end).
void ComputeBarycentrics(const float* clip_vertices, const int32_t* triangles,
                         const int32_t* triangle_ids, int height, int width,
                         int64_t begin, int64_t end, float* barycentrics);

// Backward of ComputeBarycentrics for a whole image.
//   grad_barycentrics: [height * width, 3].
//   grad_clip_vertices: [vertex_count, 4], accumulated (z gets nothing).
void BarycentricsGrad(const float* clip_vertices, const int32_t* triangles,
                      const int32_t* triangle_ids, int height, int width,
                      const float* grad_barycentrics,
                      float* grad_clip_vertices);

// out[p, c] = sum_k barycentrics[p, k] * attributes[triangle[k], c].
//   attributes: [vertex_count, channels]; out: [height * width, channels],
//   written for pixels [begin, end).
void Interpolate(const float* attributes, int channels,
                 const int32_t* triangles, const int32_t* triangle_ids,
                 const float* barycentrics, int64_t begin, int64_t end,
                 float* out);

// Backward of Interpolate for pixels [begin, end).
//   grad_out: [height * width, channels].
//   grad_attributes: [vertex_count, channels], accumulated (may be null).
//   grad_barycentrics: [height * width, 3], written (may be null).
void InterpolateGrad(const float* attributes, int channels,
                     const int32_t* triangles, const int32_t* triangle_ids,
                     const float* barycentrics, const float* grad_out,
                     int64_t begin, int64_t end, float* grad_attributes,
                     float* grad_barycentrics);

// Unit vertex normals: the area-weighted face normals (p1 - p0) x (p2 - p0)
// summed at each vertex, then normalised as v / sqrt(max(|v|^2, eps)).
//   vertices: [vertex_count, 3]; normals: [vertex_count, 3] (written);
//   sums: scratch [vertex_count, 3].
void VertexNormals(const float* vertices, int64_t vertex_count,
                   const int32_t* triangles, int64_t triangle_count,
                   float* sums, float* normals);

// Backward of VertexNormals.  sums: scratch [vertex_count, 3];
// grad_vertices: [vertex_count, 3], accumulated.
void VertexNormalsGrad(const float* vertices, int64_t vertex_count,
                       const int32_t* triangles, int64_t triangle_count,
                       const float* grad_normals, float* sums,
                       float* grad_vertices);

// Most lights the op backend shades with (shading.py MAX_LIGHTS_OP).
constexpr int kMaxLights = 16;

// Phong material constants (shading.py Material).
struct Material {
  float shininess;
  float specular_strength;
  float specular_diffuse_mix;
};

// Lights of one image, camera space.
//   positions: [light_count, 3] mm; colors: [light_count, 3]; ambient: [3].
struct Lights {
  int light_count;
  const float* positions;
  const float* colors;
  const float* ambient;
};

// Deferred Phong shading (formula in renderer/shading.py) of pixels
// [begin, end).  albedo, normals, positions, radiance: [pixels, 3];
// mask: [pixels] (radiance is multiplied by it).
void PhongShade(const float* albedo, const float* normals,
                const float* positions, const float* mask, const Lights& lights,
                const Material& material, int64_t begin, int64_t end,
                float* radiance);

// Backward of PhongShade for pixels [begin, end).  grad_albedo, grad_normals,
// grad_positions: [pixels, 3], written; grad_light_positions,
// grad_light_colors: [light_count, 3] and grad_ambient: [3], accumulated.
void PhongShadeGrad(const float* albedo, const float* normals,
                    const float* positions, const float* mask,
                    const Lights& lights, const Material& material,
                    const float* grad_radiance, int64_t begin, int64_t end,
                    float* grad_albedo, float* grad_normals,
                    float* grad_positions, float* grad_light_positions,
                    float* grad_light_colors, float* grad_ambient);

// Per-vertex data of one image for the fused pass, each [vertex_count, k]:
// clip_vertices k = 4 (x, y, z, w); colors (linear RGB albedo), normals and
// positions (camera space) k = 3.
struct MeshAttributes {
  const float* clip_vertices;
  const float* colors;
  const float* normals;
  const float* positions;
};

// Their gradients, same shapes (written by UnpackGradients).
struct MeshGradients {
  float* clip_vertices;
  float* colors;
  float* normals;
  float* positions;
};

// Floats per vertex of the packed layout of the fused pass: one 64-byte cache
// line per vertex instead of four scattered rows.
constexpr int kPackedFloatsPerVertex = 16;

// Packs a mesh into packed [vertex_count, kPackedFloatsPerVertex].
void PackVertices(const MeshAttributes& mesh, int64_t vertex_count,
                  float* packed);

// The fused hot path of the renderer for pixels [begin, end) of one image:
// ComputeBarycentrics, Interpolate of colors, normals and positions, then
// PhongShade with mask = (triangle_ids >= 0), clipped to [0, 1] per channel,
// without intermediate images; pixels with no triangle get background [3].
// packed: from PackVertices.  image: [height * width, 3].
void DeferredShading(const float* packed, const int32_t* triangles,
                     const int32_t* triangle_ids, int height, int width,
                     const Lights& lights, const Material& material,
                     const float* background, int64_t begin, int64_t end,
                     float* image);

// Backward of DeferredShading for a whole image: accumulates the gradient of
// the packed vertices into grad_packed [vertex_count, kPackedFloatsPerVertex]
// (zeroed by the caller) and those of the lights and the background [3].
void DeferredShadingGrad(const float* packed, const int32_t* triangles,
                         const int32_t* triangle_ids, int height, int width,
                         const Lights& lights, const Material& material,
                         const float* grad_image, float* grad_packed,
                         float* grad_light_positions, float* grad_light_colors,
                         float* grad_ambient, float* grad_background);

// Writes the packed gradients into the four per-attribute arrays (the clip z
// gradient is 0).
void UnpackGradients(const float* grad_packed, int64_t vertex_count,
                     const MeshGradients& grads);

}  // namespace unsup3dmm

#endif  // UNSUP3DMM_RENDERER_KERNELS_SHADING_KERNELS_IMPL_H_
