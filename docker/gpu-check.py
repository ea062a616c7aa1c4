"""The image's GPU stack, checked as far as a machine without a GPU can: `just docker-smoke` runs it in
the image and keeps its JSON (the last line of stdout) in results/bench/docker-smoke.json.

Each package says what was checked and what was not (what needs a GPU). The exit status is 0 when
every check passed. Run it with DS_ACCELERATOR=cuda and TORCH_CUDA_ARCH_LIST set: with no GPU to ask,
DeepSpeed would pick its CPU accelerator and torch's extension builder would not know what to compile for.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from packaging.version import Version

CONSTRAINTS = Path(os.environ.get("VIRTUAL_ENV", "/opt/venv")) / "constraints.txt"
# The GPU-only packages and the CUDA stack whose installed versions must equal the image's constraints.
STACK = re.compile(r"^(torch|triton|cuda-.*|nvidia-.*|bitsandbytes|deepspeed|compressed-tensors|gptqmodel|flash-attn)$")


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned() -> dict[str, str]:
    out = {}
    for line in CONSTRAINTS.read_text().splitlines():
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.split("#", 1)[0].strip())
        if m:
            out[canon(m[1])] = m[2]
    return out


def check(name: str, fn) -> dict:
    """Runs one package's check; an exception is a failed check with its message."""
    start = time.monotonic()
    try:
        result = {"ok": True, **fn()}
    except Exception as err:  # noqa: BLE001 - every failure is reported, none stops the others
        result = {"ok": False, "error": f"{type(err).__name__}: {err}"[:500]}
    result["seconds"] = round(time.monotonic() - start, 1)
    return result


def check_torch() -> dict:
    import torch

    release = re.search(
        r"release (\d+\.\d+)", subprocess.run(["nvcc", "--version"], capture_output=True, text=True, check=True).stdout
    )[1]
    assert torch.version.cuda == release, f"torch is built for CUDA {torch.version.cuda}, nvcc is {release}"
    return {
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "nvcc": release,
        "cudnn": torch.backends.cudnn.version(),
        "nccl": ".".join(map(str, torch.cuda.nccl.version())),
        "cuda_available": torch.cuda.is_available(),
        "checked": "import; torch's CUDA release equals nvcc's; cuDNN and NCCL load",
        "not_checked": "CUDA kernels (no GPU)",
    }


def check_bitsandbytes() -> dict:
    import bitsandbytes
    import torch

    lib = Path(bitsandbytes.__file__).parent / f"libbitsandbytes_cuda{torch.version.cuda.replace('.', '')}.so"
    ctypes.CDLL(str(lib))
    return {
        "version": bitsandbytes.__version__,
        "checked": f"import; {lib.name} (torch's CUDA release) loads",
        "not_checked": "4-bit and 8-bit kernels (no GPU)",
    }


def check_deepspeed() -> dict:
    import deepspeed
    import torch
    from deepspeed.accelerator import get_accelerator
    from deepspeed.git_version_info import installed_ops, torch_info
    from deepspeed.ops.op_builder import FusedAdamBuilder

    built = [op for op, on in installed_ops.items() if on]
    assert not built, f"ops prebuilt: {built}"
    assert torch_info["cuda_version"] == torch.version.cuda, torch_info
    assert get_accelerator()._name == "cuda", get_accelerator()._name
    start = time.monotonic()
    FusedAdamBuilder().load(verbose=False)
    return {
        "version": deepspeed.__version__,
        "ops_prebuilt": built,
        "fused_adam_jit_seconds": round(time.monotonic() - start, 1),
        "checked": "import; no op prebuilt; built for torch's CUDA release; the FusedAdam op JIT-compiled with"
        f" the image's nvcc for TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST')}",
        "not_checked": "running an op (no GPU)",
    }


def check_compressed_tensors() -> dict:
    import compressed_tensors
    from compressed_tensors import ModelCompressor  # noqa: F401 - what transformers loads AWQ checkpoints with

    return {
        "version": compressed_tensors.__version__,
        "checked": "import of ModelCompressor",
        "not_checked": "loading a compressed checkpoint on a GPU",
    }


def check_gptqmodel() -> dict:
    import gptqmodel

    return {
        "version": gptqmodel.__version__,
        "checked": "import",
        "not_checked": "its kernels, JIT-compiled on first use on a GPU (they are chosen for the GPU present)",
    }


def check_flash_attn() -> dict:
    """Installed or not by the build's FLASH_ATTN policy (docker/flash-attn.sh), whose lines the build kept."""
    log = Path(os.environ.get("VIRTUAL_ENV", "/opt/venv")) / "flash-attn.log"
    policy = [line for line in log.read_text().splitlines() if line.startswith("flash-attn:")]
    if importlib.util.find_spec("flash_attn") is None:
        assert policy, f"flash-attn is not installed and {log} does not say why"
        return {
            "installed": False,
            "build_log": policy,
            "checked": "not installed, as the build says; attention uses sdpa",
        }
    import flash_attn

    return {
        "installed": True,
        "version": flash_attn.__version__,
        "build_log": policy,
        "checked": "import (loads its CUDA library)",
        "not_checked": "its kernels (no GPU)",
    }


def main() -> int:
    report = {
        "uid": os.getuid(),
        "python": sys.version.split()[0],
        "packages": {
            "torch": check("torch", check_torch),
            "bitsandbytes": check("bitsandbytes", check_bitsandbytes),
            "deepspeed": check("deepspeed", check_deepspeed),
            "compressed-tensors": check("compressed-tensors", check_compressed_tensors),
            "gptqmodel": check("gptqmodel", check_gptqmodel),
            "flash-attn": check("flash-attn", check_flash_attn),
        },
    }
    pins = pinned()
    installed = {canon(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    stack = {name: version for name, version in sorted(installed.items()) if STACK.match(name)}
    report["stack"] = stack
    report["stack_differs_from_constraints"] = {
        name: {"installed": version, "pinned": pins.get(name)}
        for name, version in stack.items()
        if name not in pins or Version(pins[name]) != Version(Version(version).public)
    }
    pip_check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False)
    report["pip_check"] = (pip_check.stdout + pip_check.stderr).strip()
    report["ok"] = (
        report["uid"] != 0
        and all(p["ok"] for p in report["packages"].values())
        and not report["stack_differs_from_constraints"]
        and pip_check.returncode == 0
    )
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
