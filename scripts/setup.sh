#!/usr/bin/env bash
# Installs medbench with its test tools into the current Python.
# torch goes first: pip would otherwise pull a multi-GB CUDA build as a dependency. On a CPU-only
# machine elsewhere, set TORCH_INDEX to PyTorch's CPU wheel index (see README).
set -euo pipefail
PYTHON=${PYTHON:-python}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  if [ -n "${TORCH_INDEX:-}" ]; then
    "$PYTHON" -m pip install "torch==${TORCH_VERSION}" --index-url "$TORCH_INDEX"
  else
    "$PYTHON" -m pip install "torch==${TORCH_VERSION}"
  fi
fi
"$PYTHON" -m pip install -e '.[test]'
