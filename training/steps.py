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
    sample = replica_slice(self.synthetic_faces.sample(global_batch, seed),
                           global_batch)
    batch = self.synthetic_faces.render_sample(sample)
    batch.features, _ = self.regressor.encoder(batch.images)
    return batch

  def stage1(self, batch: synthetic.SyntheticBatch) -> StepOutput:
    """Parameter loss on this replica's synthetic faces (with features)."""
    prediction = self.regressor.decode(batch.features)
    terms = {combine.PARAMETER: self._parameter(batch, prediction)}
    return self._finish(terms, prediction[SHAPE], prediction[TEXTURE])

  def view_randomness(self, global_real: int, seed):
    """Poses, lights and backgrounds of the identity and loopback views.

    Returns (poses, lights, backgrounds [count, 3]) for ``count = global_real
    * (identity_views + 1)`` renders ordered example-major: example i's
    identity views, then its loopback view.
    """
    count = global_real * (self.loss_config.identity_views + 1)
    poses = render_lib.sample_poses(count, synthetic.sub_seed(seed, 10),
                                    self.renderer_config)
    lights = render_lib.sample_lights(count, synthetic.sub_seed(seed, 11),
                                      self.renderer_config)
    backgrounds = render_lib.sample_backgrounds(
        count, synthetic.sub_seed(seed, 12), self.renderer_config)
    return poses, lights, backgrounds

  def render_views(self, shape, texture, poses, lights, backgrounds):
    """Renders each face in its identity views and loopback view.

    Args:
      shape, texture: [n, K] coefficients.
      poses, lights, backgrounds: for n * (views + 1) renders, example-major.

    Returns:
      float32 [n * (views + 1), H, W, 3] images in [0, 1].
    """
    repeats = self.loss_config.identity_views + 1
    return render_lib.render_coefficients(
        self.morphable_model, tf.repeat(shape, repeats, axis=0),
        tf.repeat(texture, repeats, axis=0), poses, lights,
        self.renderer_config, background=backgrounds).images

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
    randomness = replica_slice(self.view_randomness(global_real, seed),
                               global_real * (views + 1))
    images = self.render_views(shape, texture, *randomness)
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
