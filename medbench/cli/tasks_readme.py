"""`medbench tasks-readme`: regenerate tasks/README.md (every task's rendered prompt) from the YAMLs."""

from __future__ import annotations

from dataclasses import dataclass

from medbench.errors import MedbenchError
from medbench.options import add_arguments, arg, from_args

HELP = "regenerate tasks/README.md and the README tables that copy a source of truth"


@dataclass
class TasksReadmeArguments:
    check: bool = arg(False, help="fail if tasks/README.md is out of date instead of writing it")


def make_parser(sub) -> None:
    add_arguments(sub.add_parser("tasks-readme", help=HELP, description=HELP), TasksReadmeArguments)


def run(args) -> int:
    from medbench.cli import readme_tables
    from medbench.eval.prompts import readme_path, render_readme

    opts = from_args(TasksReadmeArguments, args)
    outputs = {readme_path(): render_readme()}
    for path in readme_tables.readme_paths():
        outputs[path] = readme_tables.render(path.read_text())
    stale = [path for path, text in outputs.items() if path.read_text() != text]
    if opts.check:
        if stale:
            raise MedbenchError(f"out of date: {', '.join(map(str, stale))}; run `just tasks-readme`")
        return 0
    for path in stale:
        path.write_text(outputs[path])
        print(f"wrote {path}")
    return 0
