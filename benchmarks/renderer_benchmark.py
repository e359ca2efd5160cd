"""Renders per second of the whole renderer pipeline, per backend.

A render is the whole pipeline of ``unsup3dmm.renderer.render.render``:
camera transform, visibility, vertex normals, barycentrics, interpolation and
Phong shading to an RGB image composited over a background.  Forward+backward
adds the gradient of a scalar of the images with respect to the vertices and
the colours.

The mesh has the size of the Basel Face Model 2017 (53,361 vertices, 105,800
triangles vs. BFM's 53,149 / 105,694): ``primitives.face_sized_mesh``, a
231 x 231 grid draped over the front half of an ellipsoid 160 mm wide, 214 mm
tall and 90 mm deep, posed and lit at random (seeded) and framed by the
default camera like a face, so that it covers the share of the image the demo
face covers (58%; the table prints it).

Also times the stages of the forward pass, as shares of it: "vis" (camera
transform and rasterisation), "normals" (vertex normals), "shading"
(barycentrics, interpolation of albedo, normal and position, Phong shading and
compositing: one fused kernel with the op backend) and, run alone,
"bary" (the barycentrics stage, part of "shading").  Times are medians over
calls (after two warm-up calls), which ignores slow calls caused by other
processes.  "cpu ms/render" is the process CPU time per render (all
threads).

Usage::

    python benchmarks/renderer_benchmark.py [--quick] [--json out.json]
        [--backends op,tf] [--min_seconds 2]

``--json`` writes a list of records with keys ``backend``, ``image_height``,
``image_width``, ``batch``, ``mode`` ("forward" or "forward_backward") and
``renders_per_second`` (plus ``coverage``, ``cpu_seconds_per_render`` and,
for forward records, the stage shares).  Targets (2-core CPU): op forward
>= 250 and forward+backward >= 100 renders/s at 224 x 224, batch 32; tf
within 4x of op.
"""
import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from unsup3dmm.renderer import barycentrics as barycentrics_lib
from unsup3dmm.renderer import camera as camera_lib
from unsup3dmm.renderer import lighting
from unsup3dmm.renderer import primitives
from unsup3dmm.renderer import render as render_lib
from unsup3dmm.renderer import shading
from unsup3dmm.renderer import shading_op
from unsup3dmm.renderer import visibility
from unsup3dmm.renderer.config import RendererConfig

SIZES = ((160, 160), (224, 224))
BATCHES = (1, 8, 32)
QUICK_CASES = (((224, 224), 32),)


class Scene:
  """Inputs of one benchmark case, as constants."""

  def __init__(self, config, batch):
    vertices, triangles = primitives.face_sized_mesh(
        center_mm=config.look_at_mm)
    self.config = config
    self.triangles = tf.constant(triangles)
    self.vertices = tf.constant(np.tile(vertices[None], [batch, 1, 1]))
    rng = np.random.default_rng(0)
    self.colors = tf.constant(
        rng.uniform(0.4, 0.8, (batch, len(vertices), 3)).astype(np.float32))
    self.poses = camera_lib.sample_poses(batch, 1, config)
    self.lights = lighting.sample_lights(batch, 2, config)
    self.camera = camera_lib.Camera.from_config(config)
    self.material = shading.Material.from_config(config)


def full_render(scene, backend):
  def forward(vertices, colors):
    return render_lib.render(vertices, colors, scene.triangles, scene.poses,
                             scene.lights, scene.config, backend=backend,
                             background_seed=3).images
  return forward


def stage_functions(scene, backend):
  """Prefixes of the forward pipeline, and the barycentrics alone."""
  config = scene.config

  def visible(vertices):
    camera_vertices = camera_lib.camera_space_vertices(vertices, scene.poses,
                                                       scene.camera)
    clip = camera_lib.project_to_clip(camera_vertices, scene.camera)
    ids = visibility.rasterize(clip, scene.triangles, config.image_size,
                               backend=backend).triangle_ids
    return camera_vertices, clip, ids

  def to_visibility(vertices, colors):
    del colors
    return visible(vertices)[2]

  def to_normals(vertices, colors):
    del colors
    camera_vertices, _, ids = visible(vertices)
    return ids, shading.vertex_normals(camera_vertices, scene.triangles,
                                       backend)

  camera_vertices = camera_lib.camera_space_vertices(
      scene.vertices, scene.poses, scene.camera)
  clip = camera_lib.project_to_clip(camera_vertices, scene.camera)
  ids = visibility.rasterize(clip, scene.triangles, config.image_size,
                             backend=backend).triangle_ids

  def barycentrics_alone(clip_vertices):
    return barycentrics_lib.compute_barycentrics(clip_vertices,
                                                 scene.triangles, ids, backend)

  return to_visibility, to_normals, barycentrics_alone, clip


def time_function(function, args, min_seconds, min_iterations=5):
  """(wall seconds, process CPU seconds) per call, after warm-up.

  Both are medians over the timed calls: other processes sharing the CPUs
  slow some calls down, the median ignores those outliers.
  """
  for _ in range(2):
    tf.nest.map_structure(lambda t: t.numpy(), function(*args))
  walls, cpus = [], []
  start = time.perf_counter()
  while (len(walls) < min_iterations or
         time.perf_counter() - start < min_seconds):
    wall, cpu = time.perf_counter(), time.process_time()
    tf.nest.map_structure(lambda t: t.numpy(), function(*args))
    walls.append(time.perf_counter() - wall)
    cpus.append(time.process_time() - cpu)
  return float(np.median(walls)), float(np.median(cpus))


def forward_backward(forward):
  def step(vertices, colors):
    with tf.GradientTape() as tape:
      tape.watch([vertices, colors])
      images = forward(vertices, colors)
      loss = tf.reduce_mean(tf.square(images - 0.5))
    return tape.gradient(loss, [vertices, colors])
  return step


def run_case(backend, size, batch, min_seconds):
  """Forward and forward+backward records of one case."""
  config = RendererConfig(image_size=size)
  scene = Scene(config, batch)
  args = (scene.vertices, scene.colors)
  forward = full_render(scene, backend)
  coverage = float(tf.reduce_mean(render_lib.render(
      *args, scene.triangles, scene.poses, scene.lights, config,
      backend=backend).alpha))
  common = dict(backend=backend, image_height=size[0], image_width=size[1],
                batch=batch, coverage=coverage)
  seconds, cpu = time_function(tf.function(forward), args, min_seconds)
  record = dict(common, mode="forward", renders_per_second=batch / seconds,
                cpu_seconds_per_render=cpu / batch)
  to_visibility, to_normals, barycentrics_alone, clip = stage_functions(
      scene, backend)
  visible_seconds = time_function(tf.function(to_visibility), args,
                                  min_seconds / 2)[0]
  normals_seconds = time_function(tf.function(to_normals), args,
                                  min_seconds / 2)[0]
  record["share_visibility"] = visible_seconds / seconds
  record["share_normals"] = (normals_seconds - visible_seconds) / seconds
  record["share_shading"] = (seconds - normals_seconds) / seconds
  record["share_barycentrics_alone"] = time_function(
      tf.function(barycentrics_alone), (clip,), min_seconds / 2)[0] / seconds
  seconds, cpu = time_function(tf.function(forward_backward(forward)), args,
                               min_seconds)
  return [record, dict(common, mode="forward_backward",
                       renders_per_second=batch / seconds,
                       cpu_seconds_per_render=cpu / batch)]


SHARES = (("share_visibility", "vis"), ("share_normals", "normals"),
          ("share_shading", "shading"), ("share_barycentrics_alone", "bary"))


def print_table(records):
  header = (f"{'backend':8}{'size':>10}{'batch':>7}{'mode':>18}"
            f"{'renders/s':>11}{'cpu ms/render':>15}{'coverage':>10}" +
            "".join(f"{label:>9}" for _, label in SHARES))
  print(header)
  print("-" * len(header))
  for r in records:
    shares = "".join(f"{r[k]:9.0%}" if k in r else f"{'':9}"
                     for k, _ in SHARES)
    print(f"{r['backend']:8}{r['image_height']:>5}x{r['image_width']:<4}"
          f"{r['batch']:>7}{r['mode']:>18}{r['renders_per_second']:>11.1f}"
          f"{1000 * r['cpu_seconds_per_render']:>15.2f}"
          f"{r['coverage']:>10.2f}{shares}", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="only 224x224, batch 32")
  parser.add_argument("--json", default="", help="write the records here")
  parser.add_argument("--backends", default="op,tf",
                      help="comma-separated subset of op,tf")
  parser.add_argument("--min_seconds", type=float, default=2.0,
                      help="time each case for at least this long")
  args = parser.parse_args()
  backends = [b for b in args.backends.split(",") if b]
  for backend in backends:
    barycentrics_lib.check_backend(backend, "--backends")
  if "op" in backends:
    shading_op.load_op_library()
  cases = (QUICK_CASES if args.quick else
           [(size, batch) for size in SIZES for batch in BATCHES])
  records = []
  for backend in backends:
    for size, batch in cases:
      records += run_case(backend, size, batch, args.min_seconds)
      print_table(records[-2:])
  print()
  print_table(records)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(records, f, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
