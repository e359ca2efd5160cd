"""Camera, pose, lighting and rasterisation settings.

Units: millimetres for distances (the morphable models are in mm), degrees for
angles, kelvin for colour temperatures.  Image sizes are (height, width).
"""
import dataclasses
from typing import Tuple


@dataclasses.dataclass
class RendererConfig:
  """Everything the renderer needs to turn coefficients into an image."""
  # Output image size (height, width) in pixels; FaceNet takes 160x160.
  image_size: Tuple[int, int] = (160, 160)
  # Vertical field of view of the pinhole camera, degrees.
  fov_y_degrees: float = 12.0
  # Distance from the camera centre to the face's origin, mm.
  camera_distance_mm: float = 1000.0
  # Clip planes, mm from the camera.
  near_mm: float = 100.0
  far_mm: float = 5000.0
  # Uniform random pose ranges (min, max), degrees.  Yaw turns the head left/
  # right, pitch nods, roll tilts in the image plane.
  yaw_range_degrees: Tuple[float, float] = (-30.0, 30.0)
  pitch_range_degrees: Tuple[float, float] = (-15.0, 15.0)
  roll_range_degrees: Tuple[float, float] = (-10.0, 10.0)
  # Two point lights, each at a random direction in front of the face at a
  # distance drawn from this range, mm ("a few metres", paper Sec. 4).
  light_distance_range_mm: Tuple[float, float] = (2000.0, 4000.0)
  light_intensity_range: Tuple[float, float] = (0.3, 0.8)
  ambient_intensity_range: Tuple[float, float] = (0.2, 0.4)
  # Light colour temperatures, kelvin (tungsten ~2700 to overcast ~7500).
  color_temperature_range_kelvin: Tuple[float, float] = (2700.0, 7500.0)
  # Phong shininess exponent (dimensionless) and specular strength factor.
  shininess: float = 20.0
  specular_strength: float = 0.15
  # Supersampling factor per axis (1: none).
  supersampling: int = 1
  # "constant", "random" or "noise"; constant background colour in [0, 1].
  background: str = "random"
  background_color: Tuple[float, float, float] = (0.5, 0.5, 0.5)
  # Visibility backend: "auto" (fastest for the device), "op" or "tf".
  backend: str = "auto"
