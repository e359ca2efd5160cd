"""The whole pipeline: analytic images, batching, graph mode, backgrounds."""
import math

import numpy as np
import pytest
import tensorflow as tf

from unsup3dmm.model import morphable_model
from unsup3dmm.renderer import camera as camera_lib
from unsup3dmm.renderer import primitives
from unsup3dmm.renderer import render as render_lib
from unsup3dmm.renderer import shading
from unsup3dmm.renderer.config import RendererConfig
from unsup3dmm.renderer.lighting import Lights

BACKENDS = ("tf", "op")


def simple_config(**overrides):
  """A simple undistorted camera 100 mm from the origin."""
  fields = dict(image_size=(12, 16), fov_y_degrees=40.0,
                camera_distance_mm=100.0, near_mm=1.0, far_mm=1000.0,
                look_at_mm=(0.0, 0.0, 0.0), rotation_center_mm=(0.0, 0.0, 0.0),
                horizontal_scale=1.0, background="constant",
                background_color=(0.25, 0.5, 0.75))
  fields.update(overrides)
  return RendererConfig(**fields)


def white_light(batch, direction=(0.0, 0.0, 1.0), ambient=0.0,
                distance=1e7, center=(0.0, 0.0, -100.0)):
  direction = np.asarray(direction, np.float64)
  position = np.asarray(center) + distance * direction / np.linalg.norm(
      direction)
  return Lights(tf.constant([[position]] * batch, tf.float32),
                tf.ones([batch, 1, 3]), tf.fill([batch, 3], float(ambient)))


def test_quad_covers_exactly_the_expected_pixels():
  config = simple_config(specular_strength=0.0)
  height, width = config.image_size
  focal = 1.0 / math.tan(math.radians(20.0))
  # Pixel boundaries in NDC -> model coordinates on the z = 0 plane at 100 mm.
  left, right = (2 * 3 / width - 1), (2 * 11 / width - 1)
  top, bottom = 1 - 2 * 2 / height, 1 - 2 * 9 / height
  scale_x = 100.0 * width / height / focal
  scale_y = 100.0 / focal
  vertices = np.array([[left * scale_x, top * scale_y, 0],
                       [right * scale_x, top * scale_y, 0],
                       [left * scale_x, bottom * scale_y, 0],
                       [right * scale_x, bottom * scale_y, 0]], np.float32)
  triangles = primitives.grid_triangles(2, 2)
  expected = np.zeros((height, width), bool)
  expected[2:9, 3:11] = True
  colors = np.full((1, 4, 3), 0.5, np.float32)
  for backend in BACKENDS:
    result = render_lib.render(vertices[None], colors, triangles,
                               camera_lib.frontal_poses(1),
                               white_light(1, ambient=0.2), config,
                               backend=backend)
    np.testing.assert_array_equal(result.alpha.numpy()[0, ..., 0], expected)
    images = result.images.numpy()[0]
    # Facing a distant light straight on: 0.5 * (0.2 + 1) inside.
    np.testing.assert_allclose(images[expected], 0.6, atol=1e-5)
    np.testing.assert_allclose(
        images[~expected],
        np.broadcast_to([0.25, 0.5, 0.75], images[~expected].shape),
        atol=1e-7)


def test_lambertian_sphere_matches_the_cosine_law():
  """Diffuse sphere under a distant light vs. the analytic shading.

  Tolerance 0.005 on values up to 0.8 (measured: 0.0018, median 1.4e-4): the
  96 x 48 UV sphere's flat facets put the surface up to 0.05% of the radius
  inside the sphere and its interpolated vertex normals deviate slightly from
  the true normals, most near the poles.  Pixels next to the silhouette are
  excluded (coverage there depends on the tessellation).
  """
  size = 48
  config = simple_config(image_size=(size, size), fov_y_degrees=30.0,
                       camera_distance_mm=250.0, specular_strength=0.0)
  radius, albedo = 50.0, 0.8
  vertices, triangles = primitives.uv_sphere(radius, 96, 48)
  direction = np.array([1.0, 1.0, 2.0]) / math.sqrt(6.0)
  lights = white_light(1, direction, center=(0.0, 0.0, -250.0))
  colors = np.full((1, len(vertices), 3), albedo, np.float32)
  # Analytic: ray through each pixel centre (camera space) hits the sphere
  # centred at (0, 0, -250).
  focal = 1.0 / math.tan(math.radians(15.0))
  centers = (np.arange(size) + 0.5) * 2.0 / size - 1.0
  x, y = np.meshgrid(centers / focal, -centers / focal)
  rays = np.stack([x, y, -np.ones_like(x)], -1)
  rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
  center = np.array([0.0, 0.0, -250.0])
  along = rays @ center
  discriminant = along ** 2 - (center @ center - radius ** 2)
  hit = discriminant > 0
  depth = along - np.sqrt(np.maximum(discriminant, 0))
  normals = (rays * depth[..., None] - center) / radius
  expected = albedo * np.maximum(normals @ direction, 0.0)
  interior = hit.copy()
  for axis in (0, 1):
    for shift in (-1, 1):
      interior &= np.roll(hit, shift, axis)
  for backend in BACKENDS:
    result = render_lib.render(vertices[None], colors, triangles,
                               camera_lib.frontal_poses(1), lights, config,
                               backend=backend)
    rendered = result.images.numpy()[0]
    np.testing.assert_array_equal(
        result.alpha.numpy()[0, ..., 0].astype(bool)[interior], True)
    error = np.abs(rendered[..., 0] - expected)[interior]
    assert interior.sum() > 600
    assert error.max() < 0.005
    assert np.median(error) < 5e-4
    covered = result.alpha.numpy()[0, ..., 0] > 0
    np.testing.assert_array_equal(rendered[covered][:, 0],
                                  rendered[covered][:, 2])


def random_scene(batch, seed=0):
  config = simple_config(image_size=(20, 24))
  vertices, triangles = primitives.uv_sphere(30.0, 10, 6)
  rng = np.random.default_rng(seed)
  vertices = np.stack([vertices * rng.uniform(0.8, 1.2, 3)
                       for _ in range(batch)]).astype(np.float32)
  colors = rng.uniform(0.2, 0.9, vertices.shape).astype(np.float32)
  poses = camera_lib.sample_poses(batch, seed, config)
  lights = render_lib.sample_lights(batch, seed + 1, config)
  return config, vertices, colors, triangles, poses, lights


def test_batch_renders_like_each_item_alone_and_backends_agree():
  config, vertices, colors, triangles, poses, lights = random_scene(3)
  results = {}
  for backend in BACKENDS:
    together = render_lib.render(vertices, colors, triangles, poses, lights,
                                 config, backend=backend,
                                 background_seed=5).images.numpy()
    backgrounds = render_lib.sample_backgrounds(3, 5, config)
    for b in range(3):
      alone = render_lib.render(
          vertices[b:b + 1], colors[b:b + 1], triangles,
          camera_lib.Poses(*(angle[b:b + 1] for angle in poses)),
          Lights(*(field[b:b + 1] for field in lights)), config,
          backend=backend, background=backgrounds[b])
      # Bit for bit: an image must not depend on the batch it is in (or
      # replicas of a distributed step would see different images).
      np.testing.assert_array_equal(together[b], alone.images[0])
    results[backend] = together
  np.testing.assert_allclose(results["op"], results["tf"], atol=1e-4)


def test_tf_function_matches_eager():
  config, vertices, colors, triangles, poses, lights = random_scene(2)
  for backend in BACKENDS:
    def run(vertices, colors, seed, backend=backend):
      return render_lib.render_coefficients(
          _FixedModel(vertices, colors, triangles), None, None, poses,
          lights, config, backend=backend, background_seed=seed).images
    eager = run(vertices, colors, tf.constant([1, 2]))
    graph = tf.function(run)(tf.constant(vertices), tf.constant(colors),
                             tf.constant([1, 2]))
    np.testing.assert_allclose(graph, eager, atol=1e-6)


class _FixedModel:
  """A stand-in morphable model returning fixed vertices and colours."""

  def __init__(self, vertices, colors, triangles):
    self._vertices, self._colors = vertices, colors
    self.triangles = triangles

  def vertices(self, unused_coefficients):
    return self._vertices

  def colors(self, unused_coefficients):
    return self._colors


def test_render_coefficients_of_the_demo_model():
  model = morphable_model.TFMorphableModel(
      morphable_model.load_morphable_model("demo"))
  config = RendererConfig(image_size=(32, 32))
  shape, texture = model.sample_coefficients(2, seed=3, truncation=2.0)
  poses = render_lib.sample_poses(2, 4, config)
  lights = render_lib.sample_lights(2, 5, config)
  with tf.GradientTape() as tape:
    tape.watch([shape, texture])
    result = render_lib.render_coefficients(model, shape, texture, poses,
                                            lights, config, backend="op",
                                            background_seed=6)
    loss = tf.reduce_sum(result.images)
  assert result.images.shape == (2, 32, 32, 3)
  coverage = result.alpha.numpy().mean()
  assert 0.5 < coverage < 0.95
  assert 0.0 <= result.images.numpy().min() and result.images.numpy().max() <= 1
  for gradient in tape.gradient(loss, [shape, texture]):
    assert np.all(np.isfinite(gradient)) and np.abs(gradient).max() > 1e-3


def test_supersampling_averages_a_finer_render():
  config, vertices, colors, triangles, poses, lights = random_scene(1)
  fine_config = simple_config(image_size=(40, 48))
  coarse_config = simple_config(image_size=(20, 24), supersampling=2)
  coarse = render_lib.render(vertices, colors, triangles, poses, lights,
                             coarse_config, backend="op")
  fine = render_lib.render(vertices, colors, triangles, poses, lights,
                           fine_config, backend="op")
  fine_alpha = fine.alpha.numpy()[0, ..., 0]
  pooled_alpha = fine_alpha.reshape(20, 2, 24, 2).mean((1, 3))
  np.testing.assert_allclose(coarse.alpha.numpy()[0, ..., 0], pooled_alpha)
  assert np.any((pooled_alpha > 0) & (pooled_alpha < 1))
  pooled = fine.images.numpy()[0].reshape(20, 2, 24, 2, 3).mean((1, 3))
  np.testing.assert_allclose(coarse.images.numpy()[0], pooled, atol=1e-6)
  assert coarse.visibility.triangle_ids.shape == (1, 40, 48)


def test_backgrounds_and_framebuffer():
  config, vertices, colors, triangles, poses, lights = random_scene(2)
  empty = np.zeros((2,) + config.image_size, bool)
  result = render_lib.render(vertices, colors, triangles, poses, lights,
                             config, backend="op", with_framebuffer=True)
  empty |= result.alpha.numpy()[..., 0] == 0
  np.testing.assert_allclose(
      result.images.numpy()[empty],
      np.broadcast_to([0.25, 0.5, 0.75], (empty.sum(), 3)))
  per_image = tf.constant([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  images = render_lib.render(vertices, colors, triangles, poses, lights,
                             config, background=per_image).images.numpy()
  np.testing.assert_array_equal(images[0][empty[0]].mean(0), [1, 0, 0])
  np.testing.assert_array_equal(images[1][empty[1]].mean(0), [0, 1, 0])
  picture = tf.random.stateless_uniform((2,) + config.image_size + (3,),
                                        [1, 1])
  images = render_lib.render(vertices, colors, triangles, poses, lights,
                             config, background=picture).images.numpy()
  np.testing.assert_allclose(images[empty], picture.numpy()[empty])
  random = simple_config(image_size=config.image_size, background="random",
                       background_value_range=(0.6, 0.9))
  first = render_lib.render(vertices, colors, triangles, poses, lights, random,
                            background_seed=[4, 2]).images.numpy()
  again = render_lib.render(vertices, colors, triangles, poses, lights, random,
                            background_seed=[4, 2]).images.numpy()
  np.testing.assert_array_equal(first, again)
  assert 0.6 <= first[empty].min() and first[empty].max() <= 0.9
  assert not np.allclose(first[0][empty[0]][0], first[1][empty[1]][0])
  # The framebuffer holds the interpolated surface the shading saw.
  frame = result.framebuffer
  covered = ~empty
  np.testing.assert_allclose(frame.barycentrics.numpy().sum(-1)[covered], 1,
                             atol=1e-5)
  restaged = shading.phong_shade(
      frame.albedo, frame.normals, frame.positions_mm,
      result.visibility.mask, lights, shading.Material.from_config(config),
      "op")
  np.testing.assert_allclose(result.images.numpy()[covered],
                             tf.clip_by_value(restaged, 0, 1).numpy()[covered],
                             atol=1e-6)
  assert render_lib.render(vertices, colors, triangles, poses, lights,
                           config).framebuffer is None


@pytest.mark.parametrize("change, message", [
    (dict(config=simple_config(background="noise")), "config.background"),
    (dict(config=simple_config(supersampling=0)), "supersampling"),
    (dict(backend="gpu"), "backend"),
    (dict(colors=np.zeros((2, 5, 3), np.float32)), "colors"),
    (dict(triangles=np.zeros((4, 2), np.int32)), "triangles"),
    (dict(background=tf.zeros([2, 4])), "background"),
    (dict(camera=camera_lib.Camera.from_config(
        simple_config(image_size=(8, 8)))), "camera.image_size"),
    (dict(lights=Lights(tf.zeros([3, 2, 3]), tf.zeros([3, 2, 3]),
                        tf.zeros([3, 3]))), "lights.positions_mm"),
])
def test_bad_inputs_raise_value_errors(change, message):
  config, vertices, colors, triangles, poses, lights = random_scene(2)
  arguments = dict(vertices=vertices, colors=colors, triangles=triangles,
                   poses=poses, lights=lights, config=config)
  arguments.update(change)
  with pytest.raises(ValueError, match=message):
    render_lib.render(**arguments)
