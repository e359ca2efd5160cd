"""unsup3dmm.data."""
