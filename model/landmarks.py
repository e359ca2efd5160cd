"""iBUG 68-point landmark conventions and landmark-to-vertex mapping files.

A morphable model's landmarks are an int32 array ``landmark_ids`` of shape
``[68]``: entry ``k`` is the 0-based vertex id of iBUG point ``k + 1`` (the
1-based numbering of the iBUG 300-W annotation scheme, also used by Multi-PIE
68), or :data:`UNDEFINED` (-1) where the model does not define that point.  For
example the BFM 2017 mapping of ``eos`` defines 26 of the 68 points (no jaw
contour but the chin, no eyebrows, no nose bridge).

"Right" and "left" are the subject's: with the coordinate convention of the
morphable models (+x towards the subject's left, +y up, +z towards the viewer)
the subject's right eye (iBUG 37-42) has x < 0.
"""
import os
import re

import numpy as np

IBUG68_COUNT = 68
# Marks a landmark the model does not define.
UNDEFINED = -1

# 0-based index ranges of the iBUG-68 groups (iBUG point k is index k - 1).
JAW = range(0, 17)
RIGHT_BROW = range(17, 22)
LEFT_BROW = range(22, 27)
NOSE_BRIDGE = range(27, 31)
NOSE_BASE = range(31, 36)
RIGHT_EYE = range(36, 42)
LEFT_EYE = range(42, 48)
OUTER_LIPS = range(48, 60)
INNER_LIPS = range(60, 68)
# Single points used often (0-based).
CHIN = 8
NOSE_TIP = 30
RIGHT_EYE_OUTER_CORNER = 36
RIGHT_EYE_INNER_CORNER = 39
LEFT_EYE_INNER_CORNER = 42
LEFT_EYE_OUTER_CORNER = 45
RIGHT_MOUTH_CORNER = 48
LEFT_MOUTH_CORNER = 54

_MAPPING_SECTION = "landmark_mappings"
_SECTION_RE = re.compile(r"^\[\s*([A-Za-z0-9_.]+)\s*\]$")
_ASSIGNMENT_RE = re.compile(r"^(\d+)\s*=\s*(-?\d+)$")


def check_landmark_ids(landmark_ids, vertex_count: int,
                       name: str = "landmark_ids") -> np.ndarray:
  """Validates and returns landmark vertex ids as a read-only int32 array.

  Args:
    landmark_ids: integer array-like, shape ``[68]``: 0-based vertex ids, or
      -1 for landmarks the model does not define.
    vertex_count: number of vertices of the mesh the ids index.
    name: how to call the argument in error messages.

  Returns:
    int32 array ``[68]`` (a read-only copy).

  Raises:
    ValueError: naming ``name`` when the shape, dtype or range is wrong.
  """
  ids = np.asarray(landmark_ids)
  if ids.shape != (IBUG68_COUNT,):
    raise ValueError(f"{name} must have shape ({IBUG68_COUNT},), got "
                     f"{ids.shape}")
  if ids.dtype.kind not in "iu":
    raise ValueError(f"{name} must be integers, got dtype {ids.dtype}")
  bad = (ids < UNDEFINED) | (ids >= vertex_count)
  if np.any(bad):
    k = int(np.flatnonzero(bad)[0])
    raise ValueError(f"{name}[{k}] = {int(ids[k])} is not a vertex id in "
                     f"[0, {vertex_count}) nor {UNDEFINED} (undefined)")
  ids = ids.astype(np.int32)
  ids.setflags(write=False)
  return ids


def read_ibug_mapping(path: str, vertex_count: int) -> np.ndarray:
  """Reads an eos-style iBUG-68 -> vertex-id mapping file.

  The format (e.g. ``ibug_to_bfm2017-1_bfm_nomouth.txt`` of the eos project) is
  TOML-like: a ``[landmark_mappings]`` section with lines
  ``<ibug id 1..68> = <0-based vertex id>``; ``#`` starts a comment; other
  sections (``[contour_landmarks]``) are ignored.  Points without a line stay
  undefined (-1).

  Args:
    path: the mapping file.
    vertex_count: number of vertices of the model the ids index.

  Returns:
    int32 array ``[68]`` of vertex ids, -1 where undefined.

  Raises:
    ValueError: naming the file (and line) when it is missing, malformed,
      defines no landmark, repeats an iBUG id, or has an id out of range.
  """
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.readlines()
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f"Cannot read landmark mapping file {path!r}: {e}") from e
  ids = np.full(IBUG68_COUNT, UNDEFINED, np.int64)
  section = None
  seen_section = False
  for number, raw in enumerate(lines, start=1):
    line = raw.split("#", 1)[0].strip()
    if not line:
      continue
    header = _SECTION_RE.match(line)
    if header:
      section = header.group(1)
      seen_section = seen_section or section == _MAPPING_SECTION
      continue
    if section != _MAPPING_SECTION:
      continue
    match = _ASSIGNMENT_RE.match(line)
    if not match:
      raise ValueError(f"{path}:{number}: expected '<ibug id> = <vertex id>' "
                       f"in [{_MAPPING_SECTION}], got {raw.strip()!r}")
    ibug, vertex = int(match.group(1)), int(match.group(2))
    if not 1 <= ibug <= IBUG68_COUNT:
      raise ValueError(f"{path}:{number}: iBUG id {ibug} is not in "
                       f"1..{IBUG68_COUNT}")
    if not 0 <= vertex < vertex_count:
      raise ValueError(f"{path}:{number}: vertex id {vertex} is not in "
                       f"[0, {vertex_count}) (the model has {vertex_count} "
                       "vertices)")
    if ids[ibug - 1] != UNDEFINED:
      raise ValueError(f"{path}:{number}: iBUG id {ibug} is mapped twice")
    ids[ibug - 1] = vertex
  if not seen_section:
    raise ValueError(f"Landmark mapping file {path!r} has no "
                     f"[{_MAPPING_SECTION}] section")
  if np.all(ids == UNDEFINED):
    raise ValueError(f"Landmark mapping file {path!r} maps no landmark")
  return check_landmark_ids(ids, vertex_count, name=os.fspath(path))
