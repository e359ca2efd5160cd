r"""Training-step speed: stage 1 with/without the feature cache, and stage 2.

  python benchmarks/train_benchmark.py [--json PATH] [--steps 10]

Prints a table with, per configuration, seconds per step, examples per second
and the share of step time spent in FaceNet (forward, and backward where the
step needs it), rendering, and the rest (decoder, losses, optimiser, data).
The shares come from timing each part alone, on the same batch shapes, inside
``tf.function``; "rest" is the step time minus the parts.

With ``--json PATH`` it writes a list of records with keys ``stage`` (1 or
2), ``feature_cache`` (bool), ``batch``, ``examples_per_second`` and
``facenet_share`` (0-1), plus ``seconds_per_step``, ``render_share`` and
``rest_share``.
"""
import argparse
import json
import os
import tempfile
import time

import tensorflow as tf

from unsup3dmm.config import Config
from unsup3dmm.model import encoder as encoder_lib
from unsup3dmm.training import trainer as trainer_lib


def _time(function, repeats):
  function()  # trace / warm up
  function()
  start = time.perf_counter()
  for _ in range(repeats):
    function()
  return (time.perf_counter() - start) / repeats


def _facenet_seconds(encoder, count, backward, repeats):
  images = tf.random.uniform([count, 160, 160, 3])

  @tf.function
  def run():
    with tf.GradientTape() as tape:
      tape.watch(images)
      features, embeddings = encoder(images)
      scalar = tf.reduce_sum(features) + tf.reduce_sum(embeddings)
    if backward:
      return tape.gradient(scalar, images)
    return scalar

  return _time(lambda: run().numpy(), repeats)


def _render_seconds(trainer, count, backward, repeats):
  faces = trainer.losses.synthetic_faces
  sample = faces.sample(count, tf.constant([1, 2], tf.int64))
  shape, texture = sample[0], sample[1]

  @tf.function
  def run():
    with tf.GradientTape() as tape:
      tape.watch([shape, texture])
      images = faces.render_sample((shape, texture) + tuple(sample[2:])).images
      scalar = tf.reduce_sum(images)
    if backward:
      return tape.gradient(scalar, [shape, texture])[0]
    return scalar

  return _time(lambda: run().numpy(), repeats)


def _step_seconds(trainer, repeats):
  return _time(trainer.run_step, repeats)


def measure(args, encoder):
  """Returns the benchmark records."""
  records = []
  cache = args.cache_dir or tempfile.mkdtemp()
  common = [f"training.cache_dir={cache}",
            f"training.real_images={args.real_images}",
            f"model.facenet_weights={encoder.weights_path}",
            "training.summary_every=1000000"]
  views = Config().losses.identity_views
  for stage, feature_cache in ((1, False), (1, True), (2, True)):
    batch = (args.stage1_bank_batch if (stage, feature_cache) == (1, True)
             else args.batch)
    cfg = Config().override(common + [
        f"training.stage1_steps={1000000 if stage == 1 else 0}",
        f"training.stage2_steps={0 if stage == 1 else 1000000}",
        f"training.batch_size={args.batch}",
        f"training.stage1_bank_batch_size={args.stage1_bank_batch}",
        f"training.synthetic_bank_size={args.bank if feature_cache else 0}",
        "training.synthetic_bank_refresh_every=0",
    ])
    with tempfile.TemporaryDirectory() as model_dir:
      trainer = trainer_lib.Trainer(cfg, model_dir, encoder=encoder)
      trainer.prepare_data()
      step = _step_seconds(trainer, args.steps)
      if stage == 1 and not feature_cache:
        facenet = _facenet_seconds(encoder, batch, False, args.steps)
        render = _render_seconds(trainer, batch, False, args.steps)
      elif stage == 1:
        facenet = render = 0.0
      else:
        renders = trainer.n_real * (views + 1)
        facenet = _facenet_seconds(encoder, renders, True, args.steps)
        render = _render_seconds(trainer, renders, True, args.steps)
    records.append({
        "stage": stage,
        "feature_cache": feature_cache,
        "batch": batch,
        "seconds_per_step": step,
        "examples_per_second": batch / step,
        "facenet_share": min(1.0, facenet / step),
        "render_share": min(1.0, render / step),
        "rest_share": max(0.0, 1.0 - (facenet + render) / step),
    })
  return records


def print_table(records):
  header = (f"{'stage':>5} {'cache':>5} {'batch':>5} {'s/step':>8} "
            f"{'examples/s':>10} {'FaceNet':>8} {'render':>7} {'rest':>6}")
  print(header)
  print("-" * len(header))
  for r in records:
    print(f"{r['stage']:>5} {str(r['feature_cache']):>5} {r['batch']:>5} "
          f"{r['seconds_per_step']:>8.3f} {r['examples_per_second']:>10.1f} "
          f"{r['facenet_share']:>8.0%} {r['render_share']:>7.0%} "
          f"{r['rest_share']:>6.0%}")
  by_key = {(r["stage"], r["feature_cache"]): r for r in records}
  ratio = (by_key[(1, True)]["examples_per_second"] /
           by_key[(1, False)]["examples_per_second"])
  print(f"\nstage 1 feature-cache speed-up: {ratio:.0f}x examples/s")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--json", help="write the records to this file")
  parser.add_argument("--steps", type=int, default=5,
                      help="timed steps per configuration")
  parser.add_argument("--batch", type=int, default=8,
                      help="global batch of streamed stage 1 and stage 2")
  parser.add_argument("--stage1_bank_batch", type=int, default=32,
                      help="batch of stage 1 from the feature bank")
  parser.add_argument("--bank", type=int, default=64,
                      help="synthetic feature bank size")
  parser.add_argument("--real_images", default="",
                      help="real photos (default: the 5-identity set)")
  parser.add_argument("--facenet_weights", default="",
                      help="FaceNet weights (default: resolution order)")
  parser.add_argument("--cache_dir", default="", help="crop/feature cache")
  args = parser.parse_args()
  path = encoder_lib.resolve_facenet_weights("20170512-110547",
                                             args.facenet_weights)
  encoder = encoder_lib.FaceNetEncoder("20170512-110547", path)
  records = measure(args, encoder)
  print_table(records)
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump(records, f, indent=2)


if __name__ == "__main__":
  main()
