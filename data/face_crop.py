"""MTCNN face detection and FaceNet-convention face crops.

Crop convention (what FaceNet's weights expect, davidsandberg/facenet
``align_dataset_mtcnn.py`` with ``--image_size 160 --margin 32``), stated
exactly:

1. MTCNN (the ``mtcnn`` package, weights shipped with it) detects faces; boxes
   ``(x0, y0, x1, y1)`` are in source-image pixels, x right, y down.
   Detections with confidence below ``min_confidence`` are dropped.
2. The box is grown so that, after resizing, the detected box covers the
   central ``(crop_size - margin) x (crop_size - margin)`` output pixels, i.e.
   ``margin / 2`` output pixels of context on every side (16 of 160 by
   default).  In source pixels each side moves out by
   ``width * (margin / 2) / (crop_size - margin)`` horizontally and
   ``height * (margin / 2) / (crop_size - margin)`` vertically.  (facenet adds
   ``margin / 2`` source pixels per side, which is the same thing for a
   128-pixel-wide detection; stating it in output pixels makes the crop
   independent of the photo's resolution.)
3. The grown box is rounded outwards to whole pixels and clipped to the image
   (as facenet does; a face at the border gets less context), cut out, and
   resized to ``crop_size x crop_size`` with Pillow's bilinear filter
   (antialiased when shrinking; facenet used ``scipy.misc.imresize``, which
   wraps the same filter).  The aspect ratio is not preserved: MTCNN boxes
   are roughly square and facenet stretches them the same way.
4. The crop is returned as float32 RGB in [0, 1]: the encoder's and
   renderer's image convention.

With several faces, the default returns the one facenet picks: the largest
box area minus twice the squared distance of its centre from the image
centre.  ``all_faces=True`` returns all of them, in that order.
"""
import functools
import math
from typing import List, NamedTuple, Sequence, Tuple

import numpy as np
from PIL import Image

from unsup3dmm.model.config import ModelConfig
from unsup3dmm.model.encoder import FACENET_IMAGE_SIZE


class FaceCrop(NamedTuple):
  """One detected face.

  Attributes:
    crop: float32 ``[crop_size, crop_size, 3]`` RGB in [0, 1].
    box: MTCNN detection ``(x0, y0, x1, y1)``, float source-image pixels.
    confidence: MTCNN confidence in [0, 1].
    crop_box: the region cut out, ``(x0, y0, x1, y1)`` integer source-image
      pixels, end-exclusive (after margin and clipping).
  """
  crop: np.ndarray
  box: Tuple[float, float, float, float]
  confidence: float
  crop_box: Tuple[int, int, int, int]


@functools.lru_cache(maxsize=1)
def _detector():
  """The MTCNN detector, created once per process (it takes seconds)."""
  from mtcnn import MTCNN  # pylint: disable=import-outside-toplevel
  return MTCNN()


def _check_image(image) -> np.ndarray:
  if (not isinstance(image, np.ndarray) or image.dtype != np.uint8 or
      image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1):
    description = (f"{image.dtype} array of shape {image.shape}" if isinstance(
        image, np.ndarray) else type(image).__name__)
    raise ValueError("image: expected a uint8 RGB array [height, width, 3], "
                     f"got {description}")
  return image


class FaceCropper:
  """Detects faces with MTCNN and crops them in the FaceNet convention.

  The MTCNN detector is created on first use and shared by all croppers.
  """

  def __init__(self,
               crop_size: int = FACENET_IMAGE_SIZE,
               margin_pixels: int = ModelConfig.face_crop_margin_pixels,
               min_confidence: float = ModelConfig.face_min_confidence):
    """Args:
      crop_size: output side length, pixels (FaceNet: 160).
      margin_pixels: total context around the detected box, output pixels
        (half per side); 0 <= margin_pixels < crop_size.
      min_confidence: detections below it are ignored, in [0, 1].

    Raises:
      ValueError: an argument outside its range.
    """
    if crop_size < 1:
      raise ValueError(f"crop_size: expected a positive size, got {crop_size}")
    if not 0 <= margin_pixels < crop_size:
      raise ValueError(f"margin_pixels: expected 0 <= margin_pixels < "
                       f"crop_size ({crop_size}), got {margin_pixels}")
    if not 0.0 <= min_confidence <= 1.0:
      raise ValueError(f"min_confidence: expected a value in [0, 1], got "
                       f"{min_confidence}")
    self.crop_size = crop_size
    self.margin_pixels = margin_pixels
    self.min_confidence = min_confidence

  @classmethod
  def from_model_config(cls, model_config: ModelConfig) -> "FaceCropper":
    """A cropper with ``model_config``'s margin and confidence threshold."""
    return cls(FACENET_IMAGE_SIZE, model_config.face_crop_margin_pixels,
               model_config.face_min_confidence)

  def crop_box(self, box: Sequence[float], image_height: int,
               image_width: int) -> Tuple[int, int, int, int]:
    """The source region cut out for a detection box (steps 2-3 above).

    Args:
      box: ``(x0, y0, x1, y1)`` source pixels, x0 < x1, y0 < y1.
      image_height, image_width: source image size, pixels.

    Returns:
      ``(x0, y0, x1, y1)`` integer pixels, end-exclusive, inside the image.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    grow = (self.margin_pixels / 2.0) / (self.crop_size - self.margin_pixels)
    dx = (x1 - x0) * grow
    dy = (y1 - y0) * grow
    left = min(max(int(math.floor(x0 - dx)), 0), image_width - 1)
    top = min(max(int(math.floor(y0 - dy)), 0), image_height - 1)
    right = max(min(int(math.ceil(x1 + dx)), image_width), left + 1)
    bottom = max(min(int(math.ceil(y1 + dy)), image_height), top + 1)
    return left, top, right, bottom

  def crop(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """Crops a given detection box (no detection; steps 2-4 above).

    Args:
      image: uint8 ``[height, width, 3]`` RGB.
      box: ``(x0, y0, x1, y1)`` source pixels, x0 < x1, y0 < y1.

    Returns:
      float32 ``[crop_size, crop_size, 3]`` RGB in [0, 1].

    Raises:
      ValueError: bad image or box.
    """
    image = _check_image(image)
    if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
      raise ValueError(f"box: expected (x0, y0, x1, y1) with x0 < x1 and "
                       f"y0 < y1, got {tuple(box)}")
    return self._crop(image, self.crop_box(box, *image.shape[:2]))

  def _crop(self, image, crop_box):
    left, top, right, bottom = crop_box
    region = Image.fromarray(image[top:bottom, left:right])
    resized = region.resize((self.crop_size, self.crop_size), Image.BILINEAR)
    return np.asarray(resized, dtype=np.float32) / 255.0

  def detect(self, image: np.ndarray) -> List[Tuple[Tuple[float, float, float,
                                                          float], float]]:
    """MTCNN detections at or above ``min_confidence``, facenet's order.

    Args:
      image: uint8 ``[height, width, 3]`` RGB.

    Returns:
      ``[(box (x0, y0, x1, y1) float source pixels, confidence)]``, sorted by
      box area minus twice the squared distance of the box centre from the
      image centre, largest first.

    Raises:
      ValueError: bad image.
    """
    image = _check_image(image)
    rows = _detector().detect_faces(image, box_format="xyxy",
                                    output_type="numpy")
    height, width = image.shape[:2]
    faces = []
    for row in np.asarray(rows, dtype=np.float64).reshape(-1, 16):
      confidence = float(row[5])
      if confidence < self.min_confidence:
        continue
      x0, y0, x1, y1 = (float(v) for v in row[1:5])
      if not (x0 < x1 and y0 < y1):
        continue
      offset_squared = (((x0 + x1) / 2 - width / 2)**2 +
                        ((y0 + y1) / 2 - height / 2)**2)
      score = (x1 - x0) * (y1 - y0) - 2.0 * offset_squared
      faces.append((score, (x0, y0, x1, y1), confidence))
    faces.sort(key=lambda face: -face[0])
    return [(box, confidence) for _, box, confidence in faces]

  def crop_faces(self, image: np.ndarray,
                 all_faces: bool = False) -> List[FaceCrop]:
    """Detects and crops faces.

    Args:
      image: uint8 ``[height, width, 3]`` RGB photo.
      all_faces: False: at most one face, the one facenet would pick (see
        :meth:`detect`); True: every face above ``min_confidence``, in the
        same order.

    Returns:
      A list of :class:`FaceCrop` (empty when no face is found).

    Raises:
      ValueError: ``image`` is not a uint8 ``[height, width, 3]`` array.
    """
    detections = self.detect(image)
    if not all_faces:
      detections = detections[:1]
    faces = []
    for box, confidence in detections:
      crop_box = self.crop_box(box, *image.shape[:2])
      faces.append(
          FaceCrop(self._crop(image, crop_box), box, confidence, crop_box))
    return faces
