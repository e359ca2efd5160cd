"""Renders of the demo model look like faces to MTCNN, framed as FaceNet crops.

MTCNN (the ``mtcnn`` package, which ships its weights) is the detector that
FaceNet's training crops were made with, so it judges both whether a render
looks like a face and where the face box falls.
"""
import numpy as np
import pytest
import tensorflow as tf

from unsup3dmm.data.face_crop import FaceCropper
from unsup3dmm.model import morphable_model
from unsup3dmm.renderer import camera as camera_lib
from unsup3dmm.renderer import render as render_lib
from unsup3dmm.renderer.config import RendererConfig
from unsup3dmm.renderer.lighting import Lights
from unsup3dmm.training.config import TrainingConfig

MIN_CONFIDENCE = 0.9
# FaceNet crops (image size 160, margin 32) put the MTCNN box of the source
# photo on the central 128 x 128 pixels.
CROP_SIZE, CROP_MARGIN = 160, 32
NOMINAL_BOX_SIDE = CROP_SIZE - CROP_MARGIN
TOLERANCE_PIXELS = 0.1 * NOMINAL_BOX_SIDE


@pytest.fixture(scope="module")
def detector():
  from mtcnn import MTCNN  # pylint: disable=import-outside-toplevel
  return MTCNN()


@pytest.fixture(scope="module")
def demo_model():
  return morphable_model.TFMorphableModel(
      morphable_model.load_morphable_model("demo"))


def to_uint8(image):
  return np.round(np.asarray(image) * 255.0).astype(np.uint8)


def faces(detector, image):
  return [f for f in detector.detect_faces(to_uint8(image))
          if f["confidence"] > MIN_CONFIDENCE]


def box_geometry(box):
  """(centre x, centre y, width, height) of an MTCNN [x, y, w, h] box."""
  x, y, width, height = box
  return np.array([x + width / 2.0, y + height / 2.0, width, height])


# Soft frontal light for the framing checks (camera space).
FRONTAL_LIGHT = Lights(tf.constant([[[0.0, 0.0, 0.0], [500.0, 500.0, 0.0]]]),
                       tf.constant([[[0.5, 0.5, 0.5], [0.2, 0.2, 0.2]]]),
                       tf.constant([[0.4, 0.4, 0.4]]))


def render_mean_face(model, config):
  return render_lib.render_coefficients(
      model, tf.zeros([1, model.shape_components]),
      tf.zeros([1, model.texture_components]), camera_lib.frontal_poses(1),
      FRONTAL_LIGHT, config).images[0]


def test_random_demo_faces_are_detected(detector, demo_model):
  """>= 90% of 20 random faces, poses (yaw within +-30), lights, backgrounds."""
  config = RendererConfig()
  assert config.image_size == (160, 160)
  assert max(abs(a) for a in config.yaw_range_degrees) <= 30.0
  count = 20
  shape, texture = demo_model.sample_coefficients(
      count, seed=[2018, 1], truncation=TrainingConfig.coefficient_truncation)
  result = render_lib.render_coefficients(
      demo_model, shape, texture, render_lib.sample_poses(count, [2018, 2],
                                                          config),
      render_lib.sample_lights(count, [2018, 3], config), config,
      background_seed=[2018, 4])
  detected = [len(faces(detector, image)) == 1 for image in result.images]
  assert sum(detected) >= 0.9 * count, (
      f"MTCNN found exactly one face in {sum(detected)} of {count} renders; "
      f"missed: {[i for i, d in enumerate(detected) if not d]}")


def test_framing_matches_facenet_crops(detector, demo_model):
  """The mean face's MTCNN box is where MTCNN puts it in a FaceNet crop.

  Two references, each within 10% of the nominal 128-pixel box side:
  (1) the nominal crop box, 128 x 128 centred: the render's box centre, and
  its size (the geometric mean of width and height: MTCNN boxes are taller
  than wide, in crops as anywhere), and (2) the box MTCNN finds in an actual
  FaceNet-convention crop (unsup3dmm.data.face_crop) of a rendered "photo" of
  the same face (undistorted camera, wide field of view, 400 x 400): centre,
  width and height.
  """
  config = RendererConfig()
  render_faces = faces(detector, render_mean_face(demo_model, config))
  assert len(render_faces) == 1
  rendered = box_geometry(render_faces[0]["box"])
  center = CROP_SIZE / 2.0
  assert np.all(np.abs(rendered[:2] - center) <= TOLERANCE_PIXELS), rendered
  size = np.sqrt(rendered[2] * rendered[3])
  assert abs(size - NOMINAL_BOX_SIDE) <= TOLERANCE_PIXELS, rendered

  photo_config = RendererConfig(image_size=(400, 400), fov_y_degrees=25.0,
                                look_at_mm=(0.0, 0.0, 0.0),
                                horizontal_scale=1.0)
  photo = render_mean_face(demo_model, photo_config)
  photo_faces = faces(detector, photo)
  assert len(photo_faces) == 1
  x, y, width, height = photo_faces[0]["box"]
  crop = FaceCropper(CROP_SIZE, CROP_MARGIN).crop(
      to_uint8(photo), (x, y, x + width, y + height))
  crop_faces = faces(detector, crop)
  assert len(crop_faces) == 1
  cropped = box_geometry(crop_faces[0]["box"])
  assert np.all(np.abs(rendered - cropped) <= TOLERANCE_PIXELS), (rendered,
                                                                  cropped)
