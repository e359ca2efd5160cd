"""Vertex normals, Phong shading and lights: closed forms and both backends."""
import math

import numpy as np
import pytest
import tensorflow as tf

from unsup3dmm.renderer import barycentrics as barycentrics_lib
from unsup3dmm.renderer import lighting
from unsup3dmm.renderer import primitives
from unsup3dmm.renderer import shading
from unsup3dmm.renderer import visibility
from unsup3dmm.renderer.config import RendererConfig
from unsup3dmm.renderer.lighting import Lights
from unsup3dmm.renderer.shading import Material

BACKENDS = ("tf", "op")
MATTE = Material(shininess=20.0, specular_strength=0.0,
                 specular_diffuse_mix=0.0)


def single_pixel(albedo, normal, position):
  return [tf.constant(np.reshape(value, (1, 1, 1, 3)), tf.float32)
          for value in (albedo, normal, position)]


GREY_PIXEL = single_pixel([0.5] * 3, [0, 0, 1], [0, 0, -9])


def one_light(position, color, ambient=(0.0, 0.0, 0.0)):
  return Lights(tf.constant([[position]], tf.float32),
                tf.constant([[color]], tf.float32),
                tf.constant([ambient], tf.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_vertex_normals_of_a_sphere_and_area_weighting(backend):
  vertices, triangles = primitives.uv_sphere(2.0, 48, 24, center=(1, 2, 3))
  normals = shading.vertex_normals(vertices[None], triangles,
                                   backend).numpy()[0]
  radial = (vertices - [1, 2, 3]) / 2.0
  np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-5)
  # Radial up to the tessellation: each quad is split along one diagonal, so
  # one-rings are not symmetric and area weighting tilts the normals (by up
  # to 0.022 here, most near the poles).
  np.testing.assert_allclose(normals, radial, atol=0.03)
  assert np.median(np.abs(normals - radial)) < 0.01
  # Two triangles sharing vertex 0: one in the z = 0 plane with area 2, one
  # in the x = 0 plane with area 1 -> normal ~ 2 (0, 0, 1) + 1 (1, 0, 0).
  vertices = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, -1],
                       [0, 2, 0]], np.float32)
  triangles = np.array([[0, 1, 2], [0, 3, 4]], np.int32)
  normals = shading.vertex_normals(vertices[None], triangles,
                                   backend).numpy()[0]
  np.testing.assert_allclose(normals[0], np.array([1, 0, 2]) / math.sqrt(5),
                             atol=1e-6)
  np.testing.assert_allclose(normals[1], [0, 0, 1], atol=1e-6)


def test_vertex_normal_backends_and_jacobian():
  vertices, triangles = primitives.uv_sphere(1.0, 6, 4)
  rng = np.random.default_rng(2)
  vertices = (vertices + 0.1 * rng.normal(size=vertices.shape)).astype(
      np.float32)[None]
  upstream = tf.constant(rng.normal(size=vertices.shape).astype(np.float32))
  results = {}
  for backend in BACKENDS:
    value = tf.constant(vertices)
    with tf.GradientTape() as tape:
      tape.watch(value)
      normals = shading.vertex_normals(value, triangles, backend)
      loss = tf.reduce_sum(normals * upstream)
    results[backend] = (normals.numpy(), tape.gradient(loss, value).numpy())
  np.testing.assert_allclose(results["op"][0], results["tf"][0], atol=1e-6)
  np.testing.assert_allclose(results["op"][1], results["tf"][1], atol=1e-5)
  step = 1e-3
  gradient = results["op"][1]
  for index in [(0, 0, 0), (0, 3, 1), (0, 7, 2), (0, 13, 0)]:
    plus, minus = vertices.copy(), vertices.copy()
    plus[index] += step
    minus[index] -= step
    numeric = (np.sum(shading.vertex_normals(plus, triangles, "op") *
                      upstream) -
               np.sum(shading.vertex_normals(minus, triangles, "op") *
                      upstream)) / (2 * step)
    assert gradient[index] == pytest.approx(float(numeric), rel=1e-2,
                                            abs=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_phong_closed_forms(backend):
  albedo = np.array([0.6, 0.4, 0.2])
  mask = tf.ones([1, 1, 1])
  # Diffuse only: light at 60 degrees from the normal.
  normal, position = [0.0, 0.0, 1.0], [0.0, 0.0, -500.0]
  light_position = [1e4 * math.sin(math.pi / 3), 0.0,
                    -500.0 + 1e4 * math.cos(math.pi / 3)]
  lights = one_light(light_position, (1.0, 0.5, 2.0), ambient=(0.1, 0.2, 0.3))
  value = shading.phong_shade(*single_pixel(albedo, normal, position), mask,
                              lights, MATTE, backend).numpy().ravel()
  np.testing.assert_allclose(
      value, albedo * ([0.1, 0.2, 0.3] + 0.5 * np.array([1.0, 0.5, 2.0])),
      rtol=1e-5)
  # Mirror direction towards the camera (light behind the camera): full
  # highlight k_s = strength ((1 - mix) 0.04 + mix Y(albedo)).
  material = Material(shininess=7.0, specular_strength=2.0,
                      specular_diffuse_mix=0.25)
  luminance = np.dot([0.2126, 0.7152, 0.0722], albedo)
  specular = 2.0 * (0.75 * 0.04 + 0.25 * luminance)
  lights = one_light((0.0, 0.0, 1000.0), (1.0, 1.0, 1.0))
  value = shading.phong_shade(*single_pixel(albedo, normal, position), mask,
                              lights, material, backend).numpy().ravel()
  np.testing.assert_allclose(value, albedo + specular, rtol=1e-5)
  # Highlight off the mirror direction by angle a: cos(a)^shininess.
  tilt = math.radians(10.0)
  tilted = [math.sin(tilt), 0.0, math.cos(tilt)]
  value = shading.phong_shade(*single_pixel(albedo, tilted, position), mask,
                              lights, material, backend).numpy().ravel()
  cosine = math.cos(tilt)
  np.testing.assert_allclose(
      value, albedo * cosine + specular * math.cos(2 * tilt) ** 7.0,
      rtol=2e-5)
  # A light behind the surface adds nothing; mask 0 gives 0.
  lights = one_light((0.0, 0.0, -1e4), (1.0, 1.0, 1.0), (0.5, 0.5, 0.5))
  value = shading.phong_shade(*single_pixel(albedo, normal, position), mask,
                              lights, material, backend).numpy().ravel()
  np.testing.assert_allclose(value, 0.5 * albedo, rtol=1e-6)
  value = shading.phong_shade(*single_pixel(albedo, normal, position),
                              tf.zeros([1, 1, 1]), lights, material, backend)
  assert np.all(value.numpy() == 0)


def random_pixels(rng, shape):
  albedo = rng.uniform(0.1, 0.9, shape + (3,))
  normals = rng.normal(size=shape + (3,)) + [0.0, 0.0, 2.0]
  positions = rng.normal(size=shape + (3,)) * 40.0 + [0.0, 0.0, -900.0]
  mask = (rng.uniform(size=shape) > 0.2).astype(np.float32)
  batch = shape[0]
  lights = Lights(
      tf.constant(rng.normal(size=(batch, 2, 3)) * 500.0 + [0, 0, 1500.0],
                  tf.float32),
      tf.constant(rng.uniform(0.2, 0.7, (batch, 2, 3)), tf.float32),
      tf.constant(rng.uniform(0.1, 0.4, (batch, 3)), tf.float32))
  return [tf.constant(v, tf.float32) for v in (albedo, normals, positions,
                                               mask)] + [lights]


def test_phong_backends_agree_and_match_finite_differences():
  rng = np.random.default_rng(3)
  albedo, normals, positions, mask, lights = random_pixels(rng, (2, 5, 6))
  material = Material(shininess=5.0, specular_strength=1.5,
                      specular_diffuse_mix=0.3)
  upstream = tf.constant(rng.normal(size=(2, 5, 6, 3)), tf.float32)
  variables = [albedo, normals, positions, *lights]
  results = {}
  for backend in BACKENDS:
    with tf.GradientTape() as tape:
      tape.watch(variables)
      value = shading.phong_shade(albedo, normals, positions, mask,
                                  Lights(*variables[3:]), material, backend)
      loss = tf.reduce_sum(value * upstream)
    results[backend] = [value] + tape.gradient(loss, variables)
  for op_value, tf_value in zip(results["op"], results["tf"]):
    np.testing.assert_allclose(op_value, tf_value, rtol=1e-4, atol=1e-5)

  def loss_of(values):
    value = shading.phong_shade(*values[:3], mask, Lights(*values[3:]),
                                material, "op")
    return float(tf.reduce_sum(value * upstream))

  # Central differences, relative step 1e-3 of each input's scale.
  for k, scale in enumerate((1.0, 1.0, 40.0, 500.0, 1.0, 1.0)):
    gradient = results["op"][k + 1].numpy()
    for index in list(np.ndindex(gradient.shape))[::17][:4]:
      step = 1e-3 * scale
      plus = [v.numpy().copy() for v in variables]
      minus = [v.numpy().copy() for v in variables]
      plus[k][index] += step
      minus[k][index] -= step
      numeric = (loss_of([tf.constant(v) for v in plus]) -
                 loss_of([tf.constant(v) for v in minus])) / (2 * step)
      assert gradient[index] == pytest.approx(numeric, rel=2e-2,
                                              abs=3e-3 / scale)


def test_deferred_shading_equals_the_stages_and_backends_agree():
  vertices, triangles = primitives.uv_sphere(60.0, 12, 7,
                                             center=(0, 0, -700.0))
  rng = np.random.default_rng(4)
  batch = 2
  positions = tf.constant(np.stack([vertices, vertices + [10.0, -5.0, 0.0]]),
                          tf.float32)
  colors = tf.constant(rng.uniform(0.2, 0.9, (batch, len(vertices), 3)),
                       tf.float32)
  normals = shading.vertex_normals(positions, triangles, "tf")
  focal = 1.0 / math.tan(math.radians(10.0))
  clip = tf.concat([positions[..., :2] * focal, -positions[..., 2:] * 0.5,
                    -positions[..., 2:]], -1)
  ids = visibility.rasterize(clip, triangles, (20, 22)).triangle_ids
  lights = Lights(tf.constant([[[300.0, 200.0, 0.0], [-400.0, 0, 100.0]]] * 2),
                  tf.constant([[[0.9, 0.8, 0.7], [0.5, 0.5, 0.6]]] * 2),
                  tf.constant([[0.2, 0.2, 0.2]] * 2))
  material = Material(10.0, 1.0, 0.25)
  upstream = tf.constant(rng.normal(size=(batch, 20, 22, 3)), tf.float32)
  background = tf.constant([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]])
  variables = [clip, colors, normals, positions, *lights, background]
  results = {}
  for backend in BACKENDS:
    with tf.GradientTape() as tape:
      tape.watch(variables)
      shaded = shading.deferred_shading(*variables[:4], triangles, ids,
                                        Lights(*variables[4:7]), material,
                                        variables[7], backend)
      loss = tf.reduce_sum(shaded * upstream)
    results[backend] = [shaded] + tape.gradient(loss, variables)
    weights = barycentrics_lib.compute_barycentrics(clip, triangles, ids,
                                                    backend)
    staged = shading.phong_shade(
        *(barycentrics_lib.interpolate(v, triangles, ids, weights, backend)
          for v in (colors, normals, positions)),
        tf.cast(ids >= 0, tf.float32), lights, material, backend)
    empty = (ids < 0).numpy()[..., None]
    np.testing.assert_allclose(
        shaded, np.where(empty, background.numpy()[:, None, None, :],
                         tf.clip_by_value(staged, 0, 1)), atol=1e-6)
  assert 0.1 < np.mean(ids.numpy() >= 0) < 0.9
  # The background's gradient sums the upstream gradient over empty pixels.
  np.testing.assert_allclose(
      results["op"][-1], np.sum(upstream.numpy() * empty, axis=(1, 2)),
      rtol=1e-5)
  for op_value, tf_value in zip(results["op"], results["tf"]):
    np.testing.assert_allclose(tf.convert_to_tensor(op_value),
                               tf.convert_to_tensor(tf_value), rtol=2e-4,
                               atol=2e-4)


def test_kelvin_to_rgb_and_light_colors():
  rgb = lighting.kelvin_to_rgb([2700.0, 4000.0, 6500.0, 10000.0]).numpy()
  np.testing.assert_allclose(rgb[2], [1.0, 0.9966, 0.9806], atol=1e-3)
  np.testing.assert_allclose(rgb[0], [1.0, 0.6538, 0.3428], atol=1e-3)
  # Warmer is redder: blue / red grows with the temperature.
  ratios = rgb[:, 2] / rgb[:, 0]
  assert np.all(np.diff(ratios) > 0)
  colors = lighting.light_color([2700.0, 6500.0, 9000.0], 6500.0).numpy()
  np.testing.assert_allclose(colors @ [0.2126, 0.7152, 0.0722], 1.0,
                             rtol=1e-6)
  np.testing.assert_allclose(colors[1], [1.0, 1.0, 1.0], rtol=1e-6)
  assert colors[0, 0] > colors[0, 2] and colors[2, 2] > colors[2, 0]


def test_white_balance():
  colors = lighting.light_color([[2700.0, 4000.0], [6000.0, 9000.0]],
                                6500.0)
  np.testing.assert_allclose(lighting.white_balance(colors, 0.0), colors,
                             rtol=1e-6)
  full = lighting.white_balance(colors, 1.0).numpy()
  mean = full.mean(axis=1)
  # White up to the renormalisation of each light to unit luminance.
  np.testing.assert_allclose(mean / mean[:, :1], np.ones((2, 3)), rtol=1e-2)
  partial = lighting.white_balance(colors, 0.7).numpy()
  np.testing.assert_allclose(partial @ [0.2126, 0.7152, 0.0722], 1.0,
                             rtol=1e-6)
  # Warm light stays warm, but less so.
  warmth = lambda c: c[0, 0, 0] / c[0, 0, 2]
  assert warmth(colors.numpy()) > warmth(partial) > warmth(full) > 1.0


def test_sample_lights_follow_the_config():
  config = RendererConfig(light_count=3, light_max_angle_degrees=40.0,
                          light_distance_range_mm=(2000.0, 3000.0),
                          light_intensity_range=(0.5, 0.5),
                          light_sources_kelvin=((3000.0, 3000.0),),
                          color_temperature_jitter_kelvin=0.0,
                          auto_white_balance=0.0,
                          ambient_intensity_range=(0.2, 0.3))
  lights = lighting.sample_lights(400, [1, 2], config)
  assert lights.positions_mm.shape == (400, 3, 3)
  offset = lights.positions_mm.numpy() - [0, 0, -config.camera_distance_mm]
  distance = np.linalg.norm(offset, axis=-1)
  assert distance.min() >= 2000 - 1e-3 and distance.max() <= 3000 + 1e-3
  angle = np.degrees(np.arccos(offset[..., 2] / distance))
  assert angle.max() <= 40.0 + 1e-3 and angle.max() > 35.0
  expected = 0.5 * lighting.light_color(3000.0, 6500.0).numpy()
  np.testing.assert_allclose(lights.colors.numpy().reshape(-1, 3),
                             np.broadcast_to(expected, (1200, 3)), rtol=1e-5)
  ambient = lights.ambient.numpy() / lighting.light_color(
      3000.0, 6500.0).numpy()
  assert ambient.min() >= 0.2 - 1e-5 and ambient.max() <= 0.3 + 1e-5
  again = lighting.sample_lights(400, [1, 2], config)
  np.testing.assert_array_equal(lights.positions_mm, again.positions_mm)
  # Every default source gets picked.
  temperatures = lighting.sample_lights(400, 7, RendererConfig()).colors
  blue_red = (temperatures[..., 2] / temperatures[..., 0]).numpy().ravel()
  assert blue_red.min() < 0.45 and blue_red.max() > 1.0


@pytest.mark.parametrize("call, message", [
    (lambda: Material.from_config(RendererConfig(shininess=0.5)),
     "shininess"),
    (lambda: Material.from_config(RendererConfig(specular_diffuse_mix=2.0)),
     "specular_diffuse_mix"),
    (lambda: lighting.sample_lights(2, 1, RendererConfig(
        light_max_angle_degrees=100.0)), "light_max_angle_degrees"),
    (lambda: lighting.sample_lights(2, 1, RendererConfig(
        light_sources_kelvin=((500.0, 900.0),))), "light_sources_kelvin"),
    (lambda: lighting.sample_lights(2, 1, RendererConfig(
        light_distance_range_mm=(0.0, 10.0))), "light_distance_range_mm"),
    (lambda: lighting.sample_lights(2, 1, RendererConfig(
        auto_white_balance=1.5)), "auto_white_balance"),
    (lambda: shading.phong_shade(*GREY_PIXEL, tf.ones([1, 2, 2]),
                                 one_light((0, 0, 0), (1, 1, 1)), MATTE),
     "mask"),
    (lambda: shading.phong_shade(*GREY_PIXEL, tf.ones([1, 1, 1]),
                                 Lights(tf.zeros([1, 2]), tf.zeros([1, 2]),
                                        tf.zeros([1, 3])), MATTE),
     "positions_mm"),
    (lambda: shading.vertex_normals(tf.zeros([3, 3]), [[0, 1, 2]]),
     "vertices"),
])
def test_bad_inputs_raise_value_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()
