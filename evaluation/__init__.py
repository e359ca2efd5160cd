"""unsup3dmm.evaluation."""
