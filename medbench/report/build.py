"""`just report`: tables, paired comparisons, contamination and the chart, from results/ only.

Reads results/runs/*/record.json and samples_*.jsonl (never a model) and writes, in the results
folder: summary.md, summary.csv, comparisons.csv, contamination.csv, accuracy_vs_params.{png,svg},
site/ (the static results explorer, harness/site.py); then the README's results block. No timestamps
and seeded resampling: the same results give the same files, so the outputs can be committed and
diffed.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from medbench import stats
from medbench.data.contamination import (
    ALL_SOURCES,
    CHAR_NGRAM,
    CONTAMINATION_FIELDS,
    NEAR_DUPLICATE,
    NGRAM,
    contamination,
)
from medbench.data.loader import KORMEDMCQA_EXAMS, DataError
from medbench.records.reader import ReportError, Run, load_runs
from medbench.report.chart import render_chart
from medbench.report.compare import COMPARISON_FIELDS, comparisons, most_significant, run_order
from medbench.report.markdown import device, num, table
from medbench.report.position_bias import position_bias_rows, position_bias_section
from medbench.report.reference import load_paper
from medbench.report.site import write_site
from medbench.report.summary import summary_rows, write_summary_csv
from medbench.report.training import training_section

__all__ = ["ReportError", "build_report", "replace_readme_block", "summary_rows"]

DEFAULT_SEED = 1234
README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"
CHART_NAME = "accuracy_vs_params"
# Columns of the compact table (README and top of summary.md): (dataset, exam) -> header.
MAIN_COLUMNS = (
    *((("kormedmcqa", e), e) for e in KORMEDMCQA_EXAMS),
    (("kormedmcqa", "average"), "KorMedMCQA avg"),
    (("medqa", "usmle"), "MedQA"),
)
MAX_COMPARISONS_SHOWN = 40


def build_report(
    results_dir: Path,
    seed: int = DEFAULT_SEED,
    resamples: int = stats.RESAMPLES,
    readme: Path | None = None,
    also: tuple[Path, ...] = (),
) -> dict:
    """Write every output into results_dir from its runs and those of the `also` folders; returns what
    was written and the most significant comparison."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ReportError(f"{results_dir}: no such results folder")
    runs = load_runs(results_dir, *(Path(a) for a in also if Path(a).is_dir()))
    rows = summary_rows(runs, seed, resamples)
    pairs = comparisons(runs, seed, resamples)
    try:
        overlap = contamination()
    except DataError as e:
        raise ReportError(f"contamination check: {e}") from None

    written = [
        write_summary_csv(results_dir / "summary.csv", rows),
        _write_csv(results_dir / "comparisons.csv", COMPARISON_FIELDS, pairs),
        _write_csv(results_dir / "contamination.csv", CONTAMINATION_FIELDS, overlap.pairs),
    ]
    written += render_chart(rows, load_paper(), results_dir / CHART_NAME)
    summary_md = results_dir / "summary.md"
    training = training_section(results_dir)
    bias = position_bias_rows(runs)
    summary_md.write_text(
        render_summary_md(runs, rows, pairs, overlap, seed, resamples, training, bias), encoding="utf-8"
    )
    written.append(summary_md)
    if readme is not None and readme.exists():
        chart = Path(os.path.relpath(results_dir / f"{CHART_NAME}.png", readme.parent)).as_posix()
        details = Path(os.path.relpath(summary_md, readme.parent)).as_posix()
        text = readme.read_text(encoding="utf-8")
        new = replace_readme_block(text, readme_block(runs, rows, chart, details, training, bias), readme)
        if new != text:
            readme.write_text(new, encoding="utf-8")
        written.append(readme)
    written.append(write_site(results_dir, runs, rows, pairs, overlap))
    return {
        "written": written,
        "runs": runs,
        "rows": rows,
        "comparisons": pairs,
        "contamination": overlap,
        "most_significant": most_significant(pairs),
    }


# ---- CSV ----------------------------------------------------------------------------------------------


def _csv_value(key: str, value):
    if isinstance(value, float):
        # p-values span many orders of magnitude; fixed decimals would print most of them as 0.
        return f"{value:.4g}" if key.endswith("_p") or key == "p_value" else f"{value:.4f}"
    return value


def _write_csv(path: Path, fields: tuple[str, ...], rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(k, row[k]) for k in fields})
    return path


# ---- Markdown -----------------------------------------------------------------------------------------


def _pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _acc_ci(row: dict) -> str:
    return f"{_pct(row['accuracy'])} ({_pct(row['ci95_low'])}–{_pct(row['ci95_high'])})"


def _subset(record: dict) -> str:
    if record.get("sample"):
        return f"sample {record['sample']}/task"
    if record.get("limit"):
        return f"first {record['limit']}/task"
    return "all"


def _run_order(run: Run) -> tuple:
    size = run.record["params_b"]
    return (size if size is not None else math.inf, *run_order(run))


def main_table(runs: list[Run], rows: list[dict]) -> str:
    """Per run: each exam, the exam average and MedQA as 'accuracy (95% CI)', in percent."""
    if not runs:
        return "(no results yet)"
    by_cell = {(r["run_id"], r["dataset"], r["exam"]): r for r in rows}
    body = []
    for run in sorted(runs, key=_run_order):
        cells = [by_cell.get((run.run_id, *key)) for key, _ in MAIN_COLUMNS]
        gpu = (run.record.get("hardware") or {}).get("gpu")
        qps = (run.record.get("timing") or {}).get("questions_per_second")
        body.append(
            [
                f"`{run.run_id}`",
                run.record["model"],
                num(run.record["params_b"], "g"),
                run.record["variant"],
                f"{run.record['prompt']}/{run.record['mode']}",
                _subset(run.record),
                *(_acc_ci(c) if c else "–" for c in cells),
                device(gpu),
                num(qps, ".1f"),
            ]
        )
    header = [
        "run",
        "model",
        "params (B)",
        "variant",
        "prompt/mode",
        "questions",
        *(name for _, name in MAIN_COLUMNS),
        "device",
        "questions/s",
    ]
    return table(header, body)


def readme_block(
    runs: list[Run], rows: list[dict], chart: str, details: str, training: str = "", bias: list[dict] | None = None
) -> str:
    return "\n".join(
        [
            (
                f"Generated by `just report` from `results/runs/`; details, paired comparisons and the contamination "
                f"check in [{details}]({details}). Accuracy in % with its 95% bootstrap interval over questions; "
                "KorMedMCQA avg pools the four exams' questions (weighted by n)."
            ),
            "",
            main_table(runs, rows),
            "",
            f"![accuracy vs parameters]({chart})",
            *(["", "#### Position bias", "", position_bias_section(bias)] if bias else []),
            *(["", training.replace("### ", "#### ")] if training else []),
        ]
    )


def replace_readme_block(text: str, content: str, where: Path | str = "README.md") -> str:
    """Replace what lies between the results markers, and nothing else."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < 0 or end < start:
        raise ReportError(f"{where}: needs a {README_START} … {README_END} block for the results")
    head = text[: start + len(README_START)]
    return f"{head}\n{content.strip()}\n{text[end:]}"


def render_summary_md(
    runs: list[Run],
    rows: list[dict],
    pairs: list[dict],
    overlap,
    seed: int,
    resamples: int,
    training: str = "",
    bias: list[dict] | None = None,
) -> str:
    parts = [
        "# Results",
        "",
        (
            "Generated by `just report` from `results/runs/*/record.json` and `samples_*.jsonl`; do not edit by hand. "
            f"Intervals: 95% percentile bootstrap over questions ({resamples} resamples, seed {seed}). "
            "KorMedMCQA average: the four exams' questions pooled, i.e. weighted by n (the paper's test-size "
            "weighting when a run answered every test question)."
        ),
        "",
        "## Accuracy (%)",
        "",
        main_table(runs, rows),
        "",
        "![accuracy vs parameters](accuracy_vs_params.png)",
        "",
        (
            "The paper's points are 5-shot direct answering, which is our `fewshot` prompt; runs of other prompts "
            "are shown for context, not as like-for-like comparisons."
        ),
        "",
        "## Every run and task",
        "",
    ]
    body = [
        [
            r["run_id"],
            r["task"],
            r["n"],
            _pct(r["accuracy"]),
            f"{_pct(r['ci95_low'])}–{_pct(r['ci95_high'])}",
            _pct(r["invalid_rate"]),
            r["truncated_prompts"],
            num(r["questions_per_second"], ".2f"),
            num(r["peak_memory_gib"], ".2f"),
        ]
        for r in rows
    ]
    parts += [
        table(
            [
                "run",
                "task",
                "n",
                "accuracy %",
                "95% CI",
                "invalid %",
                "truncated prompts",
                "questions/s (run)",
                "peak memory GiB (run)",
            ],
            body,
        )
        if rows
        else "(no results yet)",
        "",
    ]
    unplaced = sorted({r["run_id"] for r in rows if r["params_b"] is None})
    if unplaced:
        parts += [f"Not on the chart (no params_b in the record): {', '.join(unplaced)}.", ""]

    parts += [
        "## Paired comparisons",
        "",
        (
            "Runs of one model with a different variant, prompt or mode, on the questions both answered "
            "(matched on question id). **metric**: `debiased` (the mean over option rotations per question) "
            "when both runs were permuted (`--set permute=cyclic`), else `standard` accuracy. Difference = b − a "
            "in points, with a paired bootstrap 95% interval; p: McNemar's exact test on the questions only one "
            "run got right (standard), or a paired sign-flip permutation test (debiased). **Holm p** adjusts "
            "for every comparison in this report (Holm-Bonferroni): call a difference significant only where "
            "it is below 0.05. All rows: `comparisons.csv`."
        ),
        "",
    ]
    if pairs:
        shown = sorted(pairs, key=lambda r: (r["p_value"], r["model"], r["task"], r["run_a"], r["run_b"]))
        body = [
            [
                r["model"],
                r["task"],
                f"{r['variant_a']} {r['prompt_a']}/{r['mode_a']}",
                f"{r['variant_b']} {r['prompt_b']}/{r['mode_b']}",
                r["metric"],
                r["n_paired"],
                _pct(r["acc_a"]),
                _pct(r["acc_b"]),
                (f"{100 * r['difference']:+.1f} ({100 * r['diff_ci95_low']:+.1f} to {100 * r['diff_ci95_high']:+.1f})"),
                f"{r['p_value']:.3g}",
                f"{r['holm_p']:.3g}",
            ]
            for r in shown[:MAX_COMPARISONS_SHOWN]
        ]
        parts.append(
            table(
                ["model", "task", "a", "b", "metric", "n paired", "a %", "b %", "b − a (95% CI)", "p", "Holm p"], body
            )
        )
        if len(shown) > MAX_COMPARISONS_SHOWN:
            parts.append(f"\n({len(shown) - MAX_COMPARISONS_SHOWN} more in `comparisons.csv`.)")
    else:
        parts.append("(none: no model has two runs with different settings yet)")

    parts += ["", "## Position bias", "", position_bias_section(bias or [])]
    if training:
        parts += ["", "## Training", "", training.rstrip()]
    parts += [
        "",
        "## Contamination check",
        "",
        (
            "Every test item against every source that reaches a model before the test: KorMedMCQA train+valid "
            "of all four exams and MedQA dev (the fine-tuning mix, which pools the exams; MedQA dev also holds "
            "MedQA's 5-shot exemplars), and for a KorMedMCQA exam its own fewshot split (its 5-shot prompts). **Exact stem**: the stems "
            "are equal after NFKC, case folding and dropping punctuation, symbols and spaces (includes the next "
            "column). **Exact stem + options**: and the same options, in any order. **Near-duplicate**: no exact "
            f"stem, but an IDF-weighted Jaccard of character {CHAR_NGRAM}-grams of stem and options of at least "
            f"{NEAR_DUPLICATE} (a reworded copy; rare {CHAR_NGRAM}-grams weigh most, so exam boilerplate does not "
            "count). "
            "Counts are of test items; an item matched in several sources counts once in its *all sources* "
            f"row. < {NGRAM} words: matched items whose stem is shorter than {NGRAM} words; no shared "
            f"{NGRAM}-gram: matched items that share no word {NGRAM}-gram with what they matched, which the "
            f"first version of this check (shared word {NGRAM}-grams) could not see. Sources with no match are "
            "left out. Every matched pair, with its similarity, shared options and whether the answer is the "
            "same: `contamination.csv`." + "".join(f" {note}." for note in overlap.notes)
        ),
        "",
    ]
    body, tests = [], list(dict.fromkeys(o["test"] for o in overlap.summary))
    for o in sorted(overlap.summary, key=lambda o: (tests.index(o["test"]), o["source"] != ALL_SOURCES)):
        if o["source"] == ALL_SOURCES or o["matched"]:
            share = f" ({100 * o['matched'] / o['test_rows']:.1f}%)" if o["test_rows"] else ""
            source = f"{o['source']} ({o['source_rows']:,} items)" if o["source"] == ALL_SOURCES else o["source"]
            body.append(
                [
                    o["test"],
                    source,
                    o["test_rows"],
                    o["exact_stem"],
                    o["exact_stem_options"],
                    o["near_duplicate"],
                    f"{o['matched']}{share}",
                    o["under_13_words"],
                    o["no_shared_13gram"],
                ]
            )
    parts += [
        table(
            [
                "test",
                "source",
                "test items",
                "exact stem",
                "exact stem + options",
                "near-duplicate",
                "matched",
                f"< {NGRAM} words",
                f"no shared {NGRAM}-gram",
            ],
            body,
        ),
        "",
    ]
    return "\n".join(parts)


# ---- CLI ----------------------------------------------------------------------------------------------


def describe(row: dict) -> str:
    return (
        f"{row['model']} {row['task']}: {row['variant_a']} {row['prompt_a']}/{row['mode_a']} "
        f"{100 * row['acc_a']:.1f}% vs {row['variant_b']} {row['prompt_b']}/{row['mode_b']} "
        f"{100 * row['acc_b']:.1f}% (b − a {100 * row['difference']:+.1f} points, 95% CI "
        f"{100 * row['diff_ci95_low']:+.1f} to {100 * row['diff_ci95_high']:+.1f}, n={row['n_paired']}), "
        f"{row['metric']} accuracy, {row['test']} p={row['p_value']:.3g}, Holm-adjusted p={row['holm_p']:.3g}"
    )
