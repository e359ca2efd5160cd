"""unsup3dmm.tools."""
