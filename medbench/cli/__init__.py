"""`medbench`: one command, one subcommand per job. The justfile's recipes call these.

Each subcommand is a module here with `make_parser(subparsers)` and `run(args)`; modules import
their heavy dependencies (torch, lm-eval) inside `run`, so `medbench --help` answers at once.
This package sits above both sides of the project: it is the one place that imports `trainers`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from medbench.errors import MedbenchError
from medbench.options import ArgumentParser

COMMANDS = (
    "eval",
    "demo",
    "suite",
    "data",
    "train",
    "report",
    "merge",
    "compare",
    "verify",
    "consistency",
    "bench",
    "quantize-awq",
    "tasks-readme",
)


def _module(command: str):
    return importlib.import_module(f"medbench.cli.{command.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="medbench",
        description=(
            "Small LLMs on medical licensing exams (MedQA, KorMedMCQA): evaluation, fine-tuning, quantization."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        _module(command).make_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _module(args.command).run(args) or 0
    except MedbenchError as e:
        print(f"medbench {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C: what was kept, in one line (medbench.errors.Interrupted), no traceback
        print(f"medbench {args.command}: interrupted{f': {e}' if str(e) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
