r"""Evaluates a trained regressor and writes metrics, figures and a report.

  python evaluate.py --model_dir=runs/demo
  python evaluate.py --model_dir=runs/bfm --scans=/data/micc_layout \
      --identity_images=/data/identities --recognizer_weights=20180402-114759.h5

Writes ``model_dir/eval/metrics.json``, PNG figures and ``report.html``.
Each evaluation runs when its data is given; the synthetic one runs by default
(``--synthetic_faces=0`` turns it off).
"""
from absl import app
from absl import flags
from absl import logging

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", "runs/demo",
                    "A training run's folder (checkpoint + config.json, or "
                    "export/).")
flags.DEFINE_string("facenet_weights", None,
                    "FaceNet weights of the encoder (default: the run's "
                    "config, $UNSUP3DMM_FACENET_WEIGHTS, keras-facenet).")
flags.DEFINE_integer("synthetic_faces", 100,
                     "Held-out synthetic faces (0: skip this evaluation).")
flags.DEFINE_integer("synthetic_seed", 20180618,
                     "Seed of the held-out synthetic faces.")
flags.DEFINE_list("synthetic_yaw_range", ["-30", "30"],
                  "Yaw range of the synthetic renders, degrees: min,max.")
flags.DEFINE_string("scans", None,
                    "Folder of subjects with scans and photos (MICC "
                    "protocol; layout in unsup3dmm/evaluation/scans_eval.py).")
flags.DEFINE_string("identity_images", None,
                    "Folder with one sub-folder of photos per identity.")
flags.DEFINE_string("recognizer_model", "20180402-114759",
                    "FaceNet variant used as the independent recognition "
                    "network of the identity evaluation.")
flags.DEFINE_string("recognizer_weights", None,
                    "Weights of the recognition network (default: "
                    "$UNSUP3DMM_FACENET_WEIGHTS, keras-facenet's cache).")
flags.DEFINE_string("now_images", None,
                    "Folder of NoW-challenge photos: writes "
                    "model_dir/eval/now/<image>.obj and .npy.")
flags.DEFINE_string("cache_dir", None, "Face-crop cache folder.")


def build_request(flag_values):
  from unsup3dmm.evaluation import runner  # pylint: disable=import-outside-toplevel
  from unsup3dmm.evaluation import synthetic_eval  # pylint: disable=import-outside-toplevel
  try:
    yaw = tuple(float(v) for v in flag_values.synthetic_yaw_range)
  except ValueError:
    yaw = ()
  if len(yaw) != 2 or yaw[0] > yaw[1]:
    raise ValueError("--synthetic_yaw_range: expected min,max in degrees, got "
                     f"{flag_values.synthetic_yaw_range}")
  return runner.EvaluationRequest(
      model_dir=flag_values.model_dir,
      facenet_weights=flag_values.facenet_weights or "",
      synthetic=synthetic_eval.SyntheticEvalSettings(
          faces=flag_values.synthetic_faces, seed=flag_values.synthetic_seed,
          yaw_range_degrees=yaw),
      scans=flag_values.scans or "",
      identity_images=flag_values.identity_images or "",
      recognizer_model=flag_values.recognizer_model,
      recognizer_weights=flag_values.recognizer_weights or "",
      now_images=flag_values.now_images or "",
      cache_dir=flag_values.cache_dir or "")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from unsup3dmm.evaluation import runner  # pylint: disable=import-outside-toplevel
  try:
    metrics = runner.run_evaluation(build_request(FLAGS))
  except ValueError as e:
    logging.error("%s", e)
    raise SystemExit(f"evaluate.py: {e}") from None
  logging.info("Metrics: %s", metrics)


def run():
  app.run(main)


if __name__ == "__main__":
  run()
