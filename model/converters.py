"""Converters from other face models into the BFM 2017 layout.

Every converter builds a
:class:`~unsup3dmm.model.morphable_model.MorphableModel`, and
:func:`~unsup3dmm.model.morphable_model.write_bfm2017_layout` (the one writer)
stores it; :func:`unsup3dmm.tools.convert_model.run` is the command line.
Coordinates are kept in each source's frame (all use +y up, +z towards the
viewer, +x towards the subject's left), only converted to millimetres.

Shape-only sources get the synthetic colour model of
:func:`unsup3dmm.model.demo_model.synthetic_color_model`, driven by the
source's iBUG-68 landmarks (skin tone, brows, lips, eyes, nostrils, cavity
shading and colour modes); it is a plausible albedo for rendering, not a
measured one.

Sources:

* ICT-FaceKit "Light" (MIT), face + head + neck subset (11,248 vertices), as
  the ``.npz`` described in ``shared/data/ict_facekit/SOURCES.md``: centimetres
  -> mm.  Its 100 identity deltas are 1-std displacements
  (``identity_k = neutral + sqrt(lambda_k) u_k`` over the full mesh) but are not
  orthogonal on the subset, so we take the PCA of the deltas
  (:func:`~unsup3dmm.model.morphable_model.pca_from_deviations`): the
  orthonormal basis times sqrt(variance) has exactly the covariance
  ``D D^T`` of the deltas, i.e. the same shape distribution.
* Surrey Face Model 3448 (non-commercial), as ``sfm_shape_3448.npz``: mm,
  orthonormal basis and eigenvalues used as they are.
* Any model as arrays (:func:`convert_arrays`, or an ``.npz`` with the keys of
  :data:`NPZ_KEYS` through :func:`convert_npz`).
"""
import os
from typing import Optional

import numpy as np

from unsup3dmm.model import demo_model
from unsup3dmm.model import landmarks as landmarks_lib
from unsup3dmm.model import morphable_model

# Tolerance on max |B^T B - I| for a basis given as orthonormal.
ORTHONORMAL_TOLERANCE = 1e-3
# Seed of the synthetic colour model's random fields.
COLOR_SEED = 0
CM_TO_MM = 10.0
UNITS_TO_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}
# Keys of a generic model .npz (see convert_npz).
NPZ_KEYS = {
    "shape_mean": "float [V, 3], required",
    "triangles": "int [T, 3], required",
    "shape_basis": "float [K, V, 3] orthonormal (with shape_variance)",
    "shape_variance": "float [K] eigenvalues (with shape_basis)",
    "shape_deviations": "float [K, V, 3] 1-std deltas (instead of both)",
    "color_mean": "float [V, 3] RGB in [0, 1], optional",
    "color_basis": "float [K_c, V, 3] orthonormal (with color_variance)",
    "color_variance": "float [K_c]",
    "landmark_ids": "int [68] iBUG-68 vertex ids, -1 undefined, optional",
}


def _scaled_orthonormal(basis, variance, basis_name, variance_name):
  """Checks an orthonormal [K, V, 3] basis and returns (scaled, variance)."""
  basis = np.asarray(basis, dtype=np.float64)
  variance = np.asarray(variance, dtype=np.float64)
  if basis.ndim != 3 or basis.shape[2] != 3:
    raise ValueError(f"{basis_name} must have shape [K, V, 3], got "
                     f"{basis.shape}")
  if variance.shape != basis.shape[:1]:
    raise ValueError(f"{variance_name} must have shape ({basis.shape[0]},), "
                     f"got {variance.shape}")
  if not np.all(np.isfinite(basis)) or not np.all(np.isfinite(variance)):
    raise ValueError(f"{basis_name} / {variance_name} contain NaN or inf")
  if np.any(variance <= 0):
    raise ValueError(f"{variance_name} must be positive")
  flat = basis.reshape(basis.shape[0], -1)
  error = np.abs(flat @ flat.T - np.eye(len(flat))).max()
  if error > ORTHONORMAL_TOLERANCE:
    raise ValueError(f"{basis_name} is not orthonormal (max |B^T B - I| = "
                     f"{error:.3g}); pass 1-std deltas as deviations instead")
  order = np.argsort(-variance, kind="stable")
  return basis[order] * np.sqrt(variance[order])[:, None, None], variance[order]


def convert_arrays(shape_mean, triangles, *, shape_basis=None,
                   shape_variance=None, shape_deviations=None,
                   color_mean=None, color_basis=None, color_variance=None,
                   landmark_ids=None, scale_to_mm: float = 1.0,
                   name: str = "converted"
                   ) -> morphable_model.MorphableModel:
  """Builds a model from mean + basis + variances (+ colour) arrays.

  Give the shape model either as ``shape_basis`` (orthonormal directions)
  with ``shape_variance`` (eigenvalues), or as ``shape_deviations``: 1-std
  deltas with standard-normal coefficients, orthonormalised by PCA with the
  same distribution.  Components are ordered by decreasing variance.  Without
  ``color_mean`` the synthetic colour model is used.

  Args:
    shape_mean: float ``[V, 3]``, source units.
    triangles: int ``[T, 3]``.
    shape_basis: float ``[K, V, 3]``, orthonormal over the 3V entries.
    shape_variance: float ``[K]``, source units squared, positive.
    shape_deviations: float ``[K, V, 3]``, source units.
    color_mean: optional float ``[V, 3]``, RGB in [0, 1].
    color_basis: float ``[K_c, V, 3]`` orthonormal, with ``color_variance``.
    color_variance: float ``[K_c]``.
    landmark_ids: optional int ``[68]``, -1 undefined.
    scale_to_mm: source unit in mm (10 for cm).
    name: model name.

  Returns:
    A MorphableModel in mm.

  Raises:
    ValueError: naming the argument for missing/inconsistent/invalid arrays.
  """
  shape_mean = np.asarray(shape_mean, dtype=np.float64)
  if shape_mean.ndim != 2 or shape_mean.shape[1] != 3:
    raise ValueError(f"shape_mean must have shape [V, 3], got "
                     f"{shape_mean.shape}")
  if not scale_to_mm > 0:
    raise ValueError(f"scale_to_mm must be positive, got {scale_to_mm!r}")
  if (shape_deviations is None) == (shape_basis is None):
    raise ValueError("give either shape_deviations, or shape_basis with "
                     "shape_variance")
  if shape_deviations is not None:
    deviations = np.asarray(shape_deviations, dtype=np.float64)
    if deviations.ndim != 3 or deviations.shape[1:] != shape_mean.shape:
      raise ValueError(f"shape_deviations must have shape [K, "
                       f"{shape_mean.shape[0]}, 3], got {deviations.shape}")
    if not np.all(np.isfinite(deviations)):
      raise ValueError("shape_deviations contain NaN or inf")
    basis, variance = morphable_model.pca_from_deviations(deviations)
  else:
    if shape_variance is None:
      raise ValueError("shape_basis needs shape_variance")
    basis, variance = _scaled_orthonormal(shape_basis, shape_variance,
                                          "shape_basis", "shape_variance")
    if basis.shape[1:] != shape_mean.shape:
      raise ValueError(f"shape_basis must have shape [K, "
                       f"{shape_mean.shape[0]}, 3], got {basis.shape}")
  mean_mm = shape_mean * scale_to_mm
  triangles = np.asarray(triangles)
  if landmark_ids is not None:
    landmark_ids = landmarks_lib.check_landmark_ids(
        landmark_ids, len(shape_mean))
  if color_mean is None:
    if color_basis is not None or color_variance is not None:
      raise ValueError("color_basis / color_variance need color_mean")
    if triangles.ndim != 2 or triangles.shape[1:] != (3,):
      raise ValueError(f"triangles must have shape [T, 3], got "
                       f"{triangles.shape}")
    if triangles.size and (triangles.min() < 0 or
                           triangles.max() >= len(shape_mean)):
      raise ValueError("triangles index vertices outside "
                       f"[0, {len(shape_mean)})")
    color_mean, color_scaled, color_var = demo_model.synthetic_color_model(
        mean_mm, triangles, landmark_ids, COLOR_SEED)
  else:
    if color_basis is None or color_variance is None:
      raise ValueError("color_mean needs color_basis and color_variance")
    color_scaled, color_var = _scaled_orthonormal(
        color_basis, color_variance, "color_basis", "color_variance")
  return morphable_model.MorphableModel(
      shape_mean=mean_mm, shape_basis=basis * scale_to_mm,
      shape_variance=variance * scale_to_mm**2, color_mean=color_mean,
      color_basis=color_scaled, color_variance=color_var,
      triangles=triangles, landmark_ids=landmark_ids, name=name)


class _Npz:
  """Key access to an .npz with errors naming the file and the key."""

  def __init__(self, path: str, what: str):
    path = os.fspath(path)
    if not os.path.isfile(path):
      raise ValueError(f"{what} file {path!r} does not exist")
    try:
      self.data = np.load(path, allow_pickle=False)
      self.keys = set(self.data.files)
    except (OSError, ValueError) as e:
      raise ValueError(f"{what} file {path!r} is not a readable .npz: {e}"
                       ) from e
    self.path = path

  def get(self, key, required=True):
    if key not in self.keys:
      if required:
        raise ValueError(f"{self.path!r} has no array {key!r} (has "
                         f"{sorted(self.keys)})")
      return None
    return self.data[key]


def convert_ict_facekit(npz_path: str) -> morphable_model.MorphableModel:
  """ICT-FaceKit Light (face + head + neck) from its derived .npz.

  Uses ``neutral`` (cm), ``identity_deltas`` (cm, 1-std) and ``triangles``;
  ``landmarks_multipie68`` become the iBUG-68 landmarks.  See the module
  docstring for the re-orthonormalisation.  Coefficients 0 give
  ``neutral * 10`` (mm).
  """
  npz = _Npz(npz_path, "ICT-FaceKit")
  try:
    return convert_arrays(
        npz.get("neutral"), npz.get("triangles"),
        shape_deviations=npz.get("identity_deltas"),
        landmark_ids=npz.get("landmarks_multipie68"), scale_to_mm=CM_TO_MM,
        name="ict-facekit-light")
  except ValueError as e:
    raise ValueError(f"{npz.path!r}: {e}") from e


def convert_surrey(npz_path: str) -> morphable_model.MorphableModel:
  """Surrey Face Model from ``sfm_shape_3448.npz`` (mm, orthonormal basis
  ``[V, 3, K]`` and eigenvalues; 1-based iBUG ids for 50 of the 68 points)."""
  npz = _Npz(npz_path, "Surrey Face Model")
  ids = np.full(landmarks_lib.IBUG68_COUNT, landmarks_lib.UNDEFINED, np.int64)
  ibug = npz.get("ibug68_ids")
  if ibug.size and (ibug.min() < 1 or ibug.max() > landmarks_lib.IBUG68_COUNT):
    raise ValueError(f"{npz.path!r}: ibug68_ids must be in 1..68")
  ids[ibug - 1] = npz.get("ibug68_vertex")
  try:
    return convert_arrays(
        npz.get("mean"), npz.get("triangles"),
        shape_basis=np.transpose(npz.get("orthonormal_basis"), (2, 0, 1)),
        shape_variance=npz.get("eigenvalues"), landmark_ids=ids,
        name="surrey-face-model-3448")
  except ValueError as e:
    raise ValueError(f"{npz.path!r}: {e}") from e


def convert_npz(npz_path: str, units: str = "mm"
                ) -> morphable_model.MorphableModel:
  """A model stored as an .npz with the keys of :data:`NPZ_KEYS`.

  Args:
    npz_path: the file.
    units: unit of the shape arrays: "mm", "cm" or "m".
  """
  if units not in UNITS_TO_MM:
    raise ValueError(f"units must be one of {sorted(UNITS_TO_MM)}, got "
                     f"{units!r}")
  npz = _Npz(npz_path, "Model")
  unknown = npz.keys - set(NPZ_KEYS)
  if unknown:
    raise ValueError(f"{npz.path!r}: unknown arrays {sorted(unknown)}; "
                     f"expected some of {sorted(NPZ_KEYS)}")
  arrays = {key: npz.get(key, required=False) for key in NPZ_KEYS}
  for key in ("shape_mean", "triangles"):
    if arrays[key] is None:
      raise ValueError(f"{npz.path!r} has no array {key!r}")
  try:
    return convert_arrays(
        arrays.pop("shape_mean"), arrays.pop("triangles"), **arrays,
        scale_to_mm=UNITS_TO_MM[units],
        name=os.path.splitext(os.path.basename(npz.path))[0])
  except ValueError as e:
    raise ValueError(f"{npz.path!r}: {e}") from e


SOURCES = {"ict": convert_ict_facekit, "sfm": convert_surrey,
           "npz": convert_npz}


def convert(source: str, input_path: Optional[str], output_path: str,
            units: str = "mm", seed: int = 0) -> morphable_model.MorphableModel:
  """Converts ``input_path`` of kind ``source`` and writes ``output_path``.

  Args:
    source: "ict", "sfm", "npz" or "demo" (no input; ``seed`` picks the
      demo model's random modes).
    input_path: the source file (None for "demo").
    output_path: the .h5 to write (BFM 2017 layout).
    units: shape units of an "npz" source.
    seed: demo model seed.

  Returns:
    The converted model (as written).
  """
  if source == "demo":
    if input_path:
      raise ValueError("--source demo takes no --input")
    model = demo_model.build_demo_model(seed)
  elif source in SOURCES:
    if not input_path:
      raise ValueError(f"--source {source} needs --input")
    if source == "npz":
      model = convert_npz(input_path, units)
    else:
      model = SOURCES[source](input_path)
  else:
    raise ValueError(f"source must be one of {sorted(SOURCES) + ['demo']}, "
                     f"got {source!r}")
  morphable_model.write_bfm2017_layout(output_path, model)
  return model
