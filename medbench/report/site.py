"""results/site/: a static results explorer, written by `just report`, that opens from a file:// URL.

The page (medbench/report/explorer/: one HTML, one CSS and one JS file, hand-written) reads its data from
script files that call MEDBENCH.register(name, data): Chromium refuses fetch() of local files, but
it runs local scripts. data/summary.js holds the tables and is loaded at once; a run's answers
(data/run-<id>.js) and the question texts (data/questions-<dataset>.js, written once per dataset,
not once per run) are loaded only when a run is opened in the question browser, so a full sweep
stays quick to open. No timestamps, fixed key order: the same results give the same bytes.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

from medbench.data.contamination import ALL_SOURCES, Contamination
from medbench.records.questions import letter_distribution, question_rows
from medbench.records.reader import Run
from medbench.report.chart import PANELS
from medbench.report.compare import run_order
from medbench.report.markdown import num
from medbench.report.reference import load_paper
from medbench.report.summary_md import subset

STATIC_DIR = Path(__file__).parent / "explorer"
STATIC_FILES = ("index.html", "explorer.css", "explorer.js")
# Log-likelihoods to 4 decimals: enough to show a ranking, a quarter of the bytes of full floats.
# Ties are decided on the full values (questions.py) and shipped as a flag.
SCORE_DECIMALS = 4
# Table headers as in the README's results table; the chart's task picker uses the long titles.
SHORT_LABELS = {"average": "KorMedMCQA avg", "medqa": "MedQA"}


def write_site(
    results_dir: Path,
    runs: list[Run],
    summary_rows: list[dict],
    comparison_rows: list[dict],
    contamination: Contamination,
) -> Path:
    """Write results_dir/site/ and return it; files of runs that no longer exist are removed."""
    site = Path(results_dir) / "site"
    data = site / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in STATIC_FILES:
        shutil.copyfile(STATIC_DIR / name, site / name)

    ordered = sorted(runs, key=lambda r: (_size(r), *run_order(r)))
    files = _file_names([r.run_id for r in ordered])
    written = {}
    questions: dict[str, dict] = {}
    letters = []
    run_entries = []
    for run in ordered:
        rows_by_task = {t.task: question_rows(run.path, t.task) for t in run.tasks}
        for task in run.tasks:
            letters.append(_letter_row(run, task, rows_by_task[task.task]))
        rows = [row for task_rows in rows_by_task.values() for row in task_rows]
        for row in rows:
            # The first run's copy of a question wins: every run reads the same vendored data.
            questions.setdefault(row["dataset"], {}).setdefault(
                row["id"],
                [row["exam"], row.get("year"), row.get("subject"), row["question"], row["options"], row["gold"]],
            )
        name = f"run-{files[run.run_id]}"
        written[name] = _run_data(run, rows)
        run_entries.append(_run_entry(run, name, rows))
    for dataset, by_id in sorted(questions.items()):
        written[f"questions-{_safe(dataset)}"] = {
            "dataset": dataset,
            "columns": ["exam", "year", "subject", "question", "options", "gold"],
            "questions": by_id,
        }
    written["summary"] = {
        "runs": run_entries,
        "accuracy": [_accuracy_row(r) for r in summary_rows],
        "columns": [
            {"key": key, "label": title, "short": SHORT_LABELS.get(key, key), "dataset": d, "exam": e, "chance": chance}
            for key, title, (d, e), chance in PANELS
        ],
        "paper": [
            {"model": p.model, "params_b": p.params_b, "estimate": p.size_is_estimate, "accuracy": p.accuracy}
            for p in load_paper()
            if p.params_b
        ],
        "comparisons": [_comparison_row(r) for r in comparison_rows],
        "letters": letters,
        "contamination": [_clean(r) for r in contamination.summary if r["matched"] or r["source"] == ALL_SOURCES],
    }
    for stale in data.glob("*.js"):
        if stale.stem not in written:
            stale.unlink()
    for name, payload in written.items():
        _write_js(data / f"{name}.js", name, payload)
    return site


def _size(run: Run) -> float:
    size = run.record.get("params_b")
    return size if size is not None else math.inf


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".") or "_"


def _file_names(run_ids: list[str]) -> dict[str, str]:
    """A file-name-safe, unique name per run id (two ids may sanitize to the same text)."""
    out, taken = {}, set()
    for run_id in run_ids:
        base = name = _safe(run_id)
        k = 2
        while name.lower() in taken:  # case-insensitive file systems
            name, k = f"{base}-{k}", k + 1
        taken.add(name.lower())
        out[run_id] = name
    return out


def _write_js(path: Path, name: str, payload) -> None:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    path.write_text(f"MEDBENCH.register({json.dumps(name)},{text});\n", encoding="utf-8")


def _clean(row: dict) -> dict:
    """NaN is not JSON: missing numbers become null."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def _pct(x) -> str:
    return num(None if x is None else 100 * x, ".1f")


def _run_entry(run: Run, file: str, rows: list[dict]) -> dict:
    r = run.record
    return {
        "id": run.run_id,
        "file": file,
        "model": r["model"],
        "params_b": r["params_b"],
        "variant": r["variant"],
        "prompt": r["prompt"],
        "mode": r["mode"],
        "subset": subset(r),
        "gpu": r["hardware"].get("gpu"),
        "questions_per_second": r["timing"]["questions_per_second"],
        "question_files": [f"questions-{_safe(d)}" for d in sorted({row["dataset"] for row in rows})],
        "n": len(rows),
    }


def _run_data(run: Run, rows: list[dict]) -> dict:
    """Only what differs between runs: the question texts live in the questions-<dataset> files."""

    def answer(row):
        flags = [int(row["correct"]), int(row["invalid"]), int(row["tie"])]
        if row["mode"] == "mc":
            return [row["id"], row["predicted"], *flags, [round(s, SCORE_DECIMALS) for s in row["scores"].values()]]
        return [row["id"], row["predicted"], *flags, row["output"]]

    modes = {row["mode"] for row in rows}
    return {
        "run": run.run_id,
        "columns": ["id", "predicted", "correct", "invalid", "tie", "scores" if modes == {"mc"} else "output"],
        "rows": [answer(row) for row in rows],
    }


def _accuracy_row(row: dict) -> dict:
    keep = (
        "run_id",
        "task",
        "dataset",
        "exam",
        "n",
        "accuracy",
        "ci95_low",
        "ci95_high",
        "invalid",
        "invalid_rate",
        "params_b",
        "variant",
        "prompt",
        "mode",
        "model",
    )
    return {
        **_clean({k: row[k] for k in keep}),
        "pct": _pct(row["accuracy"]),
        "ci": f"{_pct(row['ci95_low'])}–{_pct(row['ci95_high'])}",
    }


def _comparison_row(row: dict) -> dict:
    return {
        **_clean(row),
        "pct_a": _pct(row["acc_a"]),
        "pct_b": _pct(row["acc_b"]),
        "diff": (
            f"{100 * row['difference']:+.1f} ({100 * row['diff_ci95_low']:+.1f} to {100 * row['diff_ci95_high']:+.1f})"
        ),
        "mdd": f"{100 * row['mdd80']:.2f}",
        "tost": f"{row['tost_p']:.3g}",
        "p": f"{row['p_value']:.3g}",
        "holm": f"{row['holm_p']:.3g}",
    }


def _letter_row(run: Run, task, rows: list[dict]) -> dict:
    dist = letter_distribution(rows)
    correct = sum(1 for r in rows if r["correct"])
    return {
        "run_id": run.run_id,
        "task": task.task,
        "dataset": task.dataset,
        "exam": task.exam,
        **dist,
        "ties": sum(1 for r in rows if r["tie"]),
        "accuracy": correct / len(rows) if rows else None,
        "pct": _pct(correct / len(rows) if rows else None),
        "majority_pct": _pct(dist["majority_baseline"]),
        "prior_pct": _pct(dist["prior_baseline"]),
    }
