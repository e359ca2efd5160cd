"""The two-stage trainer (Genova et al., CVPR 2018, Sec. 4).

Stage 1 trains the decoder on synthetic faces only (parameter loss); stage 2
on hybrid batches: real photos (identity, batch-distribution and loopback
losses) and synthetic faces (parameter loss).  :func:`train` is the library
entry point of ``train.py``.

Bookkeeping, all in ``model_dir``:

* ``config.json``: the resolved :class:`unsup3dmm.config.Config`, written at
  start;
* ``ckpt-*``: ``tf.train.CheckpointManager`` checkpoints of the decoder, the
  optimiser, the step, the stage, the random generator and the synthetic
  feature bank; rerunning the same command resumes from the latest one;
* ``train/``: TensorBoard summaries (every loss term, learning rate, gradient
  norm, coefficient statistics, steps/s, image grids, meshes, the config);
* ``export/``: the SavedModel (``unsup3dmm.training.export``).

A non-finite loss stops the run with :class:`NonFiniteLossError`; nothing is
written after it, so the last checkpoint on disk is the last good state.
"""
import dataclasses
import math
import os
import time
from typing import Dict, Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from unsup3dmm import config as config_lib
from unsup3dmm.data import pipeline
from unsup3dmm.model import encoder as encoder_lib
from unsup3dmm.model import morphable_model as morphable_model_lib
from unsup3dmm.model import regressor as regressor_lib
from unsup3dmm.training import distribute
from unsup3dmm.training import export as export_lib
from unsup3dmm.training import real_data
from unsup3dmm.training import steps as steps_lib
from unsup3dmm.training import summaries
from unsup3dmm.training import synthetic

SUMMARY_SUBDIR = "train"


class TrainingError(Exception):
  """A run cannot continue; the message says why and what was kept."""


class NonFiniteLossError(TrainingError):
  """The loss became NaN or infinite."""


@dataclasses.dataclass
class StepResult:
  """Host-side values of one step (numpy scalars)."""
  step: int
  stage: int
  total: float
  terms: Dict[str, float]
  gradient_norm: float
  coefficient_stats: Dict[str, float]


def _check_config(cfg: config_lib.Config, replicas: int):
  t = cfg.training
  for name in ("stage1_steps", "stage2_steps", "checkpoint_every",
               "summary_every", "image_summary_every", "mesh_summary_every",
               "synthetic_bank_size", "synthetic_bank_refresh_every"):
    value = getattr(t, name)
    minimum = 1 if name in ("checkpoint_every", "summary_every",
                            "image_summary_every",
                            "mesh_summary_every") else 0
    if value < minimum:
      raise ValueError(f"--{name}: expected an integer >= {minimum}, got "
                       f"{value}")
  if t.batch_size < 1:
    raise ValueError(f"--batch_size: expected >= 1, got {t.batch_size}")
  if not 0.0 <= t.real_fraction <= 1.0:
    raise ValueError(f"--real_fraction: expected a value in [0, 1], got "
                     f"{t.real_fraction}")
  if not t.learning_rate > 0:
    raise ValueError(f"--learning_rate: expected > 0, got {t.learning_rate}")
  n_real, n_synthetic = split_batch(t.batch_size, t.real_fraction)
  for name, value in (("batch_size", t.batch_size),
                      ("stage1_bank_batch_size", t.stage1_bank_batch_size)):
    if value % replicas:
      raise ValueError(f"--{name}={value} must be divisible by the {replicas} "
                       "replicas of the strategy")
  if t.stage2_steps:
    if n_real < 2:
      raise ValueError(
          f"--batch_size={t.batch_size} with --real_fraction="
          f"{t.real_fraction} gives {n_real} real photos per batch; the "
          "batch-distribution loss needs at least 2")
    if n_real % replicas or n_synthetic % replicas:
      raise ValueError(
          f"the real ({n_real}) and synthetic ({n_synthetic}) parts of a "
          f"stage-2 batch must each be divisible by the {replicas} replicas")
  if cfg.losses.identity_views < 1:
    raise ValueError(f"--identity_views: expected >= 1, got "
                     f"{cfg.losses.identity_views}")


def split_batch(batch_size: int, real_fraction: float):
  """(real, synthetic) counts of a stage-2 batch."""
  n_real = int(round(batch_size * real_fraction))
  return n_real, batch_size - n_real


class Trainer:
  """Builds every part of a run and executes its steps.

  ``Trainer(cfg, model_dir).run()`` is :func:`train`; tests drive
  :meth:`run_steps` directly.
  """

  def __init__(self, cfg: config_lib.Config, model_dir: str,
               encoder: Optional[keras.layers.Layer] = None):
    """Args:
      cfg: the run's config.
      model_dir: output folder.
      encoder: an already built frozen encoder (tests reuse one); default:
        FaceNet as ``cfg.model`` says.
    """
    self.cfg = cfg
    self.model_dir = model_dir
    self.strategy = distribute.make_strategy(cfg.training.strategy)
    self.replicas = self.strategy.num_replicas_in_sync
    _check_config(cfg, self.replicas)
    self.chief = distribute.is_chief(self.strategy)
    t = cfg.training
    self.cache_dir = real_data.default_cache_dir(t.cache_dir)
    self.n_real, self.n_synthetic = split_batch(t.batch_size, t.real_fraction)
    self.total_steps = t.stage1_steps + t.stage2_steps

    mm = morphable_model_lib.load_from_config(cfg.model)
    with self.strategy.scope():
      self.morphable_model = morphable_model_lib.TFMorphableModel(mm)
      self.encoder = encoder or encoder_lib.FaceNetEncoder.from_model_config(
          cfg.model)
      self.regressor = regressor_lib.Regressor.from_model_config(
          cfg.model, self.encoder, mm.shape_components, mm.texture_components,
          seed=t.seed)
      self.regressor.decode(tf.zeros([1, self.encoder.feature_dim]))
      self.optimizer = keras.optimizers.Adam(
          learning_rate=t.learning_rate,
          global_clipnorm=t.gradient_clip_norm or None)
      self.optimizer.build(self.regressor.decoder.trainable_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
      self.stage = tf.Variable(1, dtype=tf.int64, trainable=False,
                               name="stage")
      self.bank_round = tf.Variable(-1, dtype=tf.int64, trainable=False,
                                    name="bank_round")
    self.rng = tf.random.Generator.from_seed(t.seed)
    self.losses = steps_lib.StepLosses(self.regressor, self.morphable_model,
                                       cfg.renderer, cfg.losses,
                                       t.coefficient_truncation)
    self.bank = None
    if t.synthetic_bank_size:
      self.bank = synthetic.SyntheticFeatureBank(
          self.losses.synthetic_faces, self.encoder, t.synthetic_bank_size,
          seed=t.seed)
    checkpoint_items = dict(decoder=self.regressor.decoder,
                            optimizer=self.optimizer, step=self.step,
                            stage=self.stage, rng=self.rng,
                            bank_round=self.bank_round)
    if self.bank is not None:
      checkpoint_items.update(bank_features=self.bank.features,
                              bank_shape=self.bank.shape_coefficients,
                              bank_texture=self.bank.texture_coefficients)
    self.checkpoint = tf.train.Checkpoint(**checkpoint_items)
    # Under MultiWorkerMirroredStrategy every worker must save (the save is
    # collective); only the chief writes into model_dir.
    self.checkpoint_dir = model_dir if self.chief else os.path.join(
        model_dir, "workers",
        f"worker_{self.strategy.cluster_resolver.task_id}")
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, self.checkpoint_dir,
        max_to_keep=t.checkpoints_to_keep)
    self.real = None
    self._real_iterator = None
    self._compiled = {}
    self.writer = None

  # ---------------------------------------------------------------- set-up

  def restore(self) -> int:
    """Restores the latest checkpoint of model_dir, if any; returns the step.

    Every worker restores the chief's checkpoint.
    """
    latest = tf.train.latest_checkpoint(self.model_dir)
    if latest:
      try:
        self.checkpoint.restore(latest).expect_partial()
      except (tf.errors.OpError, ValueError, AssertionError) as e:
        raise TrainingError(
            f"Cannot restore checkpoint {latest} into this model ({e}). Was "
            f"{self.model_dir} written with another morphable model or "
            "decoder size? Use a new --model_dir.") from None
      logging.info("Resumed from %s at step %d (stage %d)", latest,
                   int(self.step.numpy()), int(self.stage.numpy()))
    return int(self.step.numpy())

  def prepare_data(self):
    """Synthetic bank and real photos, for the steps still to run."""
    t = self.cfg.training
    step = int(self.step.numpy())
    if t.stage2_steps and step < self.total_steps:
      self.real = real_data.prepare_real_faces(
          t.real_images, t.real_images_are_crops, self.cache_dir,
          crop_size=self.cfg.renderer.image_size[0])
      if t.feature_cache:
        encoder_name = (f"{self.encoder.name}:"
                        f"{getattr(self.encoder, 'model_name', '')}:"
                        f"{getattr(self.encoder, 'weights_path', '')}")
        real_data.encode_crops(self.real, self.encoder, self.cache_dir,
                               encoder_name)
        self._real_features = tf.constant(self.real.features)
        self._real_embeddings = tf.constant(self.real.embeddings)
      else:
        done = max(0, step - t.stage1_steps)
        dataset = pipeline.crop_dataset(self.real.crop_paths, self.n_real,
                                        seed=t.seed,
                                        crop_size=self.cfg.renderer
                                        .image_size[0]).skip(done)
        self._real_iterator = iter(dataset)
    if self.bank is not None and int(self.bank_round.numpy()) < 0:
      self.bank.build()
      self.bank_round.assign(0)

  # ----------------------------------------------------------------- steps

  def _apply(self, output: steps_lib.StepOutput, tape):
    variables = self.regressor.decoder.trainable_variables
    gradients = tape.gradient(output.total, variables)
    self.optimizer.apply_gradients(zip(gradients, variables))
    shape, texture = output.shape_coefficients, output.texture_coefficients
    stats = {
        "shape_mean": tf.reduce_mean(shape),
        "shape_std": tf.math.reduce_std(shape),
        "texture_mean": tf.reduce_mean(texture),
        "texture_std": tf.math.reduce_std(texture),
    }
    return output.total, output.terms, tf.linalg.global_norm(gradients), stats

  def _reduce(self, per_replica):
    total, terms, norm, stats = per_replica
    mean = tf.distribute.ReduceOp.MEAN
    return (self.strategy.reduce(tf.distribute.ReduceOp.SUM, total, axis=None),
            {k: self.strategy.reduce(mean, v, axis=None)
             for k, v in terms.items()},
            self.strategy.reduce(mean, norm, axis=None),
            {k: self.strategy.reduce(mean, v, axis=None)
             for k, v in stats.items()})

  def _stage1_bank_step(self, seed):
    batch = self.cfg.training.stage1_bank_batch_size
    indices = synthetic.random_indices(batch, self.bank.size, seed)
    faces = self.bank.gather(indices)
    global_values = (faces.features, faces.shape_coefficients,
                     faces.texture_coefficients)

    def replica_fn(values):
      features, shape, texture = steps_lib.replica_slice(values, batch)
      local = synthetic.SyntheticBatch(None, features, shape, texture)
      with tf.GradientTape() as tape:
        output = self.losses.stage1(local)
      return self._apply(output, tape)

    return self._reduce(self.strategy.run(replica_fn, args=(global_values,)))

  def _stage1_stream_step(self, seed):
    batch = self.cfg.training.batch_size

    def replica_fn(seed):
      local = self.losses.synthetic_batch(batch, seed)
      with tf.GradientTape() as tape:
        output = self.losses.stage1(local)
      return self._apply(output, tape)

    return self._reduce(self.strategy.run(replica_fn, args=(seed,)))

  def _stage2_step(self, seed, real_images=None):
    n_real, n_synthetic = self.n_real, self.n_synthetic
    real_indices = None
    if real_images is None:
      real_indices = synthetic.random_indices(
          n_real, len(self.real), synthetic.sub_seed(seed, 100))
      real_values = (tf.gather(self._real_features, real_indices),
                     tf.gather(self._real_embeddings, real_indices))
    else:
      real_values = (real_images,)
    synthetic_values = ()
    if n_synthetic and self.bank is not None:
      faces = self.bank.gather(
          synthetic.random_indices(n_synthetic, self.bank.size,
                                   synthetic.sub_seed(seed, 101)))
      synthetic_values = (faces.features, faces.shape_coefficients,
                          faces.texture_coefficients)

    def replica_fn(real_values, synthetic_values, seed):
      if len(real_values) == 2:
        features, embeddings = steps_lib.replica_slice(real_values, n_real)
      else:
        features, embeddings = self.encoder(
            steps_lib.replica_slice(real_values[0], n_real))
      local_synthetic = None
      if synthetic_values:
        local_synthetic = synthetic.SyntheticBatch(
            None, *steps_lib.replica_slice(synthetic_values, n_synthetic))
      with tf.GradientTape() as tape:
        if n_synthetic and not synthetic_values:
          local_synthetic = self.losses.synthetic_batch(
              n_synthetic, synthetic.sub_seed(seed, 102))
        output = self.losses.stage2(n_real, features, embeddings,
                                    local_synthetic, seed)
      return self._apply(output, tape)

    return self._reduce(
        self.strategy.run(replica_fn,
                          args=(real_values, synthetic_values, seed)))

  def _compiled_step(self, name):
    if name not in self._compiled:
      function = {"stage1_bank": self._stage1_bank_step,
                  "stage1_stream": self._stage1_stream_step,
                  "stage2": self._stage2_step}[name]
      self._compiled[name] = tf.function(function)
    return self._compiled[name]

  def run_step(self) -> StepResult:
    """Runs the next step of the schedule and returns its values."""
    t = self.cfg.training
    step = int(self.step.numpy())
    stage = 1 if step < t.stage1_steps else 2
    self.stage.assign(stage)
    if (self.bank is not None and t.synthetic_bank_refresh_every and step and
        step % t.synthetic_bank_refresh_every == 0 and
        int(self.bank_round.numpy()) < step // t.synthetic_bank_refresh_every):
      refresh_round = step // t.synthetic_bank_refresh_every
      self.bank.refresh(refresh_round, t.synthetic_bank_refresh_fraction)
      self.bank_round.assign(refresh_round)
    seed = self.rng.make_seeds(1)[:, 0]
    self._last_seed = seed
    if stage == 1:
      name = "stage1_bank" if self.bank is not None else "stage1_stream"
      values = self._compiled_step(name)(seed)
    elif self._real_iterator is not None:
      images, _ = next(self._real_iterator)
      values = self._compiled_step("stage2")(seed, images)
    else:
      values = self._compiled_step("stage2")(seed)
    self.step.assign_add(1)
    total, terms, norm, stats = values
    result = StepResult(
        step=step + 1, stage=stage, total=float(total.numpy()),
        terms={k: float(v.numpy()) for k, v in terms.items()},
        gradient_norm=float(norm.numpy()),
        coefficient_stats={k: float(v.numpy()) for k, v in stats.items()})
    if not (math.isfinite(result.total) and math.isfinite(
        result.gradient_norm)):
      latest = self.manager.latest_checkpoint or "none yet"
      raise NonFiniteLossError(
          f"Step {result.step} (stage {stage}): the loss is not finite "
          f"(total {result.total}, terms {result.terms}, gradient norm "
          f"{result.gradient_norm}). Stopped without writing anything; the "
          f"last good checkpoint is {latest}. Lower --learning_rate or check "
          "the inputs, then rerun to resume from it.")
    return result

  def run_steps(self, count: int):
    """Runs up to ``count`` steps of the schedule (no summaries)."""
    results = []
    for _ in range(count):
      if int(self.step.numpy()) >= self.total_steps:
        break
      results.append(self.run_step())
    return results

  # ------------------------------------------------------------ whole run

  def save_checkpoint(self):
    path = self.manager.save(checkpoint_number=int(self.step.numpy()))
    logging.info("Saved checkpoint %s", path)
    return path

  def run(self) -> Optional[StepResult]:
    """Trains to the end of the schedule, then exports."""
    t = self.cfg.training
    if self.chief:
      self.cfg.save(self.model_dir)
    start_step = self.restore()
    self.prepare_data()
    if self.chief:
      self.writer = tf.summary.create_file_writer(
          os.path.join(self.model_dir, SUMMARY_SUBDIR))
      self._log_data_summaries(start_step)
    last = None
    clock = time.time()
    clock_step = start_step
    while int(self.step.numpy()) < self.total_steps:
      last = self.run_step()
      step = last.step
      if step % t.summary_every == 0 or step == self.total_steps:
        now = time.time()
        steps_per_second = (step - clock_step) / max(now - clock, 1e-9)
        clock, clock_step = now, step
        remaining = (self.total_steps - step) / max(steps_per_second, 1e-9)
        logging.info(
            "step %d/%d (stage %d): total %.4f %s | %.2f steps/s, ETA %s",
            step, self.total_steps, last.stage, last.total,
            " ".join(f"{k} {v:.4f}" for k, v in sorted(last.terms.items())
                     if k != "total"), steps_per_second,
            time.strftime("%H:%M:%S", time.gmtime(remaining)))
        if self.writer is not None:
          summaries.write_scalars(self.writer, last, steps_per_second,
                                  float(self.optimizer.learning_rate.numpy()))
      if self.writer is not None:
        if step % t.image_summary_every == 0 or step == self.total_steps:
          self._write_images(last)
        if step % t.mesh_summary_every == 0 or step == self.total_steps:
          self._write_mesh(last)
      if step % t.checkpoint_every == 0 or step == t.stage1_steps:
        self.save_checkpoint()
    if last is not None or not self.manager.latest_checkpoint:
      self.save_checkpoint()
    path = export_lib.export_saved_model(self.regressor, self.morphable_model,
                                         self.checkpoint_dir,
                                         tuple(self.cfg.renderer.image_size))
    logging.info("Exported SavedModel to %s", path)
    if self.writer is not None:
      self.writer.flush()
    return last

  # ------------------------------------------------------------ summaries

  def _log_data_summaries(self, step):
    with self.writer.as_default(step=step):
      tf.summary.text("config", "```\n" + self.cfg.to_json() + "\n```")
      if self.real is not None:
        for name, value in self.real.stats.as_dict().items():
          tf.summary.scalar(f"data/real_images_{name}", value)

  def _write_images(self, result: StepResult):
    seed = self._last_seed
    if result.stage == 2 and self.real is not None:
      grid = summaries.real_preview(self, seed)
      name = "stage2/photo_and_renders"
    else:
      grid = summaries.synthetic_preview(self, seed)
      name = "stage1/synthetic_and_prediction"
    with self.writer.as_default(step=result.step):
      tf.summary.image(name, grid, max_outputs=grid.shape[0])

  def _write_mesh(self, result: StepResult):
    summaries.write_mesh(self, result.step, self._last_seed)


def train(cfg: config_lib.Config, model_dir: str) -> Optional[StepResult]:
  """Runs (or resumes) the two-stage schedule of ``cfg`` in ``model_dir``."""
  return Trainer(cfg, model_dir).run()


def export_only(cfg: config_lib.Config, model_dir: str) -> str:
  """Exports the latest checkpoint of ``model_dir`` as a SavedModel."""
  trainer = Trainer(cfg, model_dir)
  if not tf.train.latest_checkpoint(model_dir):
    raise TrainingError(f"--export_only: no checkpoint in {model_dir!r} to "
                        "export; train first")
  trainer.restore()
  return export_lib.export_saved_model(trainer.regressor,
                                       trainer.morphable_model, model_dir,
                                       tuple(cfg.renderer.image_size))
