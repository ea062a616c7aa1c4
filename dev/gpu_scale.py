"""Beyond one GPU, measured: data-parallel and sharded evaluation, an oversize model, 8B-shape training.

    python dev/gpu_scale.py --part dp          # 270M zero-shot mc, every question, on 1, 2, 4 GPUs
    python dev/gpu_scale.py --part dp --dp-model random-270m --tokenizer DIR   # without the GGUF package
    python dev/gpu_scale.py --part oversize    # Llama-3-70B shape sharded in bf16; NF4 on one GPU; 270M sharded
    python dev/gpu_scale.py --part train       # Qwen3-8B shape: lora 1/2/4 GPUs, full (ZeRO-3) 2/4, qlora 1
    python dev/gpu_scale.py --part batch       # optional: the largest per-GPU batch that fits (1,024-token rows)
    python dev/gpu_scale.py --part train-1b    # Gemma-3-1B shape: lora on 1, 2, 4 GPUs
    python dev/gpu_scale.py --part dp,train    # several parts in one call, one time budget

Each part writes results/bench/scale-<part>-<GPU>-x<GPUs>.json (or under --out) after every measurement
and measures only what that file lacks: a part stopped by its time budget (--budget, default 420 s, so
that one call fits the device machine's 10 minutes) continues where it stopped when the same command
runs again (it prints `more to do` until it is done; --fresh starts over). Units that would not finish
inside --hard-limit (480 s, by the estimates in gpu_scale_lib.EXPECTED) are left for the next call, and
a child still running 60 s past it is stopped and recorded as such. Every process started here has NVLink
multicast off (NCCL_NVLS_ENABLE=0 and its PyTorch and NVSHMEM kin: medbench/launch.py). Random-init
models (every shape here but the real 270M) say so in the record; their answers are chance.

--tokenizer DIR (tokenizer.json or tokenizer.json.gz, and tokenizer_config.json: the embedded 270M's)
replaces the embedded model wherever a tokenizer is needed, so that no part needs the GGUF package.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Each imports gpu_scale_lib first, which forces NVLink multicast off and puts the repository on sys.path.
import gpu_scale_eval
import gpu_scale_lib as lib
import gpu_scale_train
from gpu_scale_lib import Budget, log

PARTS = ("dp", "oversize", "train", "batch", "train-1b")


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", required=True, help=f"one or more of {', '.join(PARTS)}, comma-separated")
    p.add_argument("--gpus", default="1,2,4", help="GPU counts for --part dp (those visible; default 1,2,4)")
    p.add_argument(
        "--dp-model",
        default="auto",
        choices=("auto", "real", "random-270m"),
        help="the 270M of dp and oversize: real (the GGUF package), random-270m (its published config, random "
        "weights, --tokenizer's tokenizer); auto: real where installed",
    )
    p.add_argument("--dp-limit", type=int, default=None, help="dp: the first N questions of each task (default: all)")
    p.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="a folder with tokenizer.json(.gz) and "
        "tokenizer_config.json, used instead of the embedded model's (which needs the GGUF package)",
    )
    p.add_argument(
        "--configs",
        default=None,
        help="training configurations NAME@G for the train parts (default: "
        f"{gpu_scale_train.TRAIN_8B_CONFIGS}; batch: {gpu_scale_train.BATCH_CONFIGS})",
    )
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per training configuration")
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of the steady-state timing")
    p.add_argument("--examples", type=int, default=256, help="training examples (a seeded sample: less to tokenize)")
    p.add_argument("--shape", default="llama3-70b", help="oversize: a shape of medbench/bench/oversize.py")
    p.add_argument("--limit", type=int, default=4, help="oversize: questions per task")
    p.add_argument("--batch-size", type=int, default=8, help="oversize: questions per forward pass")
    p.add_argument("--budget", type=float, default=420, help="start no new unit after this many seconds")
    p.add_argument("--hard-limit", type=float, default=480, help="start no unit expected to end after this")
    p.add_argument("--out", type=Path, default=lib.ROOT / "results" / "bench")
    p.add_argument("--fresh", action="store_true", help="measure everything again")
    args = p.parse_args(argv)
    parts = [x.strip() for x in args.part.split(",") if x.strip()]
    if not parts or any(x not in PARTS for x in parts):
        p.error(f"--part {args.part!r}: choose from {', '.join(PARTS)}")
    if args.steps <= args.warmup:
        p.error(f"--steps {args.steps} leaves no timed step after --warmup {args.warmup}")
    args.parts = parts
    return args


def summary(rec: dict) -> dict:
    keys = ("questions_per_second", "tokens_per_second", "error", "reason", "peak_gpu_gib_rank0")
    keys += ("peak_gpu_gib_per_gpu", "largest", "gpu_memory_used_peak_gib")
    out = {k: rec.get(k) for k in ("part", "gpu", "gpu_count", "weights", "scaling") if rec.get(k)}
    out["units"] = {
        k: {kk: v.get(kk) for kk in keys if v.get(kk) is not None}
        for k, v in rec["units"].items()
        if isinstance(v, dict)
    }
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("gpu_scale: needs CUDA GPUs", file=sys.stderr)
        return 2
    facts = lib.machine()
    log(f"{facts['gpu_count']} x {facts['gpu']}; parts {args.parts}; NCCL_NVLS_ENABLE={os.environ['NCCL_NVLS_ENABLE']}")
    budget = Budget(args.budget, args.hard_limit)
    for part in args.parts:
        if part == "dp":
            rec = gpu_scale_eval.part_dp(args, facts, budget)
        elif part == "oversize":
            rec = gpu_scale_eval.part_oversize(args, facts, budget)
        elif part in ("train", "train-1b"):
            rec = gpu_scale_train.part_train(args, facts, budget, "8b" if part == "train" else "1b")
        else:
            rec = gpu_scale_train.part_batch(args, facts, budget)
        print(json.dumps(summary(rec), indent=1, default=str), flush=True)
    if budget.left_over:
        print(f"gpu_scale: more to do ({', '.join(budget.left_over)}): run the same command again", flush=True)
    else:
        print("gpu_scale: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
