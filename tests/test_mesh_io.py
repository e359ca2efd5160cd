"""Tests of OBJ / PLY writing and reading."""
import numpy as np
import pytest

from unsup3dmm.model import mesh_io


def _mesh():
  rng = np.random.default_rng(0)
  vertices = rng.uniform(-100, 100, size=(7, 3)).astype(np.float32)
  triangles = np.array([[0, 1, 2], [2, 3, 0], [4, 5, 6], [6, 1, 4]], np.int32)
  colors = rng.uniform(0, 1, size=(7, 3)).astype(np.float32)
  return vertices, triangles, colors


def test_obj_round_trip(tmp_path):
  vertices, triangles, colors = _mesh()
  path = mesh_io.write_obj(str(tmp_path / "sub" / "m.obj"), vertices,
                           triangles, colors)
  v, t, c = mesh_io.read_obj(path)
  np.testing.assert_allclose(v, vertices, atol=1e-5)
  np.testing.assert_array_equal(t, triangles)
  np.testing.assert_allclose(c, colors, atol=1e-6)
  assert v.dtype == np.float32 and t.dtype == np.int32
  with open(path) as f:
    lines = f.read().splitlines()
  assert lines[1].startswith("v ") and len(lines[1].split()) == 7
  assert lines[-1] == "f 7 2 5"
  v, t, c = mesh_io.read_mesh(mesh_io.write_obj(str(tmp_path / "p.OBJ"),
                                                vertices, triangles))
  assert c is None
  np.testing.assert_array_equal(t, triangles)


def test_ply_round_trip(tmp_path):
  vertices, triangles, colors = _mesh()
  colors[0] = [0.0, 1.0, 1.7]  # clipped to 1
  path = mesh_io.write_ply(str(tmp_path / "m.ply"), vertices, triangles,
                           colors)
  with open(path, "rb") as f:
    data = f.read()
  assert data.startswith(b"ply\nformat binary_little_endian 1.0\n")
  header_end = data.index(b"end_header\n") + len(b"end_header\n")
  assert len(data) - header_end == 7 * 15 + 4 * 13  # xyz f4 + rgb u1; u1+3 i4
  v, t, c = mesh_io.read_ply(path)
  np.testing.assert_array_equal(v, vertices)
  np.testing.assert_array_equal(t, triangles)
  np.testing.assert_allclose(c, np.clip(colors, 0, 1), atol=0.5 / 255 + 1e-7)
  np.testing.assert_array_equal(c[0], [0.0, 1.0, 1.0])
  v, t, c = mesh_io.read_mesh(mesh_io.write_ply(str(tmp_path / "n.ply"),
                                                vertices, triangles))
  assert c is None
  np.testing.assert_array_equal(v, vertices)


def test_read_ordinary_obj_with_uvs_normals_quads(tmp_path):
  path = tmp_path / "scan.obj"
  path.write_text(
      "# a scan\nmtllib scan.mtl\no head\n"
      "v 0 0 0 255 0 0\nv 1 0 0 0 255 0\nv 1 1 0 0 0 255\nv 0 1 0 255 255 255\n"
      "v 2 0 0 0 0 0\n"
      "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvn 0 0 1\n"
      "usemtl skin\ns 1\n"
      "f 1/1/1 2/2/1 3/3/1 4/4/1\n"
      "f 2//1 5//1 3//1\n"
      "f -3 -1 -2\n"
      "l 1 2\n")
  v, t, c = mesh_io.read_obj(str(path))
  assert v.shape == (5, 3)
  np.testing.assert_array_equal(t, [[0, 1, 2], [0, 2, 3], [1, 4, 2],
                                    [2, 4, 3]])
  np.testing.assert_allclose(c[1], [0, 1, 0])  # 0..255 colours scaled
  partial = tmp_path / "partial.obj"
  partial.write_text("v 0 0 0 1 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
  assert mesh_io.read_obj(str(partial))[2] is None


def test_read_ascii_ply_with_extra_properties(tmp_path):
  path = tmp_path / "scan.ply"
  path.write_text(
      "ply\nformat ascii 1.0\ncomment from a scanner\n"
      "element vertex 5\nproperty float x\nproperty float y\nproperty float z\n"
      "property float nx\nproperty uchar red\nproperty uchar green\n"
      "property uchar blue\nproperty uchar alpha\n"
      "element face 2\nproperty uchar flags\n"
      "property list uchar int vertex_indices\n"
      "element edge 1\nproperty int vertex1\nproperty int vertex2\n"
      "end_header\n"
      "0 0 0 1 255 0 0 255\n1 0 0 1 0 255 0 255\n1 1 0 1 0 0 255 255\n"
      "0 1 0 1 10 20 30 255\n2 0 0 1 0 0 0 255\n"
      "0 4 0 1 2 3\n1 3 1 4 2\n0 1\n")
  v, t, c = mesh_io.read_ply(str(path))
  np.testing.assert_array_equal(v[2], [1, 1, 0])
  np.testing.assert_array_equal(t, [[0, 1, 2], [0, 2, 3], [1, 4, 2]])
  np.testing.assert_allclose(c[3], np.array([10, 20, 30]) / 255.0, rtol=1e-6)


def test_read_big_endian_ply_with_polygons(tmp_path):
  path = tmp_path / "poly.ply"
  header = ("ply\nformat binary_big_endian 1.0\nelement vertex 5\n"
            "property double x\nproperty double y\nproperty double z\n"
            "property float red\nproperty float green\nproperty float blue\n"
            "element face 2\nproperty list uchar uint vertex_index\n"
            "end_header\n")
  vertices = np.arange(15, dtype=">f8").reshape(5, 3)
  colors = np.linspace(0, 1, 15, dtype=">f4").reshape(5, 3)
  records = np.empty(5, dtype=[("p", ">f8", (3,)), ("c", ">f4", (3,))])
  records["p"], records["c"] = vertices, colors
  faces = (np.array([4], ">u1").tobytes() + np.array([0, 1, 2, 3],
                                                      ">u4").tobytes() +
           np.array([3], ">u1").tobytes() + np.array([1, 4, 2],
                                                      ">u4").tobytes())
  path.write_bytes(header.encode() + records.tobytes() + faces)
  v, t, c = mesh_io.read_ply(str(path))
  np.testing.assert_array_equal(v, vertices.astype(np.float32))
  np.testing.assert_array_equal(t, [[0, 1, 2], [0, 2, 3], [1, 4, 2]])
  np.testing.assert_allclose(c, colors, rtol=1e-6)  # float colours kept


def test_point_cloud_ply(tmp_path):
  path = tmp_path / "points.ply"
  path.write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\n"
                  "property float y\nproperty float z\nend_header\n"
                  "1 2 3\n4 5 6\n")
  v, t, c = mesh_io.read_ply(str(path))
  assert v.shape == (2, 3) and t.shape == (0, 3) and c is None


@pytest.mark.parametrize("name,content,message", [
    ("bad.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n",
     r"bad.obj:4: face refers to vertex 4"),
    ("zero.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "index 0"),
    ("short.obj", "v 0 0\n", r"short.obj:1: expected 3, 4 or 6 numbers"),
    ("text.obj", "v a b c\n", "could not convert"),
    ("empty.obj", "# nothing\n", "has no vertices"),
    ("magic.ply", "plx\n", "not a PLY file"),
    ("header.ply", "ply\nformat ascii 1.0\nelement vertex 1\n"
     "property foo x\nend_header\n", "bad PLY header line"),
    ("truncated.ply", "ply\nformat ascii 1.0\nelement vertex 2\n"
     "property float x\nproperty float y\nproperty float z\nend_header\n"
     "1 2 3\n", "truncated"),
    ("range.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
     "property float y\nproperty float z\nelement face 1\n"
     "property list uchar int vertex_indices\nend_header\n0 0 0\n3 0 1 2\n",
     "outside"),
    ("novertex.ply", "ply\nformat ascii 1.0\nend_header\n", "no vertex"),
])
def test_read_errors_name_the_file(tmp_path, name, content, message):
  path = tmp_path / name
  path.write_text(content)
  with pytest.raises(ValueError, match=message) as error:
    mesh_io.read_mesh(str(path))
  assert name in str(error.value)


def test_truncated_binary_ply_and_bad_arguments(tmp_path):
  vertices, triangles, colors = _mesh()
  path = mesh_io.write_ply(str(tmp_path / "m.ply"), vertices, triangles,
                           colors)
  data = open(path, "rb").read()
  cut = tmp_path / "cut.ply"
  cut.write_bytes(data[:-20])
  with pytest.raises(ValueError, match="cut.ply.*truncated"):
    mesh_io.read_ply(str(cut))
  with pytest.raises(ValueError, match="Cannot read"):
    mesh_io.read_obj(str(tmp_path / "missing.obj"))
  with pytest.raises(ValueError, match="expected .obj or .ply"):
    mesh_io.read_mesh(str(tmp_path / "m.stl"))
  with pytest.raises(ValueError, match="colors must have shape"):
    mesh_io.write_obj(str(tmp_path / "x.obj"), vertices, triangles,
                      colors[:3])
  with pytest.raises(ValueError, match="outside"):
    mesh_io.write_ply(str(tmp_path / "x.ply"), vertices, triangles + 5)
