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

            if visible == 0:
                raise MedbenchError(
                    f"--gpus {opts.gpus}: no CUDA GPU is visible here; leave --gpus out to train in one process "
                    f"(on CPU), or run on a machine with {opts.gpus} GPUs"
                )
            raise MedbenchError(f"--gpus {opts.gpus}: {visible} GPU(s) visible here; use --gpus {visible} or fewer")
    from trainers.sft import finished_record, preflight

    # Every refusal before any process starts or anything loads: the arguments, the model, the method, the
    # DeepSpeed config for the processes' world size, and a finished run in the output folder.
    plan = preflight(opts, launching=True)
    if finished_record(opts, plan) is not None:
        return 0  # already trained with these arguments (said above): nothing to start
    cmd = launch.command(opts, to_argv(opts))
    print(f"medbench train: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    return subprocess.call(cmd, env=launch.environment(opts, os.environ))
