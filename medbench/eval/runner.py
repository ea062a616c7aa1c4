"""One evaluation run: load the model, run lm-eval on our tasks, write the run's record.

results/runs/<run-id>/ holds run_config.json, lm-eval's results.json, samples_<task>.jsonl.gz,
record.json, and cache/ (lm-eval's response cache: re-running the same run id answers every
question already answered from it, so a killed run resumes where it stopped).
"""

from __future__ import annotations

import random
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from medbench import paths, stats
from medbench.data.loader import KORMEDMCQA_EXAMS
from medbench.errors import MedbenchError
from medbench.eval import chat as chat_templates
from medbench.models.loading import load, pick_device
from medbench.models.registry import resolve
from medbench.models.variants import plan
from medbench.records import io, provenance
from medbench.records.io import claim_dir
from medbench.records.schema import RunRecord, TaskRecord
from medbench.settings import EvalSettings

PROMPTS = ("zeroshot", "fewshot", "cot")
MODES = ("mc", "gen")
RUN_CONFIG = "run_config.json"
SHORT_TASKS = tuple(f"kormedmcqa_{e}" for e in KORMEDMCQA_EXAMS) + ("medqa_usmle",)


class RunError(MedbenchError):
    pass


@dataclass
class RunRequest:
    model: str
    variant: str = "base"
    prompt: str = "zeroshot"
    mode: str | None = None  # None: mc for zeroshot, gen for fewshot/cot
    tasks: list[str] = field(default_factory=list)  # short names; empty = every task of the prompt
    limit: int | None = None
    sample: int | None = None  # a seeded sample of this many questions per task (the demo)
    run_id: str | None = None
    force: bool = False
    settings: EvalSettings = field(default_factory=EvalSettings)

    def resolved_mode(self) -> str:
        if self.prompt not in PROMPTS:
            raise RunError(f"unknown prompt {self.prompt!r}; choose from {', '.join(PROMPTS)}")
        mode = self.mode or ("mc" if self.prompt == "zeroshot" else "gen")
        if mode not in MODES:
            raise RunError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
        if self.prompt != "zeroshot" and mode == "mc":
            raise RunError(f"the {self.prompt} prompt is generative (5-shot answers); use --mode gen")
        return mode


def task_names(prompt: str, mode: str, wanted: list[str]) -> list[str]:
    """Short names (kormedmcqa_doctor, kormedmcqa, medqa_usmle, medqa) -> our lm-eval task names."""
    chosen = []
    for name in wanted or list(SHORT_TASKS):
        expanded = [t for t in SHORT_TASKS if t == name or t.startswith(name + "_")]
        if not expanded:
            raise RunError(f"unknown task {name!r}; choose from {', '.join(SHORT_TASKS)}, kormedmcqa, medqa")
        chosen += [t for t in expanded if t not in chosen]
    suffix = {"mc": "", "gen": "_gen"}[mode] if prompt == "zeroshot" else f"_{prompt}"
    return [f"medbench_{t}{suffix}" for t in chosen]


def default_run_id(req: RunRequest, mode: str) -> str:
    parts = [req.model.replace("/", "--"), req.variant, req.prompt, mode]
    if req.tasks:
        parts.append("+".join(req.tasks))
    if req.limit:
        parts.append(f"limit{req.limit}")
    if req.sample:
        parts.append(f"sample{req.sample}")
    if req.settings.chat != "auto":
        parts.append(f"chat{req.settings.chat}")
    if req.settings.thinking:
        parts.append("thinking")
    return "-".join(parts)


def seeded_sample(n_docs: int, k: int, seed: int) -> list[int]:
    return sorted(random.Random(seed).sample(range(n_docs), min(k, n_docs)))


def _cache_size(run_dir: Path) -> int:
    db = run_dir / "cache" / "responses_rank0.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM unnamed").fetchone()[0]


def run(req: RunRequest, results_dir: Path | None = None) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    import medbench.eval.fastlm  # noqa: F401  (registers the medbench-hf model with lm-eval)
    from medbench.eval.fastlm import MedbenchLM

    results_dir = results_dir or paths.results_dir()
    mode = req.resolved_mode()
    names = task_names(req.prompt, mode, req.tasks)
    spec = resolve(req.model)  # unknown aliases, variants and missing CUDA fail here, before anything loads
    plan(spec, req.variant, cuda_available=pick_device(req.settings.device).startswith("cuda"))
    chat = chat_templates.plan_chat(spec, mode, req.settings)
    run_id = req.run_id or default_run_id(req, mode)
    run_dir = results_dir / "runs" / run_id
    config = {"model": req.model, "variant": req.variant, "prompt": req.prompt, "mode": mode, "tasks": names,
              "limit": req.limit, "sample": req.sample, "settings": req.settings.as_dict()}
    claim_dir(run_dir, config, config_name=RUN_CONFIG, markers=("record.json", "cache"), force=req.force,
              what="evaluation run")
    (run_dir / "cache").mkdir(exist_ok=True)

    task_manager = TaskManager(include_path=str(paths.tasks_dir()), include_defaults=False)
    samples = None
    if req.sample:
        loaded_tasks = task_manager.load(names)["tasks"]
        samples = {name: seeded_sample(len(t.eval_docs), req.sample, req.settings.seed)
                   for name, t in loaded_tasks.items()}

    loaded = load(spec, req.variant, req.settings)
    gen_kwargs = req.settings.generation_kwargs()
    if chat.apply:
        template = chat_templates.require_template(loaded.tokenizer, req.model)
        (run_dir / "chat_template.jinja").write_text(template)
        if mode == "gen":
            # A chat turn ends at the template's end-of-turn token (lm-eval adds EOS), not at a blank line.
            eot = chat_templates.end_of_turn(loaded.tokenizer, chat.template_kwargs)
            gen_kwargs["until"] = [eot] if eot else []
    lm = MedbenchLM.from_loaded(loaded, req.settings, chat.template_kwargs if chat.apply else None)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    cached_before = _cache_size(run_dir)
    start = time.perf_counter()
    out = simple_evaluate(
        model=lm, tasks=names, task_manager=task_manager, limit=req.limit, samples=samples,
        use_cache=str(run_dir / "cache" / "responses"), gen_kwargs=gen_kwargs,
        apply_chat_template=chat.apply, fewshot_as_multiturn=chat.fewshot_as_multiturn,
        system_instruction=chat.system_instruction,
        log_samples=True, random_seed=req.settings.seed, numpy_random_seed=req.settings.seed,
        torch_random_seed=req.settings.seed, fewshot_random_seed=req.settings.seed,
    )
    eval_seconds = time.perf_counter() - start
    responses_computed = _cache_size(run_dir) - cached_before

    task_records = []
    for name in names:
        task_samples = out["samples"][name]
        io.write_samples(io.samples_path(run_dir, name), task_samples)
        task_records.append(_task_record(name, task_samples, out["results"][name], lm, req.settings.prompt_max_tokens))
    n_questions = sum(t["n"] for t in task_records)
    out_no_samples = {k: v for k, v in out.items() if k != "samples"}
    io.write_json(run_dir / "results.json", out_no_samples)

    prov = provenance.provenance()
    record: RunRecord = {
        "run_id": run_id, "created": prov["created"],
        "model": req.model, "model_source": loaded.source, "params_b": spec.params_b,
        "weights": "real" if (spec.embedded or spec.verified) else "unverified",
        "variant": req.variant, "prompt": req.prompt, "mode": mode,
        "limit": req.limit, "sample": req.sample,
        "settings": req.settings.as_dict(),
        "generation_kwargs": gen_kwargs if mode == "gen" else None,
        "chat": chat_templates.describe(chat, loaded.tokenizer),
        "adapter": loaded.adapter, "quantization": loaded.quantization, "awq_route": loaded.awq_route,
        "device": loaded.device, "dtype": loaded.dtype, "attn_implementation": loaded.attn_implementation,
        "sanity_perplexity": loaded.sanity_perplexity,
        "tasks": task_records,
        "kormedmcqa_average": _weighted_average([t for t in task_records if t["dataset"] == "kormedmcqa"]),
        "timing": {"load_seconds": round(loaded.load_seconds, 2), "eval_seconds": round(eval_seconds, 2),
                   # A resumed run's time covers only what it computed: no questions/s for it.
                   "questions_per_second": round(n_questions / eval_seconds, 3)
                   if eval_seconds and not cached_before else None,
                   "responses_per_second": round(responses_computed / eval_seconds, 2) if eval_seconds else None,
                   "generated_tokens": lm.generated_tokens,
                   "generated_tokens_per_second": round(lm.generated_tokens / lm.generate_seconds, 1)
                   if lm.generate_seconds else None},
        "memory": _memory(loaded.footprint_bytes),
        "responses": {"computed": responses_computed, "from_cache": cached_before},
        "versions": prov["versions"], "git_sha": prov["git_sha"], "hardware": prov["hardware"],
    }
    io.write_json(run_dir / "record.json", record)
    return record


def _task_record(name: str, samples: list[dict], result: dict, lm, prompt_max_tokens: int) -> TaskRecord:
    generative = "exact_match" in samples[0] if samples else False
    metric = "exact_match" if generative else "acc"
    correct = sum(int(s[metric]) for s in samples)
    n = len(samples)
    invalid = sum(1 for s in samples if generative and s["filtered_resps"][0] in ("", None))
    truncated = sum(1 for s in samples if len(lm.tok_encode(s["arguments"][0][0])) > prompt_max_tokens)
    low, high = stats.wilson_interval(correct, n)
    stderr_key = next((k for k in result if k.startswith(f"{metric}_stderr")), None)
    doc = samples[0]["doc"] if samples else {}
    return {
        "task": name, "dataset": doc.get("dataset"), "exam": doc.get("exam"), "metric": metric,
        "n": n, "correct": correct, "accuracy": correct / n if n else None,
        "stderr": result.get(stderr_key) if stderr_key else None,
        "ci95_low": low, "ci95_high": high, "ci_method": "wilson",
        "invalid": invalid, "invalid_rate": invalid / n if n else None, "truncated_prompts": truncated,
    }


def _weighted_average(tasks: list[dict]) -> float | None:
    n = sum(t["n"] for t in tasks)
    return sum(t["correct"] for t in tasks) / n if n else None


def _memory(footprint_bytes: int) -> dict:
    peak = provenance.peak_memory()
    out = {"model_footprint_gib": round(footprint_bytes / 2**30, 3), "peak_rss_gib": peak["peak_rss_gib"]}
    if peak["peak_gpu_gib"] is not None:
        out["peak_gpu_gib"] = peak["peak_gpu_gib"]
    out["peak_gib"] = out.get("peak_gpu_gib", out["peak_rss_gib"])
    return out
