"""`medbench compare RUN_A RUN_B…`: two runs of the same tasks, question by question (medbench/records/compare.py)."""

from __future__ import annotations

from dataclasses import dataclass

from medbench.options import add_arguments, arg, from_args

HELP = "compare the answers of runs of the same tasks question by question (RUN_A against each other run)"


@dataclass
class CompareArguments:
    run_a: str = arg(positional=True, help="the reference run folder (results/runs/<id>)")
    out: str | None = arg(None, help="also write the comparisons as JSON to this file")


def make_parser(sub) -> None:
    p = sub.add_parser("compare", help=HELP, description=__doc__)
    add_arguments(p, CompareArguments)
    p.add_argument("others", nargs="+", metavar="RUN_B", help="run folders compared with RUN_A")


def run(args) -> int:
    from pathlib import Path

    from medbench.errors import MedbenchError
    from medbench.records.compare import compare_answers
    from medbench.records.io import write_json

    opts = from_args(CompareArguments, args)
    for path in (opts.run_a, *args.others):
        if not (Path(path) / "record.json").is_file():
            raise MedbenchError(f"{path}: not a run folder (no record.json); pass results/runs/<run-id>")
    results = [compare_answers(Path(opts.run_a), Path(other)) for other in args.others]
    for r in results:
        gaps = (
            f"; run A's top-two gap there: median {r['differing_top2_gap_median']}, max {r['differing_top2_gap_max']}"
        )
        print(
            f"{r['run_b']} vs {r['run_a']}: same answer on {r['same_answer']}/{r['questions']} questions"
            + (gaps if r["different"] and r["differing_top2_gap_max"] is not None else "")
        )
    if opts.out:
        write_json(Path(opts.out), results)
    return 0
