"""Tests of MTCNN face cropping: exact crop geometry, then real photos."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from unsup3dmm.data import celebrity_faces
from unsup3dmm.data import face_crop
from unsup3dmm.model.config import ModelConfig


@pytest.fixture(scope="module")
def cropper():
  return face_crop.FaceCropper()


def _load(path):
  return np.asarray(Image.open(path).convert("RGB"))


def test_defaults_come_from_model_config():
  cropper = face_crop.FaceCropper()
  config = ModelConfig()
  assert (cropper.crop_size, cropper.margin_pixels, cropper.min_confidence) == (
      160, config.face_crop_margin_pixels, config.face_min_confidence)
  custom = face_crop.FaceCropper.from_model_config(
      ModelConfig(face_crop_margin_pixels=0, face_min_confidence=0.5))
  assert (custom.margin_pixels, custom.min_confidence) == (0, 0.5)


def test_crop_box_adds_half_margin_in_output_pixels_per_side(cropper):
  # A 128-pixel box: 16 output pixels per side = 16 source pixels per side.
  assert cropper.crop_box((100, 50, 228, 178), 300, 400) == (84, 34, 244, 194)
  # A 256 x 64 box: 32 source pixels per side horizontally, 8 vertically.
  assert cropper.crop_box((64, 100, 320, 164), 300, 400) == (32, 92, 352, 172)
  # Fractional boxes round outwards; the region is clipped to the image.
  assert cropper.crop_box((0.5, 10.2, 64.5, 74.2), 70, 100) == (0, 2, 73, 70)
  assert face_crop.FaceCropper(margin_pixels=0).crop_box(
      (10.5, 20.5, 30.5, 40.5), 100, 100) == (10, 20, 31, 41)


def test_crop_is_the_box_region_at_facenet_scale(cropper):
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
  # Crop region exactly 160 x 160: no resampling, an exact copy.
  crop = cropper.crop(image, (100, 50, 228, 178))
  assert crop.dtype == np.float32 and crop.shape == (160, 160, 3)
  np.testing.assert_array_equal(crop, image[34:194, 84:244] / np.float32(255))
  # A 256-pixel box is shrunk by 2: the box covers the central 128 x 128
  # output pixels, with 16 pixels of context on every side.
  image = np.zeros((400, 400, 3), np.uint8)
  image[..., 2] = 255
  image[64:320, 64:320] = (255, 0, 0)
  crop = cropper.crop(image, (64, 64, 320, 320))
  inside = crop[16 + 2:144 - 2, 16 + 2:144 - 2]
  assert np.all(inside == np.array([1, 0, 0], np.float32))
  for border in (crop[:16 - 2], crop[144 + 2:], crop[:, :16 - 2],
                 crop[:, 144 + 2:]):
    assert np.all(border == np.array([0, 0, 1], np.float32))


def test_input_errors(cropper):
  with pytest.raises(ValueError, match=r"uint8 RGB array \[height, width, 3\]"):
    cropper.crop_faces(np.zeros((50, 50, 3), np.float32))
  with pytest.raises(ValueError, match="uint8 RGB array"):
    cropper.crop_faces(np.zeros((50, 50), np.uint8))
  with pytest.raises(ValueError, match="box"):
    cropper.crop(np.zeros((50, 50, 3), np.uint8), (10, 10, 5, 20))
  with pytest.raises(ValueError, match="margin_pixels"):
    face_crop.FaceCropper(margin_pixels=160)
  with pytest.raises(ValueError, match="min_confidence"):
    face_crop.FaceCropper(min_confidence=1.5)


def test_no_face_in_a_flat_image(cropper):
  assert cropper.crop_faces(np.full((200, 200, 3), 128, np.uint8)) == []


def test_validation_photos_match_the_manifest(celebrity_photos, cropper,
                                              shared_asset):
  manifest_path = shared_asset("faces/five_celebrities_manifest.json")
  with open(manifest_path) as f:
    single_face = {
        image["sha256"]: image["mtcnn_single_face_conf_gt_0.95"]
        for image in json.load(f)["images"]
    }
  val = [r for r in celebrity_photos if r.split == "val"]
  counts = []
  for record in val:
    image = _load(record.path)
    faces = cropper.crop_faces(image, all_faces=True)
    counts.append(len(faces))
    digest = celebrity_faces.sha256_of_file(record.path)
    assert (len(faces) == 1) == single_face[digest], record.path
    for face in faces:
      assert face.crop.shape == (160, 160, 3) and face.crop.dtype == np.float32
      assert 0.0 <= face.crop.min() and face.crop.max() <= 1.0
      assert face.confidence >= 0.95
      x0, y0, x1, y1 = face.crop_box
      assert x0 <= face.box[0] and y0 <= face.box[1]
      assert x1 >= face.box[2] and y1 >= face.box[3]
      assert face.crop_box == cropper.crop_box(face.box, *image.shape[:2])
  assert counts.count(1) == 22 and sum(counts) >= 22


def test_all_faces_in_a_two_person_image(celebrity_photos, cropper):
  val = [r for r in celebrity_photos if r.split == "val"]
  left = _load(next(r.path for r in val if r.identity == "mindy_kaling"))
  right = _load(next(r.path for r in val if r.identity == "madonna"))
  height = max(left.shape[0], right.shape[0])
  both = np.concatenate([
      np.pad(im, ((0, height - im.shape[0]), (0, 0), (0, 0)))
      for im in (left, right)
  ], axis=1)
  faces = cropper.crop_faces(both, all_faces=True)
  assert len(faces) == 2
  centres = sorted((f.box[0] + f.box[2]) / 2 for f in faces)
  assert centres[0] < left.shape[1] < centres[1]
  # The default returns one face: the first of facenet's order.
  single = cropper.crop_faces(both)
  assert len(single) == 1 and single[0].box == faces[0].box
  np.testing.assert_array_equal(single[0].crop, faces[0].crop)
  # The left face is found where it is found in the left photo alone (the
  # detector's image pyramid differs, so the boxes agree to a few pixels).
  left_faces = cropper.crop_faces(left)
  assert len(left_faces) == 1
  left_in_both = min(faces, key=lambda f: f.box[0])
  assert _iou(left_in_both.box, left_faces[0].box) > 0.9


def _iou(a, b):
  width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
  return width * height / (area(a) + area(b) - width * height)
