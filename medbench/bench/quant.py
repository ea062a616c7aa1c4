"""`just bench quant`: bf16 against bitsandbytes NF4, measured side by side in one process (GPU).

It times one forward pass of a random-init model at a registry shape in bf16 and in the `bnb`
variant's NF4 (same weights, quantized at load), and reports time ratio and memory. A JSON record
goes to results/bench/ with the GPU named and `weights: random`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from medbench.errors import MedbenchError
from medbench.models.loading import quantization_config
from medbench.models.variants import load_variants
from medbench.records import provenance


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

    from medbench.models.shapes import save_random_model

    if not torch.cuda.is_available():
        raise MedbenchError("bench quant needs a CUDA GPU (bitsandbytes NF4)")
    result = {
        "bench": "quant",
        "shape": shape,
        "weights": "random",
        "batch": batch,
        "seq": seq,
        "repeats": repeats,
        "gpu": torch.cuda.get_device_name(0),
        "versions": provenance.package_versions(),
        **provenance.code_state(),
    }
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
