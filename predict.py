r"""Regresses a 3D face mesh for every face in photos.

  python predict.py --model_dir=runs/demo --images=photo.jpg,folder/ \
      --output_dir=predictions

Writes ``<photo stem>_face<k>.obj|.ply|.png`` per detected face; photos
without a face are reported.  Uses the run's latest checkpoint, or its
SavedModel in ``model_dir/export``.
"""
from absl import app
from absl import flags
from absl import logging

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", "runs/demo", "A training run's folder.")
flags.DEFINE_string("images", None,
                    "Comma-separated photos, folders (recursive) or .txt "
                    "file lists.")
flags.DEFINE_string("output_dir", "predictions", "Where meshes are written.")
flags.DEFINE_list("formats", ["obj", "ply", "png"],
                  "Outputs per face: obj, ply, png.")
flags.DEFINE_string("facenet_weights", None,
                    "FaceNet weights (default: the run's config, "
                    "$UNSUP3DMM_FACENET_WEIGHTS, keras-facenet).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # pylint: disable=import-outside-toplevel
  from unsup3dmm.data import real_images
  from unsup3dmm.evaluation import prediction
  from unsup3dmm.evaluation.predictor import Predictor
  try:
    if not FLAGS.images:
      raise ValueError("--images is required: photos, folders or .txt lists")
    paths = real_images.list_image_files(FLAGS.images, "--images")
    predictor = Predictor.from_model_dir(FLAGS.model_dir,
                                         FLAGS.facenet_weights)
    results = prediction.predict_photos(predictor, paths, FLAGS.output_dir,
                                        FLAGS.formats)
  except ValueError as e:
    raise SystemExit(f"predict.py: {e}") from None
  faces = sum(len(r.outputs) > 0 for r in results)
  for r in results:
    if r.message:
      print(r.message)
  logging.info("%d of %d photos had faces; outputs in %s", faces,
               len(results), FLAGS.output_dir)
  if not faces:
    raise SystemExit("predict.py: no face found in any photo")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
