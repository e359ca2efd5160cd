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
