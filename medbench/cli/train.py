"""`medbench train MODEL METHOD`: fine-tune with TRL's SFTTrainer (full, LoRA, QLoRA) under DeepSpeed.

Starts one process per GPU (trainers/launch.py); each runs trainers/sft.py with the same arguments.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

HELP = "fine-tune MODEL with METHOD (full | lora | qlora): TRL SFT, DeepSpeed ZeRO on CUDA"


def make_parser(sub) -> None:
    from trainers.arguments import build_parser

    build_parser(sub.add_parser("train", help=HELP, description=__doc__))


def run(args) -> int:
    from medbench.options import from_args
    from trainers import launch
    from trainers.arguments import TrainArguments

    opts = from_args(TrainArguments, args)
    cmd = launch.command(opts, to_argv(opts))
    print(f"medbench train: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    return subprocess.call(cmd, env=launch.environment(opts, os.environ))


def to_argv(opts) -> list[str]:
    """The parsed arguments as a command line again, for each training process to parse."""
    out = [opts.model, opts.method]
    for name, value in vars(opts).items():
        # `is`, not `in`: 0 == False, and `--eval-limit 0` (no evaluation) must reach the processes.
        if name in ("model", "method") or value is None or value is False or value == []:
            continue
        flag = f"--{name.replace('_', '-')}"
        if value is True:
            out.append(flag)
        elif isinstance(value, list):
            out += [x for v in value for x in (flag, v)]
        else:
            out += [flag, str(value)]
    return out
