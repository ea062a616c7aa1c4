"""What a training run leaves besides its weights: train_record.json and the loss-curve PNG."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from pathlib import Path

from medbench.paths import results_dir
from medbench.records.io import write_json
from medbench.records.provenance import peak_memory, provenance

# Dense bf16 tensor-core peak per GPU (no sparsity), from NVIDIA's data sheets. Others: no MFU.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}
MFU_FORMULA = (
    "6 x total_params x train_tokens_per_second / (peak_bf16_flops_per_gpu x gpus); total_params "
    "counts every weight the forward pass uses (tied embeddings once, 4-bit weights unpacked), "
    "train tokens are non-padding prompt+completion tokens and train seconds are optimizer-step time "
    "only (evaluation and saving excluded). For lora/qlora the backward skips the frozen weights' "
    "gradients (about 4 x total + 6 x trainable FLOPs a token), so 6N overstates their useful FLOPs "
    "by up to 1.5x: compare MFU across runs of one method"
)

TRAIN_RECORD = "train_record.json"
LOSS_CURVE = "loss_curve.png"


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


def build_record(
    args,
    plan,
    data,
    trainer,
    timer,
    train_output,
    eval_metrics: dict,
    resume: str | None,
    tokens_before: int,
    wall_seconds: float,
) -> dict:
    """train_record.json: what ran (model, method, data, arguments), how fast, how much memory, the losses."""
    state = trainer.state
    tokens_this_run = state.num_input_tokens_seen - tokens_before
    tokens_per_second = tokens_this_run / timer.seconds if timer.seconds else None
    params = count_parameters(trainer.model)
    prov = provenance()
    gpu = prov["hardware"].get("gpu")
    gpus = trainer.accelerator.num_processes
    curve = loss_curve(state.log_history, plan.output_dir / "loss_curve.png", f"{plan.spec.alias} {plan.method.name}")
    return {
        "model": plan.spec.alias,
        "model_source": data.base,
        "params_b": plan.spec.params_b,
        "method": plan.method.name,
        "method_config": plan.method.as_dict(),
        "profile": args.profile,
        "training_arguments": plan.training,
        "output_dir": str(plan.output_dir),
        "created": prov["created"],
        "data": {
            "mix": args.mix,
            "cot": args.cot,
            "sources": data.sources,
            "eval_sources": data.eval_sources,
            "files": data.files,
            "limit": args.limit,
            "eval_limit": args.eval_limit,
            "format": "prompt = lm-eval task doc_to_text(row) of the zero-shot mc task; completion = "
            "target_delimiter + answer letter (the continuation the mc task scores) + EOS; "
            "loss on completion tokens only",
            "train_examples": len(data.train),
            "eval_examples": len(data.eval),
            "train_lengths": data.train_lengths,
            "eval_lengths": data.eval_lengths,
        },
        "examples": len(data.train),
        "steps": state.global_step,
        "epochs": state.epoch,
        "tokens_trained": state.num_input_tokens_seen,
        "tokens_this_run": tokens_this_run,
        "resumed_from": resume,
        "resumed_from_step": int(Path(resume).name.rsplit("-", 1)[1]) if resume else None,
        "wall_seconds": round(wall_seconds, 2),
        "train_seconds": round(timer.seconds, 2),
        "train_tokens_per_second": round(tokens_per_second, 1) if tokens_per_second else None,
        "params": params,
        "mfu": mfu(params["total"], tokens_per_second, gpu, gpus),
        "mfu_formula": MFU_FORMULA,
        "peak_bf16_flops_per_gpu": peak_flops(gpu),
        "steady_state": with_mfu(timer.steady_state(), params["total"], gpu, gpus),
        "memory": peak_memory(),
        # The last logged loss; a run shorter than logging_steps logged none: its mean loss then.
        "final_train_loss": last(state.log_history, "loss") or train_output.training_loss,
        "final_eval_loss": eval_metrics.get("eval_loss"),
        "loss_floor": data.loss_floor,
        "loss_history": loss_history(state.log_history),
        "best_checkpoint": best_checkpoint(state),
        "contaminated": data.contaminated,
        "published_as": f"{plan.output_dir.name}.json",
        "mean_train_loss_this_run": train_output.training_loss,
        "device": "cuda" if plan.cuda else "cpu",
        "gpus": gpus,
        "precision": "bf16 mixed" if trainer.args.bf16 else "fp32",
        **plan.model_info,
        "deepspeed": deepspeed_record(trainer, plan.ds_path, plan.ds_config) if plan.use_deepspeed else None,
        "notes": plan.notes,
        "loss_curve": "loss_curve.png" if curve else None,
        **{k: v for k, v in prov.items() if k != "created"},
    }


def loss_history(log_history: list[dict]) -> list[dict]:
    """Every logged train and held-out loss, by optimizer step (the curve as data, not only as a picture)."""
    keys = ("loss", "eval_loss", "learning_rate", "grad_norm")
    return [
        {"step": e["step"], **{k: round(e[k], 6) for k in keys if isinstance(e.get(k), (int, float))}}
        for e in log_history
        if "step" in e and ("loss" in e or "eval_loss" in e)
    ]


def best_checkpoint(state) -> dict | None:
    """The held-out-best checkpoint the trainer loaded at the end (load_best_model_at_end), or None."""
    if not getattr(state, "best_model_checkpoint", None):
        return None
    name = Path(state.best_model_checkpoint).name
    return {"checkpoint": name, "step": int(name.rsplit("-", 1)[1]), "eval_loss": state.best_metric}


def deepspeed_record(trainer, ds_path: Path, ds_config: dict) -> dict:
    """The config file and, once DeepSpeed filled its "auto" values, the config it actually ran."""
    filled = None
    with contextlib.suppress(AttributeError):
        filled = trainer.accelerator.state.deepspeed_plugin.deepspeed_config
    return {"file": str(ds_path), "config": ds_config, "resolved": json.loads(json.dumps(filled, default=str))}


def publish(record: dict, output_dir: Path) -> None:
    """The record beside the weights, and a copy (with its loss curve) in results/train/ for the report."""
    write_json(output_dir / TRAIN_RECORD, record)
    published = results_dir() / "train"
    published.mkdir(parents=True, exist_ok=True)
    stem = output_dir.name  # the checkpoint's folder name: --output-dir, a profile, seed or positive control included
    if record.get("loss_curve") and (output_dir / LOSS_CURVE).exists():
        shutil.copyfile(output_dir / LOSS_CURVE, published / f"{stem}-loss.png")
    write_json(published / f"{stem}.json", record)
    loss = f"final train loss {record['final_train_loss']}, eval loss {record['final_eval_loss']}"
    print(
        f"medbench train: {record['model']} {record['method']}: {record['steps']} steps, {loss}; "
        f"wrote {output_dir} and {published / (stem + '.json')}"
    )
