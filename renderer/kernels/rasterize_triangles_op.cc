// TensorFlow op shim around the rasteriser core (rasterize_triangles_impl.h):
// registers Unsup3dmmRasterizeTriangles with its shape function, checks the
// inputs with OP_REQUIRES and spreads images (and, for small batches, bands of
// rows) over TensorFlow's CPU worker threads.  The op has no gradient; the
// Python loader (renderer/rasterize_op.py) registers it as not differentiable.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "rasterize_triangles_impl.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/util/work_sharder.h"

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
constexpr int64_t kCyclesPerVertex = 20;
constexpr int64_t kCyclesPerTriangle = 40;
constexpr int64_t kCyclesPerPixel = 10;

absl::Status CheckImageDimension(const char* name, int value) {
  if (value < 1 || value > kMaxImageDimension) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be in [1, ", kMaxImageDimension, "], got ",
                     value));
  }
  return absl::OkStatus();
}

absl::Status ShapeFunction(InferenceContext* c) {
  ShapeHandle clip_vertices;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &clip_vertices));
  DimensionHandle unused;
  TF_RETURN_IF_ERROR(c->WithValue(c->Dim(clip_vertices, 2), 4, &unused));
  ShapeHandle triangles;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &triangles));
  TF_RETURN_IF_ERROR(c->WithValue(c->Dim(triangles, 1), 3, &unused));
  int image_height, image_width;
  TF_RETURN_IF_ERROR(c->GetAttr("image_height", &image_height));
  TF_RETURN_IF_ERROR(c->GetAttr("image_width", &image_width));
  TF_RETURN_IF_ERROR(CheckImageDimension("image_height", image_height));
  TF_RETURN_IF_ERROR(CheckImageDimension("image_width", image_width));
  ShapeHandle image =
      c->MakeShape({c->Dim(clip_vertices, 0), image_height, image_width});
  c->set_output(0, image);
  c->set_output(1, image);
  return absl::OkStatus();
}

}  // namespace

// Inputs:
//   clip_vertices: [batch, vertex_count, 4] float32 clip-space (x, y, z, w).
//   triangles: [triangle_count, 3] int32 vertex indices shared by the batch.
// Attributes: image_height, image_width (pixels, in [1, 32768]);
//   cull_backfaces (drop clockwise-in-NDC triangles, default false).
// Outputs, each [batch, image_height, image_width]:
//   triangle_ids: int32 id of the nearest triangle, -1 where none.
//   depth: float32 NDC z/w of the nearest triangle, 1 where none.
REGISTER_OP("Unsup3dmmRasterizeTriangles")
    .Input("clip_vertices: float32")
    .Input("triangles: int32")
    .Attr("image_height: int")
    .Attr("image_width: int")
    .Attr("cull_backfaces: bool = false")
    .Output("triangle_ids: int32")
    .Output("depth: float32")
    .SetShapeFn(ShapeFunction);

class RasterizeTrianglesOp : public OpKernel {
 public:
  explicit RasterizeTrianglesOp(OpKernelConstruction* context)
      : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("image_height", &image_height_));
    OP_REQUIRES_OK(context, context->GetAttr("image_width", &image_width_));
    OP_REQUIRES_OK(context,
                   context->GetAttr("cull_backfaces", &cull_backfaces_));
    OP_REQUIRES_OK(context,
                   CheckImageDimension("image_height", image_height_));
    OP_REQUIRES_OK(context, CheckImageDimension("image_width", image_width_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& clip_vertices = context->input(0);
    const Tensor& triangles = context->input(1);
    OP_REQUIRES(context,
                clip_vertices.dims() == 3 && clip_vertices.dim_size(2) == 4,
                absl::InvalidArgumentError(absl::StrCat(
                    "clip_vertices must have shape [batch, vertex_count, 4], "
                    "got ",
                    clip_vertices.shape().DebugString())));
    OP_REQUIRES(context, triangles.dims() == 2 && triangles.dim_size(1) == 3,
                absl::InvalidArgumentError(absl::StrCat(
                    "triangles must have shape [triangle_count, 3], got ",
                    triangles.shape().DebugString())));
    const int64_t batch = clip_vertices.dim_size(0);
    const int64_t vertex_count = clip_vertices.dim_size(1);
    const int64_t triangle_count = triangles.dim_size(0);
    OP_REQUIRES(context, triangle_count <= INT32_MAX,
                absl::InvalidArgumentError(absl::StrCat(
                    "triangles has ", triangle_count,
                    " rows; at most 2^31 - 1 are supported")));
    const int32_t* triangle_data = triangles.flat<int32_t>().data();
    for (int64_t k = 0; k < 3 * triangle_count; ++k) {
      const int32_t index = triangle_data[k];
      OP_REQUIRES(context, index >= 0 && index < vertex_count,
                  absl::InvalidArgumentError(absl::StrCat(
                      "triangles[", k / 3, ", ", k % 3, "] = ", index,
                      " is out of range [0, ", vertex_count,
                      ") for clip_vertices with ", vertex_count,
                      " vertices")));
    }

    const TensorShape image_shape({batch, image_height_, image_width_});
    Tensor* triangle_ids = nullptr;
    Tensor* depth = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, image_shape, &triangle_ids));
    OP_REQUIRES_OK(context, context->allocate_output(1, image_shape, &depth));
    if (batch == 0) return;

    const float* vertex_data = clip_vertices.flat<float>().data();
    int32_t* id_data = triangle_ids->flat<int32_t>().data();
    float* depth_data = depth->flat<float>().data();
    const int64_t pixels = static_cast<int64_t>(image_height_) * image_width_;

    const auto& workers = *context->device()->tensorflow_cpu_worker_threads();
    const int64_t threads = std::max(1, workers.num_threads);
    const auto shard = [&workers](int64_t total, int64_t cost_per_unit,
                                  std::function<void(int64_t, int64_t)> work) {
      tensorflow::Shard(workers.num_threads, workers.workers, total,
                        cost_per_unit, std::move(work));
    };
    const int image_height = image_height_;
    const int image_width = image_width_;
    const bool cull_backfaces = cull_backfaces_;
    const int64_t prepared_size = kPreparedStride * vertex_count;

    if (batch >= threads) {
      // One image per work unit; vertex buffers are reused per thread.
      shard(
          batch, kCyclesPerVertex * vertex_count +
                     kCyclesPerTriangle * triangle_count +
                     kCyclesPerPixel * pixels,
          [&](int64_t begin, int64_t end) {
            thread_local std::vector<float> box, homogeneous;
            box.resize(prepared_size);
            homogeneous.resize(prepared_size);
            for (int64_t image = begin; image < end; ++image) {
              PrepareVertices(vertex_data + image * vertex_count * 4,
                              vertex_count, image_height, image_width,
                              box.data(), homogeneous.data());
              RasterizeTriangleRows(box.data(), homogeneous.data(),
                                    triangle_data, triangle_count,
                                    image_height, image_width, cull_backfaces,
                                    0, image_height, id_data + image * pixels,
                                    depth_data + image * pixels);
            }
          });
      return;
    }

    // Fewer images than threads: prepare every image's vertices once, split
    // over vertex ranges, then rasterise bands of rows so that every thread
    // has work.  Bands share only the read-only prepared vertices.
    Tensor box_tensor, homogeneous_tensor;
    const TensorShape prepared_shape({batch, vertex_count, kPreparedStride});
    OP_REQUIRES_OK(context, context->allocate_temp(tensorflow::DT_FLOAT,
                                                   prepared_shape, &box_tensor));
    OP_REQUIRES_OK(context,
                   context->allocate_temp(tensorflow::DT_FLOAT, prepared_shape,
                                          &homogeneous_tensor));
    float* box = box_tensor.flat<float>().data();
    float* homogeneous = homogeneous_tensor.flat<float>().data();
    shard(
        batch * vertex_count, kCyclesPerVertex,
        [&](int64_t begin, int64_t end) {
          while (begin < end) {  // the range may span several images
            const int64_t first = begin % vertex_count;
            const int64_t count =
                std::min(end - begin, vertex_count - first);
            PrepareVertices(vertex_data + begin * 4, count, image_height,
                            image_width, box + begin * kPreparedStride,
                            homogeneous + begin * kPreparedStride);
            begin += count;
          }
        });
    const int64_t bands =
        std::min<int64_t>(image_height, (threads + batch - 1) / batch);
    shard(
        batch * bands,
        kCyclesPerTriangle * triangle_count + kCyclesPerPixel * pixels / bands,
        [&](int64_t begin, int64_t end) {
          for (int64_t unit = begin; unit < end; ++unit) {
            const int64_t image = unit / bands;
            const int64_t band = unit % bands;
            const int row_begin = static_cast<int>(band * image_height / bands);
            const int row_end =
                static_cast<int>((band + 1) * image_height / bands);
            RasterizeTriangleRows(
                box + image * prepared_size,
                homogeneous + image * prepared_size, triangle_data,
                triangle_count, image_height, image_width, cull_backfaces,
                row_begin, row_end, id_data + image * pixels,
                depth_data + image * pixels);
          }
        });
  }

 private:
  int image_height_;
  int image_width_;
  bool cull_backfaces_;
};

REGISTER_KERNEL_BUILDER(
    Name("Unsup3dmmRasterizeTriangles").Device(DEVICE_CPU),
    RasterizeTrianglesOp);

}  // namespace unsup3dmm
