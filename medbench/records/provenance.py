"""Where a number came from: time, package versions, git commit, hardware and peak memory.

One helper for every record medbench writes (evaluation, training, consistency, benches), so
that each says the same things in the same words.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from medbench.paths import REPO_ROOT

# The packages whose versions can change a score or a timing.
PACKAGES = ("medbench", "torch", "transformers", "tokenizers", "lm_eval", "peft", "trl", "datasets",
            "accelerate", "gguf", "bitsandbytes", "flash_attn", "deepspeed", "compressed_tensors")


def provenance() -> dict:
    """The fields every record carries: created, versions, git_sha, hardware."""
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": package_versions(),
            "git_sha": git_sha(), "hardware": hardware()}


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            out[name] = None
    return out


def git_sha() -> str | None:
    if os.environ.get("MEDBENCH_GIT_SHA"):  # a copy of the tree without .git (e.g. a GPU machine)
        return os.environ["MEDBENCH_GIT_SHA"]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def hardware() -> dict:
    import psutil
    import torch

    info = {
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_count=torch.cuda.device_count(),
                    gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
    return info


def peak_memory() -> dict:
    """Peak resident memory of this process and, on CUDA, peak GPU memory allocated (GiB)."""
    import torch

    out = {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30, 3),
           "peak_gpu_gib": None}
    if torch.cuda.is_available():
        out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
