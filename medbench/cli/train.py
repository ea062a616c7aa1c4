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
    from medbench.options import from_args, to_argv
    from trainers import launch
    from trainers.arguments import TrainArguments

    opts = from_args(TrainArguments, args)
    if opts.gpus > 1:
        import torch

        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if opts.gpus > visible:
            from medbench.errors import MedbenchError

            raise MedbenchError(f"--gpus {opts.gpus}: {visible} GPU(s) visible here; use --gpus {max(visible, 1)}")
    from trainers.sft import check_arguments

    check_arguments(opts)  # before any process starts
    cmd = launch.command(opts, to_argv(opts))
    print(f"medbench train: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    return subprocess.call(cmd, env=launch.environment(opts, os.environ))
