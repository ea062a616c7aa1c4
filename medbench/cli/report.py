"""`medbench report`: tables, paired comparisons, contamination and the chart, from results/ only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medbench.options import add_arguments, arg, from_args
from medbench.paths import REPO_ROOT, published_results_dir, results_dir
from medbench.settings import DEFAULT_SEED
from medbench.stats import RESAMPLES

HELP = "tables, paired comparisons, contamination check and the chart, from results/ only (seconds)"


@dataclass
class ReportArguments:
    results: str | None = arg(
        None,
        help="results folder the report reads and writes (default: results/, the committed records, whose report "
        "also rewrites the README's results block and docs/results.md; where results/local/ holds runs of your "
        "own, a second report beside them reads both)",
    )
    seed: int = arg(DEFAULT_SEED, help=f"bootstrap seed (default {DEFAULT_SEED})")
    resamples: int = arg(RESAMPLES, help=f"bootstrap resamples (default {RESAMPLES})")
    readme: str | None = arg(
        None,
        help="README whose results block is replaced (default: README.md beside the "
        "results folder, i.e. the repository's for results/; skipped if none)",
    )
    merge: list[str] = arg(
        default_factory=list,
        metavar="DIR",
        help="first merge this results folder from another machine where `just merge` merges (results/local/, or "
        "MEDBENCH_RESULTS; repeatable: run ids unique, identical runs counted once)",
    )


def make_parser(sub) -> None:
    add_arguments(sub.add_parser("report", help=HELP, description=HELP), ReportArguments)


def run(args) -> int:
    from medbench.bench.report import bench_sections, eval_speed_table
    from medbench.report.build import ReportError, build_report, describe

    opts = from_args(ReportArguments, args)
    if opts.readme is not None and not Path(opts.readme).exists():
        raise ReportError(f"{opts.readme}: no such README")
    if opts.merge:
        from medbench.records.merge import merge

        target = results_dir()  # where `just merge` writes: never the committed results/ unless MEDBENCH_RESULTS says
        print(f"merge into {_shown(target)}: {merge([Path(d) for d in opts.merge], target).summary()}")
    results = Path(opts.results) if opts.results else published_results_dir()
    readme = Path(opts.readme) if opts.readme else results.resolve().parent / "README.md"
    docs = readme.parent / "docs" / "results.md" if (readme.parent / "docs").is_dir() else None
    # The committed report (README, docs, results/) holds the published records only; a user's own runs get a
    # report of their own, beside them, with the published ones for comparison.
    reports = [(results, (), readme, docs)]
    local = results_dir()
    if not opts.results and local.resolve() != results.resolve() and any(local.glob("runs/*/record.json")):
        reports.append((local, (results,), None, None))
    for folder, also, readme_path, docs_path in reports:
        out = build_report(
            folder,
            opts.seed,
            opts.resamples,
            readme_path,
            also,
            bench_sections(folder),
            docs_path,
            speed=eval_speed_table(folder) or "",
        )
        for path in out["written"]:
            print(f"wrote {_shown(path)}")
        print(
            f"{len(out['runs'])} run(s) with full provenance, {len(out['legacy'])} legacy, "
            f"{len(out['comparisons'])} planned comparison(s)"
        )
        best = out["most_significant"]
        print("smallest Holm p: " + describe(best) if best else "no planned comparison has runs yet")
    return 0


def _shown(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
