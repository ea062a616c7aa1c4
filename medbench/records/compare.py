"""Two runs of the same tasks, question by question: the one answer comparison of the project.

Used for every "same answers?" claim: data-parallel and sharded runs against one process (dev/), a GPU
run against a CPU run, batch size against batch size (`medbench compare RUN_A RUN_B`). For multiple-choice runs
each differing question carries its top-two score gap in run A: a flip at a gap of a few thousandths is a
near-tie that rounding can move; a wide gap means the two runs computed different numbers.
"""

from __future__ import annotations

from pathlib import Path
from statistics import median

from medbench.records.io import samples_path
from medbench.records.questions import question_rows

LISTED = 20  # differing questions named in the result
GAPS_LISTED = 50


def run_tasks(run_dir: Path) -> list[str]:
    """Every task a run logged samples for (rotated tasks of a permuted run included)."""
    prefix, suffix = samples_path(Path(run_dir), "X").name.split("X")
    return sorted(p.name.removeprefix(prefix).removesuffix(suffix) for p in Path(run_dir).glob(f"{prefix}*{suffix}"))


def compare_answers(run_a: Path, run_b: Path) -> dict:
    """Per question of run A's tasks: the same answer letter, the same correctness, the same generated text (gen),
    the same order of samples, the largest difference of their multiple-choice scores, and for each question whose
    answer differs, how near a tie it was in run A (its top-two score gap)."""
    run_a, run_b = Path(run_a), Path(run_b)
    tasks = run_tasks(run_a)
    out = {
        "run_a": run_a.name,
        "run_b": run_b.name,
        "tasks": tasks,
        "questions": 0,
        "same_answer": 0,
        "same_correct": 0,
        "same_output": 0,
        "order_identical": True,
        "max_abs_score_difference": 0.0,
        "differing": [],
    }
    gaps = []
    for task in tasks:
        rows_a, rows_b = question_rows(run_a, task), question_rows(run_b, task)
        out["order_identical"] &= [r["id"] for r in rows_a] == [r["id"] for r in rows_b]
        by_id = {r["id"]: r for r in rows_b}
        for a in rows_a:
            b = by_id.get(a["id"])
            out["questions"] += 1
            if b is None:
                out["differing"].append(f"{task}:{a['id']} (missing)")
                continue
            out["same_answer"] += a["predicted"] == b["predicted"]
            out["same_correct"] += a["correct"] == b["correct"]
            out["same_output"] += a.get("output") == b.get("output")
            scores_a, scores_b = a.get("scores") or {}, b.get("scores") or {}
            worst = max((abs(s - scores_b.get(k, float("inf"))) for k, s in scores_a.items()), default=0.0)
            out["max_abs_score_difference"] = max(out["max_abs_score_difference"], worst)
            if a["predicted"] != b["predicted"]:
                out["differing"].append(f"{task}:{a['id']}")
                top = sorted(scores_a.values(), reverse=True)
                if len(top) > 1:
                    gaps.append(round(top[0] - top[1], 6))
    out["different"] = out["questions"] - out["same_answer"]
    out["differing"] = out["differing"][:LISTED]
    out["differing_top2_gap_max"] = max(gaps, default=None)
    out["differing_top2_gap_median"] = median(gaps) if gaps else None
    out["differing_top2_gaps"] = sorted(gaps)[:GAPS_LISTED]
    return out
