"""Real photographs for stage 2: listing, validation, face cropping, caching.

Photos are prepared once: every file is decoded with Pillow, converted to 8-bit
RGB where that is possible (grayscale, palette, CMYK, 16-bit, alpha, animated),
skipped where it is not (undecodable, absurdly large, no face), face-cropped
with MTCNN in the FaceNet convention (``unsup3dmm.data.face_crop``) and written
as a 160x160 PNG into a cache folder keyed by the file's content.  Later runs
(and ``tools/precrop.py`` on a large folder) reuse the cache.  The tf.data
pipeline (``unsup3dmm.data.pipeline``) then reads only clean crops.

What happened to every file is counted in :class:`PreparationStats` and logged;
a bad image never stops a run.
"""
import collections
import dataclasses
import json
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from absl import logging
from PIL import Image, ImageSequence, UnidentifiedImageError

from unsup3dmm.data import celebrity_faces

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif",
                    ".tiff")
# Photos with more pixels than this are skipped (and Pillow's decompression-
# bomb guard is raised to match): 50 megapixels, far above any face photo.
DEFAULT_MAX_PIXELS = 50_000_000
# Version of the crop convention; part of the cache key so that changing the
# cropping code never reuses stale crops.
_CROP_CACHE_VERSION = 1

# Outcome names, used as TensorBoard tags and log keys.
USED = "used"
CONVERTED_GRAYSCALE = "converted_grayscale"
CONVERTED_CMYK = "converted_cmyk"
CONVERTED_16BIT = "converted_16bit"
CONVERTED_ANIMATED = "converted_animated"
CONVERTED_ALPHA = "converted_alpha"
CONVERTED_PALETTE = "converted_palette"
CONVERTED_OTHER_MODE = "converted_other_mode"
SKIPPED_UNDECODABLE = "skipped_undecodable"
SKIPPED_TOO_LARGE = "skipped_too_large"
SKIPPED_NO_FACE = "skipped_no_face"


class BadImageError(Exception):
  """An image that cannot be used; ``reason`` is one of the SKIPPED_* names."""

  def __init__(self, reason: str, message: str):
    super().__init__(message)
    self.reason = reason


@dataclasses.dataclass
class PreparationStats:
  """Counts of what happened to the input files."""
  found: int = 0
  counts: Dict[str, int] = dataclasses.field(
      default_factory=collections.Counter)
  # (path, reason) of every skipped file, for the log.
  skipped: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
  # Source file of each usable crop, parallel to the returned crop paths.
  sources: List[str] = dataclasses.field(default_factory=list)

  @property
  def used(self) -> int:
    return self.counts.get(USED, 0)

  @property
  def skipped_count(self) -> int:
    return len(self.skipped)

  def as_dict(self) -> Dict[str, int]:
    out = {"found": self.found, "skipped": self.skipped_count}
    out.update(self.counts)
    return out


def list_image_files(spec: str, flag_name: str = "--real_images") -> List[str]:
  """Lists image files from folders (searched recursively) or file lists.

  Args:
    spec: comma-separated entries; each is a folder (every file with an image
      extension below it, recursively), an image file, or a ``.txt`` file list
      with one path per line (relative paths are relative to the list's
      folder; blank lines and ``#`` comments ignored).
    flag_name: named in error messages.

  Returns:
    Sorted, de-duplicated absolute paths.

  Raises:
    ValueError: naming ``flag_name`` and the entry, when an entry does not
      exist or nothing is found.
  """
  if not spec or not spec.strip():
    raise ValueError(f"{flag_name} is empty: expected folders of images or a "
                     ".txt file list")
  found = set()
  for entry in (e.strip() for e in spec.split(",")):
    if not entry:
      continue
    entry = os.path.abspath(os.path.expanduser(entry))
    if os.path.isdir(entry):
      for root, _, files in os.walk(entry):
        for name in files:
          if name.lower().endswith(IMAGE_EXTENSIONS):
            found.add(os.path.join(root, name))
    elif entry.lower().endswith(".txt") and os.path.isfile(entry):
      base = os.path.dirname(entry)
      with open(entry) as f:
        for line in f:
          line = line.strip()
          if line and not line.startswith("#"):
            found.add(os.path.normpath(os.path.join(base, line)))
    elif os.path.isfile(entry):
      found.add(entry)
    else:
      raise ValueError(f"{flag_name}: {entry!r} is neither a folder, an image "
                       "file nor a .txt file list")
  if not found:
    raise ValueError(f"{flag_name}: no image files ({', '.join(IMAGE_EXTENSIONS)})"
                     f" found in {spec!r}")
  return sorted(found)


def load_rgb(path: str,
             max_pixels: int = DEFAULT_MAX_PIXELS) -> Tuple[np.ndarray, List[str]]:
  """Decodes an image file to 8-bit RGB.

  Args:
    path: image file.
    max_pixels: images with more pixels are rejected before decoding.

  Returns:
    (image uint8 [height, width, 3], list of CONVERTED_* names applied).

  Raises:
    BadImageError: undecodable or too large.
  """
  conversions = []
  try:
    with Image.open(path) as im:
      width, height = im.size
      if width * height > max_pixels:
        raise BadImageError(
            SKIPPED_TOO_LARGE, f"{path}: {width}x{height} pixels is more than "
            f"the limit of {max_pixels}")
      if getattr(im, "n_frames", 1) > 1:
        conversions.append(CONVERTED_ANIMATED)
        im = next(iter(ImageSequence.Iterator(im))).copy()
      im.load()
      mode = im.mode
      if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit (or 32-bit) grayscale: rescale to 8 bits.
        conversions.append(CONVERTED_16BIT)
        array = np.asarray(im, dtype=np.float64)
        top = 65535.0 if array.max() > 255 else 255.0
        array = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        im = Image.fromarray(array, mode="L")
      elif mode in ("L", "LA", "1"):
        conversions.append(CONVERTED_GRAYSCALE)
      elif mode == "CMYK":
        conversions.append(CONVERTED_CMYK)
      elif mode in ("P", "PA"):
        conversions.append(CONVERTED_PALETTE)
      elif mode == "RGBA" or "transparency" in im.info:
        conversions.append(CONVERTED_ALPHA)
      elif mode != "RGB":
        conversions.append(CONVERTED_OTHER_MODE)
      rgb = im.convert("RGB")
      return np.asarray(rgb, dtype=np.uint8).copy(), conversions
  except BadImageError:
    raise
  except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
          Image.DecompressionBombError) as e:
    raise BadImageError(SKIPPED_UNDECODABLE,
                        f"{path}: cannot decode image ({e})") from e


def resize_crop(image: np.ndarray, size: int) -> np.ndarray:
  """Resizes an already-cropped face (uint8 [h, w, 3]) to [size, size, 3]."""
  if image.shape[0] == size and image.shape[1] == size:
    return image
  return np.asarray(
      Image.fromarray(image).resize((size, size), Image.BILINEAR),
      dtype=np.uint8)


FaceCropper = Callable[[np.ndarray], Optional[np.ndarray]]


def prepare_crops(paths: Sequence[str],
                  cache_dir: str,
                  already_cropped: bool,
                  crop_size: int = 160,
                  face_cropper: Optional[FaceCropper] = None,
                  max_pixels: int = DEFAULT_MAX_PIXELS
                 ) -> Tuple[List[str], PreparationStats]:
  """Validates, converts and face-crops photos once; caches 160x160 PNGs.

  Args:
    paths: image files (see :func:`list_image_files`).
    cache_dir: folder for the crops; created if missing.  Crops are keyed by
      the sha256 of the file's bytes, the crop size and the crop mode, so a
      cache can be shared between runs and datasets.
    already_cropped: the files are face crops already: only resize.
    crop_size: output side length in pixels.
    face_cropper: ``image uint8 [h, w, 3] -> crop uint8 [crop_size,
      crop_size, 3]`` or None when no face is found.  Defaults to the most
      confident MTCNN face (``unsup3dmm.data.face_crop``).  Only called for
      files not already in the cache.
    max_pixels: larger images are skipped.

  Returns:
    (paths of the usable crop PNGs in the order of ``paths``, statistics).
  """
  os.makedirs(cache_dir, exist_ok=True)
  stats = PreparationStats(found=len(paths))
  mode = "crop" if already_cropped else "mtcnn"
  crops = []
  for path in paths:
    try:
      key = celebrity_faces.sha256_of_file(path)
    except OSError as e:
      stats.counts[SKIPPED_UNDECODABLE] += 1
      stats.skipped.append((path, f"{SKIPPED_UNDECODABLE}: {e}"))
      continue
    stem = os.path.join(cache_dir,
                        f"{key}_{mode}{crop_size}_v{_CROP_CACHE_VERSION}")
    record_path = stem + ".json"
    crop_path = stem + ".png"
    record = None
    if os.path.exists(record_path):
      try:
        with open(record_path) as f:
          record = json.load(f)
      except (OSError, json.JSONDecodeError):
        record = None
      if record and record.get("status") == USED and not os.path.exists(
          crop_path):
        record = None
    if record is None:
      record = _prepare_one(path, crop_path, already_cropped, crop_size,
                            face_cropper, max_pixels)
      tmp = record_path + ".tmp"
      with open(tmp, "w") as f:
        json.dump(record, f)
      os.replace(tmp, record_path)
    for conversion in record.get("conversions", []):
      stats.counts[conversion] += 1
    status = record["status"]
    stats.counts[status] += 1
    if status == USED:
      crops.append(crop_path)
      stats.sources.append(path)
    else:
      stats.skipped.append((path, f"{status}: {record.get('message', '')}"))
  for path, reason in stats.skipped:
    logging.info("Skipped image %s (%s)", path, reason)
  logging.info("Real images: %s", stats.as_dict())
  return crops, stats


def _prepare_one(path, crop_path, already_cropped, crop_size, face_cropper,
                 max_pixels):
  """Decodes, converts and crops one file; writes the crop; returns a record."""
  try:
    image, conversions = load_rgb(path, max_pixels)
  except BadImageError as e:
    return {"status": e.reason, "message": str(e), "source": path}
  if already_cropped:
    crop = resize_crop(image, crop_size)
  else:
    if face_cropper is None:
      face_cropper = default_face_cropper(crop_size)
    crop = face_cropper(image)
    if crop is None:
      return {"status": SKIPPED_NO_FACE, "message": f"{path}: no face found",
              "source": path, "conversions": conversions}
  tmp = crop_path + ".tmp.png"
  Image.fromarray(np.asarray(crop, dtype=np.uint8)).save(tmp)
  os.replace(tmp, crop_path)
  return {"status": USED, "source": path, "conversions": conversions}


_DEFAULT_CROPPERS = {}


def default_face_cropper(crop_size: int = 160) -> FaceCropper:
  """MTCNN's pick of face (``FaceCropper.crop_faces``), as uint8."""
  if crop_size not in _DEFAULT_CROPPERS:
    from unsup3dmm.data import face_crop  # pylint: disable=import-outside-toplevel
    cropper = face_crop.FaceCropper(crop_size=crop_size)

    def crop_one(image):
      faces = cropper.crop_faces(image)
      if not faces:
        return None
      return np.clip(np.round(np.asarray(faces[0].crop) * 255.0), 0,
                     255).astype(np.uint8)

    _DEFAULT_CROPPERS[crop_size] = crop_one
  return _DEFAULT_CROPPERS[crop_size]
