"""The losses of one training step, for each stage (Genova et al., Sec. 3-4).

Every function here runs inside ``strategy.run`` (one call per replica) and
works on this replica's share of the global batch.  Randomness is sampled for
the *global* batch from the step's seed and then sliced, so a step computes the
same thing whatever the number of replicas.  Each returned total is already
divided by the number of replicas in sync, so that summing the replicas'
gradients (what ``apply_gradients`` does under a strategy) gives the gradient
of the global-batch loss.
"""
import dataclasses
from typing import Dict, Optional

import tensorflow as tf

from unsup3dmm.losses import batch_distribution
from unsup3dmm.losses import combine
from unsup3dmm.losses import identity
from unsup3dmm.losses import loopback
from unsup3dmm.losses import parameter
from unsup3dmm.losses.config import LossConfig
from unsup3dmm.model import regressor as regressor_lib
from unsup3dmm.renderer import render as render_lib
from unsup3dmm.renderer.config import RendererConfig
from unsup3dmm.training import synthetic

SHAPE = regressor_lib.SHAPE_COEFFICIENTS
TEXTURE = regressor_lib.TEXTURE_COEFFICIENTS


def replica_slice(global_value, global_batch: int):
  """This replica's rows of a structure of global-batch tensors."""
  ctx = tf.distribute.get_replica_context()
  replicas = ctx.num_replicas_in_sync
  local = global_batch // replicas
  start = ctx.replica_id_in_sync_group * local
  return tf.nest.map_structure(lambda x: x[start:start + local], global_value)


def _num_replicas() -> int:
  return tf.distribute.get_replica_context().num_replicas_in_sync


def _all_gather(value):
  """Concatenates a per-replica tensor over replicas (differentiable)."""
  ctx = tf.distribute.get_replica_context()
  if ctx.num_replicas_in_sync == 1:
    return value
  return ctx.all_gather(value, axis=0)


@dataclasses.dataclass
class StepOutput:
  """What a step reports: the scaled total and the named (unscaled) terms."""
  total: tf.Tensor
  terms: Dict[str, tf.Tensor]
  shape_coefficients: tf.Tensor
  texture_coefficients: tf.Tensor


class StepLosses:
  """Computes stage-1 and stage-2 losses for a regressor."""

  def __init__(self, regressor, tf_morphable_model,
               renderer_config: RendererConfig, loss_config: LossConfig,
               truncation: float):
    self.regressor = regressor
    self.morphable_model = tf_morphable_model
    self.renderer_config = renderer_config
    self.loss_config = loss_config
    self.synthetic_faces = synthetic.SyntheticFaces(
        tf_morphable_model, renderer_config, truncation)

  def _parameter(self, batch: synthetic.SyntheticBatch, prediction):
    return parameter.parameter_loss(
        batch.shape_coefficients, batch.texture_coefficients,
        prediction[SHAPE], prediction[TEXTURE],
        self.loss_config.shape_parameter_weight,
        self.loss_config.texture_parameter_weight)

  def _finish(self, terms, shape, texture) -> StepOutput:
    total, named = combine.combine_losses(
        terms, self.loss_config, regularization=self.regressor.weight_penalty())
    return StepOutput(total=total / float(_num_replicas()), terms=named,
                      shape_coefficients=shape, texture_coefficients=texture)

  def synthetic_batch(self, global_batch: int, seed) -> synthetic.SyntheticBatch:
    """This replica's share of a freshly rendered and encoded batch."""
    shape, texture = self.morphable_model.sample_coefficients(
        global_batch, seed=synthetic.sub_seed(seed, 0),
        truncation=self.synthetic_faces.truncation or None)
    poses = render_lib.sample_poses(global_batch, synthetic.sub_seed(seed, 1),
                                    self.renderer_config)
    lights = render_lib.sample_lights(global_batch,
                                      synthetic.sub_seed(seed, 2),
                                      self.renderer_config)
    shape, texture, poses, lights = replica_slice((shape, texture, poses,
                                                   lights), global_batch)
    images = render_lib.render_coefficients(
        self.morphable_model, shape, texture, poses, lights,
        self.renderer_config,
        background_seed=synthetic.sub_seed(seed, 3 + tf.distribute
                                           .get_replica_context()
                                           .replica_id_in_sync_group)).images
    features, _ = self.regressor.encoder(images)
    return synthetic.SyntheticBatch(images=images, features=features,
                                    shape_coefficients=shape,
                                    texture_coefficients=texture)

  def stage1(self, batch: synthetic.SyntheticBatch) -> StepOutput:
    """Parameter loss on this replica's synthetic faces (with features)."""
    prediction = self.regressor.decode(batch.features)
    terms = {combine.PARAMETER: self._parameter(batch, prediction)}
    return self._finish(terms, prediction[SHAPE], prediction[TEXTURE])

  def view_randomness(self, global_real: int, seed):
    """Poses and lights of the identity views and the loopback view.

    Returns (poses, lights) for ``global_real * (identity_views + 1)`` renders
    ordered example-major: example i's identity views, then its loopback view.
    """
    count = global_real * (self.loss_config.identity_views + 1)
    poses = render_lib.sample_poses(count, synthetic.sub_seed(seed, 10),
                                    self.renderer_config)
    lights = render_lib.sample_lights(count, synthetic.sub_seed(seed, 11),
                                      self.renderer_config)
    return poses, lights

  def render_views(self, shape, texture, poses, lights, background_seed):
    """Renders each face in its identity views and loopback view.

    Args:
      shape, texture: [n, K] coefficients.
      poses, lights: for n * (views + 1) renders, example-major.

    Returns:
      float32 [n * (views + 1), H, W, 3] images in [0, 1].
    """
    repeats = self.loss_config.identity_views + 1
    return render_lib.render_coefficients(
        self.morphable_model, tf.repeat(shape, repeats, axis=0),
        tf.repeat(texture, repeats, axis=0), poses, lights,
        self.renderer_config, background_seed=background_seed).images

  def stage2(self, global_real: int, real_features, real_embeddings,
             synthetic_batch: Optional[synthetic.SyntheticBatch],
             seed) -> StepOutput:
    """Hybrid batch: real photos get the identity, batch-distribution and
    loopback losses; synthetic faces the parameter loss.

    Args:
      global_real: real photos in the global batch.
      real_features: float32 [local_real, feature_dim], this replica's photos.
      real_embeddings: float32 [local_real, embedding_dim].
      synthetic_batch: this replica's synthetic faces with features, or None.
      seed: the step's stateless seed [2].
    """
    views = self.loss_config.identity_views
    prediction = self.regressor.decode(real_features)
    shape, texture = prediction[SHAPE], prediction[TEXTURE]
    poses, lights = self.view_randomness(global_real, seed)
    poses, lights = replica_slice((poses, lights), global_real * (views + 1))
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    images = self.render_views(shape, texture, poses, lights,
                               synthetic.sub_seed(seed, 20 + replica))
    render_features, render_embeddings = self.regressor.encoder(images)
    local = tf.shape(shape)[0]
    render_features = tf.reshape(render_features,
                                 [local, views + 1, render_features.shape[-1]])
    render_embeddings = tf.reshape(
        render_embeddings, [local, views + 1, render_embeddings.shape[-1]])
    loop = self.regressor.decode(render_features[:, views])
    terms = {
        combine.IDENTITY:
            identity.identity_loss(real_embeddings,
                                   render_embeddings[:, :views]),
        combine.LOOPBACK:
            loopback.loopback_loss(shape, texture, loop[SHAPE], loop[TEXTURE],
                                   self.loss_config.shape_parameter_weight,
                                   self.loss_config.texture_parameter_weight),
        # Batch statistics over the global real batch (all replicas).
        combine.BATCH_DISTRIBUTION:
            batch_distribution.batch_distribution_loss(
                _all_gather(shape), _all_gather(texture)),
    }
    if synthetic_batch is not None:
      synthetic_prediction = self.regressor.decode(synthetic_batch.features)
      terms[combine.PARAMETER] = self._parameter(synthetic_batch,
                                                 synthetic_prediction)
    return self._finish(terms, shape, texture)
