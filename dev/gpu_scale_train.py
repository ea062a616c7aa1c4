"""dev/gpu_scale.py's training parts: `medbench train` at the Qwen3-8B shape (and the Gemma-3-1B shape) on
1, 2, 4 GPUs, and the largest batch that fits. Each configuration is one `medbench train` of a few steps on a
seeded sample of the training data; its steady-state tokens/s leave out the first (warm-up) steps."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import gpu_scale_lib as lib
from gpu_scale_lib import Budget, log, open_record, record_path, save, scratch

TRAIN_8B_CONFIGS = "lora@1,lora@2,lora@4,full-zero3@2,full-zero3@4,qlora@1,lora-fast@1"
TRAIN_1B_CONFIGS = "lora@1,lora@2,lora@4"
BATCH_CONFIGS = "lora@1,qlora@1,full-zero3@4"
# `just train --profile fast` (trainers/profiles/fast.yaml); lora-fast runs it where the tree has it.
FAST_PROFILE = lib.ROOT / "trainers" / "profiles" / "fast.yaml"
EXTRA_CONFIGS = {"lora-fast": ("lora", ["--profile", "fast"])}  # medbench/bench/train.py's own, where it has one


def configs() -> dict[str, tuple[str, list[str]]]:
    from medbench.bench.train import CONFIGS

    return {**EXTRA_CONFIGS, **CONFIGS}


def skip_reason(name: str) -> str | None:
    """Why a configuration cannot run in this tree, or None."""
    if name == "lora-fast" and not FAST_PROFILE.exists():
        return (
            "skipped: no fast training profile in this tree (trainers/profiles/fast.yaml is missing, so "
            "`just train --profile fast` does not exist here)"
        )
    if name not in configs():
        return f"skipped: unknown configuration {name!r}; known: {', '.join(configs())}"
    return None


def model_dir_8b(args) -> Path:
    from medbench.bench import oversize
    from medbench.models.shapes import RANDOM_MARKER

    out = scratch() / "qwen3-8b-random"
    if not (out / RANDOM_MARKER).exists():  # written last: a checkpoint cut off while written is written again
        log("writing a random-init Qwen3-8B-shape checkpoint (once per machine)")
        shutil.rmtree(out, ignore_errors=True)
        oversize.save_random("qwen3-8b", lib.tokenizer(args.tokenizer), out)
    return out


def model_dir_1b(args) -> Path:
    from medbench.models.shapes import RANDOM_MARKER, save_published_random

    out = scratch() / "gemma3-1b-random"
    if not (out / RANDOM_MARKER).exists():
        save_published_random("gemma3-1b.json", out, lib.tokenizer_dir(args.tokenizer))
    return out


def work_root() -> Path:
    """Where a run's output goes (and is removed from): memory (/dev/shm) where it has room for a full 8B
    checkpoint, so that the checkpoint save at the end of `full` costs seconds; else the scratch disk."""
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and shutil.disk_usage(shm).free > 48 * 2**30:
            return shm
    except OSError:
        pass
    return scratch()


def train_once(model_dir: Path, name: str, gpus: int, plan: dict, extra: list[str], budget: Budget) -> dict:
    """`medbench train MODEL METHOD --max-steps N --gpus G` (a bench configuration), its record in brief;
    `plan`: steps, warmup_steps (left out of the steady-state timing) and examples (a seeded sample)."""
    method, config_args = configs()[name]
    work = Path(tempfile.mkdtemp(prefix="gpu-scale-", dir=work_root()))
    key = f"{name}@{gpus}{''.join(extra[1::2]).replace('=', '')}"
    cmd = [sys.executable, "-m", "medbench.cli", "train", str(model_dir), method, "--max-steps", str(plan["steps"])]
    cmd += ["--limit", str(plan["examples"]), "--eval-limit", "0", "--output-dir", str(work / "out"), "--force"]
    cmd += ["--gpus", str(gpus), *config_args, *extra]
    env = dict(os.environ, MEDBENCH_RESULTS=str(work / "results"), MEDBENCH_STEADY_SKIP=str(plan["warmup_steps"]))
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    log_path = scratch() / "logs" / f"train-{key}.log"
    start = time.perf_counter()
    with lib.GpuMemoryPoller() as poller:
        rc = lib.run_logged(cmd, log_path, env, timeout=budget.child_timeout())
    out = {
        "command": " ".join(cmd[2:]),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "gpu_memory_used_peak_gib": poller.gib()[:gpus],
    }
    record_file = work / "out" / "train_record.json"
    if rc != 0 or not record_file.exists():
        text = lib.tail(log_path, 20000)
        why = "out of memory" if lib.out_of_memory(text) else "timeout" if rc == 124 else f"exit {rc}"
        out.update(error=why, log_tail=text[-2500:])
    else:
        r = json.loads(record_file.read_text())
        steady = r.get("steady_state") or {}
        out.update(
            method=method,
            gpus=r["gpus"],
            steps=r["steps"],
            deepspeed=(r["deepspeed"] or {}).get("file"),
            per_device_train_batch_size=r["training_arguments"].get("per_device_train_batch_size"),
            tokens_per_second=steady.get("tokens_per_second"),
            mfu=steady.get("mfu"),
            median_step_seconds=steady.get("median_step_seconds"),
            mean_tokens_per_step=steady.get("mean_tokens_per_step"),
            skipped_first_steps=steady.get("skipped_first_steps"),
            timed_steps=steady.get("steps"),
            tokens_per_second_whole_run=r["train_tokens_per_second"],
            peak_gpu_gib_rank0=r["memory"].get("peak_gpu_gib"),
            params=r.get("params"),
            final_train_loss=r["final_train_loss"],
        )
    # a full 8B checkpoint is the model's size again: the next run needs the disk
    shutil.rmtree(work, ignore_errors=True)
    return out


def full_fits(params: int, gpus: int, gpu_bytes: int) -> str | None:
    """Why `full` under ZeRO-3 cannot fit, or None: fp32 weights, gradients and Adam's two moments (16 bytes a
    parameter) shard over the GPUs, with no CPU offload in trainers/deepspeed/zero3.json."""
    need = 16 * params / gpus
    if need > gpu_bytes:
        return (
            f"does not fit: 16 bytes x {params / 1e9:.2f}B parameters / {gpus} GPU(s) = {need / 2**30:.0f} GiB "
            f"of fp32 weights, gradients and Adam state per GPU, more than its {gpu_bytes / 2**30:.0f} GiB"
        )
    return None


def parse_item(item: str) -> tuple[str, int]:
    name, _, g = item.strip().partition("@")
    return name, int(g or 1)


def part_train(args, facts: dict, budget: Budget, shape: str) -> dict:
    import torch

    part = "train-8b" if shape == "8b" else "train-1b"
    path = record_path(args.out, part, facts)
    same = {"steps": args.steps, "warmup_steps": args.warmup, "examples": args.examples}
    rec = open_record(path, part, facts, args.fresh, same)
    rec["memory_note"] = (
        "peak_gpu_gib_rank0: torch's peak allocated on rank 0 (ranks hold equal shards); "
        "gpu_memory_used_peak_gib: nvidia-smi's peak in use per GPU (CUDA contexts and caches too)"
    )
    wanted = [
        parse_item(i) for i in (args.configs or (TRAIN_8B_CONFIGS if shape == "8b" else TRAIN_1B_CONFIGS)).split(",")
    ]
    todo = []
    for name, gpus in wanted:
        item = f"{name}@{gpus}"
        if gpus > facts["gpu_count"] or (item in rec["units"] and "error" not in rec["units"][item]):
            continue
        if why := skip_reason(name):
            rec["units"][item] = {"error": "skipped", "reason": why}
            continue
        todo.append((name, gpus, item))
    needs_checkpoint = shape == "8b" and not (scratch() / "qwen3-8b-random" / "medbench_random.txt").exists()
    if todo and needs_checkpoint and not budget.allows("8b checkpoint", "8b-checkpoint"):
        todo = []
    if todo:
        model_dir = model_dir_8b(args) if shape == "8b" else model_dir_1b(args)
        rec["model"] = (model_dir / "medbench_random.txt").read_text().strip()
        params = sum(p.numel() for p in _meta(model_dir).parameters())
        total = torch.cuda.get_device_properties(0).total_memory
    for name, gpus, item in todo:
        if name.startswith("full") and (why := full_fits(params, gpus, total)):
            rec["units"][item] = {"error": "skipped", "reason": why}
            save(path, rec)
            continue
        if not budget.allows(item, expected_kind(name, shape)):
            continue
        rec["units"][item] = train_once(model_dir, name, gpus, same, [], budget)
        save(path, rec)
    rec["scaling"] = train_scaling(rec["units"])
    save(path, rec)
    return rec


def expected_kind(name: str, shape: str) -> str:
    """The gpu_scale_lib.EXPECTED entry of a configuration."""
    if shape == "1b":
        return "1b"
    kind = "8b-" + {"full-zero3": "full", "lora-fast": "lora-fast"}.get(name, name.split("-")[0])
    return kind if kind in lib.EXPECTED else "8b-full"


def _meta(model_dir: Path):
    from transformers import AutoConfig

    from medbench.models.placement import meta_model

    return meta_model(AutoConfig.from_pretrained(model_dir))


def train_scaling(units: dict) -> dict:
    """Tokens/s on G GPUs over 1 GPU (or the fewest GPUs that ran) per configuration, and per-GPU efficiency."""
    out = {}
    ok = {k: v for k, v in units.items() if v.get("tokens_per_second")}
    for key, r in ok.items():
        name, g = key.split("@")
        runs = sorted((int(k.split("@")[1]), v) for k, v in ok.items() if k.split("@")[0] == name)
        base_g, base = runs[0]
        if int(g) == base_g:
            continue
        ratio = r["tokens_per_second"] / base["tokens_per_second"]
        out[key] = {
            f"tokens_per_second_over_{name}@{base_g}": round(ratio, 3),
            "efficiency_per_gpu": round(ratio * base_g / int(g), 3),
            "peak_gpu_gib_rank0_over_base": round(r["peak_gpu_gib_rank0"] / base["peak_gpu_gib_rank0"], 3)
            if r.get("peak_gpu_gib_rank0") and base.get("peak_gpu_gib_rank0")
            else None,
        }
    return out


def next_batch(tries: dict, start: int = 8, ceiling: int = 256) -> tuple[int | None, int | None]:
    """(the next batch to try, None) or (None, the largest that fits: 0 if none does). Doubles from `start`
    while it fits, halves below it while it does not; a fit next to a failure (b fits, 2b not) ends it."""
    fits = [int(b) for b, t in tries.items() if not t.get("error")]
    fails = [int(b) for b, t in tries.items() if t.get("error")]
    if not tries:
        return start, None
    if fits and (max(fits) >= ceiling or any(f <= 2 * max(fits) for f in fails if f > max(fits))):
        return None, max(fits)
    if fits:
        return 2 * max(fits), None
    if min(fails) == 1:
        return None, 0
    return min(fails) // 2, None


def part_batch(args, facts: dict, budget: Budget) -> dict:
    """Optional. Doubling search of per_device_train_batch_size with every row padded to max_length (1,024
    tokens, the longest a training example may be): the largest batch that runs 3 steps always fits."""
    path = record_path(args.out, "batch-8b", facts)
    rec = open_record(path, "batch-8b", facts, args.fresh)
    rec["definition"] = part_batch.__doc__
    model_dir = None
    for item in (args.configs or BATCH_CONFIGS).split(","):
        name, gpus = parse_item(item)
        if gpus > facts["gpu_count"] or skip_reason(name):
            continue
        state = rec["units"].setdefault(item.strip(), {"tries": {}, "largest": None, "done": False})
        while not state["done"]:
            batch, largest = next_batch(state["tries"])
            if batch is None:
                state.update(largest=largest, done=True)
                break
            if not budget.allows(f"{item} batch {batch}", "batch-8b"):
                break
            model_dir = model_dir or model_dir_8b(args)
            extra = ["--set", f"per_device_train_batch_size={batch}", "--set", "pad_to_multiple_of=1024"]
            plan = {"steps": 3, "warmup_steps": 1, "examples": max(args.examples, 3 * batch * gpus)}
            result = train_once(model_dir, name, gpus, plan, extra, budget)
            keep = ("error", "peak_gpu_gib_rank0", "gpu_memory_used_peak_gib", "tokens_per_second_whole_run")
            state["tries"][str(batch)] = {k: result.get(k) for k in (*keep, "wall_seconds")}
            save(path, rec)
        save(path, rec)
    return rec
