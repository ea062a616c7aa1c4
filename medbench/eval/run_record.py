"""The run's record (record.json) from lm-eval's output: each task's accuracy with its interval, invalid and
truncated answers, exact ties, the letter distributions with their baselines, and (when the options were
permuted) the position-debiased and circular accuracies; then timing, memory, placement and provenance."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from medbench import stats
from medbench.data.checksums import data_matches_pinned
from medbench.models.shapes import RANDOM_MARKER
from medbench.records import provenance
from medbench.records.questions import letter_distribution, metric_of, question_row
from medbench.records.schema import Memory, RunRecord, TaskRecord
from medbench.settings import DEFAULT_SEED


def build_run_record(
    req,
    prepared,
    loaded,
    out: dict,
    rotated: dict[str, list[str]],
    *,
    count_tokens,
    per_process: list[dict],
    procs,
    gen_kwargs: dict,
    eval_seconds: float,
    responses: dict,
) -> RunRecord:
    """record.json of a run: `out` is simple_evaluate's result with the samples of every process."""
    from medbench.eval import parallel
    from medbench.prompts import chat as chat_templates

    spec, settings = prepared.spec, req.settings
    tasks = [
        task_record(
            name,
            out["samples"][name],
            out["results"][name],
            count_tokens,
            settings.prompt_max_tokens,
            {r: out["samples"][r] for r in rotated.get(name, [])},
            settings.seed,
        )
        for name in prepared.names
    ]
    n_questions = sum(t["n"] for t in tasks)
    n_scorings = sum(t["n"] * (t.get("permutation") or {}).get("rotations", 1) for t in tasks)
    generated_tokens = sum(p["generated_tokens"] for p in per_process)
    generate_seconds = max(p["generate_seconds"] for p in per_process)
    prov = provenance.provenance()
    return {
        "run_id": prepared.run_id,
        "created": prov["created"],
        "model": req.model,
        "model_source": loaded.source,
        "params_b": spec.params_b,
        "weights": weights_kind(spec),
        "variant": req.variant,
        "checkpoint": req.checkpoint,
        "prompt": req.prompt,
        "mode": prepared.mode,
        "limit": req.limit,
        "sample": req.sample,
        "settings": settings.as_dict(),
        "generation_kwargs": gen_kwargs if prepared.mode == "gen" else None,
        "chat": chat_templates.describe(prepared.chat, loaded.tokenizer),
        "adapter": loaded.adapter,
        "quantization": loaded.quantization,
        "awq_route": loaded.awq_route,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "attn_implementation": loaded.attn_implementation,
        "sanity_perplexity": loaded.sanity_perplexity,
        "tasks": tasks,
        "kormedmcqa_average": weighted_average([t for t in tasks if t["dataset"] == "kormedmcqa"]),
        "timing": {
            "load_seconds": round(loaded.load_seconds, 2),
            "eval_seconds": round(eval_seconds, 2),
            # A resumed run's time covers only what it computed: no questions/s for it.
            "questions_per_second": round(n_questions / eval_seconds, 3)
            if eval_seconds and not responses["from_cache"]
            else None,
            "scorings_per_second": round(n_scorings / eval_seconds, 3)
            if eval_seconds and not responses["from_cache"]
            else None,
            "responses_per_second": round(responses["computed"] / eval_seconds, 2) if eval_seconds else None,
            "generated_tokens": generated_tokens,
            "generated_tokens_per_second": round(generated_tokens / generate_seconds, 1) if generate_seconds else None,
            # fast_gen's engine(s) and why (the gen_engine setting, `auto` resolved); empty: nothing generated here
            "gen_engine": {k: v for p in per_process for k, v in (p.get("gen_engine") or {}).items()},
        },
        "memory": memory(loaded.footprint_bytes),
        "parallel": parallel.parallel_record(procs, loaded.placement, per_process),
        "responses": responses,
        "canary": parallel.canary_summary([r for p in per_process for r in p["canary"]]),
        **{k: v for k, v in prov.items() if k != "created"},
        "data_files": prepared.config["identity"]["data"],
        "data_pinned": data_matches_pinned(prepared.config["identity"]["data"]),
        "weights_fingerprint": prepared.config["identity"]["weights"],
        "training_record": loaded.training_record,
        # What computed the scores: the attention implementation and which SDPA kernels could run, the dtype the
        # answer letters' logits and their normaliser were computed in, and every seed lm-eval was given.
        "attention": {"implementation": loaded.attn_implementation, "sdpa_kernels": provenance.attention_kernels()},
        "letter_logits": "float32" if prepared.mode == "mc" else None,
        "seeds": {name: settings.seed for name in ("random", "numpy", "torch", "fewshot")},
    }


def weights_kind(spec) -> str:
    if spec.path and (Path(spec.path) / RANDOM_MARKER).exists():
        return "random"  # medbench/models/shapes.py: speed and memory only
    return "real" if (spec.embedded or spec.verified) else "unverified"


def memory(footprint_bytes: int) -> Memory:
    peak = provenance.peak_memory()
    out = {"model_footprint_gib": round(footprint_bytes / 2**30, 3), "peak_rss_gib": peak["peak_rss_gib"]}
    if peak["peak_gpu_gib"] is not None:
        out["peak_gpu_gib"] = peak["peak_gpu_gib"]
    out["peak_gib"] = out.get("peak_gpu_gib", out["peak_rss_gib"])
    return out


def task_record(
    name: str,
    samples: list[dict],
    result: dict,
    count_tokens,
    prompt_max_tokens: int,
    rotated: dict[str, list[dict]] | None = None,
    seed: int = DEFAULT_SEED,
) -> TaskRecord:
    metric = metric_of(samples[0]) if samples else "acc"
    correct = sum(int(s[metric]) for s in samples)
    n = len(samples)
    rows = [question_row(s) for s in samples]
    invalid = sum(1 for r in rows if r["invalid"])
    truncated = sum(1 for s in samples if count_tokens(s["arguments"][0][0]) > prompt_max_tokens)
    (low, high), ci_method = stats.proportion_ci(correct, n)
    stderr_key = next((k for k in result if k.startswith(f"{metric}_stderr")), None)
    doc = samples[0]["doc"] if samples else {}
    record: TaskRecord = {
        "task": name,
        "dataset": doc.get("dataset"),
        "exam": doc.get("exam"),
        "metric": metric,
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "stderr": result.get(stderr_key) if stderr_key else None,
        "ci95_low": low,
        "ci95_high": high,
        "ci_method": ci_method,
        "invalid": invalid,
        "invalid_rate": invalid / n if n else None,
        "truncated_prompts": truncated,
        # Questions whose best two choices scored exactly equal: the first letter wins them by position.
        "ties": sum(1 for r in rows if r["tie"]),
        "letters": letter_distribution(rows),
        # The prompts as rendered, named without keeping them: the sha256 of lm-eval's prompt hashes in order.
        "prompts_sha256": hashlib.sha256("".join(str(s.get("prompt_hash")) for s in samples).encode()).hexdigest(),
        # One of them kept whole, so that a record shows what a question looked like to the model.
        "first_prompt": samples[0]["arguments"][0][0] if samples else "",
    }
    if rotated:
        record["permutation"] = permutation_summary(samples, rotated, metric, seed)
    return record


def permutation_summary(samples: list[dict], rotated: dict[str, list[dict]], metric: str, seed: int) -> dict:
    """Per-rotation accuracy, the mean over rotations (debiased) and right-under-every-rotation (circular).

    The debiased interval is over questions of the per-question mean score (paired across rotations as the
    questions are); circular accuracy is a proportion, with the proportion's interval (exact at 0 or n, where a
    bootstrap collapses to a point).
    """
    matrix = rotation_matrix(samples, rotated, metric)
    debiased, circular = matrix.mean(axis=1), matrix.min(axis=1)
    (d_low, d_high), d_method = stats.mean_ci(debiased, seed)
    (c_low, c_high), c_method = stats.proportion_ci(int(circular.sum()), circular.size)
    return {
        "scheme": "cyclic",
        "rotations": matrix.shape[1],
        "rotated_tasks": list(rotated),
        "per_rotation_accuracy": [float(x) for x in matrix.mean(axis=0)],
        "debiased_accuracy": float(debiased.mean()),
        "debiased_ci95": [d_low, d_high],
        "circular_accuracy": float(circular.mean()),
        "circular_ci95": [c_low, c_high],
        "ci_method": d_method,
        "circular_ci_method": c_method,
    }


def rotation_matrix(samples: list[dict], rotated: dict[str, list[dict]], metric: str) -> np.ndarray:
    """0/1 scores, one row per question (in `samples` order), one column per rotation (0 first)."""
    ids = [str(s["doc"]["id"]) for s in samples]
    columns = [[float(s[metric]) for s in samples]]
    for name, rot_samples in rotated.items():
        by_id = {str(s["doc"]["id"]): float(s[metric]) for s in rot_samples}
        if set(by_id) != set(ids):
            raise ValueError(f"{name}: its questions are not the unrotated task's")
        columns.append([by_id[i] for i in ids])
    return np.asarray(columns, dtype=float).T


def weighted_average(tasks: list[dict]) -> float | None:
    n = sum(t["n"] for t in tasks)
    return sum(t["correct"] for t in tasks) / n if n else None
