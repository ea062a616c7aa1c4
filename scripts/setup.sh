#!/usr/bin/env bash
# Installs medbench with its test tools into the current Python, every version from constraints.txt.
# torch goes first: pip would otherwise pull a multi-GB CUDA build as a dependency. On a CPU-only
# machine elsewhere, set TORCH_INDEX to PyTorch's CPU wheel index (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
CONSTRAINTS=constraints.txt
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  # torch requires setuptools, and PyTorch's wheel index mirrors only some of its versions: the
  # pinned one comes from the package index first.
  "$PYTHON" -m pip install -c "$CONSTRAINTS" setuptools
  if [ -n "${TORCH_INDEX:-}" ]; then
    "$PYTHON" -m pip install -c "$CONSTRAINTS" torch --index-url "$TORCH_INDEX"
  else
    "$PYTHON" -m pip install -c "$CONSTRAINTS" torch
  fi
fi
"$PYTHON" -m pip install -c "$CONSTRAINTS" -e '.[test]'
# The headless browser the explorer's test drives (Debian's chromium; skipped where one is present, or with
# MEDBENCH_SKIP_BROWSER=1, which also skips that test).
if [ "${MEDBENCH_SKIP_BROWSER:-0}" != "1" ]; then
  bash scripts/install-browser.sh
fi
