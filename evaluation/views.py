"""Fixed views of predicted faces for evaluation, reports and prediction.

* :func:`frontal_render`: the face seen frontally under a neutral white light
  (one point light at the camera, slightly above it, plus ambient light);
* :func:`vertex_color_render`: unlit per-vertex colours (e.g. error maps);
* :func:`export_now_folder`: a NoW-challenge submission for a folder of
  photos.
"""
import os
from typing import Dict

import numpy as np
import tensorflow as tf

from unsup3dmm.data import pipeline
from unsup3dmm.data import real_images
from unsup3dmm.evaluation import now_export
from unsup3dmm.renderer import camera
from unsup3dmm.renderer import lighting
from unsup3dmm.renderer import render as render_lib

# Neutral light of the fixed views: camera space (camera at the origin looking
# along -z), mm; white; intensities chosen so the mean albedo stays unclipped.
NEUTRAL_LIGHT_POSITION_MM = (0.0, 300.0, 0.0)
NEUTRAL_LIGHT_INTENSITY = 0.75
NEUTRAL_AMBIENT = 0.3
FIXED_VIEW_BACKGROUND = (1.0, 1.0, 1.0)


def neutral_lights(batch_size: int) -> lighting.Lights:
  """One white point light near the camera plus white ambient light."""
  return lighting.Lights(
      positions_mm=tf.tile(
          tf.constant(NEUTRAL_LIGHT_POSITION_MM, tf.float32)[None, None],
          [batch_size, 1, 1]),
      colors=tf.fill([batch_size, 1, 3], NEUTRAL_LIGHT_INTENSITY),
      ambient=tf.fill([batch_size, 3], NEUTRAL_AMBIENT))


def frontal_render(predictor, shape, texture, batch_size: int = 16
                  ) -> np.ndarray:
  """Frontal renders of coefficients.

  Args:
    predictor: a :class:`unsup3dmm.evaluation.predictor.Predictor`.
    shape: float32 [n, shape_components].
    texture: float32 [n, texture_components].

  Returns:
    float32 [n, H, W, 3] RGB in [0, 1] on a white background.
  """
  out = []
  for start in range(0, len(shape), batch_size):
    s = tf.constant(shape[start:start + batch_size], tf.float32)
    t = tf.constant(texture[start:start + batch_size], tf.float32)
    count = int(s.shape[0])
    out.append(render_lib.render_coefficients(
        predictor.tf_morphable_model, s, t, camera.frontal_poses(count),
        neutral_lights(count), predictor.cfg.renderer,
        background=tf.constant(FIXED_VIEW_BACKGROUND)).images.numpy())
  return np.concatenate(out)


def vertex_color_render(predictor, shape, vertex_colors) -> np.ndarray:
  """Frontal, unlit renders of per-vertex colours.

  Args:
    predictor: a Predictor.
    shape: float32 [n, shape_components].
    vertex_colors: float32 [n, vertex_count, 3] in [0, 1].

  Returns:
    float32 [n, H, W, 3] on a white background.
  """
  s = tf.constant(shape, tf.float32)
  count = int(s.shape[0])
  model = predictor.tf_morphable_model
  result = render_lib.render(
      model.vertices(s), tf.constant(vertex_colors, tf.float32),
      model.triangles, camera.frontal_poses(count), neutral_lights(count),
      predictor.cfg.renderer, with_framebuffer=True)
  albedo = result.framebuffer.albedo
  mask = result.visibility.mask[..., None]
  factor = predictor.cfg.renderer.supersampling
  if factor > 1:
    albedo = tf.nn.avg_pool2d(albedo * mask, factor, factor, "VALID")
    mask = tf.nn.avg_pool2d(mask, factor, factor, "VALID")
  else:
    albedo = albedo * mask
  background = tf.constant(FIXED_VIEW_BACKGROUND)
  return (albedo + (1.0 - mask) * background).numpy()


def export_now_folder(predictor, folder: str, output_dir: str,
                      cache_dir: str) -> Dict[str, int]:
  """Writes a NoW submission (mesh + 7 landmarks) for every photo in folder.

  Image names are the photos' paths relative to ``folder``.

  Returns:
    counts: ``exported`` and ``skipped`` photos.
  """
  model = predictor.morphable_model
  if model.landmark_ids is None:
    raise ValueError("--now_images: the morphable model has no iBUG-68 "
                     "landmarks; NoW needs 7 of them")
  paths = real_images.list_image_files(folder, "--now_images")
  crops, stats = real_images.prepare_crops(
      paths, os.path.join(cache_dir, "crops"), already_cropped=False)
  for crop, source in zip(crops, stats.sources):
    image = pipeline.decode_crop(tf.constant(crop), 160).numpy()[None]
    shape, _ = predictor.predict(image)
    now_export.export_now(output_dir, os.path.relpath(source, folder),
                          model.vertices(shape[0]), model.triangles,
                          model.landmark_ids)
  return {"exported": len(crops), "skipped": stats.skipped_count}
