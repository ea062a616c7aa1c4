"""One task's record from its lm-eval samples: accuracy with its interval, invalid and truncated
answers, exact ties, the letter distributions with their baselines, and (when the options were
permuted) the position-debiased and circular accuracies."""

from __future__ import annotations

import numpy as np

from medbench import stats
from medbench.records.questions import letter_distribution, question_row
from medbench.records.schema import TaskRecord


def task_record(
    name: str,
    samples: list[dict],
    result: dict,
    count_tokens,
    prompt_max_tokens: int,
    rotated: dict[str, list[dict]] | None = None,
    seed: int = 1234,
) -> TaskRecord:
    generative = "exact_match" in samples[0] if samples else False
    metric = "exact_match" if generative else "acc"
    correct = sum(int(s[metric]) for s in samples)
    n = len(samples)
    rows = [question_row(s) for s in samples]
    invalid = sum(1 for r in rows if r["invalid"])
    truncated = sum(1 for s in samples if count_tokens(s["arguments"][0][0]) > prompt_max_tokens)
    low, high = stats.wilson_interval(correct, n)
    stderr_key = next((k for k in result if k.startswith(f"{metric}_stderr")), None)
    doc = samples[0]["doc"] if samples else {}
    record: TaskRecord = {
        "task": name,
        "dataset": doc.get("dataset"),
        "exam": doc.get("exam"),
        "metric": metric,
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "stderr": result.get(stderr_key) if stderr_key else None,
        "ci95_low": low,
        "ci95_high": high,
        "ci_method": "wilson",
        "invalid": invalid,
        "invalid_rate": invalid / n if n else None,
        "truncated_prompts": truncated,
        # Questions whose best two choices scored exactly equal: the first letter wins them by position.
        "ties": sum(1 for r in rows if r["tie"]),
        "letters": letter_distribution(rows),
    }
    if rotated:
        record["permutation"] = permutation_summary(samples, rotated, metric, seed)
    return record


def permutation_summary(samples: list[dict], rotated: dict[str, list[dict]], metric: str, seed: int) -> dict:
    """Per-rotation accuracy, the mean over rotations (debiased) and right-under-every-rotation (circular).

    Intervals are bootstrap intervals over questions of the per-question mean (or all-right) score, so
    they are paired across rotations as the questions are.
    """
    matrix = rotation_matrix(samples, rotated, metric)
    debiased, circular = matrix.mean(axis=1), matrix.min(axis=1)
    d_low, d_high = stats.bootstrap_ci(debiased, seed)
    c_low, c_high = stats.bootstrap_ci(circular, seed)
    return {
        "scheme": "cyclic",
        "rotations": matrix.shape[1],
        "rotated_tasks": list(rotated),
        "per_rotation_accuracy": [float(x) for x in matrix.mean(axis=0)],
        "debiased_accuracy": float(debiased.mean()),
        "debiased_ci95": [d_low, d_high],
        "circular_accuracy": float(circular.mean()),
        "circular_ci95": [c_low, c_high],
        "ci_method": f"bootstrap{stats.RESAMPLES}",
    }


def rotation_matrix(samples: list[dict], rotated: dict[str, list[dict]], metric: str) -> np.ndarray:
    """0/1 scores, one row per question (in `samples` order), one column per rotation (0 first)."""
    ids = [str(s["doc"]["id"]) for s in samples]
    columns = [[float(s[metric]) for s in samples]]
    for name, rot_samples in rotated.items():
        by_id = {str(s["doc"]["id"]): float(s[metric]) for s in rot_samples}
        if set(by_id) != set(ids):
            raise ValueError(f"{name}: its questions are not the unrotated task's")
        columns.append([by_id[i] for i in ids])
    return np.asarray(columns, dtype=float).T


def weighted_average(tasks: list[dict]) -> float | None:
    n = sum(t["n"] for t in tasks)
    return sum(t["correct"] for t in tasks) / n if n else None
