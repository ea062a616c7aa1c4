"""Paired comparisons between runs of one model: same questions, different variant, prompt or mode.

Two runs of one model answer largely the same questions, so their accuracies are compared
question by question (matched on doc.id). That is far more sensitive than comparing two
independent confidence intervals, and it stays honest when one run saw a sample of the questions.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from medbench import stats
from medbench.records.reader import Run, TaskScores

COMPARISON_FIELDS = (
    "model",
    "task",
    "run_a",
    "run_b",
    "variant_a",
    "prompt_a",
    "mode_a",
    "variant_b",
    "prompt_b",
    "mode_b",
    "metric",
    "n_paired",
    "acc_a",
    "acc_b",
    "difference",
    "diff_ci95_low",
    "diff_ci95_high",
    "only_a_correct",
    "only_b_correct",
    "test",
    "p_value",
    "holm_p",
)
# Comparisons use the position-debiased accuracy (mean over option rotations) when both runs have it:
# plain accuracy can move with a letter habit alone (a fine-tune that answers "A" 98% of the time
# gains on a test whose most frequent gold letter is A).
# Run a of a pair is the plainer setting (base before fine-tuned, zero-shot before few-shot before CoT,
# mc before gen), so difference = b - a reads as "what the change bought".
PROMPT_ORDER = ("zeroshot", "fewshot", "cot")
MODE_ORDER = ("mc", "gen")


def _rank(value: str, order: tuple[str, ...]) -> int:
    return order.index(value) if value in order else len(order)


def run_order(run: Run) -> tuple:
    variant, prompt, mode = run.config
    return (
        run.record["model"],
        variant != "base",
        variant,
        _rank(prompt, PROMPT_ORDER),
        prompt,
        _rank(mode, MODE_ORDER),
        mode,
        run.run_id,
    )


def metric_of(a: TaskScores, b: TaskScores) -> str:
    return "debiased" if a.debiased is not None and b.debiased is not None else "standard"


def paired_scores(a: TaskScores, b: TaskScores, metric: str = "standard") -> tuple[list[str], np.ndarray, np.ndarray]:
    """The questions both answered, in a's order, with each run's score (0/1, or the debiased mean)."""
    b_index = {doc_id: i for i, doc_id in enumerate(b.ids)}
    both = [(i, b_index[doc_id]) for i, doc_id in enumerate(a.ids) if doc_id in b_index]
    ids = [a.ids[i] for i, _ in both]
    va, vb = (a.debiased, b.debiased) if metric == "debiased" else (a.scores, b.scores)
    return ids, va[[i for i, _ in both]], vb[[j for _, j in both]]


def compare_tasks(a: TaskScores, b: TaskScores, seed: int, resamples: int = stats.RESAMPLES) -> dict:
    """Paired accuracy difference (b - a) with its bootstrap interval and a paired test.

    Standard accuracy (0/1 per question): McNemar's exact test. Debiased accuracy (a mean over
    rotations per question): a paired sign-flip permutation test on the per-question differences.
    """
    metric = metric_of(a, b)
    _, sa, sb = paired_scores(a, b, metric)
    n = len(sa)
    only_a = int(((sa == 1) & (sb == 0)).sum()) if metric == "standard" else None
    only_b = int(((sa == 0) & (sb == 1)).sum()) if metric == "standard" else None
    acc_a = float(sa.mean()) if n else float("nan")
    acc_b = float(sb.mean()) if n else float("nan")
    low, high = stats.paired_bootstrap_ci(sa, sb, seed, resamples)
    if metric == "standard":
        test, p = "mcnemar_exact", stats.mcnemar_exact(only_a, only_b)
    else:
        test, p = "sign_flip", stats.sign_flip_p(sb - sa, seed)
    return {
        "metric": metric,
        "n_paired": n,
        "acc_a": acc_a,
        "acc_b": acc_b,
        "difference": acc_b - acc_a,
        "diff_ci95_low": low,
        "diff_ci95_high": high,
        "only_a_correct": only_a,
        "only_b_correct": only_b,
        "test": test,
        "p_value": p,
    }


def comparisons(runs: list[Run], seed: int, resamples: int = stats.RESAMPLES) -> list[dict]:
    """Every pair of runs of the same model with a different (variant, prompt, mode), per shared task.

    Pairs of one configuration (e.g. a --limit run and the full run) are left out: they differ
    only in which questions were asked, which is not a comparison anyone asked for. Pairs with no
    question in common are left out too.
    """
    rows = []
    ordered = sorted(runs, key=run_order)
    for ra, rb in combinations(ordered, 2):
        if ra.record["model"] != rb.record["model"] or ra.config == rb.config:
            continue
        ta, tb = ra.scored_tasks(), rb.scored_tasks()
        for task in sorted(set(ta) & set(tb)):
            result = compare_tasks(ta[task], tb[task], seed, resamples)
            if result["n_paired"] == 0:
                continue
            rows.append(
                {
                    "model": ra.record["model"],
                    "task": task,
                    "run_a": ra.run_id,
                    "run_b": rb.run_id,
                    **{f"{k}_a": v for k, v in zip(("variant", "prompt", "mode"), ra.config)},
                    **{f"{k}_b": v for k, v in zip(("variant", "prompt", "mode"), rb.config)},
                    **result,
                }
            )
    for row, adjusted in zip(rows, stats.holm([r["p_value"] for r in rows]), strict=True):
        row["holm_p"] = adjusted
    return rows


def most_significant(rows: list[dict]) -> dict | None:
    """The comparison with the smallest p-value (the first in table order on a tie)."""
    return min(rows, key=lambda r: r["p_value"], default=None)
