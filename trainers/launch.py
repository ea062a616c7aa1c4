"""How training processes start: the one place that builds the launch command.

One GPU (or CPU): `python -m trainers.sft ARGS`, with only the first GPU visible unless
CUDA_VISIBLE_DEVICES says otherwise (one process seeing several GPUs would fall back to
nn.DataParallel, which TRL refuses). Several GPUs or machines: `accelerate launch` with one process
per GPU; the DeepSpeed config reaches each through the training arguments. Multi-node runs take
accelerate's own arguments (machine count and rank, main address and port); a scheduler such as
SLURM starts the same command on every machine (docs/multinode.md).
"""

from __future__ import annotations

import sys

from medbench.launch import process_environment
from medbench.machines import gloo_environment
from trainers.arguments import TrainArguments
from trainers.config import TrainError


def check(args: TrainArguments) -> None:
    if args.gpus < 1 or args.num_machines < 1:
        raise TrainError("--gpus and --num-machines count from 1")
    if args.num_machines > 1:
        if not args.main_process_ip or not args.main_process_port:
            raise TrainError(
                "a multi-node run (--num-machines > 1) needs --main-process-ip and --main-process-port "
                "(the rank-0 machine's address), the same on every machine"
            )
        if not 0 <= args.machine_rank < args.num_machines:
            raise TrainError(f"--machine-rank {args.machine_rank} is outside 0..{args.num_machines - 1}")


def command(args: TrainArguments, argv: list[str]) -> list[str]:
    """The command for this machine; `argv` (the user's arguments) goes to every process unchanged."""
    check(args)
    if args.gpus == 1 and args.num_machines == 1:
        return [sys.executable, "-m", "trainers.sft", *argv]
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(args.gpus * args.num_machines),
        "--num_machines",
        str(args.num_machines),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    if args.num_machines > 1:
        cmd += [
            "--machine_rank",
            str(args.machine_rank),
            "--main_process_ip",
            args.main_process_ip,
            "--main_process_port",
            str(args.main_process_port),
        ]
    # Explicit: accelerate infers it only from several GPUs on this machine, so one GPU (or CPU) on each of
    # several machines would otherwise start one independent training per machine.
    return [*cmd, "--multi_gpu", "-m", "trainers.sft", *argv]


def environment(args: TrainArguments, env: dict[str, str]) -> dict[str, str]:
    env = process_environment(env)  # NVLink multicast off (medbench/launch.py)
    if args.gpus <= 1 and args.num_machines <= 1:
        env.setdefault("CUDA_VISIBLE_DEVICES", "0")
    if args.num_machines > 1:
        env = gloo_environment(env, args.main_process_ip)  # gloo on the interface that reaches the main machine
    return env
