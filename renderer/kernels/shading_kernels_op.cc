// TensorFlow op shim around the deferred-shading core
// (shading_kernels_impl.h): registers the Unsup3dmm{Barycentrics,Interpolate,
// VertexNormals,PhongShade,DeferredShading} ops and their *Grad ops with shape
// functions,
// checks inputs with OP_REQUIRES and spreads the work over TensorFlow's CPU
// worker threads: per-pixel passes split the batch's rows, passes that
// accumulate into per-vertex or per-light arrays split the batch's images.
// The gradients are registered in Python (renderer/shading_op.py).

#include <algorithm>
#include <cstdint>
#include <vector>

#include "shading_kernels_impl.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/lib/core/threadpool.h"

namespace unsup3dmm {
namespace {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

// Rough costs in CPU cycles, for the thread pool's work splitting.
constexpr int64_t kCyclesPerPixel = 60;
constexpr int64_t kCyclesPerShadedPixel = 400;
constexpr int64_t kCyclesPerTriangle = 40;

// ---------------------------------------------------------------------------
// Input checks.

absl::Status CheckShape(const Tensor& tensor, const char* name,
                        std::vector<int64_t> expected, const char* spec) {
  bool ok = tensor.dims() == static_cast<int>(expected.size());
  for (int d = 0; ok && d < tensor.dims(); ++d) {
    ok = expected[d] < 0 || tensor.dim_size(d) == expected[d];
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      name, " must have shape ", spec, ", got ", tensor.shape().DebugString()));
}

absl::Status CheckTriangles(const Tensor& triangles, int64_t vertex_count) {
  TF_RETURN_IF_ERROR(
      CheckShape(triangles, "triangles", {-1, 3}, "[triangle_count, 3]"));
  const int32_t* data = triangles.flat<int32_t>().data();
  for (int64_t k = 0; k < triangles.NumElements(); ++k) {
    if (data[k] < 0 || data[k] >= vertex_count) {
      return absl::InvalidArgumentError(absl::StrCat(
          "triangles[", k / 3, ", ", k % 3, "] = ", data[k],
          " is out of range [0, ", vertex_count, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTriangleIds(const Tensor& triangle_ids, int64_t batch,
                              int64_t triangle_count) {
  TF_RETURN_IF_ERROR(CheckShape(triangle_ids, "triangle_ids", {batch, -1, -1},
                                "[batch, height, width]"));
  const int32_t* data = triangle_ids.flat<int32_t>().data();
  const int64_t count = triangle_ids.NumElements();
  // One branch-free pass: cheap next to the work on the pixels.
  int32_t low = 0, high = -1;
  for (int64_t k = 0; k < count; ++k) {
    low = std::min(low, data[k]);
    high = std::max(high, data[k]);
  }
  if (low < -1 || high >= triangle_count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "triangle_ids must be -1 or in [0, ", triangle_count,
        "), got values in [", low, ", ", high, "]"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Threads.

tensorflow::thread::ThreadPool* Pool(OpKernelContext* context) {
  return context->device()->tensorflow_cpu_worker_threads()->workers;
}

// Calls fn(image, pixel_begin, pixel_end) over all pixels of the batch, split
// in bands of rows across threads.
template <typename Fn>
void ForEachPixelBand(OpKernelContext* context, int64_t batch, int64_t height,
                      int64_t width, int64_t cycles_per_pixel, Fn fn) {
  Pool(context)->ParallelFor(
      batch * height, cycles_per_pixel * width,
      [&](int64_t begin, int64_t end) {
        while (begin < end) {
          const int64_t image = begin / height;
          const int64_t row_end = std::min(end, (image + 1) * height);
          fn(image, (begin - image * height) * width,
             (row_end - image * height) * width);
          begin = row_end;
        }
      });
}

// Calls fn(image) for every image, images spread across threads.
template <typename Fn>
void ForEachImage(OpKernelContext* context, int64_t batch,
                  int64_t cost_per_image, Fn fn) {
  Pool(context)->ParallelFor(batch, cost_per_image,
                             [&](int64_t begin, int64_t end) {
                               for (int64_t b = begin; b < end; ++b) fn(b);
                             });
}

absl::Status ImageShape(InferenceContext* c, int input, ShapeHandle* shape) {
  return c->WithRank(c->input(input), 3, shape);
}

// ---------------------------------------------------------------------------
// Barycentrics.

REGISTER_OP("Unsup3dmmBarycentrics")
    .Input("clip_vertices: float32")
    .Input("triangles: int32")
    .Input("triangle_ids: int32")
    .Output("barycentrics: float32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle ids;
      TF_RETURN_IF_ERROR(ImageShape(c, 2, &ids));
      ShapeHandle out;
      TF_RETURN_IF_ERROR(c->Concatenate(ids, c->Vector(3), &out));
      c->set_output(0, out);
      return absl::OkStatus();
    });

REGISTER_OP("Unsup3dmmBarycentricsGrad")
    .Input("grad_barycentrics: float32")
    .Input("clip_vertices: float32")
    .Input("triangles: int32")
    .Input("triangle_ids: int32")
    .Output("grad_clip_vertices: float32")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(1));
      return absl::OkStatus();
    });

struct BarycentricInputs {
  int64_t batch, vertex_count, triangle_count, height, width;
};

absl::Status CheckBarycentricInputs(const Tensor& clip_vertices,
                                    const Tensor& triangles,
                                    const Tensor& triangle_ids,
                                    BarycentricInputs* sizes) {
  TF_RETURN_IF_ERROR(CheckShape(clip_vertices, "clip_vertices", {-1, -1, 4},
                                "[batch, vertex_count, 4]"));
  sizes->batch = clip_vertices.dim_size(0);
  sizes->vertex_count = clip_vertices.dim_size(1);
  TF_RETURN_IF_ERROR(CheckTriangles(triangles, sizes->vertex_count));
  sizes->triangle_count = triangles.dim_size(0);
  TF_RETURN_IF_ERROR(
      CheckTriangleIds(triangle_ids, sizes->batch, sizes->triangle_count));
  sizes->height = triangle_ids.dim_size(1);
  sizes->width = triangle_ids.dim_size(2);
  return absl::OkStatus();
}

class BarycentricsOp : public OpKernel {
 public:
  explicit BarycentricsOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& clip_vertices = context->input(0);
    const Tensor& triangles = context->input(1);
    const Tensor& triangle_ids = context->input(2);
    BarycentricInputs s;
    OP_REQUIRES_OK(context, CheckBarycentricInputs(clip_vertices, triangles,
                                                   triangle_ids, &s));
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(
                                0, TensorShape({s.batch, s.height, s.width, 3}),
                                &output));
    const float* clip = clip_vertices.flat<float>().data();
    const int32_t* tri = triangles.flat<int32_t>().data();
    const int32_t* ids = triangle_ids.flat<int32_t>().data();
    float* out = output->flat<float>().data();
    const int64_t pixels = s.height * s.width;
    ForEachPixelBand(
        context, s.batch, s.height, s.width, kCyclesPerPixel,
        [&](int64_t b, int64_t begin, int64_t end) {
          ComputeBarycentrics(clip + b * s.vertex_count * 4, tri,
                              ids + b * pixels, s.height, s.width, begin, end,
                              out + b * pixels * 3);
        });
  }
};

class BarycentricsGradOp : public OpKernel {
 public:
  explicit BarycentricsGradOp(OpKernelConstruction* context)
      : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& grad = context->input(0);
    const Tensor& clip_vertices = context->input(1);
    const Tensor& triangles = context->input(2);
    const Tensor& triangle_ids = context->input(3);
    BarycentricInputs s;
    OP_REQUIRES_OK(context, CheckBarycentricInputs(clip_vertices, triangles,
                                                   triangle_ids, &s));
    OP_REQUIRES_OK(context,
                   CheckShape(grad, "grad_barycentrics",
                              {s.batch, s.height, s.width, 3},
                              "[batch, height, width, 3]"));
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, clip_vertices.shape(), &output));
    const float* clip = clip_vertices.flat<float>().data();
    const int32_t* tri = triangles.flat<int32_t>().data();
    const int32_t* ids = triangle_ids.flat<int32_t>().data();
    const float* grad_data = grad.flat<float>().data();
    float* out = output->flat<float>().data();
    const int64_t pixels = s.height * s.width;
    ForEachImage(context, s.batch, kCyclesPerPixel * pixels, [&](int64_t b) {
      float* image_out = out + b * s.vertex_count * 4;
      std::fill(image_out, image_out + s.vertex_count * 4, 0.0f);
      BarycentricsGrad(clip + b * s.vertex_count * 4, tri, ids + b * pixels,
                       s.height, s.width, grad_data + b * pixels * 3,
                       image_out);
    });
  }
};

REGISTER_KERNEL_BUILDER(Name("Unsup3dmmBarycentrics").Device(DEVICE_CPU),
                        BarycentricsOp);
REGISTER_KERNEL_BUILDER(Name("Unsup3dmmBarycentricsGrad").Device(DEVICE_CPU),
                        BarycentricsGradOp);

// ---------------------------------------------------------------------------
// Interpolation.

REGISTER_OP("Unsup3dmmInterpolate")
    .Input("attributes: float32")
    .Input("triangles: int32")
    .Input("triangle_ids: int32")
    .Input("barycentrics: float32")
    .Output("interpolated: float32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle attributes, ids, out;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &attributes));
      TF_RETURN_IF_ERROR(ImageShape(c, 2, &ids));
      TF_RETURN_IF_ERROR(c->Concatenate(
          ids, c->Vector(c->Dim(attributes, 2)), &out));
      c->set_output(0, out);
      return absl::OkStatus();
    });

REGISTER_OP("Unsup3dmmInterpolateGrad")
    .Input("grad_interpolated: float32")
    .Input("attributes: float32")
    .Input("triangles: int32")
    .Input("triangle_ids: int32")
    .Input("barycentrics: float32")
    .Output("grad_attributes: float32")
    .Output("grad_barycentrics: float32")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(1));
      c->set_output(1, c->input(4));
      return absl::OkStatus();
    });

struct InterpolateInputs {
  int64_t batch, vertex_count, channels, height, width;
};

absl::Status CheckInterpolateInputs(const Tensor& attributes,
                                    const Tensor& triangles,
                                    const Tensor& triangle_ids,
                                    const Tensor& barycentrics,
                                    InterpolateInputs* sizes) {
  TF_RETURN_IF_ERROR(CheckShape(attributes, "attributes", {-1, -1, -1},
                                "[batch, vertex_count, channels]"));
  sizes->batch = attributes.dim_size(0);
  sizes->vertex_count = attributes.dim_size(1);
  sizes->channels = attributes.dim_size(2);
  TF_RETURN_IF_ERROR(CheckTriangles(triangles, sizes->vertex_count));
  TF_RETURN_IF_ERROR(
      CheckTriangleIds(triangle_ids, sizes->batch, triangles.dim_size(0)));
  sizes->height = triangle_ids.dim_size(1);
  sizes->width = triangle_ids.dim_size(2);
  return CheckShape(barycentrics, "barycentrics",
                    {sizes->batch, sizes->height, sizes->width, 3},
                    "[batch, height, width, 3] like triangle_ids");
}

class InterpolateOp : public OpKernel {
 public:
  explicit InterpolateOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& attributes = context->input(0);
    const Tensor& triangles = context->input(1);
    const Tensor& triangle_ids = context->input(2);
    const Tensor& barycentrics = context->input(3);
    InterpolateInputs s;
    OP_REQUIRES_OK(context, CheckInterpolateInputs(attributes, triangles,
                                                   triangle_ids, barycentrics,
                                                   &s));
    Tensor* output = nullptr;
    OP_REQUIRES_OK(
        context,
        context->allocate_output(
            0, TensorShape({s.batch, s.height, s.width, s.channels}),
            &output));
    const float* attr = attributes.flat<float>().data();
    const int32_t* tri = triangles.flat<int32_t>().data();
    const int32_t* ids = triangle_ids.flat<int32_t>().data();
    const float* bary = barycentrics.flat<float>().data();
    float* out = output->flat<float>().data();
    const int64_t pixels = s.height * s.width;
    const int channels = static_cast<int>(s.channels);
    ForEachPixelBand(
        context, s.batch, s.height, s.width, 10 * (channels + 1),
        [&](int64_t b, int64_t begin, int64_t end) {
          Interpolate(attr + b * s.vertex_count * s.channels, channels, tri,
                      ids + b * pixels, bary + b * pixels * 3, begin, end,
                      out + b * pixels * s.channels);
        });
  }
};

class InterpolateGradOp : public OpKernel {
 public:
  explicit InterpolateGradOp(OpKernelConstruction* context)
      : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& grad = context->input(0);
    const Tensor& attributes = context->input(1);
    const Tensor& triangles = context->input(2);
    const Tensor& triangle_ids = context->input(3);
    const Tensor& barycentrics = context->input(4);
    InterpolateInputs s;
    OP_REQUIRES_OK(context, CheckInterpolateInputs(attributes, triangles,
                                                   triangle_ids, barycentrics,
                                                   &s));
    OP_REQUIRES_OK(context,
                   CheckShape(grad, "grad_interpolated",
                              {s.batch, s.height, s.width, s.channels},
                              "[batch, height, width, channels]"));
    Tensor* grad_attributes = nullptr;
    Tensor* grad_barycentrics = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, attributes.shape(),
                                                     &grad_attributes));
    OP_REQUIRES_OK(context, context->allocate_output(1, barycentrics.shape(),
                                                     &grad_barycentrics));
    const float* attr = attributes.flat<float>().data();
    const int32_t* tri = triangles.flat<int32_t>().data();
    const int32_t* ids = triangle_ids.flat<int32_t>().data();
    const float* bary = barycentrics.flat<float>().data();
    const float* grad_data = grad.flat<float>().data();
    float* grad_attr = grad_attributes->flat<float>().data();
    float* grad_bary = grad_barycentrics->flat<float>().data();
    const int64_t pixels = s.height * s.width;
    const int64_t per_image = s.vertex_count * s.channels;
    const int channels = static_cast<int>(s.channels);
    ForEachImage(context, s.batch, 20 * (channels + 1) * pixels,
                 [&](int64_t b) {
                   float* image_grad = grad_attr + b * per_image;
                   std::fill(image_grad, image_grad + per_image, 0.0f);
                   InterpolateGrad(attr + b * per_image, channels, tri,
                                   ids + b * pixels, bary + b * pixels * 3,
                                   grad_data + b * pixels * s.channels, 0,
                                   pixels, image_grad,
                                   grad_bary + b * pixels * 3);
                 });
  }
};

REGISTER_KERNEL_BUILDER(Name("Unsup3dmmInterpolate").Device(DEVICE_CPU),
                        InterpolateOp);
REGISTER_KERNEL_BUILDER(Name("Unsup3dmmInterpolateGrad").Device(DEVICE_CPU),
                        InterpolateGradOp);

// ---------------------------------------------------------------------------
// Vertex normals.

REGISTER_OP("Unsup3dmmVertexNormals")
    .Input("vertices: float32")
    .Input("triangles: int32")
    .Output("normals: float32")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    });

REGISTER_OP("Unsup3dmmVertexNormalsGrad")
    .Input("grad_normals: float32")
    .Input("vertices: float32")
    .Input("triangles: int32")
    .Output("grad_vertices: float32")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(1));
      return absl::OkStatus();
    });

template <bool kGrad>
class VertexNormalsOp : public OpKernel {
 public:
  explicit VertexNormalsOp(OpKernelConstruction* context)
      : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const int offset = kGrad ? 1 : 0;
    const Tensor& vertices = context->input(offset);
    const Tensor& triangles = context->input(offset + 1);
    OP_REQUIRES_OK(context, CheckShape(vertices, "vertices", {-1, -1, 3},
                                       "[batch, vertex_count, 3]"));
    const int64_t batch = vertices.dim_size(0);
    const int64_t vertex_count = vertices.dim_size(1);
    OP_REQUIRES_OK(context, CheckTriangles(triangles, vertex_count));
    const int64_t triangle_count = triangles.dim_size(0);
    if (kGrad) {
      OP_REQUIRES_OK(context,
                     CheckShape(context->input(0), "grad_normals",
                                {batch, vertex_count, 3},
                                "[batch, vertex_count, 3] like vertices"));
    }
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, vertices.shape(), &output));
    const float* vert = vertices.flat<float>().data();
    const int32_t* tri = triangles.flat<int32_t>().data();
    const float* grad = kGrad ? context->input(0).flat<float>().data()
                              : nullptr;
    float* out = output->flat<float>().data();
    const int64_t per_image = vertex_count * 3;
    ForEachImage(context, batch, kCyclesPerTriangle * triangle_count,
                 [&](int64_t b) {
                   std::vector<float> sums(per_image);
                   if (kGrad) {
                     float* image_out = out + b * per_image;
                     std::fill(image_out, image_out + per_image, 0.0f);
                     VertexNormalsGrad(vert + b * per_image, vertex_count, tri,
                                       triangle_count, grad + b * per_image,
                                       sums.data(), image_out);
                   } else {
                     VertexNormals(vert + b * per_image, vertex_count, tri,
                                   triangle_count, sums.data(),
                                   out + b * per_image);
                   }
                 });
  }
};

REGISTER_KERNEL_BUILDER(Name("Unsup3dmmVertexNormals").Device(DEVICE_CPU),
                        VertexNormalsOp<false>);
REGISTER_KERNEL_BUILDER(Name("Unsup3dmmVertexNormalsGrad").Device(DEVICE_CPU),
                        VertexNormalsOp<true>);

// ---------------------------------------------------------------------------
// Phong shading.

REGISTER_OP("Unsup3dmmPhongShade")
    .Input("albedo: float32")
    .Input("normals: float32")
    .Input("positions: float32")
    .Input("mask: float32")
    .Input("light_positions: float32")
    .Input("light_colors: float32")
    .Input("ambient: float32")
    .Attr("shininess: float")
    .Attr("specular_strength: float")
    .Attr("specular_diffuse_mix: float")
    .Output("radiance: float32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle albedo;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &albedo));
      c->set_output(0, albedo);
      return absl::OkStatus();
    });

REGISTER_OP("Unsup3dmmPhongShadeGrad")
    .Input("grad_radiance: float32")
    .Input("albedo: float32")
    .Input("normals: float32")
    .Input("positions: float32")
    .Input("mask: float32")
    .Input("light_positions: float32")
    .Input("light_colors: float32")
    .Input("ambient: float32")
    .Attr("shininess: float")
    .Attr("specular_strength: float")
    .Attr("specular_diffuse_mix: float")
    .Output("grad_albedo: float32")
    .Output("grad_normals: float32")
    .Output("grad_positions: float32")
    .Output("grad_light_positions: float32")
    .Output("grad_light_colors: float32")
    .Output("grad_ambient: float32")
    .SetShapeFn([](InferenceContext* c) {
      for (int k = 0; k < 3; ++k) c->set_output(k, c->input(1));
      c->set_output(3, c->input(5));
      c->set_output(4, c->input(6));
      c->set_output(5, c->input(7));
      return absl::OkStatus();
    });

absl::Status GetMaterial(OpKernelConstruction* context, Material* material) {
  TF_RETURN_IF_ERROR(context->GetAttr("shininess", &material->shininess));
  TF_RETURN_IF_ERROR(
      context->GetAttr("specular_strength", &material->specular_strength));
  TF_RETURN_IF_ERROR(context->GetAttr("specular_diffuse_mix",
                                      &material->specular_diffuse_mix));
  if (!(material->shininess >= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("shininess must be >= 1, got ", material->shininess));
  }
  return absl::OkStatus();
}

// Checks light_positions [batch, L, 3], light_colors [batch, L, 3] and
// ambient [batch, 3]; returns L.
absl::Status CheckLights(const Tensor& light_positions,
                         const Tensor& light_colors, const Tensor& ambient,
                         int64_t batch, int64_t* light_count) {
  TF_RETURN_IF_ERROR(CheckShape(light_positions, "light_positions",
                                {batch, -1, 3}, "[batch, light_count, 3]"));
  *light_count = light_positions.dim_size(1);
  if (*light_count > kMaxLights) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxLights, " lights are supported, got ",
                     *light_count));
  }
  TF_RETURN_IF_ERROR(CheckShape(light_colors, "light_colors",
                                {batch, *light_count, 3},
                                "[batch, light_count, 3]"));
  return CheckShape(ambient, "ambient", {batch, 3}, "[batch, 3]");
}

// Lights of image b.
Lights ImageLights(const Tensor& light_positions, const Tensor& light_colors,
                   const Tensor& ambient, int64_t b) {
  const int64_t light_count = light_positions.dim_size(1);
  return Lights{static_cast<int>(light_count),
                light_positions.flat<float>().data() + b * light_count * 3,
                light_colors.flat<float>().data() + b * light_count * 3,
                ambient.flat<float>().data() + b * 3};
}

// Allocates the gradients of the lights, zeroed: outputs first, first + 1,
// first + 2.
absl::Status AllocateLightGradients(OpKernelContext* context, int first,
                                    const Tensor& light_positions,
                                    const Tensor& light_colors,
                                    const Tensor& ambient, float* out[3]) {
  const Tensor* inputs[3] = {&light_positions, &light_colors, &ambient};
  for (int k = 0; k < 3; ++k) {
    Tensor* output = nullptr;
    TF_RETURN_IF_ERROR(
        context->allocate_output(first + k, inputs[k]->shape(), &output));
    out[k] = output->flat<float>().data();
    std::fill(out[k], out[k] + output->NumElements(), 0.0f);
  }
  return absl::OkStatus();
}

template <bool kGrad>
class PhongShadeOp : public OpKernel {
 public:
  explicit PhongShadeOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, GetMaterial(context, &material_));
  }

  void Compute(OpKernelContext* context) override {
    const int offset = kGrad ? 1 : 0;
    const Tensor& albedo = context->input(offset);
    const Tensor& normals = context->input(offset + 1);
    const Tensor& positions = context->input(offset + 2);
    const Tensor& mask = context->input(offset + 3);
    const Tensor& light_positions = context->input(offset + 4);
    const Tensor& light_colors = context->input(offset + 5);
    const Tensor& ambient = context->input(offset + 6);
    OP_REQUIRES_OK(context, CheckShape(albedo, "albedo", {-1, -1, -1, 3},
                                       "[batch, height, width, 3]"));
    const int64_t batch = albedo.dim_size(0);
    const int64_t height = albedo.dim_size(1);
    const int64_t width = albedo.dim_size(2);
    const std::vector<int64_t> image = {batch, height, width, 3};
    OP_REQUIRES_OK(context,
                   CheckShape(normals, "normals", image,
                              "[batch, height, width, 3] like albedo"));
    OP_REQUIRES_OK(context,
                   CheckShape(positions, "positions", image,
                              "[batch, height, width, 3] like albedo"));
    OP_REQUIRES_OK(context, CheckShape(mask, "mask", {batch, height, width},
                                       "[batch, height, width]"));
    int64_t light_count;
    OP_REQUIRES_OK(context, CheckLights(light_positions, light_colors, ambient,
                                        batch, &light_count));
    if (kGrad) {
      OP_REQUIRES_OK(context,
                     CheckShape(context->input(0), "grad_radiance", image,
                                "[batch, height, width, 3] like albedo"));
    }
    const float* kd = albedo.flat<float>().data();
    const float* nrm = normals.flat<float>().data();
    const float* pos = positions.flat<float>().data();
    const float* msk = mask.flat<float>().data();
    const int64_t pixels = height * width;
    auto image_lights = [&](int64_t b) {
      return ImageLights(light_positions, light_colors, ambient, b);
    };
    if (!kGrad) {
      Tensor* output = nullptr;
      OP_REQUIRES_OK(context,
                     context->allocate_output(0, albedo.shape(), &output));
      float* out = output->flat<float>().data();
      ForEachPixelBand(
          context, batch, height, width, kCyclesPerShadedPixel * light_count,
          [&](int64_t b, int64_t begin, int64_t end) {
            const int64_t o = b * pixels * 3;
            PhongShade(kd + o, nrm + o, pos + o, msk + b * pixels,
                       image_lights(b), material_, begin, end, out + o);
          });
      return;
    }
    float* out[6];
    for (int k = 0; k < 3; ++k) {
      Tensor* output = nullptr;
      OP_REQUIRES_OK(context,
                     context->allocate_output(k, albedo.shape(), &output));
      out[k] = output->flat<float>().data();
    }
    OP_REQUIRES_OK(context,
                   AllocateLightGradients(context, 3, light_positions,
                                          light_colors, ambient, out + 3));
    const float* grad = context->input(0).flat<float>().data();
    ForEachImage(
        context, batch, 3 * kCyclesPerShadedPixel * light_count * pixels,
        [&](int64_t b) {
          const int64_t o = b * pixels * 3;
          PhongShadeGrad(kd + o, nrm + o, pos + o, msk + b * pixels,
                         image_lights(b), material_, grad + o, 0, pixels,
                         out[0] + o, out[1] + o, out[2] + o,
                         out[3] + b * light_count * 3,
                         out[4] + b * light_count * 3, out[5] + b * 3);
        });
  }

 private:
  Material material_;
};

REGISTER_KERNEL_BUILDER(Name("Unsup3dmmPhongShade").Device(DEVICE_CPU),
                        PhongShadeOp<false>);
REGISTER_KERNEL_BUILDER(Name("Unsup3dmmPhongShadeGrad").Device(DEVICE_CPU),
                        PhongShadeOp<true>);

// ---------------------------------------------------------------------------
// Fused deferred shading: barycentrics, interpolation and Phong shading.

REGISTER_OP("Unsup3dmmDeferredShading")
    .Input("clip_vertices: float32")
    .Input("colors: float32")
    .Input("normals: float32")
    .Input("positions: float32")
    .Input("triangles: int32")
    .Input("triangle_ids: int32")
    .Input("light_positions: float32")
    .Input("light_colors: float32")
    .Input("ambient: float32")
    .Input("background: float32")
    .Attr("shininess: float")
    .Attr("specular_strength: float")
    .Attr("specular_diffuse_mix: float")
    .Output("image: float32")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle ids;
      TF_RETURN_IF_ERROR(ImageShape(c, 5, &ids));
      ShapeHandle out;
      TF_RETURN_IF_ERROR(c->Concatenate(ids, c->Vector(3), &out));
      c->set_output(0, out);
      return absl::OkStatus();
    });

REGISTER_OP("Unsup3dmmDeferredShadingGrad")
    .Input("grad_image: float32")
    .Input("clip_vertices: float32")
    .Input("colors: float32")
    .Input("normals: float32")
    .Input("positions: float32")
    .Input("triangles: int32")
    .Input("triangle_ids: int32")
    .Input("light_positions: float32")
    .Input("light_colors: float32")
    .Input("ambient: float32")
    .Input("background: float32")
    .Attr("shininess: float")
    .Attr("specular_strength: float")
    .Attr("specular_diffuse_mix: float")
    .Output("grad_clip_vertices: float32")
    .Output("grad_colors: float32")
    .Output("grad_normals: float32")
    .Output("grad_positions: float32")
    .Output("grad_light_positions: float32")
    .Output("grad_light_colors: float32")
    .Output("grad_ambient: float32")
    .Output("grad_background: float32")
    .SetShapeFn([](InferenceContext* c) {
      for (int k = 0; k < 8; ++k) {
        c->set_output(k, c->input(k < 4 ? k + 1 : k + 3));
      }
      return absl::OkStatus();
    });

template <bool kGrad>
class DeferredShadingOp : public OpKernel {
 public:
  explicit DeferredShadingOp(OpKernelConstruction* context)
      : OpKernel(context) {
    OP_REQUIRES_OK(context, GetMaterial(context, &material_));
  }

  void Compute(OpKernelContext* context) override {
    const int offset = kGrad ? 1 : 0;
    const Tensor& clip_vertices = context->input(offset);
    const Tensor* attributes[3] = {&context->input(offset + 1),
                                   &context->input(offset + 2),
                                   &context->input(offset + 3)};
    const Tensor& triangles = context->input(offset + 4);
    const Tensor& triangle_ids = context->input(offset + 5);
    const Tensor& light_positions = context->input(offset + 6);
    const Tensor& light_colors = context->input(offset + 7);
    const Tensor& ambient = context->input(offset + 8);
    const Tensor& background = context->input(offset + 9);
    BarycentricInputs s;
    OP_REQUIRES_OK(context, CheckBarycentricInputs(clip_vertices, triangles,
                                                   triangle_ids, &s));
    const char* names[3] = {"colors", "normals", "positions"};
    for (int k = 0; k < 3; ++k) {
      OP_REQUIRES_OK(context,
                     CheckShape(*attributes[k], names[k],
                                {s.batch, s.vertex_count, 3},
                                "[batch, vertex_count, 3] like clip_vertices"));
    }
    int64_t light_count;
    OP_REQUIRES_OK(context, CheckLights(light_positions, light_colors, ambient,
                                        s.batch, &light_count));
    OP_REQUIRES_OK(context, CheckShape(background, "background", {s.batch, 3},
                                       "[batch, 3]"));
    const float* background_data = background.flat<float>().data();
    const TensorShape image_shape({s.batch, s.height, s.width, 3});
    if (kGrad) {
      OP_REQUIRES_OK(context, CheckShape(context->input(0), "grad_image",
                                         {s.batch, s.height, s.width, 3},
                                         "[batch, height, width, 3]"));
    }
    const int32_t* tri = triangles.flat<int32_t>().data();
    const int32_t* ids = triangle_ids.flat<int32_t>().data();
    const int64_t pixels = s.height * s.width;
    auto mesh = [&](int64_t b) {
      return MeshAttributes{
          clip_vertices.flat<float>().data() + b * s.vertex_count * 4,
          attributes[0]->flat<float>().data() + b * s.vertex_count * 3,
          attributes[1]->flat<float>().data() + b * s.vertex_count * 3,
          attributes[2]->flat<float>().data() + b * s.vertex_count * 3};
    };
    const int height = static_cast<int>(s.height);
    const int width = static_cast<int>(s.width);
    const int64_t packed_size = s.vertex_count * kPackedFloatsPerVertex;
    // Work units: whole images, or bands of rows when there are fewer images
    // than threads; each unit packs its image's vertices once.
    const int64_t threads = std::max(1, Pool(context)->NumThreads());
    if (!kGrad) {
      Tensor* output = nullptr;
      OP_REQUIRES_OK(context,
                     context->allocate_output(0, image_shape, &output));
      float* out = output->flat<float>().data();
      const int64_t bands =
          s.batch >= threads
              ? 1
              : std::min<int64_t>(s.height, (threads + s.batch - 1) / s.batch);
      Pool(context)->ParallelFor(
          s.batch * bands,
          kCyclesPerShadedPixel * (light_count + 1) * pixels / bands,
          [&](int64_t begin, int64_t end) {
            std::vector<float> packed(packed_size);
            for (int64_t unit = begin; unit < end; ++unit) {
              const int64_t b = unit / bands;
              const int64_t band = unit % bands;
              PackVertices(mesh(b), s.vertex_count, packed.data());
              DeferredShading(
                  packed.data(), tri, ids + b * pixels, height, width,
                  ImageLights(light_positions, light_colors, ambient, b),
                  material_, background_data + 3 * b,
                  band * s.height / bands * s.width,
                  (band + 1) * s.height / bands * s.width,
                  out + b * pixels * 3);
            }
          });
      return;
    }
    float* vertex_grads[4];
    for (int k = 0; k < 4; ++k) {
      Tensor* output = nullptr;
      OP_REQUIRES_OK(context, context->allocate_output(
                                  k, context->input(offset + k).shape(),
                                  &output));
      vertex_grads[k] = output->flat<float>().data();
    }
    float* light_grads[3];
    OP_REQUIRES_OK(context,
                   AllocateLightGradients(context, 4, light_positions,
                                          light_colors, ambient, light_grads));
    Tensor* grad_background = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(7, background.shape(),
                                                     &grad_background));
    float* grad_background_data = grad_background->flat<float>().data();
    std::fill(grad_background_data,
              grad_background_data + grad_background->NumElements(), 0.0f);
    const float* grad = context->input(0).flat<float>().data();
    ForEachImage(
        context, s.batch,
        3 * kCyclesPerShadedPixel * (light_count + 1) * pixels,
        [&](int64_t b) {
          std::vector<float> packed(packed_size);
          std::vector<float> grad_packed(packed_size, 0.0f);
          PackVertices(mesh(b), s.vertex_count, packed.data());
          DeferredShadingGrad(
              packed.data(), tri, ids + b * pixels, height, width,
              ImageLights(light_positions, light_colors, ambient, b),
              material_, grad + b * pixels * 3, grad_packed.data(),
              light_grads[0] + b * light_count * 3,
              light_grads[1] + b * light_count * 3, light_grads[2] + b * 3,
              grad_background_data + b * 3);
          const int64_t v = s.vertex_count;
          UnpackGradients(grad_packed.data(), v,
                          MeshGradients{vertex_grads[0] + b * v * 4,
                                        vertex_grads[1] + b * v * 3,
                                        vertex_grads[2] + b * v * 3,
                                        vertex_grads[3] + b * v * 3});
        });
  }

 private:
  Material material_;
};

REGISTER_KERNEL_BUILDER(Name("Unsup3dmmDeferredShading").Device(DEVICE_CPU),
                        DeferredShadingOp<false>);
REGISTER_KERNEL_BUILDER(
    Name("Unsup3dmmDeferredShadingGrad").Device(DEVICE_CPU),
    DeferredShadingOp<true>);

}  // namespace
}  // namespace unsup3dmm
