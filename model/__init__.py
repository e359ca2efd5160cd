"""unsup3dmm.model."""
