"""Position bias: how much of an accuracy is a letter habit, and what is left when the habit is taken out.

Beside every accuracy of a letter-scored run, per dataset (KorMedMCQA's four exams pooled):

- what letters alone would score: always the most frequent gold letter (majority), or at random with the run's own
  letter frequencies (prior-matched); and what option length alone would score (always the longest option: exam
  writers often make the key the most complete option);
- which letter the run answered most and how often, and how often it chose the longest option;
- with every option rotation scored (`--set permute=cyclic`):
  - **lock share**: the questions whose answer stays at the same position under every rotation, i.e. answered by
    position, whatever the options say;
  - **debiased**: each question's correctness averaged over its rotations (what the primary family compares);
  - **circular**: right under every rotation;
  - **score-debiased**: each option's letter probability averaged over the rotations that showed it, then the
    argmax: cyclic-permutation debiasing at the score level, as PriDe (Zheng et al., ICLR 2024) estimates it with
    every permutation;
  - **calibrated**: PriDe's cheap form: the position prior estimated from every rotation of a seeded calibration
    subset, divided out of the unrotated scores of the other questions (accuracy over those only).
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, softmax

from medbench import stats
from medbench.records.questions import DOMINANT_SHARE, letter_distribution, question_rows
from medbench.records.reader import AVERAGE_TASK, Run, TaskScores
from medbench.report.markdown import code, table
from medbench.settings import DEFAULT_SEED

COLUMNS = (("kormedmcqa", "KorMedMCQA (4 exams pooled)"), ("medqa", "MedQA"))
CALIBRATION_FRACTION = 0.1


def _by_option(values: np.ndarray) -> np.ndarray:
    """[question, rotation, position] -> [question, rotation, original option]: rotation k shows original option o
    at position (o - k) mod n."""
    n = values.shape[-1]
    out = np.empty_like(values)
    for k in range(values.shape[1]):
        out[:, k, :] = values[:, k, (np.arange(n) - k) % n]
    return out


def score_debiased(task: TaskScores) -> np.ndarray | None:
    """0/1 per question: the argmax over options of the letter probability averaged over rotations."""
    if task.rotation_logp is None or task.gold is None:
        return None
    probs = softmax(task.rotation_logp, axis=-1)
    mean = _by_option(probs).mean(axis=1)
    return (mean.argmax(axis=1) == task.gold).astype(float)


def locked(task: TaskScores) -> np.ndarray | None:
    """True per question answered at the same position under every rotation."""
    if task.rotation_logp is None:
        return None
    positions = task.rotation_logp.argmax(axis=2)
    return (positions == positions[:, :1]).all(axis=1)


def calibrated(
    task: TaskScores, fraction: float = CALIBRATION_FRACTION, seed: int = DEFAULT_SEED
) -> tuple[np.ndarray, int] | None:
    """(0/1 per question outside the calibration subset, calibration size): PriDe with its prior estimated on a
    seeded `fraction` of the questions. With every rotation of a question, the mean log-probability per position
    is the position prior up to a constant (each option visits each position once), so the prior is the softmax
    of that mean over the calibration questions."""
    if task.rotation_logp is None or task.gold is None:
        return None
    n = len(task.ids)
    size = max(1, int(round(fraction * n)))
    chosen = np.zeros(n, dtype=bool)
    chosen[np.random.default_rng(seed).choice(n, size=size, replace=False)] = True
    logp = log_softmax(task.rotation_logp, axis=-1)
    prior = log_softmax(logp[chosen].mean(axis=(0, 1)))
    answers = (logp[~chosen, 0, :] - prior).argmax(axis=1)
    return (answers == task.gold[~chosen]).astype(float), size


def _longest(options: list[str]) -> int:
    lengths = [len(o) for o in options]
    return lengths.index(max(lengths))


def length_view(rows: list[dict]) -> dict:
    """Option length beside the answers: the longest-option baseline, how often the run chose the longest option,
    and its accuracy where the key is and is not the longest option (questions with options only)."""
    rows = [r for r in rows if r["options"] and r["gold"]]
    if not rows:
        return {"longest_baseline": None, "chose_longest": None, "acc_gold_longest": None, "acc_gold_other": None}
    letters = "ABCDE"
    longest = [letters[_longest(r["options"])] for r in rows]
    gold_longest = [r["gold"] == x for r, x in zip(rows, longest)]
    answered = [r for r in rows if not r.get("invalid")]
    chose = [r["predicted"] == x for r, x in zip(rows, longest) if not r.get("invalid")]

    def accuracy(select: bool):
        chosen = [r["correct"] for r, g in zip(rows, gold_longest) if g is select]
        return sum(chosen) / len(chosen) if chosen else None

    return {
        "longest_baseline": sum(gold_longest) / len(rows),
        "chose_longest": sum(chose) / len(answered) if answered else None,
        "acc_gold_longest": accuracy(True),
        "acc_gold_other": accuracy(False),
    }


def position_bias_rows(runs: list[Run], seed: int = DEFAULT_SEED) -> list[dict]:
    """Per run and dataset (KorMedMCQA's four exams pooled): accuracy, baselines, letters, length, rotations."""
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
            lock = locked(scores)
            level = score_debiased(scores)
            cal = calibrated(scores, seed=seed)
            row = {
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
                **length_view(rows),
                "lock_share": float(lock.mean()) if lock is not None else None,
                "debiased": float(scores.debiased.mean()) if scores.debiased is not None else None,
                "circular": float(scores.circular.mean()) if scores.circular is not None else None,
                "circular_ci95": _proportion_ci(scores.circular),
                "score_debiased": float(level.mean()) if level is not None else None,
                "score_debiased_ci95": _proportion_ci(level),
                "calibrated": float(cal[0].mean()) if cal else None,
                "calibration_n": cal[1] if cal else None,
            }
            out.append(row)
    return out


def _proportion_ci(values: np.ndarray | None):
    if values is None:
        return None
    return stats.proportion_ci(int(values.sum()), values.size)[0]


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _pct_ci(x, ci) -> str:
    return "–" if x is None else f"{100 * x:.1f} ({100 * ci[0]:.1f}–{100 * ci[1]:.1f})"


def position_bias_section(rows: list[dict]) -> str:
    if not rows:
        return "(no results yet)"
    letters = [
        [
            code(r["run_id"]),
            dict(COLUMNS)[r["dataset"]],
            r["n"],
            _pct(r["accuracy"]),
            _pct(r["majority_baseline"]),
            _pct(r["prior_baseline"]),
            _pct(r["longest_baseline"]),
            f"{r['top_letter']} {_pct(r['top_share'])}" + (" ⚠" if r["dominant"] else ""),
            _pct(r["chose_longest"]),
            f"{_pct(r['acc_gold_longest'])} / {_pct(r['acc_gold_other'])}",
            r["ties"],
        ]
        for r in rows
    ]
    rotated = [
        [
            code(r["run_id"]),
            dict(COLUMNS)[r["dataset"]],
            _pct(r["accuracy"]),
            _pct(r["lock_share"]),
            _pct(r["debiased"]),
            _pct_ci(r["circular"], r["circular_ci95"]),
            _pct_ci(r["score_debiased"], r["score_debiased_ci95"]),
            f"{_pct(r['calibrated'])} (prior from {r['calibration_n']})",
        ]
        for r in rows
        if r["lock_share"] is not None
    ]
    note = (
        "Accuracy beside what letters or option length alone would score. **majority**: always the most frequent "
        "gold letter. **prior-matched**: at random with the run's own letter frequencies (Σ p_pred·p_gold). "
        "**longest**: always the longest option (the first of equal ones). **top letter**: the most answered letter "
        f"and its share of valid answers; ⚠ where it exceeds {100 * DOMINANT_SHARE:.0f}%. **chose longest**: the "
        "share of answers that were the longest option. **acc key longest / other**: accuracy on the questions "
        "whose key is the longest option, and on the others. **ties**: questions whose best two letters scored "
        "exactly equal (the first letter wins them by position)."
    )
    rotation_note = (
        "With every option rotation scored (`--set permute=cyclic`). **lock**: the share of questions answered at "
        "the same position under every rotation (a model that always picks one position scores 1/n on every "
        "rotation of every question and has a lock share of 100%). **debiased**: correctness averaged over "
        "rotations (the primary family's metric). **circular**: right under every rotation (exact interval). "
        "**score-debiased**: each option's letter probability averaged over the rotations, then the argmax "
        "(PriDe's estimate with every permutation). **calibrated**: PriDe's position prior from every rotation of a "
        f"seeded {100 * CALIBRATION_FRACTION:.0f}% of the questions, divided out of the unrotated scores of the "
        "rest (accuracy over the rest)."
    )
    parts = [
        note,
        "",
        table(
            [
                "run",
                "dataset",
                "n",
                "accuracy %",
                "majority %",
                "prior-matched %",
                "longest %",
                "top letter %",
                "chose longest %",
                "acc key longest / other %",
                "ties",
            ],
            letters,
        ),
    ]
    if rotated:
        parts += [
            "",
            rotation_note,
            "",
            table(
                [
                    "run",
                    "dataset",
                    "accuracy %",
                    "lock %",
                    "debiased %",
                    "circular % (95% CI)",
                    "score-debiased % (95% CI)",
                    "calibrated %",
                ],
                rotated,
            ),
        ]
    return "\n".join(parts)
