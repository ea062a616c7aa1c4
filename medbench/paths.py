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


def published_results_dir() -> Path:
    """The project's own records (committed): what the README and the explorer show."""
    return REPO_ROOT / "results"


def results_dir() -> Path:
    """Where new runs, benches and training records are written: results/local/ (git-ignored) unless
    MEDBENCH_RESULTS says otherwise, so a user's runs never rewrite a committed file. The project
    publishes a record by running with MEDBENCH_RESULTS=results."""
    return _env_path("MEDBENCH_RESULTS", published_results_dir() / "local")


def runs_dir() -> Path:
    return results_dir() / "runs"


def checkpoints_dir() -> Path:
    return _env_path("MEDBENCH_CHECKPOINTS", REPO_ROOT / "checkpoints")


def cache_dir() -> Path:
    """Converted models (the embedded GGUF) and other derived files that are slow to rebuild."""
    return _env_path("MEDBENCH_CACHE", Path.home() / ".cache" / "medbench")
