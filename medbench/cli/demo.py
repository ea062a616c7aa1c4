"""`medbench demo`: the embedded Gemma 3 270M on a seeded sample of every task."""

from __future__ import annotations

from medbench.cli.eval import RunOptions, print_table, record_location, request
from medbench.options import add_arguments, from_args

HELP = "the embedded Gemma 3 270M on a seeded sample of every task"
DEMO_PER_TASK = 30  # five tasks x 30 questions: about five minutes on 2 CPU cores, conversion included


def make_parser(sub) -> None:
    p = sub.add_parser("demo", help=HELP, description=HELP)
    add_arguments(p, RunOptions)


def run(args) -> int:
    from medbench.eval.runner import run as run_eval

    opts = from_args(RunOptions, args)
    if opts.sample is None and opts.limit is None:
        opts.sample = DEMO_PER_TASK
    record = run_eval(request(opts, "gemma3-270m", "base", "zeroshot"))
    print_table(record, record_location(record))
    return 0
