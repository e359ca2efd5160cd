"""Reads ground-truth face scans: OBJ, PLY and VRML 2.0 (``.wrl``).

MICC Florence's ground-truth scans are VRML 2.0 files whose geometry is in
``IndexedFaceSet`` nodes (``coord Coordinate { point [ x y z, ... ] }`` and
``coordIndex [ a, b, c, -1, ... ]``), possibly several shapes nested in
``Transform`` nodes.  :func:`parse_vrml` reads that subset of VRML97
(ISO/IEC 14772-1) with a small tokenizer and recursive-descent parser:

* nodes ``Type { field value ... }``, ``DEF name`` / ``USE name``;
  ``PROTO``/``EXTERNPROTO`` declarations and ``ROUTE`` statements are skipped;
* grouping nodes ``Transform`` (full VRML97 transform: translation,
  rotation, scale, scaleOrientation, center), ``Group``, ``Anchor``,
  ``Billboard`` and ``Collision`` (their ``children``), ``Switch`` (the
  ``whichChoice`` child), ``LOD`` (its first, most detailed, ``level``);
* ``Shape`` nodes whose ``geometry`` is an ``IndexedFaceSet``; polygons with
  more than three corners are fan-triangulated, polygons with fewer than
  three are dropped, ``ccw FALSE`` flips the winding.  Every other node
  (lights, viewpoints, appearance, other geometry) is parsed and ignored.

Nothing here imports TensorFlow.
"""
import gzip
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np

from unsup3dmm.model import mesh_io

VRML_EXTENSIONS = (".wrl", ".vrml")
MESH_IO_EXTENSIONS = (".obj", ".ply")

# A string literal, a comment, a bracket or brace, or any other run of
# characters without whitespace/commas (commas are whitespace in VRML97).
_TOKEN_PATTERN = re.compile(
    r'"(?:[^"\\]|\\.)*"|#[^\n\r]*|[{}\[\]]|[^\s,{}\[\]"#]+')
_ATOM_START = frozenset('+-.0123456789"')
_ATOM_WORDS = frozenset(("TRUE", "FALSE", "NULL"))
_BRACKETS = frozenset("{}[]")
_GROUP_NODES = frozenset(("Transform", "Group", "Anchor", "Billboard",
                          "Collision"))


class _Node:
  """A parsed VRML node: its type and raw field values."""

  def __init__(self, node_type: str):
    self.node_type = node_type
    # Field name -> list of atom strings, a _Node, or a list of _Nodes.
    self.fields: Dict[str, object] = {}


class _Parser:
  """Recursive-descent parser over the token list of one VRML file."""

  def __init__(self, tokens: List[str], source_name: str):
    self.tokens = tokens
    self.position = 0
    self.source_name = source_name
    self.definitions: Dict[str, _Node] = {}

  def error(self, message: str) -> ValueError:
    return ValueError(f"{self.source_name}: VRML parse error near token "
                      f"{self.position}: {message}")

  def peek(self, offset: int = 0) -> Optional[str]:
    index = self.position + offset
    return self.tokens[index] if index < len(self.tokens) else None

  def take(self) -> str:
    if self.position >= len(self.tokens):
      raise self.error("unexpected end of file")
    token = self.tokens[self.position]
    self.position += 1
    return token

  def expect(self, expected: str) -> None:
    token = self.take()
    if token != expected:
      raise self.error(f"expected {expected!r}, found {token!r}")

  def skip_balanced(self, opening: str, closing: str) -> None:
    self.expect(opening)
    depth = 1
    while depth:
      token = self.take()
      if token == opening:
        depth += 1
      elif token == closing:
        depth -= 1

  def at_node(self) -> bool:
    token = self.peek()
    if token in ("DEF", "USE"):
      return True
    return (token is not None and token not in _BRACKETS and
            token[0] not in _ATOM_START and token not in _ATOM_WORDS and
            self.peek(1) == "{")

  def parse_scene(self) -> List[_Node]:
    """Top-level statements; returns the root nodes."""
    roots = []
    while self.peek() is not None:
      node = self.parse_statement()
      if node is not None:
        roots.append(node)
    return roots

  def parse_statement(self) -> Optional[_Node]:
    token = self.peek()
    if token == "PROTO":
      self.position += 2
      self.skip_balanced("[", "]")
      self.skip_balanced("{", "}")
      return None
    if token == "EXTERNPROTO":
      self.position += 2
      self.skip_balanced("[", "]")
      if self.peek() == "[":
        self.skip_balanced("[", "]")
      else:
        self.take()
      return None
    if token == "ROUTE":
      self.position += 4  # ROUTE a.b TO c.d
      return None
    if not self.at_node():
      raise self.error(f"expected a node, found {token!r}")
    return self.parse_node()

  def parse_node(self) -> _Node:
    token = self.take()
    if token == "USE":
      name = self.take()
      if name not in self.definitions:
        raise self.error(f"USE of undefined name {name!r}")
      return self.definitions[name]
    if token == "DEF":
      name = self.take()
      node = self.parse_node()
      self.definitions[name] = node
      return node
    node = _Node(token)
    self.expect("{")
    while self.peek() != "}":
      field = self.take()
      if field in ("PROTO", "EXTERNPROTO", "ROUTE"):
        self.position -= 1
        self.parse_statement()
      elif field in ("eventIn", "eventOut"):
        self.position += 2  # Script interface: type name.
      elif field in ("field", "exposedField"):
        self.position += 1  # Script interface: type, then name value.
        node.fields[self.take()] = self.parse_value()
      elif field in _BRACKETS:
        raise self.error(f"expected a field name in {node.node_type}, found "
                         f"{field!r}")
      else:
        node.fields[field] = self.parse_value()
    self.expect("}")
    return node

  def parse_value(self):
    token = self.peek()
    if token == "[":
      self.position += 1
      if self.peek() == "]" or (not self.at_node() and
                                self.peek() != "ROUTE"):
        # Multi-valued atoms (numbers, strings): one slice up to the "]".
        try:
          end = self.tokens.index("]", self.position)
        except ValueError as e:
          raise self.error("unterminated '['") from e
        atoms = self.tokens[self.position:end]
        if "{" in atoms or "[" in atoms or "}" in atoms:
          raise self.error("a '[' list mixes values and nodes")
        self.position = end + 1
        return atoms
      nodes = []
      while self.peek() != "]":
        if self.peek() is None:
          raise self.error("unterminated '['")
        node = self.parse_statement()
        if node is not None:
          nodes.append(node)
      self.position += 1
      return nodes
    if self.at_node():
      return self.parse_node()
    atoms = []
    while True:
      token = self.peek()
      if token is None or token in _BRACKETS or not (
          token[0] in _ATOM_START or token in _ATOM_WORDS):
        break
      atoms.append(token)
      self.position += 1
    if not atoms:
      raise self.error(f"expected a field value, found {token!r}")
    return atoms


def _tokenize(text: str) -> List[str]:
  return [token for token in _TOKEN_PATTERN.findall(text)
          if token[0] != "#"]


def _numbers(parser: _Parser, node: _Node, field: str, default,
             dtype=np.float64) -> np.ndarray:
  value = node.fields.get(field)
  if value is None:
    return np.asarray(default, dtype=dtype)
  if not isinstance(value, list) or (value and not isinstance(value[0], str)):
    raise parser.error(f"{node.node_type}.{field} must hold numbers")
  try:
    return np.array(value, dtype=dtype)
  except ValueError as e:
    raise parser.error(f"{node.node_type}.{field} holds a non-number") from e


def _rotation_matrix(axis_angle: np.ndarray) -> np.ndarray:
  """4x4 homogeneous rotation from VRML's (x, y, z, angle_radians)."""
  axis, angle = axis_angle[:3], float(axis_angle[3])
  matrix = np.eye(4)
  length = np.linalg.norm(axis)
  if length == 0 or angle == 0:
    return matrix
  x, y, z = axis / length
  cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
  matrix[:3, :3] = (np.eye(3) + np.sin(angle) * cross +
                    (1 - np.cos(angle)) * cross @ cross)
  return matrix


def _transform_matrix(parser: _Parser, node: _Node) -> np.ndarray:
  """VRML97 Transform: T * C * R * SR * S * -SR * -C (spec 6.52)."""
  def vector(field, default, size):
    value = _numbers(parser, node, field, default)
    if value.shape != (size,):
      raise parser.error(f"Transform.{field} needs {size} numbers; got "
                         f"{value.size}")
    return value

  def translation(offset):
    matrix = np.eye(4)
    matrix[:3, 3] = offset
    return matrix

  center = vector("center", [0, 0, 0], 3)
  scale_orientation = _rotation_matrix(
      vector("scaleOrientation", [0, 0, 1, 0], 4))
  scale = np.diag(np.append(vector("scale", [1, 1, 1], 3), 1.0))
  return (translation(vector("translation", [0, 0, 0], 3)) @
          translation(center) @
          _rotation_matrix(vector("rotation", [0, 0, 1, 0], 4)) @
          scale_orientation @ scale @ scale_orientation.T @
          translation(-center))


def _triangulate(parser: _Parser, indices: np.ndarray, vertex_count: int,
                 counter_clockwise: bool) -> np.ndarray:
  """Fan-triangulates -1-separated polygons; int64 [triangle_count, 3]."""
  if indices.size and (indices.max() >= vertex_count or indices.min() < -1):
    raise parser.error(f"IndexedFaceSet.coordIndex refers to vertices outside "
                       f"[0, {vertex_count})")
  if indices.size % 4 == 0 and np.all(indices[3::4] == -1) and np.all(
      indices.reshape(-1, 4)[:, :3] >= 0):
    triangles = indices.reshape(-1, 4)[:, :3]
  else:
    ends = np.flatnonzero(indices == -1)
    starts = np.concatenate([[0], ends + 1])
    ends = np.append(ends, indices.size)
    fans = []
    for start, end in zip(starts, ends):
      polygon = indices[start:end]
      if polygon.size >= 3:
        fans.append(np.stack([np.full(polygon.size - 2, polygon[0]),
                              polygon[1:-1], polygon[2:]], axis=1))
    triangles = (np.concatenate(fans) if fans else
                 np.zeros((0, 3), dtype=np.int64))
  triangles = triangles.astype(np.int64)
  return triangles if counter_clockwise else triangles[:, ::-1]


class _MeshBuilder:
  """Collects the transformed geometry of every IndexedFaceSet."""

  def __init__(self, parser: _Parser):
    self.parser = parser
    self.vertices: List[np.ndarray] = []
    self.triangles: List[np.ndarray] = []
    self.vertex_count = 0

  def visit_all(self, nodes, matrix: np.ndarray) -> None:
    if isinstance(nodes, _Node):
      nodes = [nodes]
    if not isinstance(nodes, list):
      return
    for node in nodes:
      if isinstance(node, _Node):
        self.visit(node, matrix)

  def visit(self, node: _Node, matrix: np.ndarray) -> None:
    if node.node_type == "Transform":
      matrix = matrix @ _transform_matrix(self.parser, node)
    if node.node_type in _GROUP_NODES:
      self.visit_all(node.fields.get("children", []), matrix)
    elif node.node_type == "Switch":
      choice = int(_numbers(self.parser, node, "whichChoice", [-1]).ravel()[0])
      choices = node.fields.get("choice", [])
      if isinstance(choices, _Node):
        choices = [choices]
      if 0 <= choice < len(choices):
        self.visit(choices[choice], matrix)
    elif node.node_type == "LOD":
      levels = node.fields.get("level", [])
      if isinstance(levels, _Node):
        levels = [levels]
      if levels:
        self.visit(levels[0], matrix)
    elif node.node_type == "Shape":
      geometry = node.fields.get("geometry")
      if isinstance(geometry, _Node) and (
          geometry.node_type == "IndexedFaceSet"):
        self.add_face_set(geometry, matrix)

  def add_face_set(self, face_set: _Node, matrix: np.ndarray) -> None:
    coordinate = face_set.fields.get("coord")
    if not isinstance(coordinate, _Node):
      return
    points = _numbers(self.parser, coordinate, "point", np.zeros(0))
    if points.size % 3:
      raise self.parser.error(f"Coordinate.point holds {points.size} numbers, "
                              "not a multiple of 3")
    points = points.reshape(-1, 3)
    if points.shape[0] == 0:
      return
    indices = _numbers(self.parser, face_set, "coordIndex", np.zeros(0),
                       dtype=np.int64)
    counter_clockwise = face_set.fields.get("ccw", ["TRUE"]) != ["FALSE"]
    triangles = _triangulate(self.parser, indices, points.shape[0],
                             counter_clockwise)
    self.vertices.append(points @ matrix[:3, :3].T + matrix[:3, 3])
    self.triangles.append(triangles + self.vertex_count)
    self.vertex_count += points.shape[0]


def parse_vrml(text: str, source_name: str = "<string>"
               ) -> Tuple[np.ndarray, np.ndarray]:
  """Triangle mesh of every IndexedFaceSet in a VRML 2.0 document.

  See the module docstring for the supported subset.  Shapes are
  concatenated in document order, each in world coordinates (all enclosing
  Transforms applied).

  Args:
    text: the file's contents, starting with the ``#VRML V2.0`` header.
    source_name: file name used in error messages.

  Returns:
    ``(vertices float64 [vertex_count, 3], triangles int64
    [triangle_count, 3])``, 0-based ids, in the file's unit (mm for MICC).

  Raises:
    ValueError: naming `source_name`, when the header is missing (or VRML
      1.0), the syntax is outside the subset, or no vertices are found.
  """
  header = text.lstrip("\ufeff").lstrip()
  if not header.startswith("#VRML V2.0"):
    raise ValueError(f"{source_name}: not a VRML 2.0 file (expected a first "
                     f"line '#VRML V2.0 utf8', found {header[:30]!r})")
  parser = _Parser(_tokenize(text), source_name)
  roots = parser.parse_scene()
  builder = _MeshBuilder(parser)
  builder.visit_all(roots, np.eye(4))
  if not builder.vertices:
    raise ValueError(f"{source_name}: no IndexedFaceSet with vertices found")
  vertices = np.concatenate(builder.vertices)
  if not np.all(np.isfinite(vertices)):
    raise ValueError(f"{source_name}: vertices contain NaN or infinite values")
  return vertices, np.concatenate(builder.triangles)


def read_vrml(path: str) -> Tuple[np.ndarray, np.ndarray]:
  """Reads a VRML 2.0 file, plain or gzip-compressed; see :func:`parse_vrml`."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise ValueError(f"{path}: cannot read the scan ({e.strerror})") from e
  if data[:2] == b"\x1f\x8b":
    try:
      data = gzip.decompress(data)
    except (OSError, EOFError) as e:
      raise ValueError(f"{path}: corrupt gzip-compressed VRML file") from e
  return parse_vrml(data.decode("utf-8", errors="replace"), source_name=path)


def read_scan(path: str) -> Tuple[np.ndarray, np.ndarray]:
  """Reads a scan as a triangle mesh, dispatching on the file extension.

  ``.obj`` and ``.ply`` go through :mod:`unsup3dmm.model.mesh_io` (colours
  are dropped; see there for the supported variants), ``.wrl`` / ``.vrml``
  through :func:`read_vrml`.

  Args:
    path: scan file (case-insensitive extension).

  Returns:
    ``(vertices float64 [vertex_count, 3], triangles int64
    [triangle_count, 3])``, 0-based ids, in the file's unit (mm for MICC).

  Raises:
    ValueError: naming the file, for an unsupported extension or a file that
      is missing, cannot be parsed or holds invalid geometry.
  """
  extension = os.path.splitext(path)[1].lower()
  if extension in VRML_EXTENSIONS:
    vertices, triangles = read_vrml(path)
  elif extension in MESH_IO_EXTENSIONS:
    reader = mesh_io.read_obj if extension == ".obj" else mesh_io.read_ply
    vertices, triangles = reader(path)[:2]
  else:
    supported = ", ".join(MESH_IO_EXTENSIONS + VRML_EXTENSIONS)
    raise ValueError(f"{path}: unsupported scan extension {extension!r}; "
                     f"expected one of {supported}")
  vertices = np.asarray(vertices, dtype=np.float64)
  triangles = np.asarray(triangles)
  if vertices.ndim != 2 or vertices.shape[1] != 3 or vertices.shape[0] == 0:
    raise ValueError(f"{path}: expected vertices of shape [vertex_count, 3]; "
                     f"got {vertices.shape}")
  if triangles.size == 0:
    triangles = np.zeros((0, 3), dtype=np.int64)
  if (triangles.ndim != 2 or triangles.shape[1] != 3 or
      not np.issubdtype(triangles.dtype, np.integer)):
    raise ValueError(f"{path}: expected integer triangles of shape "
                     f"[triangle_count, 3]; got {triangles.shape}, dtype "
                     f"{triangles.dtype}")
  triangles = triangles.astype(np.int64)
  if triangles.size and (triangles.min() < 0 or
                         triangles.max() >= vertices.shape[0]):
    raise ValueError(f"{path}: triangles refer to vertices outside "
                     f"[0, {vertices.shape[0]})")
  return vertices, triangles
