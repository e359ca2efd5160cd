"""Camera, pose, lighting, material and rasterisation settings.

Units: millimetres for distances (the morphable models are in mm), degrees for
angles, kelvin for colour temperatures.  Image sizes are (height, width).
Spaces: *model space* is the morphable model's (mm, +x the subject's left,
+y up, +z towards the viewer); *camera space* (also called eye space) has its
origin at the camera's centre of projection, +x image right, +y image up, and
the camera looks along -z.  Lights live in camera space.
"""
import dataclasses
from typing import Tuple


@dataclasses.dataclass
class RendererConfig:
  """Everything the renderer needs to turn coefficients into an image."""
  # Output image size (height, width) in pixels; FaceNet takes 160x160.
  image_size: Tuple[int, int] = (160, 160)

  # --- Camera (renderer/camera.py) -------------------------------------------
  # The camera sits on the +z axis of model space, `camera_distance_mm` in
  # front of `look_at_mm`, looking at it with +y up.  The defaults render the
  # mean demo face exactly as a FaceNet crop (facenet align_dataset_mtcnn,
  # image size 160, margin 32 px; data/face_crop.py) of a photo of it taken
  # from one metre: in such a photo MTCNN boxes the face at 0.674 times as wide
  # as tall, from 7 mm above the head centre; the crop maps that box to the
  # central 128 x 128 pixels.  MTCNN then finds a box of about 115 x 144 px,
  # centred, both in the crop and in a render (tests/test_demo_face_
  # detection.py); in FaceNet crops of real photos it finds about 118 x 138 px
  # (median over 59 crops of the five-celebrity photos).
  # Vertical field of view of the pinhole camera, degrees: 128 px of 160 span
  # the MTCNN box's 200 mm (forehead to chin of the demo face).
  fov_y_degrees: float = 14.3
  # Distance from the camera centre to `look_at_mm`, mm: a portrait at about
  # one metre.
  camera_distance_mm: float = 1000.0
  # Model-space point at the image centre, mm: on the head axis, at the height
  # of the centre of the MTCNN box (between the eyes and the nose tip).
  look_at_mm: Tuple[float, float, float] = (0.0, 7.0, 0.0)
  # Model-space pivot of the head rotation (yaw, pitch, roll), mm: the head
  # centre, which is the origin of the demo model.
  rotation_center_mm: Tuple[float, float, float] = (0.0, 0.0, 0.0)
  # Magnification of the image's x axis relative to y (1: square pixels).
  # FaceNet crops resize the MTCNN box plus margin, which is taller than wide,
  # to a square, so faces in them are widened by 1 / 0.674 = 1.48 for the
  # demo face (by about 1.25 for real faces with hair); renders are widened
  # alike.
  horizontal_scale: float = 1.48
  # Clip planes, mm from the camera along the view axis.
  near_mm: float = 100.0
  far_mm: float = 5000.0

  # --- Random poses (camera.sample_poses) -------------------------------------
  # Uniform ranges (min, max), degrees.  Yaw turns the head about the vertical
  # axis (positive: the nose turns towards the image's right), pitch about the
  # horizontal axis (positive: the nose turns down), roll about the view axis
  # (positive: counter-clockwise in the image).  Near-frontal ranges like the
  # bulk of FaceNet's training crops, where MTCNN detects reliably.
  yaw_range_degrees: Tuple[float, float] = (-30.0, 30.0)
  pitch_range_degrees: Tuple[float, float] = (-10.0, 10.0)
  roll_range_degrees: Tuple[float, float] = (-10.0, 10.0)

  # --- Random lights (renderer/lighting.py) -----------------------------------
  # Number of point lights ("two point lights", paper Sec. 4).
  light_count: int = 2
  # Each light sits at a random direction from the face centre within this
  # angle of the camera axis (the frontal hemisphere is 90; portrait key
  # lights are at about 45), degrees ...
  light_max_angle_degrees: float = 50.0
  # ... at a random distance in this range, mm ("a few metres").
  light_distance_range_mm: Tuple[float, float] = (2000.0, 4000.0)
  # Radiance scale of each point light (dimensionless: an albedo-1 surface
  # facing the light shades to this value per colour channel of luminance 1).
  light_intensity_range: Tuple[float, float] = (0.25, 0.6)
  # Ambient light intensity (same scale).
  ambient_intensity_range: Tuple[float, float] = (0.3, 0.5)
  # Light sources, colour temperature ranges (min, max) in kelvin: tungsten,
  # halogen, fluorescent, daylight, overcast sky.  Each light picks one at
  # random, uniformly, then a temperature uniformly in its range ...
  light_sources_kelvin: Tuple[Tuple[float, float], ...] = (
      (2700.0, 2700.0), (3200.0, 3200.0), (4000.0, 4000.0),
      (5500.0, 6500.0), (7000.0, 7000.0))
  # ... perturbed by a uniform offset in +-this, kelvin.
  color_temperature_jitter_kelvin: float = 300.0
  # Colour temperature that renders white: the camera's white balance
  # (daylight D65, 6500 K; see lighting.kelvin_to_rgb), kelvin ...
  white_balance_kelvin: float = 6500.0
  # ... before the camera's automatic white balance removes this fraction (in
  # the log domain) of the colour cast of each image's lights (0: none, 1:
  # the mean light renders white; cameras leave some of a tungsten cast).
  auto_white_balance: float = 0.7

  # --- Material (renderer/shading.py) -----------------------------------------
  # Phong shininess exponent, dimensionless (skin: broad, soft highlights).
  shininess: float = 20.0
  # Specular albedo (grey) = specular_strength * lerp(0.04, luminance(diffuse),
  # specular_diffuse_mix): 0.04 is the normal-incidence reflectance of a
  # dielectric with refractive index ~1.5 (skin ~1.4); mixing in the diffuse
  # luminance makes dark skin slightly less shiny.  Dimensionless.
  specular_strength: float = 1.0
  specular_diffuse_mix: float = 0.25

  # --- Image formation (renderer/render.py) -----------------------------------
  # Supersampling factor per axis: render at k times the size and average
  # k x k blocks (1: none).
  supersampling: int = 1
  # Background behind the face: "constant" (background_color) or "random" (a
  # uniform random colour per image, in background_value_range per channel,
  # drawn from the render's background seed).
  background: str = "random"
  background_color: Tuple[float, float, float] = (0.5, 0.5, 0.5)
  background_value_range: Tuple[float, float] = (0.0, 1.0)
  # Rasteriser / shading backend: "op" (compiled C++ kernels), "tf" (pure
  # TensorFlow) or "auto" (the op when it is built and the inputs live on the
  # CPU, else tf).
  backend: str = "auto"
