"""unsup3dmm.losses."""
