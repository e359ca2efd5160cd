r"""Trains a 3DMM regressor without 3D labels (Genova et al., CVPR 2018).

With no flags this is the demo run: the built-in demo morphable model, the
FaceNet weights found as described in ``unsup3dmm.model.encoder``, and the
5-identity photo set for stage 2, small enough for a laptop CPU::

  python train.py

A longer run on your own Basel Face Model 2017 file and photos::

  python train.py --model_dir=runs/bfm --morphable_model=model2017-1_bfm_nomouth.h5 \
      --real_images=/data/faces --stage1_steps=200000 --stage2_steps=200000

Every hyperparameter lives in ``unsup3dmm.config.Config``; the flags below
override its fields (``--set section.field=value`` reaches any field) and the
resolved config is written to ``model_dir/config.json``.  Rerunning the same
command resumes from the last checkpoint in ``model_dir``.
"""
from absl import app
from absl import flags
from absl import logging

from unsup3dmm import config as config_lib

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", "runs/demo",
                    "Folder for checkpoints, summaries, config and export.")
flags.DEFINE_string("config", None,
                    "A config.json to start from (e.g. a previous run's).")
flags.DEFINE_multi_string(
    "set", [], "Override any config field: --set section.field=value "
    "(value parsed as JSON when possible). Applied after the other flags.")
flags.DEFINE_bool("export_only", False,
                  "Only export the latest checkpoint as a SavedModel.")

# Flags that override one config field each: flag name -> (section, field).
# Their defaults are None, meaning "keep the config's value".
_FIELD_FLAGS = {
    "morphable_model": ("model", "morphable_model"),
    "shape_components": ("model", "shape_components"),
    "texture_components": ("model", "texture_components"),
    "facenet_model": ("model", "facenet_model"),
    "facenet_weights": ("model", "facenet_weights"),
    "real_images": ("training", "real_images"),
    "real_images_are_crops": ("training", "real_images_are_crops"),
    "stage1_steps": ("training", "stage1_steps"),
    "stage2_steps": ("training", "stage2_steps"),
    "batch_size": ("training", "batch_size"),
    "real_fraction": ("training", "real_fraction"),
    "learning_rate": ("training", "learning_rate"),
    "seed": ("training", "seed"),
    "strategy": ("training", "strategy"),
    "checkpoint_every": ("training", "checkpoint_every"),
    "feature_cache": ("training", "feature_cache"),
    "synthetic_bank_size": ("training", "synthetic_bank_size"),
    "cache_dir": ("training", "cache_dir"),
    "shape_parameter_weight": ("losses", "shape_parameter_weight"),
    "texture_parameter_weight": ("losses", "texture_parameter_weight"),
    "identity_weight": ("losses", "identity_weight"),
    "identity_views": ("losses", "identity_views"),
    "batch_distribution_weight": ("losses", "batch_distribution_weight"),
    "loopback_weight": ("losses", "loopback_weight"),
    "renderer_backend": ("renderer", "backend"),
    "fov_y_degrees": ("renderer", "fov_y_degrees"),
    "supersampling": ("renderer", "supersampling"),
}

flags.DEFINE_string("morphable_model", None,
                    "BFM-2017-layout .h5 file, or 'demo' for the built-in "
                    "demo model.")
flags.DEFINE_integer("shape_components", None,
                     "Keep only the first k shape components.")
flags.DEFINE_integer("texture_components", None,
                     "Keep only the first k colour components.")
flags.DEFINE_string("facenet_model", None,
                    "FaceNet variant: 20170512-110547 (128-D), "
                    "20180402-114759 or 20180408-102900 (512-D).")
flags.DEFINE_string("facenet_weights", None,
                    "FaceNet weights .h5 (else $UNSUP3DMM_FACENET_WEIGHTS, "
                    "then keras-facenet's cache/download).")
flags.DEFINE_string("real_images", None,
                    "Comma-separated folders (searched recursively) or .txt "
                    "file lists of real photos; empty: the 5-identity set.")
flags.DEFINE_bool("real_images_are_crops", None,
                  "The real images are already FaceNet-style face crops.")
flags.DEFINE_integer("stage1_steps", None, "Synthetic-only steps.")
flags.DEFINE_integer("stage2_steps", None, "Hybrid-batch steps.")
flags.DEFINE_integer("batch_size", None, "Global batch size.")
flags.DEFINE_float("real_fraction", None,
                   "Share of real photos in stage-2 batches.")
flags.DEFINE_float("learning_rate", None, "Adam learning rate.")
flags.DEFINE_integer("seed", None, "Root random seed.")
flags.DEFINE_enum("strategy", None, ["default", "mirrored", "multi_worker"],
                  "tf.distribute strategy (multi_worker reads TF_CONFIG).")
flags.DEFINE_integer("checkpoint_every", None, "Steps between checkpoints.")
flags.DEFINE_bool("feature_cache", None,
                  "Encode real photos once and reuse the features.")
flags.DEFINE_integer("synthetic_bank_size", None,
                     "Pre-rendered synthetic faces for stage 1 (0: stream).")
flags.DEFINE_string("cache_dir", None,
                    "Downloads/crops/feature caches (default "
                    "$UNSUP3DMM_CACHE or ~/.cache/unsup3dmm).")
flags.DEFINE_float("shape_parameter_weight", None, "lambda_s.")
flags.DEFINE_float("texture_parameter_weight", None, "lambda_t.")
flags.DEFINE_float("identity_weight", None, "Identity loss weight.")
flags.DEFINE_integer("identity_views", None,
                     "Random views per photo for the identity loss.")
flags.DEFINE_float("batch_distribution_weight", None,
                   "Batch-distribution loss weight.")
flags.DEFINE_float("loopback_weight", None, "Loopback loss weight.")
flags.DEFINE_enum("renderer_backend", None, ["auto", "op", "tf"],
                  "Visibility backend.")
flags.DEFINE_float("fov_y_degrees", None, "Camera vertical field of view.")
flags.DEFINE_integer("supersampling", None,
                     "Renderer supersampling factor per axis.")


def build_config(flag_values) -> config_lib.Config:
  """Config defaults <- --config file <- field flags <- --set."""
  if flag_values.config:
    cfg = config_lib.Config.load(flag_values.config)
  else:
    cfg = config_lib.Config()
  values = cfg.to_dict()
  for flag_name, (section, field) in _FIELD_FLAGS.items():
    value = flag_values[flag_name].value
    if value is not None:
      values[section][field] = value
  cfg = config_lib.Config.from_dict(values, source="flags")
  return cfg.override(flag_values.set, source="--set")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from unsup3dmm.training import trainer  # pylint: disable=import-outside-toplevel
  try:
    cfg = build_config(FLAGS)
    if FLAGS.export_only:
      path = trainer.export_only(cfg, FLAGS.model_dir)
      logging.info("Exported %s", path)
      return
    trainer.train(cfg, FLAGS.model_dir)
  except (ValueError, trainer.TrainingError) as e:
    logging.error("%s", e)
    raise SystemExit(f"train.py: {e}") from None


def run():
  app.run(main)


if __name__ == "__main__":
  run()
