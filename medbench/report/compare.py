"""Paired comparisons, as the checked-in plan (medbench/report/plan.yaml) names them, and only those.

Two runs answer largely the same questions, so their accuracies are compared question by question (matched on
doc.id): far more sensitive than two independent intervals. Every comparison reports what it can and cannot say:

- the paired difference (b - a) with its 95% bootstrap interval over questions;
- a paired test with fine p resolution: exact McNemar for 0/1 scores, the exact sign-flip test for per-question
  means on a lattice (rotations, pooled seeds);
- Holm's adjustment within the comparison's family (the plan's), whose size the report prints;
- the minimum detectable difference at 80% power, and a TOST verdict of equivalence within the plan's margin:
  "no effect" is stated as a bound, never as a failed test.

A fine-tuned variant trained under several seeds enters as one member: each question's score averaged over the
seeds' runs, with the seeds' spread of accuracies beside.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import yaml

from medbench import stats
from medbench.records.reader import Run, TaskScores
from medbench.records.verify import provenance_gaps
from medbench.report.position_bias import score_debiased

PLAN_PATH = Path(__file__).with_name("plan.yaml")
COMPARISON_FIELDS = (
    "family",
    "family_size",
    "dataset",
    "model_a",
    "variant_a",
    "model_b",
    "variant_b",
    "prompt",
    "mode",
    "metric",
    "runs_a",
    "runs_b",
    "n_paired",
    "acc_a",
    "acc_b",
    "seed_accuracies_b",
    "difference",
    "diff_ci95_low",
    "diff_ci95_high",
    "mdd80",
    "margin",
    "tost_p",
    "equivalent",
    "test",
    "p_value",
    "holm_p",
)
DATASET_TASKS = {"kormedmcqa": "kormedmcqa_average", "medqa": "medqa_usmle"}
PROMPT_ORDER = ("zeroshot", "fewshot", "cot")
MODE_ORDER = ("mc", "cloze", "gen")


@cache
def load_plan(path: Path = PLAN_PATH) -> dict:
    return yaml.safe_load(path.read_text())


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


def legacy(run: Run) -> bool:
    """A run without full provenance (records/verify.py): left out of the headline and the families."""
    return bool(provenance_gaps(run.record))


def contaminated(run: Run) -> dict | None:
    """What test questions the run's weights were trained on, as its training record says (a positive control):
    {"dataset", "split", "ids"}; None for a run of clean weights."""
    return (run.record.get("training_record") or {}).get("contaminated") or None


def positive_control(run: Run) -> bool:
    return contaminated(run) is not None


def eligible(run: Run, include_legacy: bool = False) -> bool:
    """A run that may stand for its configuration: every question, default precision, not a positive control."""
    record = run.record
    settings = record.get("settings") or {}
    return (
        record.get("limit") is None
        and record.get("sample") is None
        and settings.get("dtype", "auto") == "auto"
        and not positive_control(run)
        and (include_legacy or not legacy(run))
    )


def configuration(runs: list[Run], model: str, variant: str, prompt: str, mode: str, metric: str) -> list[Run]:
    """The runs that stand for one configuration: one per checkpoint (a fine-tuned variant's seeds), the latest
    where a checkpoint was evaluated twice."""
    chosen: dict[str | None, Run] = {}
    for run in sorted(runs, key=lambda r: r.record.get("created") or ""):
        record = run.record
        if (record["model"], record["variant"], record["prompt"], record["mode"]) != (model, variant, prompt, mode):
            continue
        if any(metric_values(t, metric) is None for t in run.tasks):
            continue
        chosen[record.get("checkpoint")] = run
    return [chosen[k] for k in sorted(chosen, key=str)]


def member_scores(members: list[Run], task: str, metric: str) -> tuple[list[str], np.ndarray, list[float]] | None:
    """(question ids, each question's score averaged over the members, each member's accuracy) on one task."""
    tasks = [m.scored_tasks().get(task) for m in members]
    if not members or any(t is None for t in tasks):
        return None
    ids = [i for i in tasks[0].ids if all(i in set(t.ids) for t in tasks[1:])]
    columns = []
    for t in tasks:
        values = metric_values(t, metric)
        index = {doc_id: k for k, doc_id in enumerate(t.ids)}
        columns.append(values[[index[i] for i in ids]])
    matrix = np.stack(columns, axis=1)
    return ids, matrix.mean(axis=1), [float(c.mean()) for c in columns]


METRICS = ("standard", "debiased", "score_debiased")


def metric_values(task: TaskScores, metric: str):
    """Per-question scores under a plan metric (None where the run cannot give them): `standard` the 0/1
    correctness, `debiased` correctness averaged over option rotations, `score_debiased` the 0/1 correctness of the
    argmax of option probabilities averaged over rotations."""
    if metric == "debiased":
        return task.debiased
    if metric == "score_debiased":
        return score_debiased(task)
    if metric == "standard":
        return task.scores
    raise ValueError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")


def metric_of(a: TaskScores, b: TaskScores) -> str:
    return "debiased" if a.debiased is not None and b.debiased is not None else "standard"


def compare_scores(ids_a, sa, ids_b, sb, margin: float, seed: int, resamples: int = stats.RESAMPLES) -> dict:
    """Every number of one paired comparison of per-question scores (b - a), matched on question ids."""
    index_b = {doc_id: k for k, doc_id in enumerate(ids_b)}
    both = [(k, index_b[doc_id]) for k, doc_id in enumerate(ids_a) if doc_id in index_b]
    va = np.asarray(sa, dtype=float)[[k for k, _ in both]]
    vb = np.asarray(sb, dtype=float)[[j for _, j in both]]
    n = len(both)
    low, high = stats.paired_bootstrap_ci(va, vb, seed, resamples) if n else (float("nan"), float("nan"))
    test, p = stats.paired_test(va, vb, seed) if n else ("none", 1.0)
    bounds = stats.paired_bounds(va, vb, margin)
    return {
        "n_paired": n,
        "acc_a": float(va.mean()) if n else float("nan"),
        "acc_b": float(vb.mean()) if n else float("nan"),
        "difference": float((vb - va).mean()) if n else float("nan"),
        "diff_ci95_low": low,
        "diff_ci95_high": high,
        "mdd80": bounds["mdd80"],
        "margin": margin,
        "tost_p": bounds["tost_p"],
        "equivalent": bounds["equivalent"],
        "test": test,
        "p_value": p,
    }


def compare_tasks(a: TaskScores, b: TaskScores, seed: int, resamples: int = stats.RESAMPLES, margin: float = 0.02):
    """Two runs' scores on one task (debiased where both have it), as one comparison."""
    metric = metric_of(a, b)
    va, vb = (a.debiased, b.debiased) if metric == "debiased" else (a.scores, b.scores)
    return {"metric": metric, **compare_scores(a.ids, va, b.ids, vb, margin, seed, resamples)}


def comparisons(
    runs: list[Run], seed: int, resamples: int = stats.RESAMPLES, plan: dict | None = None, include_legacy=False
) -> list[dict]:
    """Every comparison of the plan's families that has runs, Holm-adjusted within its family."""
    plan = plan or load_plan()
    pool = [r for r in runs if eligible(r, include_legacy)]
    rows = []
    for family in plan["families"]:
        family_rows = []
        metric, margin = family["metric"], family["margin"]
        for (model_a, variant_a), (model_b, variant_b) in _pairs(family):
            config = (family["prompt"], family["mode"], metric)
            runs_a = configuration(pool, model_a, variant_a, *config)
            runs_b = configuration(pool, model_b, variant_b, *config)
            for dataset in family["datasets"]:
                task = DATASET_TASKS[dataset]
                a, b = member_scores(runs_a, task, metric), member_scores(runs_b, task, metric)
                if a is None or b is None:
                    continue
                result = compare_scores(a[0], a[1], b[0], b[1], margin, seed, resamples)
                family_rows.append(
                    {
                        "family": family["name"],
                        "dataset": dataset,
                        "model_a": model_a,
                        "variant_a": variant_a,
                        "model_b": model_b,
                        "variant_b": variant_b,
                        "prompt": family["prompt"],
                        "mode": family["mode"],
                        "metric": metric,
                        "runs_a": " ".join(r.run_id for r in runs_a),
                        "runs_b": " ".join(r.run_id for r in runs_b),
                        "seed_accuracies_b": " ".join(f"{x:.4f}" for x in b[2]),
                        **result,
                    }
                )
        for row, adjusted in zip(family_rows, stats.holm([r["p_value"] for r in family_rows]), strict=True):
            row["holm_p"] = adjusted
            row["family_size"] = len(family_rows)
        rows += family_rows
    return rows


def _pairs(family: dict) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    if "against_model" in family:
        return [((family["against_model"], family["variant"]), (m, family["variant"])) for m in family["models"]]
    return [((family["model"], family["against"]), (family["model"], v)) for v in family["members"]]


def planned_missing(runs: list[Run], plan: dict | None = None) -> list[dict]:
    """The plan's comparisons that have no eligible run on one side: {family, member, why}."""
    plan = plan or load_plan()
    pool = [r for r in runs if eligible(r)]
    out = []
    for family in plan["families"]:
        config = (family["prompt"], family["mode"], family["metric"])
        for (model_a, variant_a), (model_b, variant_b) in _pairs(family):
            member = variant_b if model_a == model_b else model_b
            for model, variant in ((model_a, variant_a), (model_b, variant_b)):
                if not configuration(pool, model, variant, *config):
                    out.append({"family": family["name"], "member": member, "why": f"no run of {model} {variant}"})
                    break
    return out


def most_significant(rows: list[dict]) -> dict | None:
    """The comparison with the smallest Holm-adjusted p-value (the first in table order on a tie)."""
    return min(rows, key=lambda r: r["holm_p"], default=None)


POSITIVE_CONTROL_FIELDS = (
    "run",
    "dataset",
    "half",
    "metric",
    "base_runs",
    "n_paired",
    "acc_a",
    "acc_b",
    "difference",
    "diff_ci95_low",
    "diff_ci95_high",
    "mdd80",
    "test",
    "p_value",
)


def positive_control_rows(runs: list[Run], seed: int, resamples: int = stats.RESAMPLES) -> list[dict]:
    """Each positive control against its model's base run (same prompt and mode), on the test questions it was
    trained on and on the others, under every metric both runs have: the seen half must move, the unseen one not."""
    pool = [r for r in runs if eligible(r) or positive_control(r)]
    rows = []
    for run in pool:
        seen = contaminated(run)
        if not seen:
            continue
        seen_ids = {str(i) for i in seen.get("ids", [])}
        dataset = seen.get("dataset")
        task = DATASET_TASKS.get(dataset)
        for metric in METRICS:
            base = configuration(
                [r for r in pool if not positive_control(r)],
                run.record["model"],
                "base",
                run.record["prompt"],
                run.record["mode"],
                metric,
            )
            a, b = member_scores(base, task, metric), member_scores([run], task, metric)
            if a is None or b is None:
                continue
            for half, keep in (("seen", True), ("unseen", False)):
                ids_b = [i for i in b[0] if (i in seen_ids) is keep]
                index_b = {doc_id: k for k, doc_id in enumerate(b[0])}
                scores_b = b[1][[index_b[i] for i in ids_b]]
                result = compare_scores(a[0], a[1], ids_b, scores_b, 0.02, seed, resamples)
                rows.append(
                    {
                        "run": run.run_id,
                        "dataset": dataset,
                        "half": half,
                        "metric": metric,
                        "base_runs": " ".join(r.run_id for r in base),
                        **{k: result[k] for k in POSITIVE_CONTROL_FIELDS if k in result},
                    }
                )
    return rows
