"""unsup3dmm.training."""
