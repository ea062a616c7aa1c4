"""record.json per run and results/summary.csv over all runs: the contract with the report."""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from harness.data import REPO_ROOT

RESULTS_DIR = Path(os.environ.get("MEDBENCH_RESULTS", REPO_ROOT / "results"))
PACKAGES = ("medbench", "torch", "transformers", "tokenizers", "lm_eval", "peft", "trl", "datasets",
            "accelerate", "gguf", "bitsandbytes", "flash_attn", "deepspeed", "compressed_tensors")
# The columns of results/summary.csv, written here after each run and by the report (harness/report.py,
# which adds the KorMedMCQA exam-average rows and replaces Wilson intervals by bootstrap ones).
SUMMARY_FIELDS = ("run_id", "model", "variant", "prompt", "mode", "task", "dataset", "exam", "n", "accuracy",
                  "stderr", "ci95_low", "ci95_high", "ci_method", "invalid", "invalid_rate", "truncated_prompts",
                  "questions_per_second", "peak_memory_gib", "params_b", "device", "gpu", "weights", "git_sha")


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval: honest at small n and near 0 or 1, unlike ±1.96·stderr."""
    if n == 0:
        return (math.nan, math.nan)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


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
        info.update(gpu=props.name, gpu_count=torch.cuda.device_count(), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def samples_path(run_dir: Path, task: str) -> Path:
    """lm-eval's per-question log of one task, gzipped (full test sets are ~10× smaller so)."""
    return run_dir / f"samples_{task}.jsonl.gz"


def write_samples(path: Path, samples: list[dict]) -> None:
    # mtime=0: the same samples give the same bytes.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for s in samples:
            gz.write((json.dumps(s, ensure_ascii=False, default=str) + "\n").encode("utf-8"))


def read_samples(path: Path):
    """(line number, raw line) pairs of a samples file."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        yield from enumerate(f, start=1)


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)


def summary_rows(results_dir: Path = RESULTS_DIR) -> list[dict]:
    rows = []
    for record_path in sorted((results_dir / "runs").glob("*/record.json")):
        record = json.loads(record_path.read_text())
        for t in record["tasks"]:
            rows.append({
                "run_id": record["run_id"], "model": record["model"], "variant": record["variant"],
                "prompt": record["prompt"], "mode": record["mode"], **{k: t[k] for k in (
                    "task", "dataset", "exam", "n", "accuracy", "stderr", "ci95_low", "ci95_high", "invalid",
                    "invalid_rate", "truncated_prompts")}, "ci_method": t.get("ci_method"),
                "questions_per_second": record["timing"]["questions_per_second"],
                "peak_memory_gib": record["memory"]["peak_gib"], "params_b": record.get("params_b"),
                "device": record["device"],
                "gpu": record["hardware"].get("gpu"), "weights": record["weights"], "git_sha": record["git_sha"],
            })
    return rows


def write_summary(results_dir: Path = RESULTS_DIR) -> Path:
    """Rebuilt from every record, so it is the same however often it is written."""
    return write_summary_csv(results_dir / "summary.csv", summary_rows(results_dir))


def write_summary_csv(path: Path, rows: list[dict]) -> Path:
    """The one writer of summary.csv's columns and number format (the report uses it too)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return path
