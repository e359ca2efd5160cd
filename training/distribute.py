"""tf.distribute strategies by name."""
import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


def make_strategy(name: str) -> tf.distribute.Strategy:
  """Returns the strategy called ``name`` (TrainingConfig.strategy).

  * ``default``: the default (no-op) strategy: one device.
  * ``mirrored``: ``MirroredStrategy`` over every local GPU (or the CPU, or the
    logical CPU devices a test configured).
  * ``multi_worker``: ``MultiWorkerMirroredStrategy``; the cluster comes from
    the ``TF_CONFIG`` environment variable, which must be set.

  Raises:
    ValueError: unknown name, or ``multi_worker`` without a valid TF_CONFIG.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
      return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus)
  if name == "multi_worker":
    raw = os.environ.get("TF_CONFIG", "")
    try:
      tf_config = json.loads(raw)
      tf_config["cluster"]["worker"]  # pylint: disable=pointless-statement
      tf_config["task"]["index"]  # pylint: disable=pointless-statement
    except (ValueError, KeyError, TypeError):
      raise ValueError(
          "--strategy=multi_worker needs the TF_CONFIG environment variable, "
          'e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
          f'"task": {{"type": "worker", "index": 0}}}}; got {raw!r}') from None
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes summaries, config and exports."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not getattr(resolver, "task_type", None):
    return True
  return resolver.task_type in ("chief", None) or (
      resolver.task_type == "worker" and resolver.task_id == 0 and
      "chief" not in resolver.cluster_spec().as_dict())
