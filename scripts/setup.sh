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
# SLURM, munge and iproute2 for tests/test_cluster.py (a two-node SLURM in network namespaces on this machine):
# only as root where apt-get is, and only what is missing; MEDBENCH_SKIP_CLUSTER=1 skips this and those tests.
# Elsewhere the tests skip, saying why.
if [ "${MEDBENCH_SKIP_CLUSTER:-0}" != "1" ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge iproute2
  fi
fi
