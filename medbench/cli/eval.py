"""`medbench eval MODEL [VARIANT] [PROMPT]`: one evaluation run, its record and a table."""

from __future__ import annotations

from dataclasses import dataclass

from medbench.options import add_arguments, arg, from_args
from medbench.overrides import parse_assignments
from medbench.settings import EvalSettings

HELP = "evaluate MODEL [VARIANT] [PROMPT] on MedQA and KorMedMCQA"


@dataclass
class RunOptions:
    """Options shared by `eval` and `demo`."""

    mode: str | None = arg(None, choices=("mc", "gen"),
                           help="mc: answer-letter log-likelihood; gen: greedy generation (default: mc for zeroshot)")
    tasks: str = arg("", help="comma-separated: kormedmcqa_doctor,…,kormedmcqa,medqa_usmle,medqa (default: all)")
    limit: int | None = arg(None, help="the first N questions of each task (smoke runs)")
    sample: int | None = arg(None, help="a seeded random sample of N questions per task")
    run_id: str | None = arg(None, help="results/runs/<run-id>; re-running an id resumes it")
    force: bool = arg(False, help="discard the run id's cached answers and start again")
    batch_size: int | None = arg(None, help="questions per forward pass (default 8)")
    chat: str | None = arg(None, choices=("auto", "on", "off"),
                           help="the model's chat template: auto (default: chat models in gen), on, off")
    set: list[str] = arg(default_factory=list, metavar="KEY=VALUE",
                         help=f"an evaluation setting; known: {', '.join(EvalSettings.__dataclass_fields__)}")


@dataclass
class EvalTarget:
    model: str = arg(help="alias (medbench/models/models.yaml), family alias, local directory or hub id",
                     positional=True)
    variant: str = arg("base", positional=True, help="base | bnb | awq | full | lora | qlora (default base)")
    prompt: str = arg("zeroshot", positional=True, help="zeroshot | fewshot | cot (default zeroshot)")


def make_parser(sub) -> None:
    p = sub.add_parser("eval", help=HELP, description=HELP)
    add_arguments(p, EvalTarget)
    add_arguments(p, RunOptions)


def request(opts: RunOptions, model: str, variant: str, prompt: str):
    from medbench.eval.runner import RunRequest

    overrides = parse_assignments(opts.set)
    if opts.batch_size is not None:
        overrides["batch_size"] = opts.batch_size
    if opts.chat is not None:
        overrides["chat"] = opts.chat
    return RunRequest(model=model, variant=variant, prompt=prompt, mode=opts.mode,
                      tasks=[t for t in opts.tasks.split(",") if t], limit=opts.limit, sample=opts.sample,
                      run_id=opts.run_id, force=opts.force, settings=EvalSettings.from_overrides(overrides))


def run(args) -> int:
    from medbench.eval.runner import run as run_eval

    target, opts = from_args(EvalTarget, args), from_args(RunOptions, args)
    print_table(run_eval(request(opts, target.model, target.variant, target.prompt)))
    return 0


def print_table(record: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{record['model']} · {record['variant']} · {record['prompt']} · {record['mode']}")
    for col in ("task", "n", "accuracy", "95% CI", "invalid", "truncated"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for t in record["tasks"]:
        table.add_row(t["task"].removeprefix("medbench_"), str(t["n"]), f"{t['accuracy']:.3f}",
                      f"{t['ci95_low']:.3f}–{t['ci95_high']:.3f}", str(t["invalid"]), str(t["truncated_prompts"]))
    if record.get("kormedmcqa_average") is not None:
        table.add_row("kormedmcqa (weighted avg)", "", f"{record['kormedmcqa_average']:.3f}", "", "", "")
    console = Console()
    console.print(table)
    timing = record["timing"]
    console.print(f"load {timing['load_seconds']} s · eval {timing['eval_seconds']} s · "
                  f"{timing['questions_per_second']} questions/s · peak memory {record['memory']['peak_gib']} GiB · "
                  f"answers computed {record['responses']['computed']}, from cache {record['responses']['from_cache']}")
    console.print(f"record: results/runs/{record['run_id']}/record.json")
