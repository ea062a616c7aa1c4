"""Every folder medbench reads or writes, read from the environment at call time.

Tests and containers move folders with environment variables; reading them when called (never
at import) means a variable set after import still takes effect.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _env_path(name: str, default: Path) -> Path:
    return Path(os.environ.get(name) or default)


def tasks_dir() -> Path:
    """lm-eval task YAMLs (tasks/ at the repository root, as lm-eval lays out its own)."""
    return REPO_ROOT / "tasks"


def data_dir() -> Path:
    return _env_path("MEDBENCH_DATA", REPO_ROOT / "data")


def results_dir() -> Path:
    return _env_path("MEDBENCH_RESULTS", REPO_ROOT / "results")


def runs_dir() -> Path:
    return results_dir() / "runs"


def checkpoints_dir() -> Path:
    return _env_path("MEDBENCH_CHECKPOINTS", REPO_ROOT / "checkpoints")


def cache_dir() -> Path:
    """Converted models (the embedded GGUF) and other derived files that are slow to rebuild."""
    return _env_path("MEDBENCH_CACHE", Path.home() / ".cache" / "medbench")
