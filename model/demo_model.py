"""A procedural face morphable model ("demo") in the BFM 2017 layout.

Built by this module alone (no external data), deterministically from a seed,
so that the whole pipeline runs, is tested and is demonstrated without the
licensed Basel Face Model.  It goes through exactly the same container, writer
and loader as a real model.

Geometry.  The face is a height field over a (theta, y) grid on a head-shaped
elliptic cylinder: a grid node at azimuth ``theta`` (0 = straight ahead,
positive towards the subject's left) and height ``y`` sits at
``(a(y) sin theta, y, b(y) cos theta)`` displaced along the cylinder's normal
by a sum of smooth anatomical features (brow ridge, eye sockets, eyeballs and
lids, nose with alae, lips, chin, cheekbones, cheeks, temples).  The grid
covers a face mask (hairline to under the chin, up to just in front of the
ears; no ears, no neck) with its outline along grid lines, nodes 1.5 mm apart
over eyes, nose and mouth and 3.4 mm at the periphery: 13,208 vertices and
25,956 triangles, triangulated left-right symmetrically.

Coordinates (like BFM 2017): model space, millimetres, +x towards the
subject's left (the viewer's right in a frontal view), +y up, +z towards the
viewer; origin on the vertical head axis, roughly at the head centre.  Mean
face: x within +-71.5, y from -100 (under the chin) to +96 (hairline), eye
centres at (+-29.8, 27, 76), nose tip at (0, -8.5, 111), mouth corners at
(+-25.7, -46, 82), chin (iBUG 9) at (0, -96.6, 70.5).  The mean face is
exactly symmetric under x -> -x with :func:`mirror_permutation`.  Triangles
are counter-clockwise seen from outside (right-hand normals point out of the
face).

Shape model (49 components): 16 linearised "global" modes (central
differences of the geometry, +-1 design standard deviation, of: face width,
length and depth, jaw width, forehead slope, nose height/length/width/bridge,
eye depth, brow ridge, cheekbones, cheek fullness, mouth protrusion, lip
fullness, chin) plus 33 smooth random low-frequency fields along the surface
normal (alternately symmetric and antisymmetric, seeded); the PCA
(:func:`~unsup3dmm.model.morphable_model.pca_from_deviations`) of these 1-std
fields gives orthonormal directions and strictly decreasing variances that
reproduce exactly the designed Gaussian distribution.

Colour model (40 components): :func:`synthetic_color_model`, driven by the
iBUG-68 landmarks (so the converters reuse it for shape-only models): skin,
darker brows, reddish lips, white sclera with dark iris and pupil, lash lines
and lid creases, nostrils, baked cavity shading; modes for skin lightness and
hue, regional redness, lips, brows, iris colour, beard shadow, gradients and
smooth random fields.  Apart from baked cavity darkening the albedo carries no
shading: depth cues come from the renderer's lighting.

Renders of random faces (coefficients ~N(0, 1)) with the project renderer's
random poses (yaw within +-30 degrees), lights and backgrounds: MTCNN finds
exactly one face in 114 of 120 (160x160 images, confidence > 0.9).
"""
import dataclasses
import functools
import os
from typing import Dict, Optional, Tuple

import numpy as np
from scipy import interpolate
from scipy import sparse

from unsup3dmm.model import landmarks as landmarks_lib
from unsup3dmm.model import morphable_model

# Face mask: the grid covers |theta| <= _THETA_MAX_DEGREES (up to just in
# front of the ears) and, in each column, y from the jaw line / chin up to the
# hairline (see _mask_rows), so the outline follows the grid and is smooth.
# Nodes are _FINE_MM apart (along the surface) over the eyes, nose and mouth,
# _COARSE_MM apart at the periphery, with smooth transitions.
_THETA_MAX_DEGREES = 86.0
_FINE_MM = 1.5
_COARSE_MM = 3.4
_FINE_THETA_DEGREES = 42.0
_FINE_Y_RANGE_MM = (-62.0, 48.0)
_TRANSITION_MM = 15.0
# Radius converting azimuth to arc length for the node spacing, mm.
_ARC_RADIUS_MM = 85.0

# (mean, standard deviation) of each global shape parameter.  Scale factors
# are dimensionless, the others mm (feature amplitudes or shifts).
_SHAPE_PARAMETERS: Dict[str, Tuple[float, float]] = {
    "face_width": (1.0, 0.035),
    "face_length": (1.0, 0.03),
    "face_depth": (1.0, 0.03),
    "jaw_width": (1.0, 0.05),
    "forehead_slope_mm": (0.0, 3.0),
    "nose_height": (1.0, 0.10),
    "nose_length_mm": (0.0, 2.0),
    "nose_width": (1.0, 0.09),
    "nose_bridge_mm": (0.0, 1.2),
    "eye_depth_mm": (11.0, 1.2),
    "brow_ridge_mm": (4.0, 1.3),
    "cheekbone_mm": (5.0, 1.5),
    "cheek_fullness_mm": (3.0, 1.2),
    "mouth_protrusion_mm": (6.0, 1.5),
    "lip_fullness": (1.0, 0.2),
    "chin_mm": (8.0, 1.8),
}
# Smooth random normal-displacement fields: count and RMS amplitude (mm) of
# the first one; later ones decay geometrically.
_RANDOM_SHAPE_FIELDS = 33
# Frequencies per axis of the random fields (5 x 5 products per symmetry).
_RANDOM_SHAPE_ORDERS = 5
_RANDOM_SHAPE_RMS_MM = 0.8
_RANDOM_SHAPE_DECAY = 0.9
_DEMO_SEED = 0


def _smoothstep(edge0, edge1, x):
  t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
  return t * t * (3.0 - 2.0 * t)


def _gauss(x, y, cx, cy, sx, sy):
  return np.exp(-((x - cx) / sx)**2 - ((y - cy) / sy)**2)


def _pair(x, y, cx, cy, sx, sy):
  """Two mirrored Gaussian bumps at (+-cx, cy)."""
  return _gauss(x, y, cx, cy, sx, sy) + _gauss(x, y, -cx, cy, sx, sy)


def _pchip(knots):
  ys, values = zip(*knots)
  return interpolate.PchipInterpolator(ys, values, extrapolate=True)


# Head half-width a(y) and front depth b(y) of the base cylinder, mm.
_HALF_WIDTH = _pchip([(-112, 36), (-100, 44), (-90, 49), (-80, 54), (-65, 59),
                      (-50, 63), (-30, 67), (-10, 70), (10, 71.5), (30, 72),
                      (50, 71), (70, 68), (85, 64), (100, 57)])
_DEPTH = _pchip([(-112, 50), (-100, 66), (-90, 76), (-80, 82), (-65, 85),
                 (-50, 86), (-30, 86), (-10, 86), (10, 87), (30, 88),
                 (45, 90), (60, 89), (75, 85), (90, 78), (100, 70)])
# Nose: height above the base along the midline, and half-width, vs y (mm).
_NOSE_HEIGHT = _pchip([(-30, 0), (-25, 1.5), (-21, 6), (-17, 15), (-13, 21.5),
                       (-9, 23), (-4, 21.5), (4, 18), (12, 14), (20, 9.5),
                       (27, 5.5), (33, 3), (40, 0)])
_NOSE_HALF_WIDTH = _pchip([(-30, 11), (-24, 16.5), (-19, 18.5), (-14, 18),
                           (-8, 15), (0, 12.5), (10, 11), (20, 10), (30, 10.5),
                           (40, 13)])

# Eyes: centre (|x|, y), half-width of the opening, upper/lower lid heights,
# canthal tilt (outer corner higher), mm.
_EYE_CENTER = (31.0, 27.0)
_EYE_HALF_WIDTH = 14.5
_EYE_UPPER = 5.2
_EYE_LOWER = 3.8
_EYE_TILT = 1.0
# Mouth: corners at (+-_MOUTH_HALF_WIDTH, _MOUTH_Y); lip heights at the centre.
_MOUTH_Y = -47.0
_MOUTH_HALF_WIDTH = 24.5
_UPPER_LIP = 7.5
_LOWER_LIP = 9.5


def _eye_lids(x, y):
  """Per point: (u, upper lid y, lower lid y) of the nearer eye's opening.

  ``u`` runs from -1 (inner corner) to +1 (outer corner).
  """
  cx, cy = _EYE_CENTER
  u = (np.abs(x) - cx) / _EYE_HALF_WIDTH
  w = np.clip(1.0 - u * u, 0.0, None)
  centre = cy + _EYE_TILT * u
  upper = centre + _EYE_UPPER * w**0.7 * (1.0 + 0.15 * u)
  lower = centre - _EYE_LOWER * w**0.8
  return u, upper, lower


def _lip_lines(x):
  """(mouth line, upper-lip border, lower-lip border) y at each x, mm."""
  s = np.clip(1.0 - (x / _MOUTH_HALF_WIDTH)**2, 0.0, None)
  mouth = _MOUTH_Y + 0.6 * s
  bow = _UPPER_LIP - 1.3 * np.exp(-(x / 3.0)**2)
  upper = mouth + bow * s**0.55
  lower = mouth - _LOWER_LIP * s**0.7
  return mouth, upper, lower


def _features(x, y, p):
  """Displacement along the base normal, mm, at base coordinates (x, y)."""
  d = np.zeros_like(x)
  # Brow ridge and glabella.
  d += p["brow_ridge_mm"] * (_pair(x, y, 29, 42, 17, 6) +
                             0.7 * _gauss(x, y, 0, 40, 10, 7))
  # Temples.
  d -= 4.0 * _pair(x, y, 63, 45, 10, 16)
  # Eye sockets, eyeballs, cornea bulge.
  cx, cy = _EYE_CENTER
  d -= p["eye_depth_mm"] * _pair(x, y, cx + 1, cy, 18, 12)
  d += 8.5 * _pair(x, y, cx, cy, 12, 8.5)
  d += 1.0 * _pair(x, y, cx, cy + 0.5, 4.5, 4.5)
  # Lids: ridges along the opening, upper-lid fold above it.
  u, upper, lower = _eye_lids(x, y)
  window = np.clip(1.0 - u * u, 0.0, None)**0.5 * (np.abs(u) < 1.3)
  d += 1.6 * np.exp(-((y - upper - 0.4) / 1.4)**2) * window
  d += 1.0 * np.exp(-((y - lower + 0.3) / 1.3)**2) * window
  d += 1.2 * np.exp(-((y - upper - 5.0) / 2.5)**2) * window
  # Nose.
  n_len = p["nose_length_mm"] * np.clip((30.0 - y) / 40.0, 0.0, 1.0)
  # The nose tables span y in [-30, 40] mm; outside, the nose is flat.
  yn = np.clip(y + n_len, -30.0, 40.0)
  half_width = p["nose_width"] * _NOSE_HALF_WIDTH(yn)
  across = np.clip(1.0 - (x / half_width)**2, 0.0, None)**1.7
  profile = p["nose_height"] * _NOSE_HEIGHT(yn)
  profile += p["nose_bridge_mm"] * np.exp(-((yn - 24.0) / 10.0)**2)
  d += profile * across
  d += p["nose_height"] * (
      6.0 * _pair(x, yn, 12.5 * p["nose_width"], -16, 5, 4.5) +
      2.0 * _gauss(x, yn, 0, -10, 6, 5.5))
  # Cheekbones, cheeks.
  d += p["cheekbone_mm"] * _pair(x, y, 48, 8, 13, 11)
  d += p["cheek_fullness_mm"] * _pair(x, y, 38, -25, 15, 15)
  # Mouth: dental arch, philtrum, lips, mouth line, mentolabial sulcus, chin.
  d += p["mouth_protrusion_mm"] * _gauss(x, y, 0, -46, 28, 20)
  d += 0.7 * _pair(x, y, 5, -33, 1.8, 5)
  mouth, upper_lip, lower_lip = _lip_lines(x)
  lip_window = np.clip(1.0 - (x / (_MOUTH_HALF_WIDTH + 1.0))**2, 0.0,
                       None)**1.5
  upper_mid = 0.5 * (mouth + upper_lip)
  lower_mid = 0.5 * (mouth + lower_lip)
  d += p["lip_fullness"] * lip_window * (
      2.6 * np.exp(-((y - upper_mid) / (0.5 * _UPPER_LIP))**2) +
      3.2 * np.exp(-((y - lower_mid) / (0.5 * _LOWER_LIP))**2))
  d -= 1.4 * lip_window * np.exp(-((y - mouth) / 0.9)**2)
  d -= 2.5 * _gauss(x, y, 0, -63, 16, 4)
  d += p["chin_mm"] * _gauss(x, y, 0, -81, 17, 10)
  return d


def _surface(theta, y, p):
  """Grid (theta radians, y mm) -> vertices [N, 3], mm, for parameters p."""
  jaw = 1.0 + (p["jaw_width"] - 1.0) * _smoothstep(-20.0, -70.0, y)
  a = _HALF_WIDTH(y) * jaw
  b = _DEPTH(y) + p["forehead_slope_mm"] * _smoothstep(50.0, 100.0, y)
  sin, cos = np.sin(theta), np.cos(theta)
  x0 = a * sin
  normal = np.stack([sin / a, np.zeros_like(y), cos / b], axis=-1)
  normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
  points = np.stack([x0, y, b * cos], axis=-1)
  points += _features(x0, y, p)[:, None] * normal
  return points * np.array([p["face_width"], p["face_length"],
                            p["face_depth"]])


def _mask_rows(theta_degrees):
  """Lower (jaw line, chin) and upper (hairline) face-mask limits of y, mm."""
  t = np.abs(theta_degrees) / 85.0
  return -100.0 + 60.0 * t**2.5, 96.0 - 50.0 * t**3


@dataclasses.dataclass(frozen=True)
class _Topology:
  theta: np.ndarray       # [V] radians
  y: np.ndarray           # [V] mm
  triangles: np.ndarray   # [T, 3] int32
  mirror: np.ndarray      # [V] int32


def _graded_nodes(low, high, fine_low, fine_high):
  """Node positions (mm) in [low, high]: _FINE_MM apart inside
  [fine_low, fine_high], _COARSE_MM outside, smooth in between."""
  t = np.linspace(low, high, 8001)
  fine = (_smoothstep(fine_low - _TRANSITION_MM, fine_low, t) *
          _smoothstep(fine_high + _TRANSITION_MM, fine_high, t))
  density = 1.0 / (_COARSE_MM + (_FINE_MM - _COARSE_MM) * fine)
  s = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) *
                                       np.diff(t))])
  count = int(round(s[-1])) + 1
  return np.interp(np.linspace(0.0, s[-1], count), s, t)


@functools.lru_cache(maxsize=1)
def _topology() -> _Topology:
  """The boundary-fitted (theta, y) grid and its symmetric triangulation."""
  # Half the azimuths, mirrored: the grid is exactly symmetric.
  arc = np.deg2rad(_THETA_MAX_DEGREES) * _ARC_RADIUS_MM
  fine_arc = np.deg2rad(_FINE_THETA_DEGREES) * _ARC_RADIUS_MM
  half_theta = np.rad2deg(_graded_nodes(0.0, arc, -fine_arc, fine_arc) /
                          _ARC_RADIUS_MM)
  theta_deg = np.concatenate([-half_theta[:0:-1], half_theta])
  # Rows: graded along the midline, then stretched in each column to span
  # that column's [low, high] mask limits.
  low0, high0 = _mask_rows(0.0)
  fraction = (_graded_nodes(low0, high0, *_FINE_Y_RANGE_MM) - low0) / (
      high0 - low0)
  low, high = _mask_rows(theta_deg)
  rows, columns = len(fraction), len(theta_deg)
  yy = low[None, :] + fraction[:, None] * (high - low)[None, :]
  tt = np.broadcast_to(theta_deg, yy.shape)
  index = np.arange(rows * columns).reshape(rows, columns)
  # Corners of cell (j, i): a (i, j), b (i+1, j), c (i, j+1), d (i+1, j+1).
  # +theta is +x and +j is +y, so (a, b, d) is counter-clockwise seen from
  # outside.  The diagonal is mirrored on the two halves (symmetric mesh).
  a, b = index[:-1, :-1], index[:-1, 1:]
  c, d = index[1:, :-1], index[1:, 1:]
  left = np.arange(columns - 1)[None, :] < (columns - 1) // 2
  first = np.where(left[..., None], np.stack([a, b, d], -1),
                   np.stack([a, b, c], -1))
  second = np.where(left[..., None], np.stack([a, d, c], -1),
                    np.stack([b, d, c], -1))
  triangles = np.concatenate([first.reshape(-1, 3), second.reshape(-1, 3)])
  return _Topology(theta=np.deg2rad(tt.ravel()), y=yy.ravel(),
                   triangles=triangles.astype(np.int32),
                   mirror=index[:, ::-1].ravel().astype(np.int32))


def mirror_permutation() -> np.ndarray:
  """Vertex permutation of the demo mesh under the reflection x -> -x.

  Returns:
    int32 ``[vertex_count]``: ``mean[mirror] * (-1, 1, 1) == mean`` for the
    demo model's shape mean (derived from the grid, not from coordinates).
  """
  return _topology().mirror.copy()


def _mean_parameters():
  return {name: mean for name, (mean, _) in _SHAPE_PARAMETERS.items()}


def _nearest_vertex(topology, theta, y, y_min=-np.inf, y_max=np.inf):
  """Grid vertex nearest to (theta, y), among those with y_min < y < y_max."""
  d = (topology.theta - theta)**2 * _ARC_RADIUS_MM**2 + (topology.y - y)**2
  d[(topology.y <= y_min) | (topology.y >= y_max)] = np.inf
  return int(np.argmin(d))


def _landmark_design():
  """iBUG-68 design positions (theta radians, y mm, y_min, y_max) on the
  subject's right side (x < 0) and the midline; the left side is mirrored.
  The y limits keep the inner-lip points on their side of the mouth line."""

  def at(x, y, y_min=-np.inf, y_max=np.inf):
    return (np.arcsin(np.clip(x / _HALF_WIDTH(y), -1, 1)), y, y_min, y_max)

  design = {}
  jaw = [(-80, 15), (-80, -3), (-78, -21), (-74, -38), (-66, -55), (-54, -70),
         (-40, -82), (-21, -92), (0, -97)]
  for k, (t, y) in enumerate(jaw):
    design[k] = (np.deg2rad(t), y, -np.inf, np.inf)
  brow = [(-50, 40.5), (-42, 44), (-33, 45.5), (-24, 45), (-15, 43)]
  for k, (x, y) in zip(landmarks_lib.RIGHT_BROW, brow):
    design[k] = at(x, y)
  for k, y in zip(landmarks_lib.NOSE_BRIDGE, (28.0, 17.0, 5.0, -9.0)):
    design[k] = at(0.0, y)
  for k, (x, y) in zip(landmarks_lib.NOSE_BASE,
                       ((-9, -20), (-4.5, -22), (0, -23))):
    design[k] = at(x, y)
  # Eye (subject's right, x < 0): outer corner, two upper-lid points, inner
  # corner, two lower-lid points (iBUG 37..42).
  cx = _EYE_CENTER[0]
  eye = []
  for u, lid in ((1, None), (1 / 3, "up"), (-1 / 3, "up"), (-1, None),
                 (-1 / 3, "low"), (1 / 3, "low")):
    x = -(cx + u * _EYE_HALF_WIDTH)
    _, upper, lower = _eye_lids(np.array(x), np.array(0.0))
    y = {"up": upper, "low": lower, None: 0.5 * (upper + lower)}[lid]
    eye.append(at(x, float(y)))
  for k, pos in zip(landmarks_lib.RIGHT_EYE, eye):
    design[k] = pos
  # Outer lips 49..52 (right corner to the centre of the upper lip) and
  # 58..60 (lower lip, centre to the right); inner lips 61..63 and 67, 68.
  mouth_x = {48: -_MOUTH_HALF_WIDTH, 49: -15.0, 50: -6.0, 51: 0.0, 57: 0.0,
             58: -8.0, 59: -16.0, 60: -21.0, 61: -8.0, 62: 0.0, 66: 0.0,
             67: -8.0}
  for k, x in mouth_x.items():
    mouth, upper, lower = _lip_lines(np.array(x))
    if k in (49, 50, 51):
      y = upper
    elif k in (57, 58, 59):
      y = lower
    elif k in (61, 62):
      design[k] = at(x, float(mouth), y_min=float(mouth))
      continue
    elif k in (66, 67):
      design[k] = at(x, float(mouth), y_max=float(mouth))
      continue
    else:
      y = mouth
    design[k] = at(x, float(y))
  return design


@functools.lru_cache(maxsize=1)
def _landmark_ids() -> np.ndarray:
  """int32 [68]: the demo mesh's iBUG-68 vertex ids, mirror-symmetric."""
  topology = _topology()
  ids = np.full(landmarks_lib.IBUG68_COUNT, -1, np.int64)
  design = _landmark_design()
  for k, position in design.items():
    ids[k] = _nearest_vertex(topology, *position)
  # Mirror the subject's right side onto the left (iBUG numbering pairs).
  pairs = ([(k, 16 - k) for k in range(8)] +
           [(17 + k, 26 - k) for k in range(5)] +
           [(31, 35), (32, 34)] +
           [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)] +
           [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64),
            (61, 63), (67, 65)])
  for right, left in pairs:
    ids[left] = topology.mirror[ids[right]]
  return ids.astype(np.int32)


def _random_shape_fields(topology, rng):
  """Smooth normal-displacement fields [K, V] (mm), alternately symmetric
  and antisymmetric in x: random combinations of low-frequency products of
  cosines/sines with 1 / (1 + m + n) falloff, scaled to a decaying RMS."""
  x = np.sin(topology.theta) / np.sin(np.deg2rad(_THETA_MAX_DEGREES))
  low, high = _mask_rows(0.0)
  y = (2.0 * topology.y - (low + high)) / (high - low)
  orders = np.arange(_RANDOM_SHAPE_ORDERS)
  even_x = np.cos(orders[:, None] * np.pi * x / 2)
  odd_x = np.sin((orders[:, None] + 0.5) * np.pi * x / 2)
  along_y = np.cos(orders[:, None] * np.pi * (y + 1) / 2)
  falloff = 1.0 / (1.0 + orders[:, None] + orders[None, :])
  fields = []
  for k in range(_RANDOM_SHAPE_FIELDS):
    across = even_x if k % 2 == 0 else odd_x
    weights = rng.normal(size=falloff.shape) * falloff
    field = np.einsum("mn,mv,nv->v", weights, across, along_y)
    rms = np.sqrt(np.mean(field**2))
    fields.append(field * _RANDOM_SHAPE_RMS_MM * _RANDOM_SHAPE_DECAY**k / rms)
  return np.array(fields)


def _surface_normals(topology, p):
  """Unit outward normals [V, 3] of the surface for parameters p (central
  differences of the grid parameterisation); the random fields move the
  vertices along them."""
  eps = 1e-3
  t, y = topology.theta, topology.y
  du = _surface(t + eps, y, p) - _surface(t - eps, y, p)
  dv = _surface(t, y + eps, p) - _surface(t, y - eps, p)
  n = np.cross(du, dv)
  return n / np.linalg.norm(n, axis=-1, keepdims=True)


def _shape_model(seed):
  """(mean [V, 3], scaled basis [K, V, 3], variance [K]) of the shape, mm."""
  topology = _topology()
  p0 = _mean_parameters()
  mean = _surface(topology.theta, topology.y, p0)
  fields = []
  for name, (value, std) in _SHAPE_PARAMETERS.items():
    plus = dict(p0, **{name: value + std})
    minus = dict(p0, **{name: value - std})
    fields.append(0.5 * (_surface(topology.theta, topology.y, plus) -
                         _surface(topology.theta, topology.y, minus)))
  normals = _surface_normals(topology, p0)
  rng = np.random.default_rng(seed)
  for field in _random_shape_fields(topology, rng):
    fields.append(field[:, None] * normals)
  basis, variance = morphable_model.pca_from_deviations(np.array(fields))
  return mean, basis, variance


# ---------------------------------------------------------------------------
# Colour.

# Albedo design, RGB in [0, 1].
_SKIN = np.array([0.75, 0.57, 0.47])
_BROW = np.array([0.22, 0.16, 0.13])
_LIPS = np.array([0.72, 0.38, 0.38])
_MOUTH_LINE = np.array([0.30, 0.13, 0.12])
_SCLERA = np.array([0.88, 0.86, 0.82])
_IRIS = np.array([0.28, 0.18, 0.12])
_PUPIL = np.array([0.04, 0.035, 0.035])
_LASHES = np.array([0.10, 0.07, 0.06])
# Relative darkening of the upper-lid crease.
_EYELID_SHADE = 0.2
_NOSTRIL = np.array([0.24, 0.12, 0.10])
# Darkening per unit of smoothed cavity curvature (1/mm) and its cap.
_CAVITY_GAIN = 3.5
_CAVITY_MAX = 0.45
_RANDOM_COLOR_FIELDS = 24
_RANDOM_COLOR_RMS = 0.018
_RANDOM_COLOR_DECAY = 0.9
# Length (mm) over which the gradient modes and random colour fields vary by
# one unit / half a period (about half a face).
_GRADIENT_MM = 80.0
# Typical inter-ocular distance (mm) the regional sizes are designed for.
_DESIGN_EYE_DISTANCE_MM = 62.0


def _vertex_normals(vertices, triangles):
  v = vertices.astype(np.float64)
  n = np.cross(v[triangles[:, 1]] - v[triangles[:, 0]],
               v[triangles[:, 2]] - v[triangles[:, 0]])
  normals = np.zeros_like(v)
  for k in range(3):
    np.add.at(normals, triangles[:, k], n)
  length = np.linalg.norm(normals, axis=1, keepdims=True)
  return normals / np.maximum(length, 1e-12)


def _adjacency(triangles, vertex_count):
  i = np.concatenate([triangles[:, 0], triangles[:, 1], triangles[:, 2]])
  j = np.concatenate([triangles[:, 1], triangles[:, 2], triangles[:, 0]])
  a = sparse.coo_matrix((np.ones(len(i)), (i, j)),
                        shape=(vertex_count, vertex_count)).tocsr()
  a = ((a + a.T) > 0).astype(np.float64)
  degree = np.maximum(np.asarray(a.sum(axis=1)).ravel(), 1.0)
  return sparse.diags(1.0 / degree) @ a


def _cavity(vertices, triangles, normals):
  """Darkening in [0, _CAVITY_MAX] of concave regions (baked occlusion)."""
  average = _adjacency(triangles, len(vertices))
  v = vertices.astype(np.float64)
  edges = v[triangles] - v[np.roll(triangles, 1, axis=1)]
  edge2 = np.mean(np.sum(edges**2, axis=-1))
  curvature = np.sum((average @ v - v) * normals, axis=1) / edge2
  for _ in range(4):
    curvature = average @ curvature
  return np.clip(_CAVITY_GAIN * curvature, 0.0, _CAVITY_MAX)


def _defined(ids, indices):
  return ids is not None and all(ids[k] >= 0 for k in indices)


def _interp_curve(u, points_u, points_v):
  order = np.argsort(points_u)
  return np.interp(u, points_u[order], points_v[order])


def _local_axes(q, first, second):
  """Coordinates of 2D points q along first->second and perpendicular (up)."""
  e = second - first
  half = 0.5 * np.linalg.norm(e)
  e = e / (2.0 * half)
  perp = np.array([-e[1], e[0]])
  if perp[1] < 0:
    perp = -perp
  centre = 0.5 * (first + second)
  return (q - centre) @ e / half, (q - centre) @ perp, half


def _lid_curve(u, points):
  """Fits v = (1 - u^2)(A + C u) through two (u, v) points."""
  m = np.array([[1 - pu * pu, pu * (1 - pu * pu)] for pu, _ in points])
  rhs = np.array([pv for _, pv in points])
  coefficients = np.linalg.lstsq(m, rhs, rcond=None)[0]
  return (1 - u * u) * (coefficients[0] + coefficients[1] * u)


def _polyline_distance(q, points):
  """Distance of 2D points q to a polyline, and the arc parameter in [0,1]."""
  best = np.full(len(q), np.inf)
  param = np.zeros(len(q))
  lengths = np.linalg.norm(np.diff(points, axis=0), axis=1)
  start = np.concatenate([[0.0], np.cumsum(lengths)])
  for k in range(len(points) - 1):
    d = points[k + 1] - points[k]
    t = np.clip((q - points[k]) @ d / max(d @ d, 1e-12), 0.0, 1.0)
    dist = np.linalg.norm(q - points[k] - t[:, None] * d, axis=1)
    closer = dist < best
    best[closer] = dist[closer]
    param[closer] = (start[k] + t[closer] * lengths[k]) / max(start[-1],
                                                              1e-12)
  return best, param


@dataclasses.dataclass
class _Regions:
  """Soft per-vertex masks in [0, 1] ([V] each) and face-frame coordinates."""
  frame: np.ndarray          # [V, 3] mm: x to subject's left, y up, z out
  front: np.ndarray
  eyes: np.ndarray
  iris: np.ndarray
  pupil: np.ndarray
  lashes: np.ndarray
  eyelids: np.ndarray
  brows: np.ndarray
  lips: np.ndarray
  mouth_line: np.ndarray
  nostrils: np.ndarray
  cheeks: np.ndarray
  nose: np.ndarray
  beard: np.ndarray
  under_eyes: np.ndarray
  forehead: np.ndarray


def _regions(vertices, normals, ids) -> _Regions:
  v = vertices.astype(np.float64)
  zeros = np.zeros(len(v))
  eye_points = list(landmarks_lib.RIGHT_EYE) + list(landmarks_lib.LEFT_EYE)
  mouth_points = [landmarks_lib.RIGHT_MOUTH_CORNER,
                  landmarks_lib.LEFT_MOUTH_CORNER]
  if not _defined(ids, eye_points + mouth_points):
    # No face frame: model axes about the bounding-box centre, no regions.
    centre = 0.5 * (v.min(axis=0) + v.max(axis=0))
    frame = v - centre
    return _Regions(frame, np.ones(len(v)), *([zeros] * 14))
  p = v[np.maximum(ids, 0)]
  right_eye = p[list(landmarks_lib.RIGHT_EYE)].mean(axis=0)
  left_eye = p[list(landmarks_lib.LEFT_EYE)].mean(axis=0)
  mouth = p[mouth_points].mean(axis=0)
  origin = 0.5 * (right_eye + left_eye)
  ex = (left_eye - right_eye) / np.linalg.norm(left_eye - right_eye)
  up = origin - mouth
  ey = up - (up @ ex) * ex
  ey /= np.linalg.norm(ey)
  axes = np.stack([ex, ey, np.cross(ex, ey)])
  frame = (v - origin) @ axes.T
  lm = (p - origin) @ axes.T
  q = frame[:, :2]
  scale = np.linalg.norm(left_eye - right_eye) / _DESIGN_EYE_DISTANCE_MM
  eye_mouth = -lm[mouth_points, 1].mean()
  front = _smoothstep(-45.0 * scale, -25.0 * scale, frame[:, 2])

  eyes, iris, pupil = zeros.copy(), zeros.copy(), zeros.copy()
  lashes, eyelids = zeros.copy(), zeros.copy()
  for inner, outer, upper, lower in ((39, 36, (38, 37), (40, 41)),
                                     (42, 45, (43, 44), (47, 46))):
    u, w, half = _local_axes(q, lm[inner, :2], lm[outer, :2])
    pts_u, pts_w, _ = _local_axes(lm[:, :2], lm[inner, :2], lm[outer, :2])
    top = _lid_curve(u, [(pts_u[k], pts_w[k]) for k in upper])
    bottom = _lid_curve(u, [(pts_u[k], pts_w[k]) for k in lower])
    inside = np.minimum(top - w, w - bottom)
    near = front * (np.abs(u) < 1.2)
    eye = _smoothstep(-0.3, 0.5, inside) * near
    eyes = np.maximum(eyes, eye)
    centre_w = 0.5 * (_lid_curve(np.zeros(1), [(pts_u[k], pts_w[k])
                                               for k in upper]) +
                      _lid_curve(np.zeros(1), [(pts_u[k], pts_w[k])
                                               for k in lower]))
    r = np.hypot(u * half, w - centre_w)
    radius = 0.44 * half
    iris = np.maximum(iris, _smoothstep(radius + 0.4, radius - 0.4, r) * eye)
    pupil = np.maximum(pupil, _smoothstep(0.4 * radius + 0.3,
                                          0.4 * radius - 0.3, r) * eye)
    width = 0.8 + 0.5 * np.clip(u, 0.0, 1.0)
    upper_lash = np.exp(-((w - top - 0.4) / width)**2)
    lower_lash = 0.45 * np.exp(-((w - bottom + 0.2) / 0.6)**2)
    lash = (upper_lash + lower_lash) * _smoothstep(1.08, 0.85, np.abs(u))
    lashes = np.maximum(lashes, lash * near)
    # The upper-lid crease and the shade under the brow bone.
    crease = np.exp(-((w - top - 4.5 * scale) / (2.5 * scale))**2)
    eyelids = np.maximum(eyelids, crease * _smoothstep(1.3, 0.7, np.abs(u)) *
                         near)

  brows = zeros.copy()
  for chain in ((21, 20, 19, 18, 17), (22, 23, 24, 25, 26)):
    if _defined(ids, chain):
      dist, s = _polyline_distance(q, lm[list(chain), :2])
      half_width = scale * (3.4 - 1.6 * s)
      brows = np.maximum(brows, _smoothstep(half_width + 0.9,
                                            half_width - 0.9, dist))
  brows *= front

  lips, mouth_line = zeros.copy(), zeros.copy()
  if _defined(ids, landmarks_lib.OUTER_LIPS):
    u, w, _ = _local_axes(q, lm[48, :2], lm[54, :2])
    pu, pw, _ = _local_axes(lm[:, :2], lm[48, :2], lm[54, :2])

    def curve(chain):
      # Through the defined points (the mouth corners always are).
      chain = [k for k in chain if ids[k] >= 0]
      return _interp_curve(u, pu[chain], pw[chain])

    top = curve(range(48, 55))
    bottom = curve([48, 59, 58, 57, 56, 55, 54])
    line = 0.5 * (curve([48, 60, 61, 62, 63, 64, 54]) +
                  curve([48, 60, 67, 66, 65, 64, 54]))
    near = front * (np.abs(u) < 1.15)
    lips = _smoothstep(-0.4, 0.8, np.minimum(top - w, w - bottom)) * near
    mouth_line = (np.exp(-((w - line) / 0.7)**2) *
                  _smoothstep(1.04, 0.9, np.abs(u)) * near)

  nostrils = zeros.copy()
  nose = zeros.copy()
  if _defined(ids, landmarks_lib.NOSE_BASE) and _defined(
      ids, [landmarks_lib.NOSE_TIP]):
    down = _smoothstep(0.0, 0.5, -(normals @ axes[1]))
    for a, b in ((31, 32), (35, 34)):
      centre = 0.5 * (lm[a] + lm[b]) + scale * np.array([0.0, 1.5, -2.0])
      dist = np.linalg.norm(frame - centre, axis=1)
      nostrils = np.maximum(nostrils, np.exp(-(dist / (3.0 * scale))**2))
    nostrils *= down
    dist = np.linalg.norm(frame - lm[landmarks_lib.NOSE_TIP], axis=1)
    nose = np.exp(-(dist / (12.0 * scale))**2)

  s = scale
  cheeks = front * _pair(q[:, 0], q[:, 1], 38 * s, -0.42 * eye_mouth, 14 * s,
                         13 * s)
  beard = (front * _smoothstep(-0.45 * eye_mouth, -0.62 * eye_mouth, q[:, 1]) *
           _smoothstep(62 * s, 45 * s, np.abs(q[:, 0])) * (1 - lips))
  under_eyes = front * _pair(q[:, 0], q[:, 1], 31 * s, -9 * s, 11 * s, 4 * s)
  forehead = front * _smoothstep(15 * s, 40 * s, q[:, 1])
  return _Regions(frame, front, eyes, iris, pupil, lashes, eyelids, brows,
                  lips, mouth_line, nostrils, cheeks, nose, beard, under_eyes,
                  forehead)


def _blend(color, target, weight):
  return color + weight[:, None] * (target - color)


def synthetic_color_model(vertices: np.ndarray, triangles: np.ndarray,
                          landmark_ids: Optional[np.ndarray], seed: int
                          ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A plausible colour (albedo) PCA model for any face mesh.

  Used by the demo model and, for shape-only models (ICT-FaceKit, Surrey),
  by the converters.  Regions come from the iBUG-68 landmarks in a face
  frame (origin between the eyes, x towards the left eye, y up, z out):
  eye openings, iris and pupil, lash lines (iBUG 37-48), brows (18-27),
  vermilion and mouth line (49-68), nostrils and nose (31-36), and cheeks,
  beard area, under-eye and forehead placed relative to eyes and mouth.
  Regions whose landmarks are undefined are left out; without eyes and mouth
  corners only skin tone, cavity shading and global modes remain.  Concave
  regions are darkened (baked occlusion, from the mesh's discrete mean
  curvature).  Modes (1-std designs, then
  :func:`~unsup3dmm.model.morphable_model.pca_from_deviations`): skin
  lightness and hue, olive tint, cheek/nose/lip redness, lip darkness, brow
  darkness, iris colour and lightness, beard shadow, dark circles, forehead,
  left-right and top-bottom gradients, sclera tint, and smooth random fields;
  all-zero designs (regions without landmarks) drop out.

  Args:
    vertices: float ``[V, 3]``, mm, +y up and +z out of the face.
    triangles: int ``[T, 3]``.
    landmark_ids: int ``[68]`` (-1 undefined) or None.
    seed: seeds the random fields.

  Returns:
    ``(color_mean [V, 3], color_basis [K, V, 3], color_variance [K])``,
    float64; RGB in [0, 1] for the mean; basis orthonormal directions times
    sqrt(variance); variances decreasing.

  Raises:
    ValueError: for bad ``landmark_ids`` (range, or coinciding eye or mouth
      corners).
  """
  if landmark_ids is not None:
    landmark_ids = landmarks_lib.check_landmark_ids(landmark_ids,
                                                    len(vertices))
    for a, b in ((36, 39), (42, 45), (48, 54)):
      if (min(landmark_ids[a], landmark_ids[b]) >= 0 and np.linalg.norm(
          vertices[landmark_ids[a]] - vertices[landmark_ids[b]]) < 1e-3):
        raise ValueError(f"landmark_ids: iBUG points {a + 1} and {b + 1} "
                         "(corners) must be different points")
  normals = _vertex_normals(vertices, triangles)
  r = _regions(vertices, normals, landmark_ids)
  cavity = _cavity(vertices, triangles, normals)
  shade = (1.0 - cavity) * (1.0 - _EYELID_SHADE * r.eyelids)
  color = np.tile(_SKIN, (len(vertices), 1)) * shade[:, None]
  color += r.cheeks[:, None] * np.array([0.04, -0.02, -0.015])
  color += r.nose[:, None] * np.array([0.02, -0.01, -0.01])
  color = _blend(color, _BROW * (1.0 - cavity)[:, None], 0.85 * r.brows)
  color = _blend(color, _LIPS, r.lips)
  color = _blend(color, _MOUTH_LINE, 0.75 * r.mouth_line)
  color = _blend(color, _SCLERA, r.eyes)
  color = _blend(color, _IRIS, r.iris)
  color = _blend(color, _PUPIL, r.pupil)
  color = _blend(color, _LASHES, 0.9 * np.clip(r.lashes, 0, 1))
  color = _blend(color, _NOSTRIL, 0.85 * r.nostrils)
  color = np.clip(color, 0.0, 1.0)

  skin = (1 - r.eyes) * (1 - 0.6 * r.lips) * (1 - 0.5 * r.brows) * (
      1 - np.clip(r.lashes, 0, 1))
  fx, fy = r.frame[:, 0] / _GRADIENT_MM, r.frame[:, 1] / _GRADIENT_MM

  def field(weight, rgb):
    return weight[:, None] * np.asarray(rgb)[None, :]

  fields = [
      field(0.11 * skin, _SKIN),                              # lightness
      field(skin, [0.03, 0.0, -0.03]),                        # hue
      field(skin, [-0.012, 0.018, -0.008]),                   # olive
      field(r.cheeks, [0.05, -0.02, -0.01]),                  # cheek redness
      field(r.nose, [0.04, -0.015, -0.01]),                   # nose redness
      field(r.lips, [0.06, -0.03, 0.0]),                      # lip colour
      field(r.lips, [-0.06, -0.05, -0.04]),                   # lip darkness
      field(r.brows, [-0.07, -0.06, -0.05]),                  # brow darkness
      field(r.iris * (1 - r.pupil), [-0.07, 0.02, 0.10]),     # iris colour
      field(r.iris * (1 - r.pupil), [0.06, 0.05, 0.03]),      # iris lightness
      field(r.beard, [-0.05, -0.04, -0.03]),                  # beard shadow
      field(r.under_eyes, [-0.04, -0.04, -0.02]),             # dark circles
      field(r.forehead * skin, [0.03, 0.03, 0.025]),          # forehead
      field(skin * fx, [0.04, 0.035, 0.03]),                  # left-right
      field(skin * fy, [0.03, 0.025, 0.02]),                  # top-bottom
      field(r.eyes * (1 - r.iris), [-0.02, -0.03, -0.05]),    # sclera tint
  ]
  rng = np.random.default_rng(seed)
  for k in range(_RANDOM_COLOR_FIELDS):
    pattern = np.zeros(len(vertices))
    for m in range(3):
      for n in range(3):
        phase_x, phase_y = rng.uniform(0, 2 * np.pi, 2)
        pattern += (rng.normal() / (1.0 + m + n) *
                    np.cos(m * np.pi * fx + phase_x) *
                    np.cos(n * np.pi * fy + phase_y))
    pattern *= skin
    rms = np.sqrt(np.mean(pattern**2))
    tint = _SKIN + 0.12 * rng.normal(size=3)
    fields.append(field(pattern * _RANDOM_COLOR_RMS * _RANDOM_COLOR_DECAY**k /
                        max(rms, 1e-12), tint / np.linalg.norm(tint)))
  basis, variance = morphable_model.pca_from_deviations(np.array(fields))
  return color, basis, variance


# ---------------------------------------------------------------------------
# Public entry points.


@functools.lru_cache(maxsize=4)
def build_demo_model(seed: int = _DEMO_SEED) -> morphable_model.MorphableModel:
  """Builds the demo morphable model in memory (cached per seed).

  Args:
    seed: seeds the random shape and colour fields (the mean face and the
      global modes do not depend on it).

  Returns:
    A :class:`~unsup3dmm.model.morphable_model.MorphableModel` named
    ``"demo"`` (``"demo-seed<seed>"`` for other seeds): shape in mm, colours
    in [0, 1], with iBUG-68 landmark ids for all 68 points.
  """
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
    raise ValueError(f"seed must be an integer, got {seed!r}")
  topology = _topology()
  shape_mean, shape_basis, shape_variance = _shape_model(seed)
  ids = _landmark_ids()
  color_mean, color_basis, color_variance = synthetic_color_model(
      shape_mean, topology.triangles, ids, seed + 1)
  return morphable_model.MorphableModel(
      shape_mean=shape_mean, shape_basis=shape_basis,
      shape_variance=shape_variance, color_mean=color_mean,
      color_basis=color_basis, color_variance=color_variance,
      triangles=topology.triangles, landmark_ids=ids,
      name="demo" if seed == _DEMO_SEED else f"demo-seed{seed}")


def write_demo_model(path: str, seed: int = _DEMO_SEED) -> str:
  """Writes the demo model as a BFM-2017-layout .h5 file; returns ``path``."""
  return morphable_model.write_bfm2017_layout(
      os.fspath(path), build_demo_model(seed), build_time="procedural")
