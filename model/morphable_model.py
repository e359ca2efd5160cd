"""Linear 3D morphable models in the Basel Face Model 2017 layout.

Three layers:

* :class:`MorphableModel`, a frozen numpy container (mean, *scaled* basis and
  variances of shape and colour, triangles, iBUG-68 landmark vertex ids);
* :func:`load_morphable_model` / :func:`write_bfm2017_layout`, the reader and
  the one writer of BFM-2017-layout HDF5 files (statismo 0.9 as written by
  scalismo-faces), and ``"demo"`` for the procedural model of
  :mod:`unsup3dmm.model.demo_model`;
* :class:`TFMorphableModel`, a ``tf.Module`` holding the arrays as TensorFlow
  constants and mapping coefficients to vertices and colours differentiably.

Model (paper: Genova et al., CVPR 2018, Sec. 3, neutral expression)::

    vertices = shape_mean + sum_k s_k * shape_basis[k]
    colors   = color_mean + sum_k t_k * color_basis[k]

with ``shape_basis[k] = u_k * sqrt(lambda_k)`` (``u_k`` the orthonormal PCA
direction of the file, ``lambda_k`` its variance), so the coefficients ``s_k``,
``t_k`` are standard normal under the model's distribution.  The expression
model of the file is not read: expression coefficients are zero and the shape
mean (the neutral mean of the scans) is used as is.

Coordinates: model space in millimetres, +x towards the subject's left (the
viewer's right in a frontal view), +y up, +z towards the viewer (out of the
face).  Colours: linear combination of RGB values in [0, 1], *not clipped*
(large coefficients may leave [0, 1]; clip after shading).
"""
import dataclasses
import datetime
import json
import os
from typing import Optional, Tuple, Union

import h5py
import numpy as np
import tensorflow as tf

from unsup3dmm.model import landmarks as landmarks_lib
from unsup3dmm.model.config import ModelConfig
from unsup3dmm.renderer import camera

DEMO = "demo"
# Where our writer stores the iBUG-68 landmark vertex ids: int32 [68], -1 for
# undefined points.  Real BFM 2017 files have only metadata/landmarks/json
# (named 3D points, not iBUG-68), which we do not use.
LANDMARKS_DATASET = "metadata/landmarks/ibug68"
# The statismo version this layout follows (BFM 2017 files say 0.9).
STATISMO_VERSION = (0, 9)
# Tolerance on the norm of the orthonormal pcaBasis columns in a file (float32
# data; a statismo-0.8 file with sqrt(variance)-scaled columns fails it).
_UNIT_NORM_TOLERANCE = 1e-2
# Stored colour means must lie in this range (a file with 0..255 values fails).
_COLOR_MEAN_RANGE = (-0.1, 1.1)

# Magnitudes below this are treated as zero in pca_from_deviations.
_NEGLIGIBLE = 1e-20

ArrayLike = Union[np.ndarray, list, tuple]


def _frozen_float32(value, name: str, shape: Tuple[Optional[int], ...]):
  array = np.asarray(value)
  if array.dtype.kind not in "fiu":
    raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
  array = array.astype(np.float32, copy=False).view()
  if array.ndim != len(shape) or any(
      expected is not None and got != expected
      for got, expected in zip(array.shape, shape)):
    expected = ", ".join("?" if s is None else str(s) for s in shape)
    raise ValueError(f"{name} must have shape ({expected}), got "
                     f"{array.shape}")
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{name} contains NaN or infinite values")
  array.setflags(write=False)
  return array


@dataclasses.dataclass(frozen=True, eq=False)
class MorphableModel:
  """A linear morphable model of face shape and colour (numpy, read-only).

  Attributes:
    shape_mean: float32 ``[vertex_count, 3]``, model space, mm.
    shape_basis: float32 ``[shape_components, vertex_count, 3]``, mm per unit
      coefficient: orthonormal PCA directions scaled by ``sqrt(shape_variance)``
      so shape coefficients are standard normal.
    shape_variance: float32 ``[shape_components]``, PCA eigenvalues, mm^2,
      positive, in file order (decreasing for PCA models).
    color_mean: float32 ``[vertex_count, 3]``, RGB in [0, 1].
    color_basis: float32 ``[texture_components, vertex_count, 3]``, RGB per
      unit coefficient (orthonormal directions times ``sqrt(color_variance)``).
    color_variance: float32 ``[texture_components]``, positive.
    triangles: int32 ``[triangle_count, 3]``, 0-based vertex ids.
    landmark_ids: optional int32 ``[68]``: vertex id of each iBUG-68 point,
      -1 where the model does not define it (see
      :mod:`unsup3dmm.model.landmarks`).
    name: a short description (file name or ``"demo"``).

  The constructor checks shapes, finiteness, positive variances and index
  ranges, raising ValueError naming the field; arrays become read-only.
  """
  shape_mean: np.ndarray
  shape_basis: np.ndarray
  shape_variance: np.ndarray
  color_mean: np.ndarray
  color_basis: np.ndarray
  color_variance: np.ndarray
  triangles: np.ndarray
  landmark_ids: Optional[np.ndarray] = None
  name: str = "morphable model"

  def __post_init__(self):
    def put(field, value):
      object.__setattr__(self, field, value)

    put("shape_mean", _frozen_float32(self.shape_mean, "shape_mean", (None, 3)))
    v = self.shape_mean.shape[0]
    if v < 3:
      raise ValueError(f"shape_mean must have at least 3 vertices, got {v}")
    for prefix in ("shape", "color"):
      put(f"{prefix}_basis", _frozen_float32(
          getattr(self, f"{prefix}_basis"), f"{prefix}_basis", (None, v, 3)))
      k = getattr(self, f"{prefix}_basis").shape[0]
      if k == 0:
        raise ValueError(f"{prefix}_basis must have at least one component")
      variance = _frozen_float32(getattr(self, f"{prefix}_variance"),
                                 f"{prefix}_variance", (k,))
      if np.any(variance <= 0):
        raise ValueError(f"{prefix}_variance must be positive, got minimum "
                         f"{variance.min()}")
      put(f"{prefix}_variance", variance)
    put("color_mean", _frozen_float32(self.color_mean, "color_mean", (v, 3)))
    triangles = np.asarray(self.triangles)
    if triangles.ndim != 2 or triangles.shape[1] != 3 or not triangles.size:
      raise ValueError("triangles must have shape (triangle_count > 0, 3), got "
                       f"{triangles.shape}")
    if triangles.dtype.kind not in "iu":
      raise ValueError(f"triangles must be integers, got {triangles.dtype}")
    if triangles.min() < 0 or triangles.max() >= v:
      raise ValueError(f"triangles index vertices outside [0, {v}): range "
                       f"[{triangles.min()}, {triangles.max()}]")
    triangles = triangles.astype(np.int32)
    triangles.setflags(write=False)
    put("triangles", triangles)
    if self.landmark_ids is not None:
      put("landmark_ids",
          landmarks_lib.check_landmark_ids(self.landmark_ids, v))
    if not isinstance(self.name, str):
      raise ValueError(f"name must be a string, got {self.name!r}")

  @property
  def vertex_count(self) -> int:
    return self.shape_mean.shape[0]

  @property
  def triangle_count(self) -> int:
    return self.triangles.shape[0]

  @property
  def shape_components(self) -> int:
    return self.shape_basis.shape[0]

  @property
  def texture_components(self) -> int:
    return self.color_basis.shape[0]

  def vertices(self, shape_coefficients: ArrayLike) -> np.ndarray:
    """Numpy reference of :meth:`TFMorphableModel.vertices`.

    Args:
      shape_coefficients: float ``[..., shape_components]``, standard normal.

    Returns:
      float32 ``[..., vertex_count, 3]``, model space, mm.
    """
    c = self._check_coefficients(shape_coefficients, "shape_coefficients",
                                 self.shape_components)
    return self.shape_mean + np.tensordot(c, self.shape_basis, axes=1)

  def colors(self, texture_coefficients: ArrayLike) -> np.ndarray:
    """Numpy reference of :meth:`TFMorphableModel.colors` (not clipped).

    Args:
      texture_coefficients: float ``[..., texture_components]``, standard
        normal.

    Returns:
      float32 ``[..., vertex_count, 3]``, RGB, nominally in [0, 1].
    """
    c = self._check_coefficients(texture_coefficients, "texture_coefficients",
                                 self.texture_components)
    return self.color_mean + np.tensordot(c, self.color_basis, axes=1)

  @staticmethod
  def _check_coefficients(values, name, count):
    c = np.asarray(values, dtype=np.float32)
    if c.ndim < 1 or c.shape[-1] != count:
      raise ValueError(f"{name} must have shape [..., {count}], got {c.shape}")
    return c

  def with_components(self, shape_components: Optional[int] = None,
                      texture_components: Optional[int] = None
                      ) -> "MorphableModel":
    """The model restricted to its first k shape / colour components.

    Args:
      shape_components: k for the shape model, 1..shape_components; None
        keeps all.
      texture_components: k for the colour model; None keeps all.

    Returns:
      A MorphableModel sharing this model's (read-only) arrays.

    Raises:
      ValueError: naming the argument when k is not an integer in range.
    """
    k_shape = _check_k(shape_components, "shape_components",
                       self.shape_components, self.name)
    k_color = _check_k(texture_components, "texture_components",
                       self.texture_components, self.name)
    if (k_shape, k_color) == (self.shape_components, self.texture_components):
      return self
    return dataclasses.replace(
        self, shape_basis=self.shape_basis[:k_shape],
        shape_variance=self.shape_variance[:k_shape],
        color_basis=self.color_basis[:k_color],
        color_variance=self.color_variance[:k_color])


def _check_k(k, name, available, source):
  if k is None:
    return available
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
    raise ValueError(f"{name} must be a positive integer or None, got {k!r}")
  if not 1 <= k <= available:
    raise ValueError(f"{name}={k} is out of range: {source!r} has "
                     f"{available} {name.split('_')[0]} components")
  return int(k)


def pca_from_deviations(deviations: np.ndarray,
                        relative_tolerance: float = 1e-12
                        ) -> Tuple[np.ndarray, np.ndarray]:
  """Orthonormal PCA of a Gaussian given by 1-std deviation fields.

  For ``x = mean + sum_k c_k d_k`` with iid standard normal ``c_k`` (``d_k``
  the rows of ``deviations``, not necessarily orthogonal), the covariance is
  ``D D^T``.  Its eigen-decomposition ``U S^2 U^T`` (computed through the
  small Gram matrix ``D^T D``) gives the same distribution with orthonormal
  directions ``U`` and variances ``S^2``: ``x = mean + sum_k c'_k u_k s_k``.
  Directions with variance below ``relative_tolerance`` times the largest
  (linearly dependent inputs) are dropped.  Signs are deterministic: each
  direction's largest-magnitude entry is positive.

  Args:
    deviations: float ``[K, V, 3]`` (any unit, e.g. mm or RGB).
    relative_tolerance: see above.

  Returns:
    ``(scaled_basis [K', V, 3], variance [K'])``, float64: ``u_k * s_k`` and
    ``s_k^2`` in decreasing order, ``K' <= K``.
  """
  deviations = np.asarray(deviations)
  if deviations.ndim != 3 or deviations.shape[2] != 3 or not deviations.size:
    raise ValueError("deviations must have shape [components > 0, "
                     f"vertex_count, 3], got {deviations.shape}")
  k = deviations.shape[0]
  rows = deviations.reshape(k, -1).astype(np.float64)
  # Far Gaussian tails underflow to subnormal numbers, which make BLAS (and
  # later float32 arithmetic) orders of magnitude slower: flush them.
  rows[np.abs(rows) < _NEGLIGIBLE] = 0.0
  variance, w = np.linalg.eigh(rows @ rows.T)
  variance, w = variance[::-1], w[:, ::-1]
  keep = variance > relative_tolerance * max(variance[0], _NEGLIGIBLE)
  if not np.any(keep):
    raise ValueError("deviations span no direction (all zero)")
  variance, w = variance[keep], w[:, keep]
  scaled = w.T @ rows  # rows: u_k * s_k
  u = scaled / np.sqrt(variance)[:, None]
  signs = np.sign(u[np.arange(len(variance)),
                    np.argmax(np.abs(u), axis=1)])
  scaled *= signs[:, None]
  return scaled.reshape((len(variance),) + deviations.shape[1:]), variance


# ---------------------------------------------------------------------------
# Loading.


def load_morphable_model(path_or_demo: str,
                         shape_components: Optional[int] = None,
                         texture_components: Optional[int] = None,
                         landmarks_path: Optional[str] = None
                         ) -> MorphableModel:
  """Loads a BFM-2017-layout HDF5 file, or the built-in demo model.

  Reads ``shape/`` and ``color/`` (``model/mean``, ``model/pcaBasis``,
  ``model/pcaVariance``, ``representer/cells``) of a statismo-0.9 file such as
  ``model2017-1_bfm_nomouth.h5``; the ``expression/`` group, ``catalog/`` and
  noise variances are not needed (neutral expression).  Landmarks come from
  ``landmarks_path`` when given, else from the file's
  ``metadata/landmarks/ibug68`` dataset when present, else are None.

  Args:
    path_or_demo: path of the .h5 file, or ``"demo"`` for
      :func:`unsup3dmm.model.demo_model.build_demo_model` (built once per
      process, no file needed).
    shape_components: keep only the first k shape components (None: all).
    texture_components: keep only the first k colour components (None: all).
    landmarks_path: optional eos-style iBUG-68 mapping file, see
      :func:`unsup3dmm.model.landmarks.read_ibug_mapping`.

  Returns:
    A :class:`MorphableModel` (shape in mm, colours in [0, 1]).

  Raises:
    ValueError: a missing file, a file that is not HDF5, a missing dataset, a
      dataset of the wrong shape or dtype, NaN/infinite values, non-positive
      variances, non-unit basis columns or out-of-range triangle indices (the
      message names the file and the path inside it); k larger than the model
      has (naming the argument); a bad landmark file.
  """
  if not isinstance(path_or_demo, (str, os.PathLike)):
    raise ValueError("path_or_demo must be a file path or 'demo', got "
                     f"{path_or_demo!r}")
  if path_or_demo == DEMO:
    # demo_model builds its model with this module, hence the late import.
    # pylint: disable-next=import-outside-toplevel
    from unsup3dmm.model import demo_model
    model = demo_model.build_demo_model()
  else:
    model = _read_bfm2017(os.fspath(path_or_demo), shape_components,
                          texture_components)
  model = model.with_components(shape_components, texture_components)
  if landmarks_path is not None:
    model = dataclasses.replace(
        model, landmark_ids=landmarks_lib.read_ibug_mapping(
            landmarks_path, model.vertex_count))
  return model


def load_from_config(config: ModelConfig) -> MorphableModel:
  """:func:`load_morphable_model` with the fields of a ``ModelConfig``
  (``morphable_model``, ``shape_components``, ``texture_components``,
  ``landmarks_path``; an empty ``landmarks_path`` means none)."""
  return load_morphable_model(config.morphable_model, config.shape_components,
                              config.texture_components,
                              config.landmarks_path or None)


class _FileReader:
  """Reads and checks datasets of one open HDF5 file, naming file and path."""

  def __init__(self, handle: h5py.File, path: str):
    self.handle = handle
    self.path = path

  def error(self, internal: str, message: str) -> ValueError:
    return ValueError(f"Morphable model file {self.path!r}, dataset "
                      f"'{internal}': {message}")

  def dataset(self, internal: str) -> h5py.Dataset:
    item = self.handle.get(internal)
    if not isinstance(item, h5py.Dataset):
      what = "is missing" if item is None else "is not a dataset"
      raise self.error(internal, f"{what} (not a BFM 2017 layout file?)")
    return item

  def read(self, internal: str, shape, kind: str = "f",
           columns: Optional[int] = None) -> np.ndarray:
    """Reads a dataset, checking its shape (None: any size) and dtype kind."""
    ds = self.dataset(internal)
    if len(ds.shape) != len(shape) or any(
        want is not None and got != want for got, want in zip(ds.shape, shape)):
      expected = tuple("any" if s is None else s for s in shape)
      raise self.error(internal, f"has shape {ds.shape}, expected {expected}")
    if ds.dtype.kind not in ("iu" if kind == "i" else "fiu"):
      raise self.error(internal, f"has dtype {ds.dtype}, expected "
                       f"{'integers' if kind == 'i' else 'numbers'}")
    data = ds[:, :columns] if columns is not None else ds[()]
    if kind == "f":
      data = np.asarray(data, dtype=np.float32)
      if not np.all(np.isfinite(data)):
        raise self.error(internal, "contains NaN or infinite values")
    return np.asarray(data)


def _read_bfm2017(path: str, shape_components, texture_components
                  ) -> MorphableModel:
  if not os.path.exists(path):
    raise ValueError(f"Morphable model file {path!r} does not exist")
  if os.path.isdir(path):
    raise ValueError(f"Morphable model path {path!r} is a directory, expected "
                     "a BFM 2017 .h5 file")
  try:
    handle = h5py.File(path, "r")
  except OSError as e:
    raise ValueError(f"Morphable model file {path!r} is not a readable HDF5 "
                     f"file: {e}") from e
  with handle:
    reader = _FileReader(handle, path)
    # The representer (reference mesh) defines the vertex count.
    v = reader.read("shape/representer/points", (3, None)).shape[1]
    if v < 3:
      raise reader.error("shape/representer/points", f"has {v} vertices")
    cells = reader.read("shape/representer/cells", (3, None), kind="i")
    if cells.shape[1] == 0 or cells.min() < 0 or cells.max() >= v:
      raise reader.error("shape/representer/cells", "indexes vertices outside "
                         f"[0, {v}) or is empty")
    shape_mean, shape_basis, shape_variance = _read_pca(
        reader, "shape", v, shape_components, "shape_components")
    color_mean, color_basis, color_variance = _read_pca(
        reader, "color", v, texture_components, "texture_components")
    lo, hi = _COLOR_MEAN_RANGE
    if color_mean.min() < lo or color_mean.max() > hi:
      raise reader.error("color/model/mean", "colour values must lie in "
                         f"[0, 1], found [{color_mean.min()}, "
                         f"{color_mean.max()}]")
    landmark_ids = None
    if LANDMARKS_DATASET in handle:
      landmark_ids = reader.read(LANDMARKS_DATASET,
                                 (landmarks_lib.IBUG68_COUNT,), kind="i")
      try:
        landmark_ids = landmarks_lib.check_landmark_ids(landmark_ids, v)
      except ValueError as e:
        raise reader.error(LANDMARKS_DATASET, str(e)) from e
  return MorphableModel(
      shape_mean=shape_mean, shape_basis=shape_basis,
      shape_variance=shape_variance, color_mean=color_mean,
      color_basis=color_basis, color_variance=color_variance,
      triangles=cells.T, landmark_ids=landmark_ids,
      name=os.path.basename(path))


def _read_pca(reader: _FileReader, group: str, v: int, k: Optional[int],
              argument: str):
  """Reads one statismo PCA model -> (mean [V,3], scaled basis [K,V,3], var)."""
  mean = reader.read(f"{group}/model/mean", (3 * v,))
  basis_ds = reader.dataset(f"{group}/model/pcaBasis")
  available = basis_ds.shape[1] if len(basis_ds.shape) == 2 else 0
  if available == 0:
    raise reader.error(f"{group}/model/pcaBasis", f"has shape {basis_ds.shape}"
                       f", expected ({3 * v}, components > 0)")
  k = _check_k(k, argument, available, reader.path)
  basis = reader.read(f"{group}/model/pcaBasis", (3 * v, available),
                      columns=k)
  variance = reader.read(f"{group}/model/pcaVariance", (available,))[:k]
  if np.any(variance <= 0):
    raise reader.error(f"{group}/model/pcaVariance",
                       f"must be positive, minimum is {variance.min()}")
  norms = np.linalg.norm(basis.astype(np.float64), axis=0)
  worst = int(np.argmax(np.abs(norms - 1)))
  if abs(norms[worst] - 1) > _UNIT_NORM_TOLERANCE:
    raise reader.error(f"{group}/model/pcaBasis",
                       f"column {worst} has norm {norms[worst]:.4g}, expected "
                       "orthonormal columns (statismo 0.9)")
  reader.read(f"{group}/representer/points", (3, v))
  scaled = basis * np.sqrt(variance)[np.newaxis, :]
  # Rows are interleaved (x0, y0, z0, x1, ...): [3V, K] -> [K, V, 3].
  scaled = np.ascontiguousarray(scaled.T).reshape(k, v, 3)
  return mean.reshape(v, 3), scaled, variance


# ---------------------------------------------------------------------------
# Writing.


def write_bfm2017_layout(path: str, model: MorphableModel,
                         build_time: Optional[str] = None) -> str:
  """Writes a model as a BFM-2017-layout (statismo 0.9) HDF5 file.

  The one writer for the demo model and every converter.  It reproduces the
  dataset names, shapes and dtypes of ``model2017-1_*.h5`` (float32 data,
  int32 ``cells``, interleaved ``mean``/``pcaBasis`` rows, orthonormal
  ``pcaBasis`` columns with ``pcaVariance`` eigenvalues, ``(1,)``
  ``noiseVariance``, ``version``/``catalog``/``modelinfo``/``representer``
  entries and attributes as scalismo-faces writes them), without an
  ``expression/`` group (scalismo reads such files as expression-free).
  Landmarks, when the model has them, go to ``metadata/landmarks/ibug68``
  (int32 [68], -1 undefined) and, as named 3D points of the mean, to
  ``metadata/landmarks/json`` (scalismo's landmark format).

  The file is written to ``path + '.tmp'`` and renamed, so a reader never
  sees a partial file.

  Args:
    path: output .h5 path; parent directories are created.
    model: the model to write.
    build_time: text for ``*/modelinfo/build-time``; None: now (UTC, ISO).

  Returns:
    ``path``.
  """
  if not isinstance(model, MorphableModel):
    raise ValueError(f"model must be a MorphableModel, got {type(model)}")
  path = os.fspath(path)
  if build_time is None:
    build_time = datetime.datetime.now(datetime.timezone.utc).isoformat()
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  tmp = path + ".tmp"
  with h5py.File(tmp, "w") as f:
    _write_version(f.create_group("version"))
    catalog = f.create_group("catalog")
    for entry, model_type, model_path in (
        ("MorphableModel", "CUSTOM_MODEL", "/"),
        ("MorphableModel.shape", "POLYGON_MESH_MODEL", "/shape"),
        ("MorphableModel.color", "POLYGON_MESH_DATA_MODEL", "/color")):
      group = catalog.create_group(entry)
      _write_string(group, "modelType", model_type)
      _write_string(group, "modelPath", model_path)
    for group_name, representer in (("shape", "gravis::MeshShapeRepresenter"),
                                    ("color", "gravis::MeshColorRepresenter")):
      group = f.create_group(group_name)
      _write_version(group.create_group("version"))
      _write_pca(group.create_group("model"),
                 getattr(model, f"{group_name}_mean"),
                 getattr(model, f"{group_name}_basis"),
                 getattr(model, f"{group_name}_variance"))
      info = group.create_group("modelinfo")
      _write_string(info, "build-time", build_time)
      info.create_dataset("scores", data=np.zeros((1, 1), np.float32))
      rep = group.create_group("representer")
      rep.attrs["name"] = np.bytes_(representer)
      rep.attrs["datasetType"] = np.bytes_("POLYGON_MESH")
      rep.create_dataset("points", data=model.shape_mean.T.astype(np.float32))
      rep.create_dataset("cells", data=model.triangles.T.astype(np.int32))
      if group_name == "color":
        _write_string(rep, "colorspace", "RGB")
    landmark_group = f.create_group("metadata").create_group("landmarks")
    points = []
    if model.landmark_ids is not None:
      landmark_group.create_dataset("ibug68", data=model.landmark_ids.astype(
          np.int32))
      points = [{"id": f"ibug68.{k + 1:02d}",
                 "coordinates": [float(c) for c in model.shape_mean[vid]],
                 "uncertainty": {"stddevs": [1.0, 1.0, 1.0],
                                 "pcvectors": [[1.0, 0.0, 0.0],
                                               [0.0, 1.0, 0.0],
                                               [0.0, 0.0, 1.0]]}}
                for k, vid in enumerate(model.landmark_ids) if vid >= 0]
    _write_string(landmark_group, "json", json.dumps(points))
  os.replace(tmp, path)
  return path


def _write_version(group: h5py.Group):
  group.create_dataset("majorVersion", data=np.int32(STATISMO_VERSION[0]))
  group.create_dataset("minorVersion", data=np.int32(STATISMO_VERSION[1]))


def _write_string(group: h5py.Group, name: str, text: str):
  group.create_dataset(name, data=np.bytes_(text))


def _write_pca(group: h5py.Group, mean, scaled_basis, variance):
  k = scaled_basis.shape[0]
  std = np.sqrt(variance.astype(np.float64))
  # [K, V, 3] -> interleaved rows [3V, K]; undo the sqrt(variance) scaling.
  orthonormal = scaled_basis.reshape(k, -1).T.astype(np.float64) / std
  group.create_dataset("mean", data=mean.reshape(-1).astype(np.float32))
  group.create_dataset("noiseVariance", data=np.zeros(1, np.float32))
  group.create_dataset("pcaBasis", data=orthonormal.astype(np.float32))
  group.create_dataset("pcaVariance", data=variance.astype(np.float32))


# ---------------------------------------------------------------------------
# TensorFlow.


def sample_standard_normal(shape, seed, truncation: Optional[float] = None
                           ) -> tf.Tensor:
  """Stateless standard-normal samples, optionally truncated at +-truncation.

  Truncation is exact (inverse-CDF sampling of the normal restricted to
  ``[-truncation, truncation]``), not clipping.

  Args:
    shape: output shape (list of ints or int32 tensor).
    seed: int or a pair of ints (``tf.random.stateless_*`` seed).
    truncation: None, or a positive number of standard deviations.

  Returns:
    float32 tensor of ``shape``; no gradient (random).
  """
  seed = camera.seed_pair(seed)
  if truncation is None:
    return tf.random.stateless_normal(shape, seed, dtype=tf.float32)
  truncation = _check_truncation(truncation)
  # Phi(-k) in float64 so that tails up to ~8 std stay accurate.
  low = 0.5 * tf.math.erfc(tf.constant(truncation / np.sqrt(2.0), tf.float64))
  u = tf.random.stateless_uniform(shape, seed, minval=low, maxval=1.0 - low,
                                  dtype=tf.float64)
  return tf.cast(tf.clip_by_value(tf.math.ndtri(u), -truncation, truncation),
                 tf.float32)


def _check_truncation(truncation):
  if isinstance(truncation, bool) or not isinstance(
      truncation, (int, float, np.integer, np.floating)) or not (
          0 < truncation < float("inf")):
    raise ValueError("truncation must be None or a positive number of "
                     f"standard deviations, got {truncation!r}")
  return float(truncation)


class TFMorphableModel(tf.Module):
  """A :class:`MorphableModel` as TensorFlow constants.

  The numpy arrays are converted once, at construction (the BFM 2017 shape
  basis alone is ~127 MB); bases are stored flattened as
  ``[components, 3 * vertex_count]`` so an instance costs one matmul
  ``[batch, K] x [K, 3V]``.

  Attributes:
    model: the numpy model.
    triangles: int32 tensor ``[triangle_count, 3]``.
    landmark_ids: int32 tensor ``[68]`` (-1 undefined) or None.
    vertex_count, shape_components, texture_components: ints.
  """

  def __init__(self, model: MorphableModel, name: Optional[str] = None):
    super().__init__(name=name)
    if not isinstance(model, MorphableModel):
      raise ValueError(f"model must be a MorphableModel, got {type(model)}")
    self.model = model
    self.vertex_count = model.vertex_count
    self.shape_components = model.shape_components
    self.texture_components = model.texture_components
    self._shape_mean = tf.constant(model.shape_mean.reshape(1, -1))
    self._shape_basis = tf.constant(
        model.shape_basis.reshape(model.shape_components, -1))
    self._color_mean = tf.constant(model.color_mean.reshape(1, -1))
    self._color_basis = tf.constant(
        model.color_basis.reshape(model.texture_components, -1))
    self.triangles = tf.constant(model.triangles, tf.int32)
    self.landmark_ids = (None if model.landmark_ids is None else
                         tf.constant(model.landmark_ids, tf.int32))

  def _instance(self, coefficients, mean, basis, count, name):
    coefficients = tf.convert_to_tensor(coefficients, tf.float32)
    if coefficients.shape.rank != 2 or (
        coefficients.shape[1] is not None and coefficients.shape[1] != count):
      raise ValueError(f"{name} must have shape [batch, {count}], got "
                       f"{coefficients.shape}")
    flat = mean + tf.matmul(coefficients, basis)
    return tf.reshape(flat, [-1, self.vertex_count, 3])

  def vertices(self, shape_coefficients) -> tf.Tensor:
    """Vertex positions of a batch of faces (neutral expression).

    Args:
      shape_coefficients: float32 ``[batch, shape_components]``, standard
        normal under the model.

    Returns:
      float32 ``[batch, vertex_count, 3]``, model space, mm.  Gradients flow
      to the coefficients (d vertices / d s_k = ``shape_basis[k]``).
    """
    return self._instance(shape_coefficients, self._shape_mean,
                          self._shape_basis, self.shape_components,
                          "shape_coefficients")

  def colors(self, texture_coefficients) -> tf.Tensor:
    """Per-vertex albedo of a batch of faces.

    Args:
      texture_coefficients: float32 ``[batch, texture_components]``, standard
        normal under the model.

    Returns:
      float32 ``[batch, vertex_count, 3]``, RGB, nominally in [0, 1] but NOT
      clipped (so gradients never vanish here; clip the shaded image).
      Gradients flow to the coefficients.
    """
    return self._instance(texture_coefficients, self._color_mean,
                          self._color_basis, self.texture_components,
                          "texture_coefficients")

  def sample_coefficients(self, batch_size: int, seed,
                          truncation: Optional[float] = None
                          ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Random coefficients of the model's distribution (stateless).

    Args:
      batch_size: positive int.
      seed: int or pair of ints; the same seed gives the same coefficients.
        Shape and texture draw from two seeds split off this one.
      truncation: None, or k > 0: each coefficient is drawn from the standard
        normal truncated to [-k, k].

    Returns:
      ``(shape_coefficients, texture_coefficients)``: float32
      ``[batch_size, shape_components]`` and
      ``[batch_size, texture_components]``.
    """
    if isinstance(batch_size, bool) or not isinstance(
        batch_size, (int, np.integer)) or batch_size < 1:
      raise ValueError(f"batch_size must be a positive integer, got "
                       f"{batch_size!r}")
    shape_seed, texture_seed = tf.unstack(
        tf.random.experimental.stateless_split(camera.seed_pair(seed), 2))
    return (sample_standard_normal([batch_size, self.shape_components],
                                   shape_seed, truncation),
            sample_standard_normal([batch_size, self.texture_components],
                                   texture_seed, truncation))
