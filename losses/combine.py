"""Weights and sums the loss terms; names them for TensorBoard.

One place turns the pure loss terms into the training objective (STYLE.md,
practice 10).  Weights come from :class:`unsup3dmm.losses.config.LossConfig`.
"""
from typing import Dict, Mapping, Optional, Tuple

import tensorflow as tf

from unsup3dmm.losses.config import LossConfig

PARAMETER = "parameter"
IDENTITY = "identity"
BATCH_DISTRIBUTION = "batch_distribution"
LOOPBACK = "loopback"
REGULARIZATION = "regularization"
TOTAL = "total"

# Term name -> the LossConfig field holding its weight.  The parameter loss
# is weighted inside (lambda_s, lambda_t), so its outer weight is 1.
_WEIGHT_FIELDS = {
    PARAMETER: None,
    IDENTITY: "identity_weight",
    BATCH_DISTRIBUTION: "batch_distribution_weight",
    LOOPBACK: "loopback_weight",
}


def term_weight(name: str, config: LossConfig) -> float:
  """The weight :func:`combine_losses` applies to term ``name``."""
  if name == REGULARIZATION:
    return config.decoder_l2_weight
  field = _WEIGHT_FIELDS[name]
  return 1.0 if field is None else getattr(config, field)


def combine_losses(
    terms: Mapping[str, tf.Tensor],
    config: LossConfig,
    regularization: Optional[tf.Tensor] = None
) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
  """Weighted sum of the loss terms present in a step.

  ``total = parameter + identity_weight * identity + batch_distribution_weight
  * batch_distribution + loopback_weight * loopback + decoder_l2_weight *
  regularization``, over the terms given (stage 1 has only ``parameter``).

  Args:
    terms: float32 scalars by name: any of ``"parameter"``, ``"identity"``,
      ``"batch_distribution"``, ``"loopback"`` (unweighted, as returned by
      the loss functions).
    config: the weights.
    regularization: optional float32 scalar, the decoder's
      ``weight_penalty()`` (sum of squared kernel weights).

  Returns:
    ``(total, named)``: ``total`` the float32 scalar objective; ``named``
    maps every given term (and ``"regularization"`` when given) to its
    WEIGHTED contribution, plus ``"total"``, so the named values add up to
    the total.  Gradients flow through all of them.

  Raises:
    ValueError: an unknown term name, a non-scalar term, or no term at all.
  """
  unknown = sorted(set(terms) - set(_WEIGHT_FIELDS))
  if unknown:
    raise ValueError(f"terms: unknown loss term(s) {unknown}; expected names "
                     f"from {sorted(_WEIGHT_FIELDS)} (pass the decoder's "
                     "penalty as regularization=)")
  values = dict(terms)
  if regularization is not None:
    values[REGULARIZATION] = regularization
  if not values:
    raise ValueError("terms: expected at least one loss term, got none")
  named = {}
  for name, value in values.items():
    value = tf.convert_to_tensor(value, dtype_hint=tf.float32)
    if value.shape.rank != 0:
      raise ValueError(f"terms[{name!r}]: expected a scalar, got shape "
                       f"{value.shape}")
    named[name] = term_weight(name, config) * value
  total = tf.add_n(list(named.values()))
  named[TOTAL] = total
  return total, named
