"""`just report`: tables, paired comparisons, position bias, training, contamination and the chart, from records only.

Reads results/runs/*/record.json and samples_*.jsonl, results/train/ and results/bench/ (never a model) and writes, in
the results folder: summary.md, summary.csv, comparisons.csv, positive_control.csv, contamination.csv,
accuracy_vs_params.{png,svg} and site/ (the explorer); then the README's results block and docs/results.md.

Every input is read and checked before anything is written, and every output is rendered into a staging folder
first and moved into place only when all of them rendered: a bad record leaves the previous report whole. Only runs
with full provenance (records/verify.py) enter the tables; the others are listed apart. No timestamps and seeded
resampling: the same records give the same bytes.
"""

from __future__ import annotations

import csv
import functools
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from medbench import stats
from medbench.data.contamination import CONTAMINATION_FIELDS, contamination
from medbench.data.loader import DataError
from medbench.records.io import read_json
from medbench.records.reader import ReportError, load_runs
from medbench.records.verify import provenance_gaps
from medbench.report.chart import render_chart
from medbench.report.compare import (
    COMPARISON_FIELDS,
    POSITIVE_CONTROL_FIELDS,
    comparisons,
    load_plan,
    most_significant,
    planned_missing,
    positive_control_rows,
)
from medbench.report.contamination import contamination_section
from medbench.report.position_bias import position_bias_rows
from medbench.report.reference import load_paper
from medbench.report.site import write_site
from medbench.report.summary import summary_rows, write_summary_csv
from medbench.report.summary_md import ReportData, readme_block, render_results_doc, render_summary_md
from medbench.report.training import training_section
from medbench.settings import DEFAULT_SEED

__all__ = ["ReportError", "build_report", "replace_readme_block", "summary_rows"]

README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"
CHART_NAME = "accuracy_vs_params"
OUTPUTS = (
    "summary.md",
    "summary.csv",
    "comparisons.csv",
    "positive_control.csv",
    "contamination.csv",
    f"{CHART_NAME}.png",
    f"{CHART_NAME}.svg",
    "site",
)


def build_report(
    results_dir: Path,
    seed: int = DEFAULT_SEED,
    resamples: int = stats.RESAMPLES,
    readme: Path | None = None,
    also: tuple[Path, ...] = (),
    measurements: str = "",
    docs: Path | None = None,
    plan: dict | None = None,
    speed: str = "",
) -> dict:
    """Write every output into results_dir from its runs and those of the `also` folders, then the README's results
    block (`readme`) and the findings (`docs`, docs/results.md) where given. `measurements`: the bench tables
    (medbench/bench/report.py) for summary.md; `speed`: the end-to-end speed table the README shows. Returns what was
    written."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ReportError(f"{results_dir}: no such results folder")
    if readme is not None and readme.exists():
        replace_readme_block(readme.read_text(encoding="utf-8"), "", readme)  # no markers: refused before any work
    every = load_runs(results_dir, *(Path(a) for a in also if Path(a).is_dir()))
    gaps = {run.run_id: provenance_gaps(run.record) for run in every}
    runs = [run for run in every if not gaps[run.run_id]]
    plan = plan or load_plan()
    rows = summary_rows(runs, seed, resamples)
    pairs = comparisons(runs, seed, resamples, plan)
    try:
        overlap = _contamination()
    except DataError as e:
        raise ReportError(f"contamination check: {e}") from None
    data = ReportData(
        runs=runs,
        legacy=[(run, gaps[run.run_id]) for run in every if gaps[run.run_id]],
        rows=rows,
        comparisons=pairs,
        missing=planned_missing(runs, plan),
        positive=positive_control_rows(runs, seed, resamples),
        bias=position_bias_rows(runs, seed),
        plan=plan,
        seed=seed,
        resamples=resamples,
        training=training_section(results_dir),
        measurements=measurements,
        legacy_records=_legacy_records(results_dir),
        train_records=_train_records(results_dir),
        contamination=contamination_section(overlap),
    )

    texts: dict[Path, str] = {}
    with _staging(results_dir) as stage:
        write_summary_csv(stage / "summary.csv", rows)
        _write_csv(stage / "comparisons.csv", COMPARISON_FIELDS, pairs)
        _write_csv(stage / "positive_control.csv", POSITIVE_CONTROL_FIELDS, data.positive)
        _write_csv(stage / "contamination.csv", CONTAMINATION_FIELDS, overlap.pairs)
        render_chart(rows, load_paper(), stage / CHART_NAME)
        (stage / "summary.md").write_text(render_summary_md(data), encoding="utf-8")
        if (results_dir / "site").is_dir():
            shutil.copytree(results_dir / "site", stage / "site")  # unchanged run files are kept, not rewritten
        write_site(stage, runs, rows, pairs, overlap)
        if readme is not None and readme.exists():
            chart = _relative(results_dir / f"{CHART_NAME}.png", readme.parent)
            summary = _relative(results_dir / "summary.md", readme.parent)
            details = _relative(docs, readme.parent) if docs is not None else summary
            block = readme_block(data, chart, details, summary, speed)
            texts[readme] = replace_readme_block(readme.read_text(encoding="utf-8"), block, readme)
        if docs is not None:
            chart = _relative(results_dir / f"{CHART_NAME}.png", docs.parent)
            texts[docs] = render_results_doc(data, chart, _relative(results_dir / "summary.md", docs.parent))
        written = _publish(stage, results_dir)
    for path, text in texts.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            _replace_text(path, text)
        written.append(path)
    return {
        "written": written,
        "runs": runs,
        "legacy": data.legacy,
        "rows": rows,
        "comparisons": pairs,
        "positive_control": data.positive,
        "contamination": overlap,
        "most_significant": most_significant(pairs),
    }


def _contamination():
    """The contamination check, computed once per state of the data files (it reads only them)."""
    from medbench.paths import data_dir

    root = data_dir()
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    return _contamination_of(str(root), tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files))


@functools.lru_cache(maxsize=2)
def _contamination_of(root: str, state: tuple):
    return contamination()


def _train_records(results_dir: Path) -> list[dict]:
    out = []
    for path in sorted(results_dir.glob("train/*.json")):
        record = read_json(path)
        if isinstance(record, dict) and "method" in record and not provenance_gaps(record):
            out.append(record)
    return out


def _legacy_records(results_dir: Path) -> list[tuple[str, list[str]]]:
    """Training and bench records without full provenance, by file name."""
    out = []
    for path in sorted([*results_dir.glob("train/*.json"), *results_dir.glob("bench/*.json")]):
        record = read_json(path)
        gaps = provenance_gaps(record) if isinstance(record, dict) else ["a record (not a JSON object)"]
        if gaps:
            out.append((f"{path.parent.name}/{path.name}", gaps))
    return out


@contextmanager
def _staging(results_dir: Path):
    stage = Path(tempfile.mkdtemp(prefix=".report-", dir=results_dir))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _publish(stage: Path, results_dir: Path) -> list[Path]:
    """Move every staged output into place (each a rename within one file system)."""
    written = []
    for name in OUTPUTS:
        source, target = stage / name, results_dir / name
        if not source.exists():
            continue
        if source.is_dir():
            old = stage / f"{name}.old"
            if target.exists():
                os.replace(target, old)
            os.replace(source, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(source, target)
        written.append(target)
    return written


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


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
            writer.writerow({k: _csv_value(k, row.get(k)) for k in fields})
    return path


# ---- README -------------------------------------------------------------------------------------------


def replace_readme_block(text: str, content: str, where: Path | str = "README.md") -> str:
    """Replace what lies between the results markers, and nothing else."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < 0 or end < start:
        raise ReportError(f"{where}: needs a {README_START} … {README_END} block for the results")
    head = text[: start + len(README_START)]
    return f"{head}\n{content.strip()}\n{text[end:]}"


def describe(row: dict) -> str:
    """One comparison in a line, for the console."""
    member = row["variant_b"] if row["model_a"] == row["model_b"] else row["model_b"]
    baseline = row["variant_a"] if row["model_a"] == row["model_b"] else row["model_a"]
    return (
        f"family {row['family']} (m={row['family_size']}), {row['dataset']}: {member} vs {baseline} "
        f"{100 * row['acc_b']:.1f}% vs {100 * row['acc_a']:.1f}% ({row['metric']}; b − a "
        f"{100 * row['difference']:+.2f} pt, 95% CI {100 * row['diff_ci95_low']:+.2f} to "
        f"{100 * row['diff_ci95_high']:+.2f}, n={row['n_paired']}), {row['test']} p={row['p_value']:.3g}, "
        f"Holm p={row['holm_p']:.3g}"
    )
