"""Benchmarks that print ratios measured side by side in one process (GPU).

    python -m harness.bench quant [--shape gemma3-1b] [--batch 64] [--seq 320]

`quant` times one forward pass of a random-init model at a registry shape in bf16 and in the `bnb`
variant's NF4 (same weights, quantized at load), and reports time ratio and memory. A JSON record
goes to results/bench/ with the GPU named and `weights: random`.
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="bench", required=True)
    q = sub.add_parser("quant", help="bf16 vs bitsandbytes NF4 forward time and memory")
    q.add_argument("--shape", default="gemma3-1b")
    q.add_argument("--batch", type=int, default=64)
    q.add_argument("--seq", type=int, default=320)
    q.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    result = bench_quant(args.shape, args.batch, args.seq, args.repeats)
    out_dir = records.RESULTS_DIR / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    gpu = result["gpu"].replace(" ", "-")
    records.write_json(out_dir / f"quant-{args.shape}-b{args.batch}x{args.seq}-{gpu}.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "versions"}, indent=2))


if __name__ == "__main__":
    main()
