"""Tests of the one config object: overrides, validation, JSON round trip."""
import json

import pytest

from unsup3dmm.config import Config


def test_defaults_carry_paper_loss_weights():
  cfg = Config()
  assert cfg.losses.shape_parameter_weight == 0.4
  assert cfg.losses.texture_parameter_weight == 0.002
  assert cfg.losses.batch_distribution_weight == 10.0
  assert cfg.losses.loopback_weight == 0.07
  assert cfg.losses.identity_views == 3
  assert cfg.model.decoder_units == 1024


def test_override_parses_json_values_and_leaves_original():
  cfg = Config()
  changed = cfg.override([
      "training.learning_rate=0.5", "renderer.image_size=[96, 128]",
      "model.morphable_model=some/file.h5", "training.feature_cache=false"
  ])
  assert changed.training.learning_rate == 0.5
  assert changed.renderer.image_size == (96, 128)
  assert changed.model.morphable_model == "some/file.h5"
  assert changed.training.feature_cache is False
  assert cfg.training.learning_rate != 0.5


@pytest.mark.parametrize("assignment, message", [
    ("training.nope=1", "unknown config field 'training.nope'"),
    ("nosection.x=1", "unknown config field 'nosection.x'"),
    ("learning_rate=1", "expected 'section.field=value'"),
    ("training.batch_size=2.5", "expected an integer"),
    ("training.learning_rate=fast", "expected a number"),
    ("renderer.image_size=[1, 2, 3]", "expected 2 values"),
    ("training.feature_cache=1", "expected true or false"),
])
def test_override_errors_name_the_field(assignment, message):
  with pytest.raises(ValueError, match="--set") as info:
    Config().override([assignment])
  assert message in str(info.value)


def test_save_and_load_round_trip(tmp_path):
  cfg = Config().override(["training.seed=7", "losses.identity_weight=2.5"])
  path = cfg.save(str(tmp_path))
  assert path.endswith("config.json")
  assert json.load(open(path))["training"]["seed"] == 7
  assert Config.load(str(tmp_path)) == cfg
  assert Config.load(path) == cfg


def test_load_rejects_unknown_fields_and_bad_json(tmp_path):
  (tmp_path / "config.json").write_text('{"training": {"sed": 1}}')
  with pytest.raises(ValueError, match="unknown field 'sed'"):
    Config.load(str(tmp_path))
  (tmp_path / "config.json").write_text("{not json")
  with pytest.raises(ValueError, match="Cannot read config file"):
    Config.load(str(tmp_path))
