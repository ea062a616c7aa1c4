#!/usr/bin/env bash
# The image's entry point: with no arguments it runs the default benchmark suite (`just suite`),
# with arguments it runs them as given (`docker run --gpus all bench just eval qwen3 awq cot`).
set -euo pipefail
if [ "$#" -eq 0 ]; then
  exec just suite
fi
exec "$@"
