"""`just bench train`: training throughput and memory per method, side by side, one process each.

    just bench train [--model DIR | --shape gemma3-1b] [--configs reference,full,lora,qlora,full@2] [--steps 30]

`reference` is the plain PyTorch step the trainers issue quotes for scale: fp32 weights, fused AdamW,
bf16 autocast, sdpa, a fixed batch of 8 x 512 random tokens, no gradient checkpointing, no DeepSpeed.
Every other configuration is `just train MODEL METHOD --max-steps N` on the real training mix, exactly
as a user runs it (DeepSpeed ZeRO-2, gradient checkpointing, batch 8), or with one thing changed
(CONFIGS below; `full-plain` turns off both DeepSpeed and gradient checkpointing; `fast` is
`--profile fast`: packed rows, no gradient checkpointing, no DeepSpeed on one GPU). `NAME@G` runs
NAME on G GPUs. Each runs in its own process, so each has its own CUDA context and memory peak;
throughput is the steady state (trainers/sft.py drops the first steps).
The record (results/bench/) is rewritten after every configuration: a run cut short keeps what it
measured, and the next run with the same model, steps, GPU, git sha and packages measures only the rest
(`--fresh` starts over).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from medbench.models.shapes import RANDOM_MARKER
from medbench.records import provenance
from medbench.records.io import write_json
from trainers import record as rec
from trainers.config import TrainError

# name: (method, extra `just train` arguments). One change from the default per line, so ratios read as causes.
CONFIGS = {
    "full": ("full", []),
    "full-no-gc": ("full", ["--set", "gradient_checkpointing=false"]),
    "full-no-deepspeed": ("full", ["--deepspeed", "none"]),
    "full-zero3": ("full", ["--deepspeed", "zero3"]),
    "full-plain": ("full", ["--deepspeed", "none", "--set", "gradient_checkpointing=false"]),  # nearest the reference
    "lora": ("lora", []),
    "lora-no-gc": ("lora", ["--set", "gradient_checkpointing=false"]),
    "qlora": ("qlora", []),
    # The fast profile (trainers/profiles/fast.yaml: packed batches, no gradient checkpointing, no DeepSpeed on
    # one GPU, up to 4,096 tokens a step), and it with one thing changed.
    "fast": ("full", ["--profile", "fast"]),
    "full-packed": ("full", ["--set", "packing=true", "--set", "eval_packing=false"]),  # packing alone, study otherwise
    "fast-gc": ("full", ["--profile", "fast", "--set", "gradient_checkpointing=true"]),
    "fast-8rows": ("full", ["--profile", "fast", "--set", "per_device_train_batch_size=8"]),  # up to 8,192 tokens
    # torch.compile; rows padded to a multiple of 1,024 tokens so that few shapes compile
    "fast-compile": ("full", ["--profile", "fast", "--set", "torch_compile=true", "--set", "pad_to_multiple_of=1024"]),
    "lora-fast": ("lora", ["--profile", "fast"]),
}
DEFAULT_CONFIGS = "reference,full,fast,full-no-gc,full-no-deepspeed,full-zero3,lora,lora-fast,qlora"
# Set by a launcher; a multi-GPU child gets them from accelerate, a single-GPU child from trainers/sft.py.
DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def parse_config(name: str) -> tuple[str, int]:
    base, _, gpus = name.partition("@")
    if base != "reference" and base not in CONFIGS:
        raise TrainError(
            f"unknown bench configuration {base!r}; known: reference, {', '.join(CONFIGS)} (NAME@G runs NAME on G GPUs)"
        )
    if gpus and (not gpus.isdigit() or int(gpus) < 1):
        raise TrainError(f"bench configuration {name!r}: the part after @ is a GPU count")
    if base == "reference" and gpus and int(gpus) != 1:
        raise TrainError("bench configuration reference: the reference loop runs on one GPU")
    return base, int(gpus or 1)


def reference_step(model_dir: str, batch: int, seq: int, steps: int, warmup: int = 5) -> dict:
    """The plain PyTorch full fine-tuning step, timed after `warmup` steps."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa").cuda()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        if i == warmup:
            torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    params = rec.count_parameters(model)
    tokens_per_second = batch * seq * steps / seconds
    gpu = torch.cuda.get_device_name(0)
    return {
        "batch": batch,
        "seq": seq,
        "steps": steps,
        "skipped_first_steps": warmup,
        "tokens_per_second": round(tokens_per_second, 1),
        "median_step_seconds": round(seconds / steps, 4),
        "mean_tokens_per_step": batch * seq,
        "mfu": rec.mfu(params["total"], tokens_per_second, gpu, 1),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
        "params": params,
        "final_loss": round(loss.item(), 4),
    }


def _child_env(gpus: int) -> dict:
    env = dict(os.environ)
    if gpus > 1:
        for key in DISTRIBUTED_ENV:
            env.pop(key, None)
    return env


def run_reference(model_dir: str, steps: int) -> dict:
    cmd = [sys.executable, "-m", "medbench.bench.train", model_dir, str(steps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=_child_env(1))
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_trainer(model_dir: str, name: str, gpus: int, steps: int, workdir: Path) -> dict:
    method, extra = CONFIGS[name]
    output_dir = workdir / f"{name}@{gpus}"
    # `just train` itself (medbench/cli/train.py starts the processes through trainers/launch.py).
    cmd = [
        sys.executable,
        "-m",
        "medbench.cli",
        "train",
        model_dir,
        method,
        "--max-steps",
        str(steps),
        "--eval-limit",
        "0",
        "--output-dir",
        str(output_dir),
        "--force",
        "--gpus",
        str(gpus),
        *extra,
    ]
    print(f"bench train: {' '.join(cmd)}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, env=_child_env(gpus))
    record = json.loads((output_dir / "train_record.json").read_text())
    # a full fine-tune's checkpoint is the model's size again: the next configuration needs the disk
    shutil.rmtree(output_dir)
    steady = record["steady_state"] or {}
    return {
        "method": method,
        "args": extra,
        "gpus": record["gpus"],
        "steps": record["steps"],
        "deepspeed": (record["deepspeed"] or {}).get("file"),
        "gradient_checkpointing": record["training_arguments"].get("gradient_checkpointing"),
        "skipped_first_steps": steady.get("skipped_first_steps"),
        "tokens_per_second": steady.get("tokens_per_second"),
        "median_step_seconds": steady.get("median_step_seconds"),
        "mean_tokens_per_step": steady.get("mean_tokens_per_step"),
        "mfu": steady.get("mfu"),
        "tokens_per_second_whole_run": record["train_tokens_per_second"],
        "peak_gpu_gib": record["memory"]["peak_gpu_gib"],
        "params": record["params"],
        "final_train_loss": record["final_train_loss"],
        "train_lengths": record["data"]["train_lengths"],
    }


def ratios(results: dict) -> dict:
    """Tokens/s and peak memory of each configuration over `full` (one GPU) and over `reference`."""
    out = {}
    for name, r in results.items():
        row = {}
        for base in ("full@1", "reference@1"):
            b = results.get(base)
            if b and name != base and r.get("tokens_per_second") and b.get("tokens_per_second"):
                key = base.split("@")[0]
                row[f"tokens_per_second_over_{key}"] = round(r["tokens_per_second"] / b["tokens_per_second"], 3)
                row[f"peak_gpu_gib_over_{key}"] = round(r["peak_gpu_gib"] / b["peak_gpu_gib"], 3)
        out[name] = row
    return out


def bench_train(model_dir: str, parsed: list[tuple[str, int]], steps: int, out_path: Path, fresh: bool = False) -> dict:
    """Runs each (configuration, GPUs) from parse_config on CUDA (medbench/cli/bench.py has checked that there is one)."""
    if max(g for _, g in parsed) > torch.cuda.device_count():
        raise TrainError(f"a bench configuration asks for more GPUs than the {torch.cuda.device_count()} visible")
    marker = Path(model_dir) / RANDOM_MARKER
    result = {
        "bench": "train",
        "model": model_dir,
        "weights": "random" if marker.exists() else "real",
        "weights_note": marker.read_text().strip() if marker.exists() else None,
        "steps": steps,
        "configs": {},
        "ratios": {},
        "gpu": torch.cuda.get_device_name(0),
        "hardware": provenance.hardware(),
        "versions": provenance.package_versions(),
        **provenance.code_state(),
        "definition": {
            "reference": "plain PyTorch: fp32 weights, fused AdamW, bf16 autocast, sdpa, batch 8 x "
            "512 random tokens, no gradient checkpointing, no DeepSpeed",
            **{k: f"just train MODEL {m} {' '.join(a)}".strip() for k, (m, a) in CONFIGS.items()},
        },
    }
    previous = None if fresh else _resumable(out_path, result)
    if previous:
        result["configs"] = previous["configs"]
        print(f"bench train: resuming {out_path} (measured: {', '.join(previous['configs'])})", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="medbench-bench-") as tmp:
        for name, gpus in parsed:
            key = f"{name}@{gpus}"
            if "error" not in result["configs"].get(key, {"error": "not run"}):
                continue
            try:
                if name == "reference":
                    result["configs"][key] = run_reference(model_dir, steps)
                else:
                    result["configs"][key] = run_trainer(model_dir, name, gpus, steps, Path(tmp))
            except subprocess.CalledProcessError as e:
                tail = (e.stderr or "")[-2000:] if isinstance(e.stderr, str) else ""
                result["configs"][key] = {"error": f"exit {e.returncode}", "stderr_tail": tail}
            result["ratios"] = ratios({k: v for k, v in result["configs"].items() if "error" not in v})
            write_json(out_path, result)
    return result


# A record measured with these equal may be continued by a later run (same machine, code and packages).
RESUME_KEYS = ("model", "weights", "steps", "gpu", "git_sha", "versions")


def _resumable(out_path: Path, result: dict) -> dict | None:
    if not out_path.exists():
        return None
    previous = json.loads(out_path.read_text())
    return previous if all(previous.get(k) == result[k] for k in RESUME_KEYS) else None


def table(result: dict) -> str:
    header = (
        f"{'config':<22}{'tok/s':>10}{'tok/step':>10}{'s/step':>9}{'MFU %':>8}{'peak GiB':>10}{'x full':>9}{'x ref':>8}"
    )
    lines = [header]
    for key, r in result["configs"].items():
        if "error" in r:
            lines.append(f"{key:<22}  {r['error']}")
            continue
        ratio = result["ratios"].get(key, {})
        mfu = f"{100 * r['mfu']:.2f}" if r.get("mfu") is not None else "-"
        lines.append(
            f"{key:<22}{r['tokens_per_second']:>10.0f}{r['mean_tokens_per_step']:>10.0f}"
            f"{r['median_step_seconds']:>9.3f}{mfu:>8}{r['peak_gpu_gib']:>10.2f}"
            f"{ratio.get('tokens_per_second_over_full', '-'):>9}{ratio.get('tokens_per_second_over_reference', '-'):>8}"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # the reference child: python -m medbench.bench.train MODEL_DIR STEPS
    print(json.dumps(reference_step(sys.argv[1], batch=8, seq=512, steps=int(sys.argv[2]))))
