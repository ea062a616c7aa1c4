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
PACKAGES = (
    "medbench",
    "torch",
    "transformers",
    "tokenizers",
    "lm_eval",
    "peft",
    "trl",
    "datasets",
    "accelerate",
    "gguf",
    "bitsandbytes",
    "flash_attn",
    "deepspeed",
    "compressed_tensors",
)


def provenance() -> dict:
    """The fields every record carries: created, versions, git_sha, git_dirty, hardware."""
    sha, dirty = git_state()
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": package_versions(),
        "git_sha": sha,
        "git_dirty": dirty,
        "hardware": hardware(),
    }


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            out[name] = None
    return out


def git_sha() -> str | None:
    return git_state()[0]


MAX_DIRTY_LISTED = 50


def git_state() -> tuple[str | None, list[str] | None]:
    """(HEAD, suffixed `-dirty` when a tracked file differs from it; the differing tracked paths).

    `-dirty` alone says nothing (runs and the report rewrite tracked files under results/), so the
    record also lists which tracked files differed (at most 50). None, None without git
    (MEDBENCH_GIT_SHA gives the sha of a copied tree, whose state is unknown).
    """
    if os.environ.get("MEDBENCH_GIT_SHA"):  # a copy of the tree without .git (e.g. a GPU machine)
        return os.environ["MEDBENCH_GIT_SHA"], None
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "-z"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None, None
    dirty, entries = [], iter(status.stdout.split("\0"))
    for entry in entries:
        if len(entry) > 3:
            dirty.append(entry[3:])
            if entry[0] in "RC":  # a rename or copy: its source path follows
                next(entries, None)
    dirty.sort()
    listed = dirty[:MAX_DIRTY_LISTED] + (
        [f"... and {len(dirty) - MAX_DIRTY_LISTED} more"] if len(dirty) > MAX_DIRTY_LISTED else []
    )
    return sha.stdout.strip() + ("-dirty" if dirty else ""), listed


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
        info.update(
            gpu=props.name,
            gpu_count=torch.cuda.device_count(),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
        )
    return info


def peak_memory() -> dict:
    """Peak resident memory of this process and, on CUDA, peak GPU memory allocated (GiB)."""
    import torch

    out = {
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30, 3),
        "peak_gpu_gib": None,
    }
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
