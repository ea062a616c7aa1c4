"""Benchmarks that print ratios measured side by side in one process (GPU).

    python -m harness.bench quant [--shape gemma3-1b] [--batch 64] [--seq 320]
    python -m harness.bench train [--shape gemma3-1b | --model DIR] [--configs ...] [--steps 30]

`quant` times one forward pass of a random-init model at a registry shape in bf16 and in the `bnb`
variant's NF4 (same weights, quantized at load), and reports time ratio and memory. A JSON record
goes to results/bench/ with the GPU named and `weights: random`.

`train` times `just train` per method (and with one setting changed at a time) beside a plain PyTorch
training step; see trainers/bench.py.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from harness import records
from harness.loading import quantization_config
from harness.variants import load_variants
from trainers.bench import DEFAULT_CONFIGS, bench_train, parse_config, table


def _time_forward(model, ids, repeats: int, logits_to_keep: int) -> float:
    with torch.no_grad():
        for _ in range(3):
            model(input_ids=ids, logits_to_keep=logits_to_keep)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            model(input_ids=ids, logits_to_keep=logits_to_keep)
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def bench_quant(shape: str, batch: int, seq: int, repeats: int) -> dict:
    from transformers import AutoModelForCausalLM

    from harness.shapes import save_random_model

    if not torch.cuda.is_available():
        raise SystemExit("bench quant needs a CUDA GPU (bitsandbytes NF4)")
    result = {"bench": "quant", "shape": shape, "weights": "random", "batch": batch, "seq": seq, "repeats": repeats,
              "gpu": torch.cuda.get_device_name(0), "versions": records.package_versions(), "git_sha": records.git_sha()}
    with tempfile.TemporaryDirectory() as tmp:
        path = save_random_model(shape, Path(tmp) / shape)
        ids = torch.randint(0, 32000, (batch, seq), device="cuda")
        for name, quant in (("bf16", None), ("bnb", load_variants()["bnb"].quantization)):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            kwargs = {"dtype": torch.bfloat16, "attn_implementation": "sdpa"}
            if quant:
                kwargs.update(quantization_config=quantization_config(quant), device_map={"": 0})
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
            if not quant:
                model = model.cuda()
            model.eval()
            result[name] = {
                "footprint_gib": round(model.get_memory_footprint() / 2**30, 3),
                "forward_last_logits_s": round(_time_forward(model, ids, repeats, 1), 5),
                "forward_full_logits_s": round(_time_forward(model, ids, repeats, 0), 5),
                "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
            }
            del model
    for key in ("forward_last_logits_s", "forward_full_logits_s", "footprint_gib", "peak_gib"):
        result[f"ratio_bnb_over_bf16_{key}"] = round(result["bnb"][key] / result["bf16"][key], 3)
    return result


def bench_train_command(args, out_dir: Path) -> None:
    # A typo fails before any model is built.
    parsed = [parse_config(c.strip()) for c in args.configs.split(",") if c.strip()]
    if args.model and not (Path(args.model) / "config.json").is_file():
        raise SystemExit(f"bench train: --model {args.model}: not a model directory (no config.json); "
                         f"make one with harness.shapes.save_random_model or pass a saved checkpoint")
    if not torch.cuda.is_available():
        raise SystemExit("bench train needs a CUDA GPU (DeepSpeed, bf16, bitsandbytes)")
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model_dir, name = args.model, Path(args.model).name
        else:
            from harness.shapes import save_random_model

            model_dir, name = str(save_random_model(args.shape, Path(tmp) / args.shape)), f"{args.shape}-random"
        gpu = torch.cuda.get_device_name(0).replace(" ", "-")
        gpus = max(g for _, g in parsed)
        out = out_dir / f"train-{name}-{gpu}{f'-x{gpus}' if gpus > 1 else ''}.json"
        result = bench_train(model_dir, parsed, args.steps, out, args.fresh)
    print(table(result))
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="bench", required=True)
    q = sub.add_parser("quant", help="bf16 vs bitsandbytes NF4 forward time and memory")
    q.add_argument("--shape", default="gemma3-1b")
    q.add_argument("--batch", type=int, default=64)
    q.add_argument("--seq", type=int, default=320)
    q.add_argument("--repeats", type=int, default=10)
    t = sub.add_parser("train", help="training tokens/s, MFU and memory per method, beside a plain PyTorch step")
    t.add_argument("--shape", default="gemma3-1b", help="random-init model at this registry alias's shape")
    t.add_argument("--model", help="a local model directory instead of --shape (e.g. one made by harness.shapes)")
    t.add_argument("--configs", default=DEFAULT_CONFIGS,
                   help="comma separated; NAME@G runs NAME on G GPUs (default: %(default)s)")
    t.add_argument("--steps", type=int, default=30, help="optimizer steps per configuration")
    t.add_argument("--fresh", action="store_true", help="measure every configuration again (default: continue "
                                                         "a record cut short on the same machine and code)")
    args = parser.parse_args(argv)
    out_dir = records.RESULTS_DIR / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.bench == "train":
        bench_train_command(args, out_dir)
        return
    result = bench_quant(args.shape, args.batch, args.seq, args.repeats)
    gpu = result["gpu"].replace(" ", "-")
    records.write_json(out_dir / f"quant-{args.shape}-b{args.batch}x{args.seq}-{gpu}.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "versions"}, indent=2))


if __name__ == "__main__":
    main()
