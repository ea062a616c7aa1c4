"""`just train MODEL METHOD [ARGS]`: the one place that decides how training processes start.

--gpus N > 1: `accelerate launch --num_processes N -m trainers.sft ARGS`, one process per GPU (the
DeepSpeed config reaches each through the training arguments). Otherwise (one GPU, or CPU):
`python -m trainers.sft ARGS`, with only the first GPU visible unless CUDA_VISIBLE_DEVICES says
otherwise (one process seeing several GPUs would fall back to nn.DataParallel, which TRL refuses).
Every argument goes to trainers.sft unchanged, --gpus included.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys


def gpus_requested(argv: list[str]) -> int:
    for i, arg in enumerate(argv):
        value = None
        if arg == "--gpus" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--gpus="):
            value = arg.split("=", 1)[1]
        if value is not None:
            try:
                return int(value)
            except ValueError:
                sys.exit(f"medbench train: error: --gpus expects a number, got {value!r}")
    return 1


def command(argv: list[str]) -> list[str]:
    gpus = gpus_requested(argv)
    if gpus > 1:
        return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(gpus), "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "trainers.sft", *argv]
    return [sys.executable, "-m", "trainers.sft", *argv]


def environment(argv: list[str], env: dict[str, str]) -> dict[str, str]:
    env = dict(env)
    if gpus_requested(argv) <= 1:
        env.setdefault("CUDA_VISIBLE_DEVICES", "0")
    return env


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cmd = command(argv)
    print(f"medbench train: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    sys.exit(subprocess.call(cmd, env=environment(argv, os.environ)))


if __name__ == "__main__":
    main()
