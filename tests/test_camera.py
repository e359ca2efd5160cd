"""Camera, poses and projection: analytic values, conventions and errors."""
import math

import numpy as np
import pytest
import tensorflow as tf

from unsup3dmm.renderer import camera as camera_lib
from unsup3dmm.renderer.camera import Camera, Poses
from unsup3dmm.renderer.config import RendererConfig


def make_camera(**overrides):
  fields = dict(image_size=(60, 80), fov_y_degrees=30.0, distance_mm=500.0,
                near_mm=10.0, far_mm=2000.0, look_at_mm=(0.0, 0.0, 0.0),
                rotation_center_mm=(0.0, 0.0, 0.0), horizontal_scale=1.0)
  fields.update(overrides)
  return Camera(**fields)


def poses(yaw=0.0, pitch=0.0, roll=0.0):
  return Poses(tf.constant([yaw]), tf.constant([pitch]), tf.constant([roll]))


def ndc(clip):
  clip = np.asarray(clip)
  return clip[..., :3] / clip[..., 3:]


def test_look_at_matrix_maps_eye_to_origin_and_target_onto_minus_z():
  eye = np.array([100.0, 50.0, 300.0])
  target = np.array([-20.0, 10.0, -40.0])
  matrix = camera_lib.look_at_matrix(eye, target, [0.0, 1.0, 0.0]).numpy()
  rotation = matrix[:3, :3]
  np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-6)
  np.testing.assert_allclose(np.linalg.det(rotation), 1.0, atol=1e-6)
  np.testing.assert_allclose(matrix @ np.append(eye, 1.0), [0, 0, 0, 1],
                             atol=1e-4)
  distance = np.linalg.norm(target - eye)
  np.testing.assert_allclose(matrix @ np.append(target, 1.0),
                             [0, 0, -distance, 1], atol=1e-3)
  # World up stays in the upper half of the image.
  assert (rotation @ [0.0, 1.0, 0.0])[1] > 0


def test_perspective_matrix_maps_frustum_to_ndc_cube():
  fov, aspect, near, far = 40.0, 1.5, 10.0, 1000.0
  matrix = camera_lib.perspective_matrix(fov, aspect, near, far).numpy()
  half_height = near * math.tan(math.radians(fov / 2))
  corner_near = [aspect * half_height, half_height, -near, 1.0]
  np.testing.assert_allclose(ndc(matrix @ corner_near), [1, 1, -1], atol=1e-5)
  corner_far = [-aspect * half_height * far / near,
                -half_height * far / near, -far, 1.0]
  np.testing.assert_allclose(ndc(matrix @ corner_far), [-1, -1, 1],
                             atol=1e-5)
  assert (matrix @ [0, 0, -123.0, 1])[3] == pytest.approx(123.0)


def test_rotation_conventions():
  nose = np.array([0.0, 0.0, 1.0])
  yawed = camera_lib.rotation_matrices(poses(yaw=90.0)).numpy()[0]
  np.testing.assert_allclose(yawed @ nose, [1, 0, 0], atol=1e-6)
  pitched = camera_lib.rotation_matrices(poses(pitch=90.0)).numpy()[0]
  np.testing.assert_allclose(pitched @ nose, [0, -1, 0], atol=1e-6)
  rolled = camera_lib.rotation_matrices(poses(roll=90.0)).numpy()[0]
  np.testing.assert_allclose(rolled @ [1.0, 0.0, 0.0], [0, 1, 0], atol=1e-6)
  # Composition: yaw first, then pitch, then roll.
  combined = camera_lib.rotation_matrices(
      poses(yaw=30.0, pitch=20.0, roll=10.0)).numpy()[0]
  np.testing.assert_allclose(
      combined,
      camera_lib.rotation_matrices(poses(roll=10.0)).numpy()[0] @
      camera_lib.rotation_matrices(poses(pitch=20.0)).numpy()[0] @
      camera_lib.rotation_matrices(poses(yaw=30.0)).numpy()[0], atol=1e-6)


def test_clip_space_vertices_frame_the_look_at_point():
  camera = make_camera(look_at_mm=(5.0, -3.0, 20.0),
                       rotation_center_mm=(5.0, -3.0, 20.0))
  points = tf.constant([[[5.0, -3.0, 20.0], [5.0, -3.0 + 50.0, 20.0],
                         [5.0 + 50.0, -3.0, 20.0]]])
  clip = camera_lib.clip_space_vertices(points, poses(yaw=25.0, roll=-7.0),
                                        camera).numpy()[0]
  # The look-at point (here also the pivot) is at the image centre, at the
  # camera distance.
  np.testing.assert_allclose(ndc(clip[0])[:2], [0, 0], atol=1e-6)
  assert clip[0, 3] == pytest.approx(500.0)
  # Unrotated: 50 mm up at 500 mm is tan^-1(0.1) up; with the focal length
  # 1 / tan(15 deg) that is NDC y = 0.1 / tan(15 deg).
  clip = camera_lib.clip_space_vertices(points, poses(), camera).numpy()[0]
  focal = 1.0 / math.tan(math.radians(15.0))
  np.testing.assert_allclose(ndc(clip[1])[:2], [0, 0.1 * focal], atol=1e-6)
  np.testing.assert_allclose(ndc(clip[2])[:2], [0.1 * focal * 60 / 80, 0],
                             atol=1e-6)
  camera_vertices = camera_lib.camera_space_vertices(points, poses(), camera)
  np.testing.assert_allclose(camera_vertices[0, :, 2], -500.0, rtol=1e-6)
  np.testing.assert_allclose(
      camera_lib.project_to_clip(camera_vertices, camera)[0], clip,
      rtol=1e-6)
  # The horizontal scale magnifies x only.
  stretched = camera_lib.clip_space_vertices(
      points, poses(), camera._replace(horizontal_scale=1.5)).numpy()[0]
  np.testing.assert_allclose(ndc(stretched[2])[:2],
                             [1.5 * 0.1 * focal * 60 / 80, 0], atol=1e-6)


def test_rotation_pivots_about_the_rotation_center():
  camera = make_camera(rotation_center_mm=(0.0, 0.0, -80.0))
  points = tf.constant([[[0.0, 0.0, -80.0], [0.0, 0.0, 20.0]]])
  eye = camera_lib.camera_space_vertices(points, poses(yaw=90.0),
                                         camera).numpy()[0]
  # The pivot does not move; the nose 100 mm in front of it swings to +x.
  np.testing.assert_allclose(eye[0], [0, 0, -580], atol=1e-3)
  np.testing.assert_allclose(eye[1], [100, 0, -580], atol=1e-3)


def test_camera_from_config_and_batching():
  config = RendererConfig(image_size=(32, 48))
  camera = Camera.from_config(config)
  assert camera.image_size == (32, 48)
  assert camera.fov_y_degrees == config.fov_y_degrees
  assert camera.horizontal_scale == config.horizontal_scale
  vertices = tf.random.stateless_uniform([3, 5, 3], [1, 2], -50.0, 50.0)
  batch_poses = camera_lib.sample_poses(3, 4, config)
  together = camera_lib.clip_space_vertices(vertices, batch_poses, camera)
  for b in range(3):
    alone = camera_lib.clip_space_vertices(
        vertices[b:b + 1], Poses(*(angle[b:b + 1] for angle in batch_poses)),
        camera)
    np.testing.assert_allclose(together[b:b + 1], alone, rtol=1e-6, atol=1e-4)


def test_gradients_reach_pose_and_camera_parameters():
  points = tf.constant([[[30.0, 40.0, 60.0]]])
  yaw = tf.constant([10.0])
  distance = tf.constant(700.0)
  fov = tf.constant(25.0)

  def ndc_x(yaw, distance, fov):
    camera = make_camera(distance_mm=distance, fov_y_degrees=fov)
    clip = camera_lib.clip_space_vertices(points, Poses(yaw, yaw * 0, yaw * 0),
                                          camera)
    return clip[0, 0, 0] / clip[0, 0, 3]

  with tf.GradientTape() as tape:
    tape.watch([yaw, distance, fov])
    value = ndc_x(yaw, distance, fov)
  gradients = tape.gradient(value, [yaw, distance, fov])
  steps = (tf.constant([0.01]), tf.constant(0.1), tf.constant(0.01))
  arguments = [yaw, distance, fov]
  for k, (gradient, step) in enumerate(zip(gradients, steps)):
    plus, minus = list(arguments), list(arguments)
    plus[k], minus[k] = arguments[k] + step, arguments[k] - step
    numeric = (ndc_x(*plus) - ndc_x(*minus)) / (2 * float(tf.reduce_sum(step)))
    assert float(tf.reduce_sum(gradient)) == pytest.approx(float(numeric),
                                                           rel=2e-2)


def test_sample_poses_ranges_and_determinism():
  config = RendererConfig(yaw_range_degrees=(-30.0, 30.0),
                          pitch_range_degrees=(-5.0, 15.0),
                          roll_range_degrees=(0.0, 0.0))
  sampled = camera_lib.sample_poses(500, [3, 4], config)
  yaw = sampled.yaw_degrees.numpy()
  assert yaw.shape == (500,)
  assert yaw.min() >= -30 and yaw.max() <= 30
  assert yaw.min() < -25 and yaw.max() > 25
  pitch = sampled.pitch_degrees.numpy()
  assert pitch.min() >= -5 and pitch.max() <= 15
  assert np.all(sampled.roll_degrees.numpy() == 0)
  again = camera_lib.sample_poses(500, [3, 4], config)
  np.testing.assert_array_equal(yaw, again.yaw_degrees.numpy())
  other = camera_lib.sample_poses(500, [3, 5], config)
  assert not np.allclose(yaw, other.yaw_degrees.numpy())


def test_sample_poses_in_tf_function_with_tensor_seed():
  config = RendererConfig()
  sample = tf.function(lambda seed: camera_lib.sample_poses(4, seed, config))
  graph = sample(tf.constant([9, 9], tf.int64))
  eager = camera_lib.sample_poses(4, [9, 9], config)
  np.testing.assert_array_equal(graph.yaw_degrees, eager.yaw_degrees)


@pytest.mark.parametrize("call, message", [
    (lambda: camera_lib.clip_space_vertices(tf.zeros([2, 5]), poses(),
                                            make_camera()), "vertices"),
    (lambda: camera_lib.clip_space_vertices(tf.zeros([2, 5, 3]), poses(),
                                            make_camera()), "poses.yaw"),
    (lambda: camera_lib.clip_space_vertices(tf.zeros([1, 5, 3]), poses(),
                                            make_camera(fov_y_degrees=180.0)),
     "fov_y_degrees"),
    (lambda: camera_lib.clip_space_vertices(tf.zeros([1, 5, 3]), poses(),
                                            make_camera(near_mm=0.0)),
     "near_mm"),
    (lambda: camera_lib.clip_space_vertices(tf.zeros([1, 5, 3]), poses(),
                                            make_camera(look_at_mm=(1, 2))),
     "look_at_mm"),
    (lambda: Camera.from_config(RendererConfig(image_size=(0, 5))),
     "image_size"),
    (lambda: camera_lib.sample_poses(0, 1, RendererConfig()), "batch_size"),
    (lambda: camera_lib.sample_poses(2, 1.5, RendererConfig()), "seed"),
    (lambda: camera_lib.sample_poses(
        2, 1, RendererConfig(yaw_range_degrees=(10.0, -10.0))),
     "yaw_range_degrees"),
])
def test_bad_inputs_raise_value_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()
