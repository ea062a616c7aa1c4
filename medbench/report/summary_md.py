"""The report's Markdown: results/summary.md (every table), docs/results.md (the findings, in words and the tables
they rest on) and the README's results block, all from one `ReportData`. Nothing here computes a statistic: the
numbers come from compare.py, position_bias.py, summary.py and training.py; this module words and lays them out."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from medbench.data.loader import KORMEDMCQA_EXAMS
from medbench.records.reader import Run
from medbench.report.compare import contaminated, positive_control, run_order
from medbench.report.markdown import code, device, escape, num, table
from medbench.report.position_bias import position_bias_section

DATASET_NAMES = {"kormedmcqa": "KorMedMCQA", "medqa": "MedQA"}
METRIC_NAMES = {
    "debiased": "debiased (correctness averaged over option rotations)",
    "score_debiased": "score-debiased (argmax of option probabilities averaged over rotations)",
    "standard": "standard (0/1 correctness)",
}
# Columns of the per-run accuracy table: (dataset, exam) -> header.
MAIN_COLUMNS = (
    *((("kormedmcqa", e), e) for e in KORMEDMCQA_EXAMS),
    (("kormedmcqa", "average"), "KorMedMCQA"),
    (("medqa", "usmle"), "MedQA"),
)


@dataclass
class ReportData:
    runs: list[Run]  # every run with full provenance
    legacy: list[tuple[Run, list[str]]]  # runs without it, and what each lacks
    rows: list[dict]  # summary rows (summary.py) of `runs`
    comparisons: list[dict]  # the plan's families (compare.py)
    missing: list[dict]  # planned comparisons without runs
    positive: list[dict]  # positive-control rows (compare.py)
    bias: list[dict]  # position-bias rows (position_bias.py)
    plan: dict
    seed: int
    resamples: int
    training: str = ""
    measurements: str = ""
    contamination: str = ""
    legacy_records: list[tuple[str, list[str]]] = field(default_factory=list)  # training/bench records
    train_records: list[dict] = field(default_factory=list)  # training records with full provenance


def _pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _pt(x) -> str:
    return f"{100 * x:+.2f}"


def _p(x) -> str:
    return "–" if x is None else (f"{x:.2g}" if x >= 1e-4 else f"{x:.1e}")


def subset(record: dict) -> str:
    """Which questions a run answered, in words: all, the first N, or a seeded sample of N per task."""
    if record.get("sample"):
        return f"sample {record['sample']}/task"
    if record.get("limit"):
        return f"first {record['limit']}/task"
    return "all"


def role(run: Run) -> str:
    record = run.record
    if positive_control(run):
        return "positive control"
    if record.get("limit") or record.get("sample"):
        return "subset"
    if (record.get("settings") or {}).get("dtype", "auto") != "auto":
        return f"diagnostic ({record['settings']['dtype']})"
    return "study"


def verdict(row: dict, alpha: float) -> str:
    if row["holm_p"] < alpha:
        return "differs"
    if row["equivalent"]:
        return f"equivalent within ±{100 * row['margin']:.0f} pt"
    return "inconclusive"


# ---- tables -------------------------------------------------------------------------------------------------


def _member(row: dict) -> str:
    return row["variant_b"] if row["model_a"] == row["model_b"] else row["model_b"]


def family_table(rows: list[dict], alpha: float) -> str:
    body = []
    for r in rows:
        member = _member(r)
        seeds = r["seed_accuracies_b"].split()
        spread = f" (seeds {', '.join(_pct(float(x)) for x in seeds)})" if len(seeds) > 1 else ""
        body.append(
            [
                DATASET_NAMES.get(r["dataset"], r["dataset"]),
                escape(member),
                r["n_paired"],
                _pct(r["acc_a"]),
                _pct(r["acc_b"]) + spread,
                f"{_pt(r['difference'])} ({_pt(r['diff_ci95_low'])} to {_pt(r['diff_ci95_high'])})",
                f"{100 * r['mdd80']:.2f}",
                _p(r["tost_p"]),
                f"{_p(r['p_value'])} ({r['test']})",
                _p(r["holm_p"]),
                verdict(r, alpha),
            ]
        )
    header = [
        "dataset",
        "against it",
        "questions",
        "baseline %",
        "member %",
        "difference, pt (95% CI)",
        "MDD80, pt",
        "TOST p",
        "p (test)",
        "Holm p",
        "verdict",
    ]
    return table(header, body)


def families_section(data: ReportData) -> str:
    alpha = data.plan.get("alpha", 0.05)
    parts = [
        (
            "The comparisons of the checked-in plan (`medbench/report/plan.yaml`), and only those. Each member is "
            "compared with the family's baseline question by question (paired on question id). **difference**: "
            "member − baseline in points with its paired bootstrap 95% interval; **MDD80**: the smallest "
            "difference this many questions detect with 80% power at two-sided α; **TOST p**: two one-sided tests "
            "that the difference lies within the plan's margin; **p**: exact McNemar for 0/1 scores, the exact "
            "sign-flip test for per-question means; **Holm p**: adjusted within the family (its size is printed). "
            f"**verdict**: *differs* where Holm p < {alpha}, *equivalent* where TOST p < {alpha}, else "
            "*inconclusive*. A fine-tuned variant's seeds are pooled (each question's score averaged over the "
            "seeds' runs) and each seed's accuracy is shown beside."
        )
    ]
    for family in data.plan["families"]:
        rows = [r for r in data.comparisons if r["family"] == family["name"]]
        missing = [m for m in data.missing if m["family"] == family["name"]]
        size = rows[0]["family_size"] if rows else 0
        baseline = family.get("against_model") or f"{family['model']} {family['against']}"
        parts += [
            "",
            f"### Family `{family['name']}` (m = {size})",
            "",
            f"{escape(family['description'])}. Baseline: {escape(baseline)}; prompt {family['prompt']}, mode "
            f"{family['mode']}; metric: {METRIC_NAMES[family['metric']]}; margin ±{100 * family['margin']:.0f} pt.",
            "",
            family_table(rows, alpha) if rows else "(no runs yet)",
        ]
        if missing:
            parts += ["", "Planned but not run: " + "; ".join(f"{escape(m['member'])} ({m['why']})" for m in missing)]
    return "\n".join(parts)


def positive_control_section(rows: list[dict]) -> str:
    if not rows:
        return "(no positive-control run)"
    body = [
        [
            code(r["run"]),
            DATASET_NAMES.get(r["dataset"], r["dataset"]),
            r["half"],
            r["metric"],
            r["n_paired"],
            _pct(r["acc_a"]),
            _pct(r["acc_b"]),
            f"{_pt(r['difference'])} ({_pt(r['diff_ci95_low'])} to {_pt(r['diff_ci95_high'])})",
            f"{100 * r['mdd80']:.2f}",
            f"{_p(r['p_value'])} ({r['test']})",
        ]
        for r in rows
    ]
    note = (
        "A fine-tune on half of a test set's questions with their answers (`just train MODEL lora --profile "
        "protocol --positive-control DATASET`), labelled contaminated in its training record and kept out of every "
        "family, against the base model on the questions it was trained on (**seen**) and on the others "
        "(**unseen**), under each metric. A pipeline that can see an effect shows one on the seen half; the unseen "
        "half shows what training on the test format alone moves. The training prompt shows the options in their "
        "original order, so what was learnt is partly the letter of each seen answer: the rotation metrics ask the "
        "same questions with the options moved."
    )
    header = ["run", "dataset", "half", "metric", "questions", "base %", "control %", "difference, pt (95% CI)",
              "MDD80, pt", "p (test)"]  # fmt: skip
    return note + "\n\n" + table(header, body)


def main_table(runs: list[Run], rows: list[dict]) -> str:
    """Per run: each exam, KorMedMCQA (the four exams pooled) and MedQA as 'accuracy (95% CI)', in percent."""
    if not runs:
        return "(no results yet)"
    by_cell = {(r["run_id"], r["dataset"], r["exam"]): r for r in rows}
    body = []
    for run in sorted(runs, key=_run_order):
        cells = [by_cell.get((run.run_id, *key)) for key, _ in MAIN_COLUMNS]
        record = run.record
        body.append(
            [
                code(run.run_id),
                escape(record["model"]),
                escape(record["variant"]),
                f"{escape(record['prompt'])}/{escape(record['mode'])}",
                role(run),
                subset(record),
                *(f"{_pct(c['accuracy'])} ({_pct(c['ci95_low'])}–{_pct(c['ci95_high'])})" if c else "–" for c in cells),
                device((record.get("hardware") or {}).get("gpu")),
            ]
        )
    header = ["run", "model", "variant", "prompt/mode", "role", "questions", *(n for _, n in MAIN_COLUMNS), "device"]
    return table(header, body)


def _run_order(run: Run) -> tuple:
    size = run.record["params_b"]
    return (size if size is not None else math.inf, *run_order(run))


def tasks_table(rows: list[dict]) -> str:
    body = [
        [
            code(r["run_id"]),
            escape(r["task"]),
            r["n"],
            _pct(r["accuracy"]),
            f"{_pct(r['ci95_low'])}–{_pct(r['ci95_high'])} ({r['ci_method']})",
            _pct(r["invalid_rate"]),
            r["truncated_prompts"],
            num(r["questions_per_second"], ".1f"),
            num(r["scorings_per_second"], ".1f"),
            num(r["peak_gpu_gib"], ".2f"),
            num(r["peak_rss_gib"], ".2f"),
        ]
        for r in rows
    ]
    header = ["run", "task", "n", "accuracy %", "95% CI", "invalid %", "truncated prompts", "questions/s (run)",
              "scorings/s (run)", "GPU GiB (run)", "RSS GiB (run)"]  # fmt: skip
    return table(header, body) if rows else "(no results yet)"


def trained_on_test(runs: list[Run]) -> str:
    """Runs whose weights saw test questions, as their training records declare: flagged, out of every family."""
    flagged = [(run, contaminated(run)) for run in runs if positive_control(run)]
    if not flagged:
        return "No run's training record declares test questions in its training data."
    body = [
        [code(run.run_id), escape(seen.get("dataset", "?")), escape(seen.get("split", "?")), len(seen.get("ids", []))]
        for run, seen in flagged
    ]
    return (
        "**Trained on test questions** (declared by the run's training record; kept out of every family and shown "
        "in the positive-control section):\n\n" + table(["run", "dataset", "split", "questions seen"], body)
    )


def legacy_section(data: ReportData) -> str:
    entries = [(code(run.run_id), gaps) for run, gaps in data.legacy]
    entries += [(code(name), gaps) for name, gaps in data.legacy_records]
    if not entries:
        return "None: every record has full provenance."
    body = [[name, escape(", ".join(gaps))] for name, gaps in entries]
    return (
        "Records without full provenance (`medbench verify` says what each lacks), left out of every table "
        "above.\n\n" + table(["record", "lacks"], body)
    )


# ---- documents ----------------------------------------------------------------------------------------------


def render_summary_md(data: ReportData) -> str:
    parts = [
        "# Results",
        "",
        (
            "Generated by `just report` from `results/`; do not edit by hand. Intervals: 95%, over questions "
            f"(a percentile bootstrap of {data.resamples} resamples, seed {data.seed}, from 100 questions; Wilson "
            "below; Clopper–Pearson at 0 or n). KorMedMCQA: the four exams' questions pooled (weighted by n). "
            "Every run here has full provenance (`medbench verify`); the others are listed at the end."
        ),
        "",
        "## Comparison families",
        "",
        families_section(data),
        "",
        "## Positive control",
        "",
        positive_control_section(data.positive),
        "",
        "## Accuracy per run (%)",
        "",
        main_table(data.runs, data.rows),
        "",
        "![accuracy vs parameters](accuracy_vs_params.png)",
        "",
        (
            "The paper's points are 5-shot direct answering, our `fewshot` prompt; runs of other prompts are shown "
            "for context, not as like-for-like comparisons."
        ),
        "",
        "## Every run and task",
        "",
        (
            "questions/s counts questions; a permuted run scores each one once per option rotation, which "
            "scorings/s counts. GPU GiB: peak allocated by torch; RSS GiB: the process's peak resident memory."
        ),
        "",
        tasks_table(data.rows),
        "",
        "## Position bias",
        "",
        position_bias_section(data.bias),
    ]
    if data.training:
        parts += ["", "## Training", "", data.training.rstrip()]
    if data.measurements:
        parts += ["", "## Speed and memory", "", data.measurements.rstrip()]
    if data.contamination:
        parts += ["", "## Contamination check", "", data.contamination.rstrip(), "", trained_on_test(data.runs)]
    parts += ["", "## Legacy records", "", legacy_section(data), ""]
    return "\n".join(parts)


def headline(data: ReportData) -> dict:
    """The facts the findings are worded from, each read off the tables (None where there is no run)."""
    alpha = data.plan.get("alpha", 0.05)
    primary_name = data.plan["families"][0]["name"]
    primary = [r for r in data.comparisons if r["family"] == primary_name]
    seen = {r["metric"]: r for r in data.positive if r["half"] == "seen"}
    gaps = [
        r["best_checkpoint"]["eval_loss"] - r["loss_floor"]["per_token"]
        for r in data.train_records
        if not r.get("contaminated") and r.get("best_checkpoint") and r.get("loss_floor")
    ]
    locks = [r["lock_share"] for r in data.bias if r["lock_share"] is not None]
    return {
        "primary": primary,
        "family_size": primary[0]["family_size"] if primary else 0,
        "differs": [r for r in primary if verdict(r, alpha) == "differs"],
        "nominal": [r for r in primary if r["p_value"] < alpha and verdict(r, alpha) != "differs"],
        "equivalent": [r for r in primary if r["equivalent"]],
        "mdd_range": (min((r["mdd80"] for r in primary), default=None), max((r["mdd80"] for r in primary), default=None)),
        "ci_range": (min((r["diff_ci95_low"] for r in primary), default=None),
                     max((r["diff_ci95_high"] for r in primary), default=None)),
        "floor_gap": (min(gaps), max(gaps), len(gaps)) if gaps else None,
        "positive_seen": seen,
        "lock_range": (min(locks), max(locks)) if locks else None,
    }  # fmt: skip


def findings(data: ReportData) -> str:
    """The findings in words, each number read from the tables it summarises."""
    h = headline(data)
    alpha = data.plan.get("alpha", 0.05)
    out = []
    primary = data.plan["families"][0]
    if h["primary"]:
        low, high = h["ci_range"]
        text = (
            f"- **Primary family** ({escape(primary['description'])}; m = {h['family_size']}): "
            f"{len(h['differs'])} of {len(h['primary'])} comparisons differ from the base model after Holm's "
            f"adjustment; {len(h['equivalent'])} are equivalent within ±{100 * primary['margin']:.0f} pt (TOST). "
            f"Every difference's 95% interval lies within {_pt(low)} to {_pt(high)} pt; the minimum detectable "
            f"differences at 80% power are {100 * h['mdd_range'][0]:.2f}–{100 * h['mdd_range'][1]:.2f} pt."
        )
        if h["nominal"]:
            named = ", ".join(
                f"{escape(_member(r))} on {DATASET_NAMES.get(r['dataset'], r['dataset'])} {_pt(r['difference'])} pt"
                for r in h["nominal"]
            )
            text += f" Unadjusted p below {alpha}: {named}; none survives the adjustment."
        out.append(text)
    if h["floor_gap"]:
        low, high, n = h["floor_gap"]
        out.append(
            f"- **Training adequacy**: the kept checkpoints of the {n} protocol fine-tunes end {low:.3f}–{high:.3f} "
            "above the held-out loss floor of a model that knows only the answer letters' frequencies: they learnt "
            "the letter prior and little else, as the flat comparisons agree."
        )
    if h["lock_range"]:
        out.append(
            f"- **Position lock**: {_pct(h['lock_range'][0])}–{_pct(h['lock_range'][1])}% of questions are "
            "answered at the same position under every option rotation, by run and dataset: these models answer "
            "mostly by position, so the debiased accuracies sit near 1/n and the comparisons can give bounds "
            "rather than differences."
        )
    if "standard" in h["positive_seen"]:
        r = h["positive_seen"]["standard"]
        text = (
            f"- **Positive control**: trained on half of {DATASET_NAMES.get(r['dataset'], r['dataset'])}'s test "
            f"questions, the model gains {_pt(r['difference'])} pt (95% CI {_pt(r['diff_ci95_low'])} to "
            f"{_pt(r['diff_ci95_high'])}, {r['test']} p = {_p(r['p_value'])}) on those questions in their original "
            "option order: the pipeline sees an effect where there is one."
        )
        rotated = h["positive_seen"].get("debiased")
        if rotated:
            text += (
                f" With the options rotated the same questions move {_pt(rotated['difference'])} pt (95% CI "
                f"{_pt(rotated['diff_ci95_low'])} to {_pt(rotated['diff_ci95_high'])}): what was memorised is "
                "largely the letter of each answer, which the debiased metric by design does not reward."
            )
        out.append(text)
    return "\n".join(out) if out else "(no comparisons yet)"


def render_results_doc(data: ReportData, chart: str, summary: str) -> str:
    """docs/results.md: what the committed records say, generated."""
    return "\n".join(
        [
            "# What the committed results say",
            "",
            (
                f"Generated by `just report` from the records in `results/` (every table in [{summary}]({summary})); "
                "do not edit by hand: every number below is read from a record."
            ),
            "",
            "## Findings",
            "",
            findings(data),
            "",
            "## Comparison families",
            "",
            families_section(data),
            "",
            "## Positive control",
            "",
            positive_control_section(data.positive),
            "",
            "## Training",
            "",
            data.training.rstrip() or "(no training records)",
            "",
            "## Accuracy against the KorMedMCQA paper",
            "",
            f"![accuracy vs parameters]({chart})",
            "",
            "## Position bias",
            "",
            position_bias_section(data.bias),
            "",
        ]
    )


def readme_block(data: ReportData, chart: str, details: str, summary: str, speed: str = "") -> str:
    """The README's results block: the findings, the primary family and the end-to-end speed, linking to the rest."""
    primary = data.plan["families"][0]
    rows = [r for r in data.comparisons if r["family"] == primary["name"]]
    return "\n".join(
        [
            (
                f"Generated by `just report` from the committed records; the findings in full in [{details}]({details}), "
                f"every table in [{summary}]({summary})."
            ),
            "",
            findings(data),
            "",
            f"Primary family, {escape(primary['description'])}:",
            "",
            family_table(rows, data.plan.get("alpha", 0.05)) if rows else "(no runs yet)",
            *(
                [
                    "",
                    "Speed end to end: the command a user types, timed from start to exit, beside stock lm-eval "
                    f"(the warm figures and the decode step in [{summary}]({summary})):",
                    "",
                    speed,
                ]
                if speed
                else []
            ),
            "",
            f"![accuracy vs parameters]({chart})",
        ]
    )
