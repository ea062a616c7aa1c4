"""`medbench eval MODEL [VARIANT] [PROMPT]`: one evaluation run, its record and a table."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass

from medbench.errors import MedbenchError
from medbench.machines import DEFAULT_PEER_TIMEOUT, Machines
from medbench.machines import launch as launch_machines
from medbench.options import (
    add_arguments,
    arg,
    from_args,
    non_negative_int,
    port_number,
    positive_float,
    positive_int,
    to_argv,
)
from medbench.overrides import parse_assignments
from medbench.settings import EvalSettings

HELP = "evaluate MODEL [VARIANT] [PROMPT] on MedQA and KorMedMCQA"


@dataclass
class RunOptions:
    """Options shared by `eval` and `demo`."""

    mode: str | None = arg(
        None,
        choices=("mc", "gen", "cloze"),
        help="mc: answer-letter log-likelihood; gen: greedy generation; cloze: each option's text after the question, "
        "length-normalised (lm-eval's acc_norm) (default: mc for zeroshot)",
    )
    tasks: str = arg("", help="comma-separated: kormedmcqa_doctor,…,kormedmcqa,medqa_usmle,medqa (default: all)")
    limit: int | None = arg(None, type=positive_int, help="the first N questions of each task (smoke runs)")
    sample: int | None = arg(None, type=positive_int, help="a seeded random sample of N questions per task")
    run_id: str | None = arg(
        None, help="results/runs/<run-id>; re-running an id resumes it (default: a name and a hash of the arguments)"
    )
    checkpoint: str | None = arg(
        None, help="full/lora/qlora: the folder in checkpoints/ to load (another seed or profile; default MODEL-METHOD)"
    )
    force: bool = arg(False, help="discard the run id's cached answers and start again")
    batch_size: int | None = arg(
        None,
        type=positive_int,
        help="mc: questions per forward pass; gen: the decode step's slots (default: the batch_size setting, auto)",
    )
    chat: str | None = arg(
        None,
        choices=("auto", "on", "off"),
        help="the model's chat template: auto (default: chat models in gen), on, off",
    )
    set: list[str] = arg(
        default_factory=list,
        metavar="KEY=VALUE",
        help=f"an evaluation setting; known: {', '.join(EvalSettings.__dataclass_fields__)}",
    )
    quiet: bool = arg(False, help="no progress bars, only warnings, errors and the result table")
    verbose: bool = arg(False, help="every library message (no filtering of known-harmless ones)")


@dataclass
class EvalTarget:
    model: str = arg(
        help="alias (medbench/models/models.yaml), family alias, local directory or hub id", positional=True
    )
    variant: str = arg("base", positional=True, help="base | bnb | awq | full | lora | qlora (default base)")
    prompt: str = arg("zeroshot", positional=True, help="zeroshot | fewshot | cot (default zeroshot)")


@dataclass
class LaunchOptions:
    gpus: int = arg(
        1,
        type=positive_int,
        help="data parallel: one process per GPU (accelerate launch), each scoring its share of the "
        "questions; rank 0 writes the record (without CUDA: N CPU processes, for tests)",
    )


@dataclass
class MachineOptions:
    """Data parallel over several machines: the same command on each, with its own --machine-rank."""

    num_machines: int = arg(
        1, type=positive_int, help="machines in a data-parallel run over several machines, each with --gpus processes"
    )
    machine_rank: int = arg(
        0, type=non_negative_int, help="this machine's rank among them (0: the main machine, which writes the record)"
    )
    main_process_ip: str | None = arg(None, help="the main machine's address, the same on every machine")
    main_process_port: int | None = arg(
        None, type=port_number, help="a free port on the main machine, the same on every machine"
    )
    peer_timeout: float | None = arg(
        None,
        type=positive_float,
        help="seconds a machine waits for the others to join, and each process for the others at every exchange, "
        f"before stopping with an error (default {DEFAULT_PEER_TIMEOUT:g} with --num-machines above 1; none on one)",
    )

    def machines(self) -> Machines:
        return Machines(
            self.num_machines, self.machine_rank, self.main_process_ip, self.main_process_port, self.peer_timeout
        )


def make_parser(sub) -> None:
    p = sub.add_parser("eval", help=HELP, description=HELP)
    add_arguments(p, EvalTarget)
    add_arguments(p, RunOptions)
    add_arguments(p, LaunchOptions)
    add_arguments(p, MachineOptions)


def record_location(record: dict) -> str:
    from medbench.paths import REPO_ROOT, runs_dir

    path = runs_dir() / record["run_id"] / "record.json"
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def request(opts: RunOptions, model: str, variant: str, prompt: str):
    from medbench.eval.request import RunRequest

    overrides = parse_assignments(opts.set)
    if opts.batch_size is not None:
        overrides["batch_size"] = opts.batch_size
    if opts.chat is not None:
        overrides["chat"] = opts.chat
    if opts.quiet and opts.verbose:
        raise MedbenchError("--quiet and --verbose exclude each other")
    level = "quiet" if opts.quiet else "verbose" if opts.verbose else "normal"
    from medbench.cli import console

    console.configure(level)
    return RunRequest(
        model=model,
        variant=variant,
        prompt=prompt,
        mode=opts.mode,
        tasks=[t for t in opts.tasks.split(",") if t],
        limit=opts.limit,
        sample=opts.sample,
        run_id=opts.run_id,
        checkpoint=opts.checkpoint,
        force=opts.force,
        settings=EvalSettings.from_overrides(overrides),
        progress=console.progress_enabled(level),
    )


def run(args) -> int:
    from medbench.eval.runner import run as run_eval

    target, opts, launch = from_args(EvalTarget, args), from_args(RunOptions, args), from_args(LaunchOptions, args)
    machines = from_args(MachineOptions, args).machines()
    if launch.gpus < 1:
        raise MedbenchError(f"--gpus {launch.gpus}: one or more processes")
    machines.check()
    if (launch.gpus > 1 or machines.count > 1) and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return launch_processes(launch.gpus, target, opts, machines)
    record = run_eval(request(opts, target.model, target.variant, target.prompt))
    if record is not None:  # None: a data-parallel process other than rank 0
        print_table(record, record_location(record))
    return 0


def launch_processes(gpus: int, target: EvalTarget, opts: RunOptions, machines: Machines | None = None) -> int:
    """`medbench eval` (without --gpus) in `gpus` processes on each of `machines`, started by `accelerate launch`."""
    import torch

    from medbench.eval.request import prepare
    from medbench.launch import accelerate_command, child_environment

    machines = machines or Machines()
    prepare(request(opts, target.model, target.variant, target.prompt))  # every refusal here, once
    if torch.cuda.is_available():
        if gpus > torch.cuda.device_count():
            raise MedbenchError(f"--gpus {gpus}, but {torch.cuda.device_count()} GPU(s) are visible")
    else:
        here = f" on this machine, {gpus * machines.count} in all" if machines.count > 1 else ""
        print(f"medbench eval: no CUDA: {gpus} CPU process(es){here} (torch.distributed with gloo)", file=sys.stderr)
    cmd = accelerate_command(gpus * machines.count, "medbench.cli", ["eval", *to_argv(target, opts)], machines)
    print(f"medbench eval: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    env = machines.environment(child_environment(os.environ, cpu=not torch.cuda.is_available()))
    if machines.count == 1:
        return subprocess.call(cmd, env=env)
    return launch_machines(cmd, env, machines)


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def task_label(task: dict) -> str:
    """A task's short name for 80 columns: the exam (doctor, nurse, pharm, dentist) or MedQA."""
    return "MedQA" if task.get("dataset") == "medqa" else str(task.get("exam") or task["task"])


def model_label(model: str) -> str:
    """The model as the table's title names it: a local directory by its folder name (a long path in a title would be
    folded mid-word; the record's path, printed whole below the table, says where the run is)."""
    from pathlib import Path

    path = Path(model)
    return path.name if len(model) > 40 and path.name and path.is_dir() else model


def print_table(record: dict, record_path: str, file=None) -> None:
    """The run's table, laid out for 80 columns (a fresh shell, a log, CI, SLURM and docker output are no terminal:
    rich then renders 80 columns), and the record's path on a line of its own that nothing wraps."""
    from rich import box
    from rich.table import Table

    from medbench.cli.console import rich_console

    permuted = any("permutation" in t for t in record["tasks"])
    title = f"{model_label(record['model'])} · {record['variant']} · {record['prompt']} · {record['mode']}"
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    # acc%: accuracy; inv: no parsable answer; cut: prompts cut from the left; top: the most answered letter (⚠ over
    # half of the answers); deb%/circ%: the mean over option rotations and right under every rotation.
    columns = ["task", "n", "acc%", "95% CI", "inv", "cut", "top"]
    columns += ["deb%", "circ%"] if permuted else []
    for col in columns:
        table.add_column(col, justify="left" if col == "task" else "right", no_wrap=True)
    for t in record["tasks"]:
        letters = t.get("letters") or {}
        predicted = letters.get("predicted") or {}
        valid = sum(predicted.values())
        top = max(predicted, key=predicted.get) if valid else None
        row = [
            task_label(t),
            str(t["n"]),
            _pct(t["accuracy"]),
            f"{_pct(t['ci95_low'])}–{_pct(t['ci95_high'])}",
            str(t["invalid"]),
            str(t["truncated_prompts"]),
            f"{top} {_pct(predicted[top] / valid)}" + (" ⚠" if letters.get("dominant") else "") if top else "–",
        ]
        if permuted:
            perm = t.get("permutation") or {}
            row += [_pct(perm.get("debiased_accuracy")), _pct(perm.get("circular_accuracy"))]
        table.add_row(*row)
    if record.get("kormedmcqa_average") is not None:
        table.add_row("KorMedMCQA", "", _pct(record["kormedmcqa_average"]), *[""] * (len(columns) - 3))
    console = rich_console(file)
    console.print(table)
    timing, responses = record["timing"], record["responses"]
    speed = (
        f"{timing['questions_per_second']} questions/s"
        if timing["questions_per_second"] is not None
        else f"resumed: {responses['from_cache']} answers from the cache, so no questions/s"
    )
    memory = record["memory"]
    gpu = f" · peak GPU {memory['peak_gpu_gib']} GiB" if memory.get("peak_gpu_gib") is not None else ""
    console.print(f"load {timing['load_seconds']} s · eval {timing['eval_seconds']} s · {speed}")
    console.print(
        f"peak RSS {memory.get('peak_rss_gib', memory['peak_gib'])} GiB{gpu} · answers computed "
        f"{responses['computed']}, from the cache {responses['from_cache']}"
    )
    print(f"record: {record_path}", file=file, flush=True)  # printed whole: a path wrapped mid-word cannot be pasted
