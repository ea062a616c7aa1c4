"""Where a number came from: the code that ran, the package versions, hardware, time and peak memory.

One helper for every record medbench writes (evaluation, training, consistency, benches), so each says the same
things in the same words. The code is named three ways, so that a record can be checked later (`medbench verify`):

- `source_fingerprint`: the sha256 of every source file of medbench/, trainers/ and tasks/ as they ran (the files'
  paths and contents; caches and Markdown left out). Computed from the files, so it cannot claim a commit that did
  not run.
- `git_sha` and `git_dirty`: read from the tree's git, with the source files that differed from that commit. A
  copy of the tree without .git (a GPU machine, a container) may be given MEDBENCH_GIT_SHA with
  MEDBENCH_SOURCE_FINGERPRINT (the fingerprint of that commit's sources, computed where the commit is): the sha is
  `verified` only when the files that ran have that fingerprint, `unverified` otherwise.
- `medbench_version`.
"""

from __future__ import annotations

import hashlib
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
SOURCE_DIRS = ("medbench", "trainers", "tasks")
NOT_SOURCE = ("__pycache__",)
NOT_SOURCE_SUFFIXES = (".pyc", ".md")
MAX_DIRTY_LISTED = 50


def provenance() -> dict:
    """The fields every record carries: created, versions, the code (fingerprint and git) and hardware."""
    code = code_state()
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": package_versions(),
        **code,
        "hardware": hardware(),
    }


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            out[name] = None
    if out["medbench"] is None:  # run from a copy of the tree without installing it: the version it declares
        out["medbench"] = _declared_version()
    return out


def _declared_version() -> str | None:
    import tomllib

    try:
        return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    except (OSError, KeyError, ValueError):
        return None


def is_source(relative: str) -> bool:
    parts = relative.split("/")
    return (
        parts[0] in SOURCE_DIRS
        and not any(p in NOT_SOURCE for p in parts)
        and not relative.endswith(NOT_SOURCE_SUFFIXES)
    )


def fingerprint_of(files: dict[str, bytes]) -> dict:
    """{"sha256", "files"} over source files given as {path relative to the repository: content}."""
    digest = hashlib.sha256()
    names = sorted(name for name in files if is_source(name))
    for name in names:
        digest.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return {"sha256": digest.hexdigest(), "files": len(names)}


def source_fingerprint(root: Path = REPO_ROOT) -> dict:
    """The fingerprint of the source files under `root` as they are now (as they ran, for a running process)."""
    files = {}
    for top in SOURCE_DIRS:
        for path in sorted((root / top).rglob("*")):
            relative = path.relative_to(root).as_posix()
            if path.is_file() and is_source(relative):
                files[relative] = path.read_bytes()
    return fingerprint_of(files)


def code_state(root: Path = REPO_ROOT) -> dict:
    """medbench_version, source_fingerprint, git_sha, git_sha_status and git_dirty, as provenance() records them."""
    fingerprint = source_fingerprint(root)
    out = {"medbench_version": package_versions()["medbench"], "source_fingerprint": fingerprint}
    claimed = os.environ.get("MEDBENCH_GIT_SHA")
    matches = bool(claimed) and os.environ.get("MEDBENCH_SOURCE_FINGERPRINT") == fingerprint["sha256"]
    # A copy of the tree can carry another commit's .git (a machine the sources were synced to); a claimed commit
    # whose fingerprint the sources match names the code better than that repository's HEAD.
    sha, dirty = (None, None) if matches else _git(root)
    if sha is not None:
        out.update(git_sha=sha, git_sha_status="read from the tree's git", git_dirty=dirty)
    elif claimed:
        out.update(
            git_sha=claimed,
            git_sha_status="verified: the sources that ran have that commit's fingerprint"
            if matches
            else "unverified: given by MEDBENCH_GIT_SHA without a matching MEDBENCH_SOURCE_FINGERPRINT",
            git_dirty=[] if matches else None,
        )
    else:
        out.update(git_sha=None, git_sha_status="unknown: no git and no MEDBENCH_GIT_SHA", git_dirty=None)
    return out


def git_sha() -> str | None:
    return code_state()["git_sha"]


def _git(root: Path) -> tuple[str | None, list[str] | None]:
    """(HEAD, the source files that differ from it) from git, quietly; (None, None) without a repository."""
    if not (root / ".git").exists():
        return None, None
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "-z", "--", *SOURCE_DIRS],
            cwd=root,
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
    return sha.stdout.strip(), listed


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


def attention_kernels() -> dict | None:
    """Which of PyTorch's SDPA kernels may run on CUDA (None on a CPU): the one chosen is among them."""
    import torch

    if not torch.cuda.is_available():
        return None
    backends = torch.backends.cuda
    return {
        "flash": backends.flash_sdp_enabled(),
        "memory_efficient": backends.mem_efficient_sdp_enabled(),
        "cudnn": backends.cudnn_sdp_enabled(),
        "math": backends.math_sdp_enabled(),
    }


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
