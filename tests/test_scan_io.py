"""Tests of evaluation/scan_io.py (VRML, dispatch) and now_export.py."""
import gzip
import math

import numpy as np
import pytest

from unsup3dmm.evaluation import now_export
from unsup3dmm.evaluation import scan_io
from unsup3dmm.model import landmarks as landmarks_lib
from unsup3dmm.model import mesh_io

SCENE = """#VRML V2.0 utf8
# A comment with { braces } and [ brackets ] and "quotes
WorldInfo { title "scan #1, {raw}" info [ "a", "b" ] }
Viewpoint { position 0 0 10 description "front" }
DEF ROOT Transform {
  translation 10 0 0
  children [
    Transform {
      rotation 0 0 1 1.5707963267948966
      scale 2 2 2
      children Shape {
        appearance Appearance { material Material { diffuseColor 1 0 0 } }
        geometry IndexedFaceSet {
          solid FALSE
          coord DEF QUAD Coordinate { point [ 0 0 0, 1 0 0, 1 1 0, 0 1 0, ] }
          coordIndex [ 0, 1, 2, 3, -1 ]
        }
      }
    }
  ]
}
Shape {
  geometry IndexedFaceSet {
    ccw FALSE
    coord Coordinate { point [ 0 0 5 1 0 5 0 1 5 1 1 5 ] }
    coordIndex [ 0 1 2 -1 1 3 2 ]  # The last polygon lacks its -1.
  }
}
Transform {
  center 1 0 0
  rotation 0 0 1 3.141592653589793
  children [
    Shape { geometry IndexedFaceSet { coord USE QUAD coordIndex [ 0 1 2 -1 ] } }
    Shape { geometry Sphere { radius 3 } }
  ]
}
ROUTE ROOT.translation_changed TO ROOT.set_translation
"""

EXPECTED_VERTICES = np.array([
    # QUAD scaled by 2, turned 90 degrees about z, moved by +10 in x.
    [10, 0, 0], [10, 2, 0], [8, 2, 0], [8, 0, 0],
    # Untransformed second shape.
    [0, 0, 5], [1, 0, 5], [0, 1, 5], [1, 1, 5],
    # QUAD turned 180 degrees about z around the centre (1, 0, 0).
    [2, 0, 0], [1, 0, 0], [1, -1, 0], [2, -1, 0],
], dtype=np.float64)
EXPECTED_TRIANGLES = np.array([
    [0, 1, 2], [0, 2, 3],  # The quad, fan-triangulated.
    [6, 5, 4], [6, 7, 5],  # ccw FALSE: winding reversed.
    [8, 9, 10],
])


def test_parse_vrml_hand_written_scene():
  vertices, triangles = scan_io.parse_vrml(SCENE)
  assert vertices.dtype == np.float64 and triangles.dtype == np.int64
  np.testing.assert_allclose(vertices, EXPECTED_VERTICES, atol=1e-12)
  np.testing.assert_array_equal(triangles, EXPECTED_TRIANGLES)


def test_parse_vrml_scale_orientation_group_switch_and_pentagon():
  text = """#VRML V2.0 utf8
  Group { children [
    Switch { whichChoice 1 choice [
      Shape { geometry IndexedFaceSet {
        coord Coordinate { point [ 9 9 9, 9 9 8, 9 8 9 ] } coordIndex [ 0 1 2 ]
      } }
      Transform {
        scale 2 1 1
        scaleOrientation 0 0 1 1.5707963267948966
        children Shape { geometry IndexedFaceSet {
          coord Coordinate { point [ 0 1 0, 1 0 0, 0 0 1, 1 1 1, 2 2 2 ] }
          coordIndex [ 0 1 2 3 4 -1 0 1 -1 ]
        } }
      }
    ] }
  ] }
  """
  vertices, triangles = scan_io.parse_vrml(text)
  # Scaling x by 2 in a frame turned 90 degrees about z scales world y.
  np.testing.assert_allclose(
      vertices, [[0, 2, 0], [1, 0, 0], [0, 0, 1], [1, 2, 1], [2, 4, 2]],
      atol=1e-12)
  # Pentagon -> 3 fan triangles; the 2-corner polygon is dropped.
  np.testing.assert_array_equal(triangles, [[0, 1, 2], [0, 2, 3], [0, 3, 4]])


@pytest.mark.parametrize("text, message", [
    ("Shape {}", "not a VRML 2.0 file"),
    ("#VRML V1.0 ascii\nSeparator { }", "not a VRML 2.0 file"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate {"
     " point [ 0 0 0 ] }", "unexpected end of file"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate {"
     " point [ 0 0 0, 1 0 0, 0 1 0 ] } coordIndex [ 0 1 3 ] } }",
     r"outside \[0, 3\)"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate {"
     " point [ 0 0 0, 1 0 ] } } }", "not a multiple of 3"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate {"
     " point [ 0 0 zero ] } } }", "non-number"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord USE NOPE } }",
     "undefined name 'NOPE'"),
    ("#VRML V2.0 utf8\nShape { geometry Box { size 1 1 1 } }",
     "no IndexedFaceSet"),
    ("#VRML V2.0 utf8\nTransform { translation 1 2 children [] }",
     "Transform.translation needs 3 numbers"),
])
def test_parse_vrml_errors_name_the_source(text, message):
  with pytest.raises(ValueError, match=message) as error:
    scan_io.parse_vrml(text, source_name="subject_01.wrl")
  assert "subject_01.wrl" in str(error.value)


def test_read_scan_vrml_plain_and_gzip(tmp_path):
  plain = tmp_path / "scan.wrl"
  plain.write_text(SCENE)
  compressed = tmp_path / "scan_gz.WRL"
  compressed.write_bytes(gzip.compress(SCENE.encode()))
  for path in (plain, compressed):
    vertices, triangles = scan_io.read_scan(str(path))
    np.testing.assert_allclose(vertices, EXPECTED_VERTICES, atol=1e-12)
    np.testing.assert_array_equal(triangles, EXPECTED_TRIANGLES)


def test_read_scan_errors_name_the_file(tmp_path):
  unknown = tmp_path / "scan.stl"
  unknown.write_text("solid x\nendsolid x\n")
  with pytest.raises(ValueError, match=r"scan\.stl: unsupported scan "
                     r"extension '\.stl'"):
    scan_io.read_scan(str(unknown))
  broken = tmp_path / "broken.wrl"
  broken.write_text("#VRML V2.0 utf8\nShape { geometry [ }")
  with pytest.raises(ValueError, match=r"broken\.wrl"):
    scan_io.read_scan(str(broken))
  for name in ("missing.wrl", "missing.obj", "missing.ply"):
    with pytest.raises(ValueError, match="missing"):
      scan_io.read_scan(str(tmp_path / name))


@pytest.mark.parametrize("extension", [".obj", ".ply"])
def test_read_scan_obj_and_ply_through_mesh_io(tmp_path, extension):
  vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0.5]])
  triangles = np.array([[0, 1, 2], [1, 3, 2]])
  path = str(tmp_path / ("mesh" + extension))
  writer = mesh_io.write_obj if extension == ".obj" else mesh_io.write_ply
  writer(path, vertices, triangles)
  read_vertices, read_triangles = scan_io.read_scan(path)
  assert read_vertices.dtype == np.float64
  assert read_triangles.dtype == np.int64
  np.testing.assert_allclose(read_vertices, vertices, atol=1e-6)
  np.testing.assert_array_equal(read_triangles, triangles)


# ------------------------------- NoW export --------------------------------


def now_test_mesh():
  """A mesh whose vertex k sits at (k, 2k, 3k) mm, with iBUG ids."""
  vertex_count = 80
  vertices = np.arange(vertex_count, dtype=np.float64)[:, None] * [1, 2, 3]
  triangles = np.array([[0, 1, 2], [2, 3, 4]])
  landmark_ids = np.full(68, landmarks_lib.UNDEFINED, dtype=np.int32)
  # iBUG index i -> vertex i + 10, for the points the test defines.
  for index in (30, 33, 36, 39, 42, 45, 48, 54, 8):
    landmark_ids[index] = index + 10
  return vertices, triangles, landmark_ids


def test_now_landmark_order_follows_now_evaluation():
  # Order of scan2mesh_computations.compute_mask / DECA's export.
  assert now_export.NOW_LANDMARKS_IBUG68 == (36, 39, 42, 45, 33, 48, 54)


def test_export_now_writes_mesh_and_landmarks(tmp_path):
  vertices, triangles, landmark_ids = now_test_mesh()
  obj_path, npy_path = now_export.export_now(
      str(tmp_path), "FaMoS_180424_03335_TA/multiview_neutral/IMG_0101.jpg",
      vertices, triangles, landmark_ids)
  folder = tmp_path / "FaMoS_180424_03335_TA" / "multiview_neutral"
  assert obj_path == str(folder / "IMG_0101.obj")
  assert npy_path == str(folder / "IMG_0101.npy")
  points = np.load(npy_path)
  assert points.shape == (7, 3) and points.dtype == np.float64
  expected_ids = np.array([36, 39, 42, 45, 33, 48, 54]) + 10
  np.testing.assert_array_equal(points, expected_ids[:, None] * [1, 2, 3])
  read_vertices, read_triangles = mesh_io.read_obj(obj_path)[:2]
  np.testing.assert_allclose(read_vertices, vertices, atol=1e-6)
  np.testing.assert_array_equal(read_triangles, triangles)


def test_export_now_rejects_undefined_landmarks_and_bad_names(tmp_path):
  vertices, triangles, landmark_ids = now_test_mesh()
  landmark_ids[33] = landmarks_lib.UNDEFINED
  with pytest.raises(ValueError, match=r"nose_bottom \(iBUG-68 index 33\)"):
    now_export.export_now(str(tmp_path), "a.jpg", vertices, triangles,
                          landmark_ids)
  _, _, landmark_ids = now_test_mesh()
  for name in ("../outside.jpg", "/abs/path.jpg", ""):
    with pytest.raises(ValueError, match="image_name must be"):
      now_export.export_now(str(tmp_path), name, vertices, triangles,
                            landmark_ids)
  with pytest.raises(ValueError, match="landmark_ids_ibug68"):
    now_export.export_now(str(tmp_path), "a.jpg", vertices, triangles,
                          landmark_ids[:7])
  assert not list(tmp_path.iterdir())


def test_scan_io_rotation_matrix_matches_right_hand_rule():
  """+90 degrees about z takes +x to +y (VRML rotations are right-handed)."""
  vertices, _ = scan_io.parse_vrml(
      "#VRML V2.0 utf8\nTransform { rotation 0 0 2 %r children Shape { "
      "geometry IndexedFaceSet { coord Coordinate { point [ 1 0 0 ] } } } }" %
      (math.pi / 2))
  np.testing.assert_allclose(vertices, [[0.0, 1.0, 0.0]], atol=1e-12)
