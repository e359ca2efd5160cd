"""Morphable-model and network settings."""
import dataclasses
from typing import Optional


@dataclasses.dataclass
class ModelConfig:
  """Which morphable model and encoder to use, and the decoder's size."""
  # Path to a BFM-2017-layout HDF5 file, or "demo" for the built-in model.
  morphable_model: str = "demo"
  # Keep only the first k shape / colour components (None: all of them).
  shape_components: Optional[int] = None
  texture_components: Optional[int] = None
  # Optional eos-style iBUG-68 -> vertex-id mapping file for a model file
  # without metadata/landmarks/ibug68, e.g. shared/data/bfm2017_aux/
  # ibug_to_bfm2017-1_bfm_nomouth.txt for model2017-1_bfm_nomouth.h5; empty:
  # the file's own landmarks, if any (see model/landmarks.py).
  landmarks_path: str = ""
  # FaceNet variant: "20170512-110547" (128-D, prewhiten) or the 512-D
  # "20180402-114759" / "20180408-102900" (fixed standardisation).
  facenet_model: str = "20170512-110547"
  # Explicit FaceNet weights path (.h5); empty: $UNSUP3DMM_FACENET_WEIGHTS,
  # then keras-facenet's cache/download (model/encoder.py).
  facenet_weights: str = ""
  # Hidden units of the two fully connected decoder layers (paper Sec. 4).
  decoder_units: int = 1024
  # Std of the truncated-normal init of the decoder's output kernel (bias 0):
  # small, so that a new decoder predicts coefficients ~0 (the mean face);
  # with FaceNet features this gives an initial coefficient std of ~0.005.
  decoder_output_init_stddev: float = 1e-3
  # Face crops (data/face_crop.py), FaceNet convention: the MTCNN box fills
  # the crop but for this margin, output pixels in total (half per side), at
  # a 160x160 crop (davidsandberg/facenet: --image_size 160 --margin 32).
  face_crop_margin_pixels: int = 32
  # MTCNN detections below this confidence are ignored (keras-facenet: 0.95).
  face_min_confidence: float = 0.95
