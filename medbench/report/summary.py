"""results/summary.csv: one row per run and task, with bootstrap intervals. The report is its one writer."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from medbench import stats
from medbench.records.reader import AVERAGE_TASK, Run, TaskScores

SUMMARY_FIELDS = (
    "run_id",
    "model",
    "variant",
    "prompt",
    "mode",
    "task",
    "dataset",
    "exam",
    "n",
    "accuracy",
    "stderr",
    "ci95_low",
    "ci95_high",
    "ci_method",
    "invalid",
    "invalid_rate",
    "truncated_prompts",
    "questions_per_second",
    "scorings_per_second",
    "peak_gpu_gib",
    "peak_rss_gib",
    "params_b",
    "device",
    "gpu",
    "weights",
    "git_sha",
)


def summary_rows(runs: list[Run], seed: int, resamples: int = stats.RESAMPLES) -> list[dict]:
    """One row per run and task, plus the run's KorMedMCQA exam average, with bootstrap intervals."""
    rows = []
    for run in runs:
        scored = run.scored_tasks()
        ordered = list(run.tasks) + ([scored[AVERAGE_TASK]] if AVERAGE_TASK in scored else [])
        for task in ordered:
            rows.append(_summary_row(run, task, seed, resamples))
    return rows


def _summary_row(run: Run, task: TaskScores, seed: int, resamples: int) -> dict:
    record, t = run.record, task.record
    (low, high), method = stats.mean_ci(task.scores, seed, resamples)
    stderr = t["stderr"] if t.get("stderr") is not None else stats.mean_stderr(task.scores)
    row = {
        "run_id": run.run_id,
        "model": record["model"],
        "variant": record["variant"],
        "prompt": record["prompt"],
        "mode": record["mode"],
        "task": task.task,
        "dataset": task.dataset,
        "exam": task.exam,
        "n": task.n,
        "accuracy": float(task.scores.mean()) if task.n else math.nan,
        "stderr": stderr,
        "ci95_low": low,
        "ci95_high": high,
        "ci_method": method,
        "invalid": t["invalid"],
        "invalid_rate": t["invalid_rate"],
        "truncated_prompts": t["truncated_prompts"],
        # A permuted run scores each question once per rotation: questions/s counts questions, scorings/s scorings.
        "questions_per_second": record["timing"]["questions_per_second"],
        "scorings_per_second": record["timing"].get("scorings_per_second"),
        "peak_gpu_gib": record["memory"].get("peak_gpu_gib"),
        "peak_rss_gib": record["memory"].get("peak_rss_gib"),
        "params_b": record["params_b"],
        "device": record["device"],
        "gpu": record["hardware"].get("gpu"),
        "weights": record["weights"],
        "git_sha": record["git_sha"],
    }
    return {k: row[k] for k in SUMMARY_FIELDS}


def write_summary_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return path
