"""Position bias beside every accuracy: which letters a run answered, the two letter-only baselines,
exact ties, and (for permuted runs) the position-debiased and circular accuracies.

A small model's answers are often a letter habit: the 270M fine-tuned with LoRA answers "A" on 98%
of MedQA, whose most frequent gold letter is A. An accuracy near the majority-letter or the
prior-matched baseline measured that habit, not medicine.
"""

from __future__ import annotations

from medbench.records.questions import DOMINANT_SHARE, letter_distribution, question_rows
from medbench.records.reader import AVERAGE_TASK, Run
from medbench.report.markdown import table

COLUMNS = (("kormedmcqa", "KorMedMCQA (4 exams pooled)"), ("medqa", "MedQA"))


def position_bias_rows(runs: list[Run]) -> list[dict]:
    """Per run and dataset (KorMedMCQA's four exams pooled): accuracy, baselines, letters, permutation."""
    out = []
    for run in runs:
        scored = run.scored_tasks()
        for dataset, _ in COLUMNS:
            parts = [t for t in run.tasks if t.dataset == dataset]
            if not parts or (dataset == "kormedmcqa" and AVERAGE_TASK not in scored):
                continue
            scores = scored[AVERAGE_TASK] if dataset == "kormedmcqa" else parts[0]
            rows = [r for t in parts for r in question_rows(run.path, t.task)]
            letters = letter_distribution(rows)
            valid = sum(letters["predicted"].values())
            top = max(letters["letters"], key=lambda k: letters["predicted"][k])
            out.append(
                {
                    "run_id": run.run_id,
                    "dataset": dataset,
                    "n": len(rows),
                    "accuracy": float(scores.scores.mean()),
                    "majority_baseline": letters["majority_baseline"],
                    "prior_baseline": letters["prior_baseline"],
                    "top_letter": top,
                    "top_share": letters["predicted"][top] / valid if valid else None,
                    "dominant": letters["dominant"] is not None,
                    "ties": sum(1 for r in rows if r["tie"]),
                    "debiased": float(scores.debiased.mean()) if scores.debiased is not None else None,
                    "circular": float(scores.circular.mean()) if scores.circular is not None else None,
                }
            )
    return out


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def position_bias_section(rows: list[dict]) -> str:
    if not rows:
        return "(no results yet)"
    body = [
        [
            f"`{r['run_id']}`",
            dict(COLUMNS)[r["dataset"]],
            r["n"],
            _pct(r["accuracy"]),
            _pct(r["majority_baseline"]),
            _pct(r["prior_baseline"]),
            f"{r['top_letter']} {_pct(r['top_share'])}" + (" ⚠" if r["dominant"] else ""),
            r["ties"],
            _pct(r["debiased"]),
            _pct(r["circular"]),
        ]
        for r in rows
    ]
    note = (
        f"Accuracy beside what letters alone would score. **majority**: always answering the most frequent gold "
        f"letter. **prior-matched**: answering at random with the run's own letter frequencies "
        f"(Σ p_pred·p_gold). **top letter**: the most answered letter and its share of valid answers; ⚠ where "
        f"it exceeds {100 * DOMINANT_SHARE:.0f}%. **ties**: questions whose best two letters scored exactly "
        "equal (the first letter wins them by position). **debiased** / **circular**: with `--set "
        "permute=cyclic`, the mean over option rotations and the share right under every rotation."
    )
    return (
        note
        + "\n\n"
        + table(
            [
                "run",
                "dataset",
                "n",
                "accuracy %",
                "majority %",
                "prior-matched %",
                "top letter %",
                "ties",
                "debiased %",
                "circular %",
            ],
            body,
        )
    )
