"""Triangle-mesh files: OBJ and PLY with per-vertex colours.

Writers:

* :func:`write_obj`: text OBJ, ``v x y z r g b`` (colours as floats in [0, 1],
  the MeshLab convention) and 1-based ``f a b c``.
* :func:`write_ply`: binary little-endian PLY, vertex ``float x, y, z`` and
  ``uchar red, green, blue``, faces ``list uchar int vertex_indices``.

Readers (:func:`read_obj`, :func:`read_ply`, :func:`read_mesh`) return
``(vertices, triangles, colors)`` and also accept the meshes of other tools
(e.g. 3D scans): OBJ with ``vt``/``vn``, ``f a/b/c``, ``a//c``, negative
indices and polygons; ASCII and binary (little or big endian) PLY with any
scalar types, extra properties and elements.  Polygons are fan-triangulated
``(p0, p_i, p_i+1)``.  Coordinates are returned as stored (no unit change).
"""
import os
from typing import List, Optional, Tuple

import numpy as np

Mesh = Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_FACE_LISTS = ("vertex_indices", "vertex_index")


def _check_mesh(vertices, triangles, colors):
  vertices = np.asarray(vertices, dtype=np.float64)
  triangles = np.asarray(triangles)
  if vertices.ndim != 2 or vertices.shape[1] != 3:
    raise ValueError(f"vertices must have shape [V, 3], got {vertices.shape}")
  if not np.all(np.isfinite(vertices)):
    raise ValueError("vertices contain NaN or infinite values")
  if triangles.ndim != 2 or triangles.shape[1] != 3:
    raise ValueError(f"triangles must have shape [T, 3], got "
                     f"{triangles.shape}")
  if triangles.dtype.kind not in "iu":
    raise ValueError(f"triangles must be integers, got {triangles.dtype}")
  if triangles.size and (triangles.min() < 0 or
                         triangles.max() >= len(vertices)):
    raise ValueError(f"triangles index vertices outside [0, {len(vertices)})")
  if colors is not None:
    colors = np.asarray(colors, dtype=np.float64)
    if colors.shape != vertices.shape:
      raise ValueError(f"colors must have shape {vertices.shape}, got "
                       f"{colors.shape}")
    if not np.all(np.isfinite(colors)):
      raise ValueError("colors contain NaN or infinite values")
    colors = np.clip(colors, 0.0, 1.0)
  return vertices, triangles.astype(np.int64), colors


def _prepare(path):
  path = os.fspath(path)
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  return path


def write_obj(path: str, vertices, triangles, colors=None) -> str:
  """Writes a text OBJ mesh.

  Args:
    path: output file; parent directories are created.
    vertices: float ``[V, 3]`` (any unit; written with 6 decimals).
    triangles: int ``[T, 3]``, 0-based (written 1-based).
    colors: optional float ``[V, 3]`` RGB, clipped to [0, 1], appended to
      each ``v`` line.

  Returns:
    ``path``.
  """
  vertices, triangles, colors = _check_mesh(vertices, triangles, colors)
  path = _prepare(path)
  values = vertices if colors is None else np.concatenate([vertices, colors],
                                                          axis=1)
  vertex_format = "v" + " %.6f" * values.shape[1]
  with open(path, "w", encoding="ascii") as f:
    f.write("# unsup3dmm mesh\n")
    f.writelines((vertex_format % tuple(row)) + "\n" for row in values)
    f.writelines("f %d %d %d\n" % tuple(t) for t in triangles + 1)
  return path


def write_ply(path: str, vertices, triangles, colors=None) -> str:
  """Writes a binary little-endian PLY mesh.

  Args:
    path: output file; parent directories are created.
    vertices: float ``[V, 3]``, stored as float32.
    triangles: int ``[T, 3]``, 0-based, stored as ``list uchar int``.
    colors: optional float ``[V, 3]`` RGB in [0, 1] (clipped), stored as
      ``uchar`` 0..255 (rounded).

  Returns:
    ``path``.
  """
  vertices, triangles, colors = _check_mesh(vertices, triangles, colors)
  path = _prepare(path)
  fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
  if colors is not None:
    fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
  records = np.empty(len(vertices), dtype=fields)
  for k, axis in enumerate("xyz"):
    records[axis] = vertices[:, k]
  if colors is not None:
    rgb = np.round(colors * 255.0).astype(np.uint8)
    for k, channel in enumerate(("red", "green", "blue")):
      records[channel] = rgb[:, k]
  faces = np.empty(len(triangles), dtype=[("n", "u1"), ("v", "<i4", (3,))])
  faces["n"] = 3
  faces["v"] = triangles
  header = ["ply", "format binary_little_endian 1.0",
            "comment unsup3dmm mesh", f"element vertex {len(vertices)}",
            "property float x", "property float y", "property float z"]
  if colors is not None:
    header += ["property uchar red", "property uchar green",
               "property uchar blue"]
  header += [f"element face {len(triangles)}",
             "property list uchar int vertex_indices", "end_header"]
  with open(path, "wb") as f:
    f.write(("\n".join(header) + "\n").encode("ascii"))
    f.write(records.tobytes())
    f.write(faces.tobytes())
  return path


def _fan(polygon: List[int]) -> List[Tuple[int, int, int]]:
  return [(polygon[0], polygon[i], polygon[i + 1])
          for i in range(1, len(polygon) - 1)]


def read_obj(path: str) -> Mesh:
  """Reads an OBJ mesh (vertices, faces, optional per-vertex colours).

  Understands ``v x y z``, ``v x y z w`` (w ignored), ``v x y z r g b``;
  faces ``f`` with ``a``, ``a/b``, ``a//c`` or ``a/b/c`` tokens, 1-based or
  negative (relative) indices and 3 or more corners (fan-triangulated).
  Other statements (``vt``, ``vn``, ``g``, ``o``, ``s``, ``usemtl``, ``l``,
  ...) are ignored.

  Args:
    path: the .obj file.

  Returns:
    ``(vertices, triangles, colors)``: float32 ``[V, 3]`` as stored; int32
    ``[T, 3]`` 0-based; float32 ``[V, 3]`` in [0, 1] if every vertex has a
    colour (values above 1 are taken as 0..255 and divided by 255), else None.

  Raises:
    ValueError: naming the file (and line) if it is missing, malformed or
      indexes a missing vertex.
  """
  path = os.fspath(path)
  vertices, colors, triangles = [], [], []
  try:
    f = open(path, encoding="utf-8", errors="replace")
  except OSError as e:
    raise ValueError(f"Cannot read OBJ file {path!r}: {e}") from e
  with f:
    for number, line in enumerate(f, start=1):
      parts = line.split("#", 1)[0].split()
      if not parts:
        continue
      keyword = parts[0]
      try:
        if keyword == "v":
          values = [float(x) for x in parts[1:]]
          if len(values) not in (3, 4, 6):
            raise ValueError(f"expected 3, 4 or 6 numbers, got {len(values)}")
          vertices.append(values[:3])
          if len(values) == 6:
            colors.append(values[3:])
        elif keyword == "f":
          corners = []
          for token in parts[1:]:
            index = int(token.split("/", 1)[0])
            if index == 0:
              raise ValueError("vertex index 0 (OBJ indices start at 1)")
            corners.append(index - 1 if index > 0 else len(vertices) + index)
          if len(corners) < 3:
            raise ValueError(f"a face needs 3 or more vertices, got "
                             f"{len(corners)}")
          for k in corners:
            if not 0 <= k < len(vertices):
              raise ValueError(f"face refers to vertex {k + 1}, only "
                               f"{len(vertices)} defined so far")
          triangles.extend(_fan(corners))
      except ValueError as e:
        raise ValueError(f"{path}:{number}: {e} in {line.strip()!r}") from e
  if not vertices:
    raise ValueError(f"OBJ file {path!r} has no vertices")
  rgb = None
  if colors and len(colors) == len(vertices):
    rgb = np.asarray(colors, dtype=np.float32)
    if rgb.max() > 1.0:
      rgb = rgb / 255.0
  return (np.asarray(vertices, dtype=np.float32),
          np.asarray(triangles, dtype=np.int32).reshape(-1, 3), rgb)


class _PlyElement:

  def __init__(self, name: str, count: int):
    self.name = name
    self.count = count
    self.properties = []  # (name, numpy type, list count type or None)


def _ply_header(f, path):
  first = f.readline()
  if first.strip() != b"ply":
    raise ValueError(f"{path!r} is not a PLY file (no 'ply' magic)")
  fmt, elements = None, []
  while True:
    raw = f.readline()
    if not raw:
      raise ValueError(f"{path!r}: PLY header has no end_header")
    words = raw.decode("ascii", errors="replace").split()
    if not words or words[0] in ("comment", "obj_info"):
      continue
    if words[0] == "end_header":
      break
    try:
      if words[0] == "format":
        fmt = words[1]
        if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
          raise ValueError(f"unknown format {fmt!r}")
      elif words[0] == "element":
        elements.append(_PlyElement(words[1], int(words[2])))
      elif words[0] == "property":
        if not elements:
          raise ValueError("property before any element")
        if words[1] == "list":
          elements[-1].properties.append(
              (words[4], _PLY_TYPES[words[3]], _PLY_TYPES[words[2]]))
        else:
          elements[-1].properties.append((words[2], _PLY_TYPES[words[1]],
                                          None))
      else:
        raise ValueError("unexpected header line")
    except (IndexError, KeyError, ValueError) as e:
      raise ValueError(f"{path!r}: bad PLY header line {raw.strip()!r}: "
                       f"{e}") from e
  if fmt is None:
    raise ValueError(f"{path!r}: PLY header has no format line")
  return fmt, elements


def _read_ascii_element(tokens, element):
  columns = {name: [] for name, _, _ in element.properties}
  for _ in range(element.count):
    for name, _, list_type in element.properties:
      if list_type is None:
        columns[name].append(float(next(tokens)))
      else:
        n = int(float(next(tokens)))
        columns[name].append([int(float(next(tokens))) for _ in range(n)])
  return columns


def _read_binary_element(f, element, endian):
  properties = element.properties
  if all(list_type is None for _, _, list_type in properties):
    dtype = np.dtype([(name, endian + t) for name, t, _ in properties])
    data = np.frombuffer(f.read(dtype.itemsize * element.count), dtype=dtype,
                         count=element.count)
    return {name: data[name] for name, _, _ in properties}
  # Fast path for the usual faces: one list property, every list of length 3.
  lists = [name for name, _, list_type in properties if list_type is not None]
  if len(lists) == 1:
    fields = []
    for name, t, list_type in properties:
      if list_type is None:
        fields.append((name, endian + t))
      else:
        fields += [(name + "/count", endian + list_type),
                   (name, endian + t, (3,))]
    dtype = np.dtype(fields)
    start = f.tell()
    buffer = f.read(dtype.itemsize * element.count)
    if len(buffer) == dtype.itemsize * element.count:
      data = np.frombuffer(buffer, dtype=dtype, count=element.count)
      if np.all(data[lists[0] + "/count"] == 3):
        return {name: data[name] for name, _, _ in properties}
    f.seek(start)
  columns = {name: [] for name, _, _ in properties}
  for _ in range(element.count):
    for name, t, list_type in properties:
      if list_type is None:
        columns[name].append(_read_scalars(f, endian + t, 1)[0])
      else:
        n = int(_read_scalars(f, endian + list_type, 1)[0])
        columns[name].append(_read_scalars(f, endian + t, n).tolist())
  return columns


def _read_scalars(f, dtype, count):
  size = np.dtype(dtype).itemsize * count
  buffer = f.read(size)
  if len(buffer) != size:
    raise ValueError("unexpected end of file")
  return np.frombuffer(buffer, dtype)


def read_ply(path: str) -> Mesh:
  """Reads an ASCII or binary PLY mesh.

  Needs a ``vertex`` element with ``x``, ``y``, ``z``; ``red``, ``green``,
  ``blue`` give colours (integer types are divided by 255, float types kept);
  a ``face`` element with a ``vertex_indices`` (or ``vertex_index``) list
  gives the faces (fan-triangulated).  Other elements and properties are
  skipped.

  Args:
    path: the .ply file.

  Returns:
    ``(vertices, triangles, colors)`` as for :func:`read_obj`; triangles are
    empty ``[0, 3]`` for a point cloud.

  Raises:
    ValueError: naming the file for a missing file, a bad header, truncated
      data or out-of-range face indices.
  """
  path = os.fspath(path)
  try:
    f = open(path, "rb")
  except OSError as e:
    raise ValueError(f"Cannot read PLY file {path!r}: {e}") from e
  data = {}
  with f:
    fmt, elements = _ply_header(f, path)
    names = [e.name for e in elements]
    if "vertex" not in names:
      raise ValueError(f"{path!r}: PLY file has no vertex element")
    try:
      if fmt == "ascii":
        tokens = iter(f.read().decode("ascii", errors="replace").split())
        for element in elements:
          data[element.name] = _read_ascii_element(tokens, element)
      else:
        endian = "<" if fmt == "binary_little_endian" else ">"
        for element in elements:
          data[element.name] = _read_binary_element(f, element, endian)
          if element.name in ("vertex", "face") and all(
              n in data for n in ("vertex", "face") if n in names):
            break
    except (StopIteration, ValueError, IndexError) as e:
      raise ValueError(f"{path!r}: PLY data is truncated or malformed "
                       f"({e})") from e
  vertex = data["vertex"]
  if not all(axis in vertex for axis in "xyz"):
    raise ValueError(f"{path!r}: vertex element lacks x, y or z")
  vertices = np.stack([np.asarray(vertex[a], dtype=np.float64)
                       for a in "xyz"], axis=1).astype(np.float32)
  if len(vertices) != next(e.count for e in elements if e.name == "vertex"):
    raise ValueError(f"{path!r}: PLY data is truncated")
  colors = None
  if all(c in vertex for c in ("red", "green", "blue")):
    kind = next(t for n, t, _ in next(
        e for e in elements if e.name == "vertex").properties if n == "red")
    colors = np.stack([np.asarray(vertex[c], dtype=np.float64)
                       for c in ("red", "green", "blue")], axis=1)
    if np.dtype(kind).kind in "iu":
      colors = colors / 255.0
    colors = colors.astype(np.float32)
  triangles = np.zeros((0, 3), np.int32)
  face = data.get("face")
  if face is not None:
    key = next((k for k in _FACE_LISTS if k in face), None)
    if key is None:
      raise ValueError(f"{path!r}: face element has no vertex_indices list")
    lists = face[key]
    if isinstance(lists, np.ndarray):
      triangles = lists.astype(np.int64)
    else:
      triangles = np.array([t for polygon in lists
                            for t in _fan(list(polygon))],
                           np.int64).reshape(-1, 3)
    if triangles.size and (triangles.min() < 0 or
                           triangles.max() >= len(vertices)):
      raise ValueError(f"{path!r}: faces index vertices outside "
                       f"[0, {len(vertices)})")
  return vertices, triangles.astype(np.int32), colors


def read_mesh(path: str) -> Mesh:
  """Reads a .obj or .ply file by extension (see read_obj / read_ply)."""
  extension = os.path.splitext(os.fspath(path))[1].lower()
  if extension == ".obj":
    return read_obj(path)
  if extension == ".ply":
    return read_ply(path)
  raise ValueError(f"Unknown mesh file type {extension!r} of {path!r}; "
                   "expected .obj or .ply")
