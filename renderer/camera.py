"""Poses and the pinhole camera: model space -> camera space -> clip space.

Spaces (see also renderer/config.py):

* model space: the morphable model's, mm, +x the subject's left, +y up, +z
  towards the viewer;
* camera space (eye space): origin at the camera's centre of projection, mm,
  +x image right, +y image up; the camera looks along -z;
* clip space: OpenGL homogeneous coordinates ``(x, y, z, w)`` with
  ``w = -z_camera`` (positive in front of the camera); normalised device
  coordinates ``x / w, y / w`` in [-1, 1] span the image, +y at the top row.

A vertex ``p`` of image ``b`` goes through::

    model  M_b = T(c) R_b T(-c)         rotation about the head centre c
    view   V   = look_at(eye, look_at, up=+y)
    proj   P   = perspective(fov_y, aspect=width/height, near, far,
                             horizontal_scale)
    clip = P V M_b p

with ``R_b = R_z(roll) R_x(pitch) R_y(yaw)`` (yaw applied first, roll last, so
roll is a rotation in the image plane).  Everything is differentiable with
respect to the vertices, the pose angles and tensor-valued camera parameters.
"""
import dataclasses
import math
from typing import NamedTuple, Tuple, Union

import numpy as np
import tensorflow as tf

from unsup3dmm.renderer.config import RendererConfig

TensorLike = Union[tf.Tensor, float, np.ndarray]


class Poses(NamedTuple):
  """Per-image head rotations (a ``tf.nest`` structure of tensors).

  Attributes:
    yaw_degrees: float32 ``[batch]``, rotation about model +y (positive turns
      the nose towards +x, the image's right).
    pitch_degrees: float32 ``[batch]``, rotation about +x (positive turns the
      nose down).
    roll_degrees: float32 ``[batch]``, rotation about +z, the view axis
      (positive: counter-clockwise in the image).
  Gradients flow to all three.
  """
  yaw_degrees: tf.Tensor
  pitch_degrees: tf.Tensor
  roll_degrees: tf.Tensor


class Camera(NamedTuple):
  """A pinhole camera on the model's +z axis looking at ``look_at_mm``.

  Fields may be Python numbers or float32 tensors (scalars, or 3-vectors for
  points); gradients flow to tensor-valued fields.

  Attributes:
    image_size: (height, width) in pixels, ints.
    fov_y_degrees: vertical field of view, degrees, in (0, 180).
    distance_mm: distance from the camera centre to ``look_at_mm``, mm.
    near_mm, far_mm: clip planes, mm along the view axis, 0 < near < far.
    look_at_mm: model-space point imaged at the image centre, mm, [3].
    rotation_center_mm: model-space pivot of the pose rotation, mm, [3].
    horizontal_scale: magnification of the image x axis relative to a camera
      with square pixels (> 0; 1: undistorted).
  """
  image_size: Tuple[int, int]
  fov_y_degrees: TensorLike
  distance_mm: TensorLike
  near_mm: TensorLike
  far_mm: TensorLike
  look_at_mm: TensorLike
  rotation_center_mm: TensorLike
  horizontal_scale: TensorLike = 1.0

  @classmethod
  def from_config(cls, config: RendererConfig) -> "Camera":
    """The camera described by a :class:`RendererConfig`."""
    check_image_size(config.image_size, "config.image_size")
    camera = cls(image_size=tuple(config.image_size),
                 fov_y_degrees=config.fov_y_degrees,
                 distance_mm=config.camera_distance_mm,
                 near_mm=config.near_mm, far_mm=config.far_mm,
                 look_at_mm=tuple(config.look_at_mm),
                 rotation_center_mm=tuple(config.rotation_center_mm),
                 horizontal_scale=config.horizontal_scale)
    check_camera(camera, "config")
    return camera

  def with_image_size(self, image_size: Tuple[int, int]) -> "Camera":
    """The same camera with a different image size (e.g. supersampled)."""
    return self._replace(image_size=tuple(image_size))


def check_image_size(image_size, name: str):
  """Raises ValueError unless ``image_size`` is (height, width) > 0 ints."""
  if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2 or
      any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
          for s in image_size)):
    raise ValueError(f"{name} must be (height, width), two positive ints, got "
                     f"{image_size!r}")


def check_camera(camera: Camera, name: str = "camera"):
  """Checks the Python-number fields of a camera; raises ValueError."""
  if not isinstance(camera, Camera):
    raise ValueError(f"{name} must be a Camera, got {type(camera).__name__}")
  check_image_size(camera.image_size, f"{name}.image_size")

  def number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and (
        not isinstance(value, bool))

  if number(camera.fov_y_degrees) and not 0 < camera.fov_y_degrees < 180:
    raise ValueError(f"{name}.fov_y_degrees must be in (0, 180), got "
                     f"{camera.fov_y_degrees}")
  if number(camera.distance_mm) and camera.distance_mm <= 0:
    raise ValueError(f"{name}.distance_mm must be positive, got "
                     f"{camera.distance_mm}")
  if number(camera.near_mm) and number(camera.far_mm) and not (
      0 < camera.near_mm < camera.far_mm):
    raise ValueError(f"{name}: need 0 < near_mm < far_mm, got near_mm="
                     f"{camera.near_mm}, far_mm={camera.far_mm}")
  if number(camera.horizontal_scale) and camera.horizontal_scale <= 0:
    raise ValueError(f"{name}.horizontal_scale must be positive, got "
                     f"{camera.horizontal_scale}")
  for field in ("look_at_mm", "rotation_center_mm"):
    value = getattr(camera, field)
    if not tf.is_tensor(value) and np.shape(value) != (3,):
      raise ValueError(f"{name}.{field} must be a 3-vector, got {value!r}")


def _float(value) -> tf.Tensor:
  return tf.cast(tf.convert_to_tensor(value), tf.float32)


def look_at_matrix(eye, center, up) -> tf.Tensor:
  """World-to-camera matrix of a camera at ``eye`` looking at ``center``.

  Args:
    eye: float32 ``[..., 3]``, camera centre in world space.
    center: float32 ``[..., 3]``, point on the view axis (imaged at the image
      centre), world space; must differ from ``eye``.
    up: float32 ``[..., 3]``, world direction that appears as image +y; must
      not be parallel to ``center - eye``.

  Returns:
    float32 ``[..., 4, 4]``: maps homogeneous world points to camera space
    (camera at the origin looking along -z, +y up).  Differentiable.
  """
  eye, center, up = _float(eye), _float(center), _float(up)
  forward = tf.math.l2_normalize(center - eye, axis=-1)
  right = tf.math.l2_normalize(tf.linalg.cross(forward, up), axis=-1)
  true_up = tf.linalg.cross(right, forward)
  rotation = tf.stack([right, true_up, -forward], axis=-2)  # [..., 3, 3]
  translation = -tf.linalg.matvec(rotation, eye)             # [..., 3]
  top = tf.concat([rotation, translation[..., None]], axis=-1)
  bottom = tf.broadcast_to(tf.constant([0.0, 0.0, 0.0, 1.0]),
                           tf.concat([tf.shape(top)[:-2], [1, 4]], 0))
  return tf.concat([top, bottom], axis=-2)


def perspective_matrix(fov_y_degrees, aspect_ratio, near_mm, far_mm,
                       horizontal_scale=1.0) -> tf.Tensor:
  """OpenGL perspective projection (camera space -> clip space).

  Args:
    fov_y_degrees: float32 scalar, vertical field of view, degrees.
    aspect_ratio: float32 scalar, image width / height in pixels.
    near_mm, far_mm: float32 scalars, clip-plane distances, mm.
    horizontal_scale: float32 scalar, extra magnification of x (1: square
      pixels).

  Returns:
    float32 ``[4, 4]``; ``clip = P @ [x, y, z, 1]`` has ``w = -z`` and maps
    z = -near to z_ndc = -1 and z = -far to +1.  Differentiable.
  """
  fov = _float(fov_y_degrees) * (math.pi / 180.0)
  aspect, near, far = _float(aspect_ratio), _float(near_mm), _float(far_mm)
  focal = 1.0 / tf.tan(0.5 * fov)
  zero = tf.zeros_like(focal)
  return tf.stack([
      tf.stack([focal * _float(horizontal_scale) / aspect, zero, zero, zero]),
      tf.stack([zero, focal, zero, zero]),
      tf.stack([zero, zero, (far + near) / (near - far),
                2.0 * far * near / (near - far)]),
      tf.stack([zero, zero, -tf.ones_like(focal), zero]),
  ])


def rotation_matrices(poses: Poses) -> tf.Tensor:
  """``R = R_z(roll) R_x(pitch) R_y(yaw)`` per image.

  Args:
    poses: :class:`Poses` with ``[batch]`` angles in degrees.

  Returns:
    float32 ``[batch, 3, 3]`` rotation matrices acting on column vectors.
    Differentiable with respect to the angles.
  """
  radians = math.pi / 180.0
  yaw = _float(poses.yaw_degrees) * radians
  pitch = _float(poses.pitch_degrees) * radians
  roll = _float(poses.roll_degrees) * radians
  zero, one = tf.zeros_like(yaw), tf.ones_like(yaw)

  def matrix(rows):
    return tf.stack([tf.stack(row, axis=-1) for row in rows], axis=-2)

  cy, sy = tf.cos(yaw), tf.sin(yaw)
  cp, sp = tf.cos(pitch), tf.sin(pitch)
  cr, sr = tf.cos(roll), tf.sin(roll)
  r_yaw = matrix([[cy, zero, sy], [zero, one, zero], [-sy, zero, cy]])
  r_pitch = matrix([[one, zero, zero], [zero, cp, -sp], [zero, sp, cp]])
  r_roll = matrix([[cr, -sr, zero], [sr, cr, zero], [zero, zero, one]])
  return tf.matmul(r_roll, tf.matmul(r_pitch, r_yaw))


def view_matrix(camera: Camera) -> tf.Tensor:
  """World-to-camera matrix of ``camera``: float32 ``[4, 4]``."""
  target = _float(camera.look_at_mm)
  eye = target + tf.stack([0.0, 0.0, 1.0]) * _float(camera.distance_mm)
  return look_at_matrix(eye, target, tf.constant([0.0, 1.0, 0.0]))


def projection_matrix(camera: Camera) -> tf.Tensor:
  """Camera-to-clip matrix of ``camera``: float32 ``[4, 4]``."""
  height, width = camera.image_size
  return perspective_matrix(camera.fov_y_degrees, width / height,
                            camera.near_mm, camera.far_mm,
                            camera.horizontal_scale)


def model_view_matrices(poses: Poses, camera: Camera) -> tf.Tensor:
  """Model-to-camera matrices ``V M_b``: float32 ``[batch, 4, 4]``."""
  rotation = rotation_matrices(poses)                           # [B, 3, 3]
  center = _float(camera.rotation_center_mm)
  translation = center - tf.linalg.matvec(rotation, center)     # [B, 3]
  model = tf.concat([rotation, translation[..., None]], axis=-1)
  bottom = tf.broadcast_to(tf.constant([[0.0, 0.0, 0.0, 1.0]]),
                           [tf.shape(model)[0], 1, 4])
  model = tf.concat([model, bottom], axis=-2)
  return tf.matmul(view_matrix(camera)[None], model)


def check_vertices_and_poses(vertices, poses) -> tf.Tensor:
  """Checks ``[batch, vertex_count, 3]`` vertices and ``[batch]`` poses.

  Returns:
    The vertices as a float32 tensor.

  Raises:
    ValueError: naming ``vertices`` or the pose field with a bad shape.
  """
  vertices = tf.convert_to_tensor(vertices, tf.float32)
  if vertices.shape.rank != 3 or vertices.shape[-1] != 3:
    raise ValueError("vertices must have shape [batch, vertex_count, 3], got "
                     f"{vertices.shape}")
  if not isinstance(poses, Poses):
    raise ValueError(f"poses must be a Poses record, got {type(poses)}")
  for name, angle in zip(Poses._fields, poses):
    shape = tf.TensorShape(np.shape(angle) if not tf.is_tensor(angle)
                           else angle.shape)
    if shape.rank != 1 or (shape[0] is not None and
                           vertices.shape[0] is not None and
                           shape[0] != vertices.shape[0]):
      raise ValueError(f"poses.{name} must have shape [batch] = "
                       f"[{vertices.shape[0]}], got {shape}")
  return vertices


def camera_space_vertices(vertices, poses: Poses, camera: Camera
                          ) -> tf.Tensor:
  """Posed vertices in camera space.

  Args:
    vertices: float32 ``[batch, vertex_count, 3]``, model space, mm.
    poses: :class:`Poses`, ``[batch]`` angles in degrees.
    camera: :class:`Camera`.

  Returns:
    float32 ``[batch, vertex_count, 3]``, camera space, mm (in front of the
    camera z < 0).  Differentiable with respect to vertices, poses and tensor
    camera fields.

  Raises:
    ValueError: for badly shaped vertices or poses, or a bad camera.
  """
  vertices = check_vertices_and_poses(vertices, poses)
  check_camera(camera)
  return camera_space_vertices_unchecked(vertices, poses, camera)


def camera_space_vertices_unchecked(vertices, poses, camera):
  """:func:`camera_space_vertices` without input checks."""
  matrices = model_view_matrices(poses, camera)                 # [B, 4, 4]
  return (tf.matmul(vertices, matrices[:, :3, :3], transpose_b=True) +
          matrices[:, None, :3, 3])


def project_to_clip(camera_vertices, camera: Camera) -> tf.Tensor:
  """Camera-space points to clip space.

  Args:
    camera_vertices: float32 ``[batch, vertex_count, 3]``, camera space, mm.
    camera: :class:`Camera` (its field of view, aspect ratio and clip planes).

  Returns:
    float32 ``[batch, vertex_count, 4]`` clip coordinates ``(x, y, z, w)``;
    ``w = -z_camera`` in mm.  Differentiable.
  """
  projection = projection_matrix(camera)
  # A product per image (not one [batch * vertex_count, 3] product): the
  # result of an image must not depend on the batch it is rendered in, and
  # matmul kernels round differently for different sizes.
  return (tf.matmul(camera_vertices, projection[:, :3], transpose_b=True) +
          projection[:, 3])


def clip_space_vertices(vertices, poses: Poses, camera: Camera) -> tf.Tensor:
  """Model-space vertices to clip space: ``P V M_b p``.

  Args:
    vertices: float32 ``[batch, vertex_count, 3]``, model space, mm.
    poses: :class:`Poses`, ``[batch]`` angles in degrees.
    camera: :class:`Camera`.

  Returns:
    float32 ``[batch, vertex_count, 4]`` clip-space coordinates, the input of
    :func:`unsup3dmm.renderer.rasterize`.  Differentiable with respect to
    vertices, poses and tensor camera fields.

  Raises:
    ValueError: for badly shaped vertices or poses, or a bad camera.
  """
  return project_to_clip(camera_space_vertices(vertices, poses, camera),
                         camera)


def seed_pair(seed, name: str = "seed") -> tf.Tensor:
  """An int or a pair of ints -> int64 ``[2]`` stateless seed."""
  if isinstance(seed, bool) or not (
      tf.is_tensor(seed) or isinstance(seed, (int, np.integer, tuple, list,
                                              np.ndarray))):
    raise ValueError(f"{name} must be an int or a pair of ints, got {seed!r}")
  seed = tf.convert_to_tensor(seed)
  if not seed.dtype.is_integer:
    raise ValueError(f"{name} must be an int or a pair of ints, got dtype "
                     f"{seed.dtype.name}")
  seed = tf.cast(seed, tf.int64)
  if seed.shape.rank == 0:
    return tf.stack([seed, tf.constant(0, tf.int64)])
  if seed.shape.as_list() != [2]:
    raise ValueError(f"{name} must be an int or a pair of ints, got shape "
                     f"{seed.shape}")
  return seed


def check_batch_size(batch_size, name: str = "batch_size") -> int:
  """Returns ``batch_size`` as an int; ValueError unless a positive int."""
  if isinstance(batch_size, bool) or not isinstance(
      batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"{name} must be a positive int, got {batch_size!r}")
  return int(batch_size)


def check_range(value, name: str, low=-math.inf, high=math.inf):
  """Raises ValueError unless ``value`` is (min, max) within [low, high]."""
  if (not isinstance(value, (tuple, list)) or len(value) != 2 or
      not value[0] <= value[1] or value[0] < low or value[1] > high):
    raise ValueError(f"{name} must be (min, max) with {low} <= min <= max <= "
                     f"{high}, got {value!r}")


def sample_poses(batch_size: int, seed, config: RendererConfig) -> Poses:
  """Uniformly random yaw, pitch and roll in the config's ranges.

  Args:
    batch_size: positive int.
    seed: int, pair of ints or int ``[2]`` tensor (stateless RNG seed); the
      same seed gives the same poses.
    config: :class:`RendererConfig` (``yaw_range_degrees``,
      ``pitch_range_degrees``, ``roll_range_degrees``).

  Returns:
    :class:`Poses` of float32 ``[batch_size]`` tensors, degrees.  Random, no
    gradient.

  Raises:
    ValueError: for a bad batch size, seed or range.
  """
  batch_size = check_batch_size(batch_size)
  ranges = (config.yaw_range_degrees, config.pitch_range_degrees,
            config.roll_range_degrees)
  for name, value in zip(("yaw", "pitch", "roll"), ranges):
    check_range(value, f"config.{name}_range_degrees", -180.0, 180.0)
  unit = tf.random.stateless_uniform([3, batch_size], seed_pair(seed))
  low = tf.constant([[r[0]] for r in ranges], tf.float32)
  high = tf.constant([[r[1]] for r in ranges], tf.float32)
  angles = low + (high - low) * unit
  return Poses(yaw_degrees=angles[0], pitch_degrees=angles[1],
               roll_degrees=angles[2])


def frontal_poses(batch_size: int) -> Poses:
  """All-zero poses (the face looks into the camera): ``[batch_size]``."""
  zeros = tf.zeros([check_batch_size(batch_size)])
  return Poses(zeros, zeros, zeros)


def pixel_centers_ndc(image_size: Tuple[int, int]) -> Tuple[tf.Tensor,
                                                            tf.Tensor]:
  """NDC coordinates of pixel centres (row 0 at the top of the image).

  Args:
    image_size: (height, width), ints or int scalar tensors.

  Returns:
    ``(x, y)``: float32 ``[width]`` with ``x_j = 2 (j + 0.5) / width - 1`` and
    float32 ``[height]`` with ``y_i = 1 - 2 (i + 0.5) / height``.
  """
  height = tf.cast(image_size[0], tf.float32)
  width = tf.cast(image_size[1], tf.float32)
  x = (tf.range(width) + 0.5) * (2.0 / width) - 1.0
  y = 1.0 - (tf.range(height) + 0.5) * (2.0 / height)
  return x, y
