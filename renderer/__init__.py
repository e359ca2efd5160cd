"""unsup3dmm.renderer."""
