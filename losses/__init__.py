"""unsup3dmm.losses: pure loss functions of tensors and their weighted sum.

Each loss returns a float32 scalar with a documented reduction; nothing here
renders or encodes (the training step does, then calls these).
"""
from unsup3dmm.losses.batch_distribution import batch_distribution_loss
from unsup3dmm.losses.combine import combine_losses
from unsup3dmm.losses.config import LossConfig
from unsup3dmm.losses.identity import identity_loss
from unsup3dmm.losses.loopback import loopback_loss
from unsup3dmm.losses.parameter import parameter_loss

__all__ = [
    "LossConfig", "batch_distribution_loss", "combine_losses",
    "identity_loss", "loopback_loss", "parameter_loss"
]
