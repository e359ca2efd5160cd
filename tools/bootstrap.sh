#!/usr/bin/env bash
# Sets up (or refreshes) the project's virtual environment in .venv:
# installs TensorFlow first, then the project without build isolation so that
# the rasteriser op is compiled against exactly that TensorFlow.
# Usage: bash tools/bootstrap.sh   (PYTHON=python3.11 to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
start=$(date +%s)
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q "tensorflow>=2.16"
.venv/bin/python -m pip install -q --no-build-isolation -e ".[test]"
.venv/bin/python -c "
from unsup3dmm.renderer import rasterize_op, shading_op
rasterize_op.load_op_library()
shading_op.load_op_library()"
echo "bootstrap: ok (.venv ready, the renderer's ops load)"
echo "bootstrap: install took $(( $(date +%s) - start )) s"
