"""What a training run leaves besides its weights: train_record.json and the loss-curve PNG."""

from __future__ import annotations

import math
import resource
from pathlib import Path

import torch

# Dense bf16 tensor-core peak per GPU (no sparsity), from NVIDIA's data sheets. Others: no MFU.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}
MFU_FORMULA = ("6 x total_params x train_tokens_per_second / (peak_bf16_flops_per_gpu x gpus); total_params "
               "counts every weight the forward pass uses (tied embeddings once, 4-bit weights unpacked), "
               "train tokens are non-padding prompt+completion tokens and train seconds are optimizer-step time "
               "only (evaluation and saving excluded). For lora/qlora the backward skips the frozen weights' "
               "gradients (about 4 x total + 6 x trainable FLOPs a token), so 6N overstates their useful FLOPs "
               "by up to 1.5x: compare MFU across runs of one method")


def peak_flops(gpu_name: str | None) -> float | None:
    if not gpu_name:
        return None
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in gpu_name.upper()), None)


def count_parameters(model) -> dict:
    """Total and trainable parameters; bitsandbytes 4-bit weights count their unpacked size."""
    total = trainable = 0
    for p in model.parameters():
        quant_state = getattr(p, "quant_state", None)
        n = math.prod(quant_state.shape) if quant_state is not None else p.numel()
        # ZeRO-3 partitions parameters: their full size is ds_numel.
        n = getattr(p, "ds_numel", n)
        total += n
        if p.requires_grad:
            trainable += n
    return {"total": total, "trainable": trainable}


def mfu(total_params: int, tokens_per_second: float | None, gpu_name: str | None, gpus: int) -> float | None:
    peak = peak_flops(gpu_name)
    if peak is None or not tokens_per_second:
        return None
    return 6 * total_params * tokens_per_second / (peak * gpus)


def with_mfu(steady: dict | None, total_params: int, gpu_name: str | None, gpus: int) -> dict | None:
    if steady is None:
        return None
    return {**steady, "mfu": mfu(total_params, steady["tokens_per_second"], gpu_name, gpus)}


def memory() -> dict:
    out = {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30, 3),
           "peak_gpu_gib": None}
    if torch.cuda.is_available():
        out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def last(log_history: list[dict], key: str) -> float | None:
    return next((entry[key] for entry in reversed(log_history) if key in entry), None)


def loss_curve(log_history: list[dict], path: Path, title: str) -> Path | None:
    """Train and eval loss against the optimizer step, from the trainer's log history (PNG)."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), dpi=120)
    ax = fig.subplots()
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1)
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss (KorMedMCQA valid)", linewidth=1, markersize=3)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (completion tokens)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path
