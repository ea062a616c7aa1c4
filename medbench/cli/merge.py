"""`medbench merge DIR…`: results folders from several machines into one (medbench/records/merge.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medbench.options import add_arguments, arg, from_args
from medbench.paths import results_dir

HELP = "merge results folders gathered from several machines into results/ (run ids unique, no double counting)"


@dataclass
class MergeArguments:
    sources: list[str] = field(default_factory=list)  # positional DIR…, added by make_parser
    into: str | None = arg(None, help="the results folder to merge into (default: results/, or MEDBENCH_RESULTS)")
    dry_run: bool = arg(False, help="say what would be copied, copy nothing")


def make_parser(sub) -> None:
    p = sub.add_parser("merge", help=HELP, description=__doc__)
    p.add_argument("sources", nargs="+", metavar="DIR", help="results folders (or folders of them) from other machines")
    add_arguments(p, MergeArguments)


def run(args) -> int:
    from medbench.records.merge import merge, plan_merge

    opts = from_args(MergeArguments, args)
    into = Path(opts.into) if opts.into else results_dir()
    sources = [Path(s) for s in opts.sources]
    plan = plan_merge(sources, into) if opts.dry_run else merge(sources, into)
    if opts.dry_run and plan.conflicts:
        print("conflicts (a merge would copy nothing):\n  " + "\n  ".join(plan.conflicts))
    print(f"merge into {into}: {plan.summary()}")
    return 0
