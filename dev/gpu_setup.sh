#!/usr/bin/env bash
# On a lent GPU machine (no package index there): unpack what the upload calls left in /tmp/up (pieces of one tar:
# wheels/eval, wheels/awq, models/) and install the wheels into /tmp/site (medbench's stack over the image's) and
# /tmp/site_awq (llmcompressor's, beside the image's own transformers). Run again, it does nothing.
#   bash dev/gpu_setup.sh && . /tmp/medbench-env.sh
set -euo pipefail
if [ ! -d /tmp/pl ]; then
  cat /tmp/up/piece.* > /tmp/payload.tar
  mkdir -p /tmp/pl
  tar xf /tmp/payload.tar -C /tmp/pl
  rm -f /tmp/payload.tar /tmp/up/piece.*
fi
install=(python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check)
if [ ! -d /tmp/site ]; then
  "${install[@]}" --target /tmp/site /tmp/pl/wheels/eval/*.whl
fi
if [ ! -d /tmp/site_awq ]; then
  shared=()
  for name in datasets dill multiprocess compressed_tensors typing_extensions; do
    shared+=(/tmp/pl/wheels/eval/"$name"-*.whl)
  done
  "${install[@]}" --target /tmp/site_awq /tmp/pl/wheels/awq/*.whl "${shared[@]}"
fi
cat > /tmp/medbench-env.sh <<'ENV'
export PYTHONPATH=/tmp/site MEDBENCH_AWQ_SITE=/tmp/site_awq MEDBENCH_DOWNLOADS=/tmp/pl/models
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
ENV
python3 - <<'PY'
import sys
sys.path.insert(0, "/tmp/site")
import torch, transformers, lm_eval, datasets, peft, trl, bitsandbytes
print("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__,
      "lm_eval", lm_eval.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
PY
