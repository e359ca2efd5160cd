"""Tests of real-photo preparation: listing, conversion, skipping, caching."""
import os

import numpy as np
import pytest
from PIL import Image

from unsup3dmm.data import pipeline
from unsup3dmm.data import real_images


def _rgb(seed=0, size=(40, 50)):
  return np.random.default_rng(seed).integers(0, 256, size + (3,), np.uint8)


@pytest.fixture
def photo_folder(tmp_path):
  """One image of every kind the preparation must handle."""
  folder = tmp_path / "photos"
  (folder / "sub").mkdir(parents=True)
  Image.fromarray(_rgb(0)).save(folder / "rgb.jpg")
  Image.fromarray(_rgb(1)[..., 0]).save(folder / "gray.png")
  Image.fromarray(_rgb(2)).convert("CMYK").save(folder / "sub" / "cmyk.jpg")
  sixteen = (np.random.default_rng(3).integers(0, 65535, (30, 30))
             .astype(np.uint16))
  Image.fromarray(sixteen).save(folder / "sixteen.png")
  frames = [Image.fromarray(_rgb(s)) for s in (4, 5)]
  frames[0].save(folder / "animated.gif", save_all=True,
                 append_images=frames[1:])
  Image.fromarray(_rgb(6)).convert("RGBA").save(folder / "alpha.png")
  Image.fromarray(_rgb(7, (300, 300))).save(folder / "huge.png")
  (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
  Image.fromarray(_rgb(8)).save(folder / "sub" / "noface.png")
  (folder / "notes.txt").write_text("not an image list entry")
  return folder


def test_list_image_files_recurses_and_reads_lists(photo_folder, tmp_path):
  found = real_images.list_image_files(str(photo_folder))
  names = sorted(os.path.basename(p) for p in found)
  assert names == sorted([
      "rgb.jpg", "gray.png", "cmyk.jpg", "sixteen.png", "animated.gif",
      "alpha.png", "huge.png", "broken.jpg", "noface.png"
  ])
  listing = tmp_path / "list.txt"
  listing.write_text("# a comment\nphotos/rgb.jpg\n\nphotos/sub/cmyk.jpg\n")
  listed = real_images.list_image_files(str(listing))
  assert listed == sorted([str(photo_folder / "rgb.jpg"),
                           str(photo_folder / "sub" / "cmyk.jpg")])


def test_list_image_files_errors_name_the_flag(tmp_path):
  with pytest.raises(ValueError, match="--real_images: .*missing"):
    real_images.list_image_files(str(tmp_path / "missing"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="--real_images: no image files"):
    real_images.list_image_files(str(tmp_path / "empty"))
  with pytest.raises(ValueError, match="--images is empty"):
    real_images.list_image_files(" ", flag_name="--images")


def test_load_rgb_converts_every_mode(photo_folder):
  cases = {
      "gray.png": real_images.CONVERTED_GRAYSCALE,
      "sub/cmyk.jpg": real_images.CONVERTED_CMYK,
      "sixteen.png": real_images.CONVERTED_16BIT,
      "animated.gif": real_images.CONVERTED_ANIMATED,
      "alpha.png": real_images.CONVERTED_ALPHA,
  }
  for name, conversion in cases.items():
    image, conversions = real_images.load_rgb(str(photo_folder / name))
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert conversion in conversions, name
  image, conversions = real_images.load_rgb(str(photo_folder / "rgb.jpg"))
  assert conversions == [] and image.shape == (40, 50, 3)
  # 16-bit values are rescaled, not truncated.
  sixteen, _ = real_images.load_rgb(str(photo_folder / "sixteen.png"))
  assert sixteen.max() > 200


def test_prepare_crops_skips_and_counts_bad_images(photo_folder, tmp_path):
  paths = real_images.list_image_files(str(photo_folder))
  calls = []

  def fake_cropper(image):
    calls.append(image.shape)
    if image.shape[:2] == (40, 50) and image[0, 0, 0] == _rgb(8)[0, 0, 0]:
      return None  # "no face" for noface.png
    return np.full((16, 16, 3), 128, np.uint8)

  cache = tmp_path / "cache"
  crops, stats = real_images.prepare_crops(
      paths, str(cache), already_cropped=False, crop_size=16,
      face_cropper=fake_cropper, max_pixels=200 * 200)
  counts = stats.as_dict()
  assert stats.found == 9
  assert counts["skipped_undecodable"] == 1
  assert counts["skipped_too_large"] == 1
  assert counts["skipped_no_face"] == 1
  assert counts["used"] == 6 == len(crops) == len(stats.sources)
  assert stats.skipped_count == 3
  for name in ("converted_grayscale", "converted_cmyk", "converted_16bit",
               "converted_animated", "converted_alpha"):
    assert counts[name] == 1, name
  skipped = {os.path.basename(p) for p, _ in stats.skipped}
  assert skipped == {"broken.jpg", "huge.png", "noface.png"}
  for crop in crops:
    assert Image.open(crop).size == (16, 16)
  # A second pass reuses the cache: no detector call, same outcome.
  calls.clear()
  crops_again, stats_again = real_images.prepare_crops(
      paths, str(cache), already_cropped=False, crop_size=16,
      face_cropper=fake_cropper, max_pixels=200 * 200)
  assert calls == [] and crops_again == crops
  assert stats_again.as_dict() == counts


def test_already_cropped_images_are_resized_and_read_by_the_pipeline(
    photo_folder, tmp_path):
  paths = [str(photo_folder / "rgb.jpg"), str(photo_folder / "gray.png")]
  crops, stats = real_images.prepare_crops(paths, str(tmp_path / "c"),
                                           already_cropped=True, crop_size=24)
  assert stats.used == 2
  ds = pipeline.crop_dataset(crops, batch_size=2, seed=3, crop_size=24)
  images, indices = next(iter(ds))
  assert images.shape == (2, 24, 24, 3)
  assert float(images.numpy().min()) >= 0 and float(images.numpy().max()) <= 1
  assert sorted(indices.numpy().tolist()) == [0, 1]
  # Deterministic for a seed: two datasets built alike give the same batches.
  def order(seed):
    ds = pipeline.crop_dataset(crops, batch_size=1, seed=seed, crop_size=24)
    return [int(i.numpy()[0]) for _, i in ds.take(12)]

  assert order(3) == order(3)
  assert order(3) != order(4)
