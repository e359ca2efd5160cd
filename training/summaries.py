"""TensorBoard summaries of a training run (``model_dir/train``).

Scalars: ``loss/<term>`` for every loss term and the total,
``optimizer/learning_rate``, ``optimizer/gradient_norm`` (per replica,
averaged over replicas), ``coefficients/{shape,texture}_{mean,std}`` of the
predicted coefficients, ``speed/steps_per_second`` and ``stage``.
Images: ``stage1/synthetic_and_prediction`` (input render | render of the
prediction in the same pose and light) and ``stage2/photo_and_renders``
(photo | renders of the prediction from the training views).
Meshes: ``mesh/prediction`` (TensorBoard mesh plugin), with vertex colours.
"""
import numpy as np
import tensorflow as tf
from PIL import Image
from tensorboard.plugins.mesh import summary_v2 as mesh_summary

from unsup3dmm.model import regressor as regressor_lib
from unsup3dmm.renderer import render as render_lib
from unsup3dmm.training import synthetic

PREVIEW_FACES = 4


def write_scalars(writer, result, steps_per_second: float,
                  learning_rate: float):
  """Writes one step's scalars."""
  with writer.as_default(step=result.step):
    for name, value in result.terms.items():
      tf.summary.scalar(f"loss/{name}", value)
    tf.summary.scalar("optimizer/learning_rate", learning_rate)
    tf.summary.scalar("optimizer/gradient_norm", result.gradient_norm)
    for name, value in result.coefficient_stats.items():
      tf.summary.scalar(f"coefficients/{name}", value)
    tf.summary.scalar("speed/steps_per_second", steps_per_second)
    tf.summary.scalar("stage", result.stage)


def _row(images) -> np.ndarray:
  """[n, H, W, 3] -> [H, n * W, 3]: one grid row."""
  images = np.asarray(images)
  return np.concatenate(list(images), axis=1)


def real_preview(trainer, seed) -> np.ndarray:
  """Photo | the prediction's renders from this step's identity views.

  Uses the first photos of this step's real batch and the same pose, light
  and background randomness as the step.

  Returns:
    float32 [faces, H, (views + 1) * W, 3] in [0, 1].
  """
  losses = trainer.losses
  views = losses.loss_config.identity_views
  faces = min(PREVIEW_FACES, trainer.n_real)
  if trainer._real_iterator is not None:  # pylint: disable=protected-access
    indices = np.arange(faces)
  else:
    indices = synthetic.random_indices(trainer.n_real, len(trainer.real),
                                       synthetic.sub_seed(seed, 100)).numpy()
  indices = indices[:faces]
  size = trainer.cfg.renderer.image_size[0]
  photos = np.stack([
      np.asarray(Image.open(trainer.real.crop_paths[i]).convert("RGB"),
                 dtype=np.float32) / 255.0 for i in indices
  ])
  prediction = trainer.regressor(tf.constant(photos), training=False)
  count = faces * (views + 1)
  randomness = tf.nest.map_structure(
      lambda x: x[:count], losses.view_randomness(trainer.n_real, seed))
  renders = losses.render_views(
      prediction[regressor_lib.SHAPE_COEFFICIENTS],
      prediction[regressor_lib.TEXTURE_COEFFICIENTS], *randomness).numpy()
  renders = renders.reshape([faces, views + 1, size, size, 3])[:, :views]
  rows = [_row(np.concatenate([photos[i:i + 1], renders[i]]))
          for i in range(faces)]
  return np.stack(rows).astype(np.float32)


def synthetic_preview(trainer, seed) -> np.ndarray:
  """Synthetic input render | render of the prediction (same pose, light).

  Returns:
    float32 [faces, H, 2 * W, 3] in [0, 1].
  """
  faces = PREVIEW_FACES
  synthetic_faces = trainer.losses.synthetic_faces
  sample = synthetic_faces.sample(faces, synthetic.sub_seed(seed, 200))
  inputs = synthetic_faces.render_sample(sample).images
  prediction = trainer.regressor(inputs, training=False)
  _, _, poses, lights, backgrounds = sample
  renders = render_lib.render_coefficients(
      trainer.morphable_model, prediction[regressor_lib.SHAPE_COEFFICIENTS],
      prediction[regressor_lib.TEXTURE_COEFFICIENTS], poses, lights,
      trainer.cfg.renderer, background=backgrounds).images
  rows = [_row(np.stack([inputs[i].numpy(), renders[i].numpy()]))
          for i in range(faces)]
  return np.stack(rows).astype(np.float32)


def write_mesh(trainer, step: int, seed):
  """The predicted face of a real photo (stage 2) or synthetic render."""
  if trainer.real is not None and step > trainer.cfg.training.stage1_steps:
    photo = np.asarray(Image.open(trainer.real.crop_paths[0]).convert("RGB"),
                       dtype=np.float32)[None] / 255.0
    prediction = trainer.regressor(tf.constant(photo), training=False)
  else:
    preview = synthetic_preview(trainer, seed)
    size = trainer.cfg.renderer.image_size[1]
    prediction = trainer.regressor(tf.constant(preview[:1, :, :size]),
                                   training=False)
  model = trainer.morphable_model
  vertices = model.vertices(prediction[regressor_lib.SHAPE_COEFFICIENTS])
  colors = model.colors(prediction[regressor_lib.TEXTURE_COEFFICIENTS])
  colors = tf.cast(tf.round(tf.clip_by_value(colors, 0.0, 1.0) * 255.0),
                   tf.uint8)
  with trainer.writer.as_default(step=step):
    mesh_summary.mesh("mesh/prediction", vertices=vertices,
                      faces=model.triangles[None], colors=colors, step=step)
