"""`medbench bench quant|train`: benchmarks that print ratios measured side by side in one run (GPU).

`quant` (medbench/models/bench_quant.py): one forward pass of a random-init model at a registry
shape in bf16 and in the `bnb` variant's NF4. `train` (trainers/bench.py): `just train` per method,
and with one setting changed at a time, beside a plain PyTorch training step.
Records go to results/bench/ with the GPU named.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from medbench.errors import MedbenchError
from medbench.options import add_arguments, arg, from_args
from medbench.paths import results_dir

HELP = "benchmarks printing side-by-side ratios (GPU): quant (bf16 vs NF4), train (speed per method)"


@dataclass
class QuantBenchArguments:
    shape: str = arg("gemma3-1b", help="random-init model at this registry alias's shape")
    batch: int = arg(64, help="sequences per forward pass")
    seq: int = arg(320, help="tokens per sequence")
    repeats: int = arg(10, help="timed forward passes per precision")


@dataclass
class TrainBenchArguments:
    shape: str = arg("gemma3-1b", help="random-init model at this registry alias's shape")
    model: str | None = arg(None, help="a local model directory instead of --shape (e.g. from medbench.models.shapes)")
    configs: str | None = arg(
        None, help="comma separated; NAME@G runs NAME on G GPUs (default: trainers/bench.py's DEFAULT_CONFIGS)"
    )
    steps: int = arg(30, help="optimizer steps per configuration")
    fresh: bool = arg(
        False,
        help="measure every configuration again (default: continue a record cut short on the same machine and code)",
    )


def make_parser(sub) -> None:
    p = sub.add_parser("bench", help=HELP, description=__doc__)
    kinds = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    add_arguments(
        kinds.add_parser("quant", help="bf16 vs bitsandbytes NF4 forward time and memory"), QuantBenchArguments
    )
    add_arguments(
        kinds.add_parser("train", help="training tokens/s, MFU and memory per method, beside a plain PyTorch step"),
        TrainBenchArguments,
    )


def run(args) -> int:
    out_dir = results_dir() / "bench"
    if args.bench == "train":
        return bench_train(from_args(TrainBenchArguments, args), out_dir)
    from medbench.models.bench_quant import bench_quant
    from medbench.records.io import write_json

    opts = from_args(QuantBenchArguments, args)
    result = bench_quant(opts.shape, opts.batch, opts.seq, opts.repeats)
    out_dir.mkdir(parents=True, exist_ok=True)
    gpu = result["gpu"].replace(" ", "-")
    write_json(out_dir / f"quant-{opts.shape}-b{opts.batch}x{opts.seq}-{gpu}.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "versions"}, indent=2))
    return 0


def bench_train(opts: TrainBenchArguments, out_dir: Path) -> int:
    import torch

    from trainers import bench

    # A typo fails before any model is built.
    parsed = [bench.parse_config(c.strip()) for c in (opts.configs or bench.DEFAULT_CONFIGS).split(",") if c.strip()]
    if opts.model and not (Path(opts.model) / "config.json").is_file():
        raise MedbenchError(
            f"--model {opts.model}: not a model directory (no config.json); make one with "
            f"medbench.models.shapes.save_random_model or pass a saved checkpoint"
        )
    if not torch.cuda.is_available():
        raise MedbenchError("bench train needs a CUDA GPU (DeepSpeed, bf16, bitsandbytes)")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if opts.model:
            model_dir, name = opts.model, Path(opts.model).name
        else:
            from medbench.models.shapes import save_random_model

            model_dir, name = str(save_random_model(opts.shape, Path(tmp) / opts.shape)), f"{opts.shape}-random"
        gpu = torch.cuda.get_device_name(0).replace(" ", "-")
        gpus = max(g for _, g in parsed)
        out = out_dir / f"train-{name}-{gpu}{f'-x{gpus}' if gpus > 1 else ''}.json"
        result = bench.bench_train(model_dir, parsed, opts.steps, out, opts.fresh)
    print(bench.table(result))
    print(f"wrote {out}")
    return 0
