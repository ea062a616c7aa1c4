"""`medbench demo`: a model whose weights install from the package index, on a seeded sample of every task."""

from __future__ import annotations

from dataclasses import dataclass

from medbench.cli.eval import RunOptions, print_table, record_location, request
from medbench.errors import MedbenchError
from medbench.options import add_arguments, arg, from_args

HELP = "the embedded Gemma 3 270M (or --model smollm2-135m) on a seeded sample of every task"
DEMO_PER_TASK = 30


@dataclass
class DemoArguments:
    model: str = arg("gemma3-270m", help="an embedded model of the registry: gemma3-270m (default) or smollm2-135m")


def make_parser(sub) -> None:
    p = sub.add_parser("demo", help=HELP, description=HELP)
    add_arguments(p, DemoArguments)
    add_arguments(p, RunOptions)


def run(args) -> int:
    from medbench.eval.runner import run as run_eval
    from medbench.models.registry import load_registry

    demo, opts = from_args(DemoArguments, args), from_args(RunOptions, args)
    embedded = sorted(alias for alias, spec in load_registry().items() if spec.embedded)
    if demo.model not in embedded:
        raise MedbenchError(
            f"--model {demo.model}: the demo runs a model that installs from the package index, one of "
            f"{', '.join(embedded)}; evaluate any other with `just eval {demo.model} --sample {DEMO_PER_TASK}`"
        )
    if opts.sample is None and opts.limit is None:
        opts.sample = DEMO_PER_TASK
    record = run_eval(request(opts, demo.model, "base", "zeroshot"))
    print_table(record, record_location(record))
    return 0
