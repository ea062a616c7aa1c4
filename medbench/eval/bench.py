"""`just bench eval`: our evaluation paths beside stock lm-eval and the simplest loops, side by side in one process.

Same model (one load), same questions, same machine, same batch size:

    mc    medbench   MedbenchLM.loglikelihood (the `mc` runs' path, medbench/eval/fastlm.py)
          stock_hf   lm-eval's own HFLM.loglikelihood on the same model object
          plain      a one-forward letter scorer in a few lines: length-sorted left-padded batches,
                     logits_to_keep=1, the answer letters' logits gathered on the device
    gen   medbench   MedbenchLM.generate_until with fast_gen (medbench/eval/fastgen.py)
    cot   stock_hf   lm-eval's HFLM.generate_until (HF generate on padded batches)
          study      the study's loop: one question at a time, HF generate, greedy, repetition_penalty
                     1.5, stopped by lm-eval's own stop-string criteria

Answers are compared question by question: `mc` by the chosen letter (where they differ, the gap
between the reference's two best letters says whether it was a near-tie); `gen`/`cot` by the
generated token ids against the study's loop (where they differ, the gap between the two best
penalized logits at the first differing token) and by the answer text against stock lm-eval.
The slow baselines can run on the first questions only (`--baseline-limit`, `--study-limit`); every
ratio is computed on the questions both sides answered, and our path's numbers on all questions are
reported beside. Records go to results/bench/eval-<model>-<modes>-<device>.json.

Each mode is what `just eval` would run: the request is checked by medbench/eval/request.py's
`prepare` (model, machine, variant, --limit, data against SHA256SUMS, the chat plan) before the load,
our model is built by `MedbenchLM.from_loaded` (canary, per-task scoring, fast_gen), and the prompts
are rendered with the run's generation arguments, few-shot seed and chat template
(medbench/eval/chat.py). Nothing is written under results/runs/ and no response cache is used: every
method computes every answer.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import torch

from medbench.records import provenance

MODES = ("mc", "gen", "cot")
PROMPT_OF_MODE = {"mc": ("zeroshot", "mc"), "gen": ("zeroshot", "gen"), "cot": ("cot", "gen")}


@dataclass
class EvalBenchOptions:
    model: str = "gemma3-270m"
    variant: str = "base"
    modes: tuple[str, ...] = MODES
    limit: int | None = None  # questions per task, every method
    baseline_limit: int | None = None  # questions per task for stock lm-eval (default: limit)
    study_limit: int | None = 20  # questions per task for the batch-1 study loop (0: skip)
    flip_sample: int = 50  # mc: seeded questions per task also scored at batch size 1 (0: skip)
    batch_size: int = 64  # mc and the batched generators
    device: str = "auto"
    attn_implementation: str = "auto"
    dtype: str = "auto"  # as the dtype setting
    check_every: int = 8  # fastgen: tokens between stop checks
    refill_below: float = 0.5  # fastgen: refill the batch when fewer than this fraction is left
    static_engine: bool = False  # gen/cot: also the static-cache engine, beside the default one


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class _Meter:
    """Seconds and peak GPU memory of one measured block (peak RSS of the process on CPU, not per block)."""

    def __enter__(self):
        _sync()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        _sync()
        self.seconds = time.perf_counter() - self.start
        self.peak_gib = round(torch.cuda.max_memory_allocated() / 2**30, 3) if torch.cuda.is_available() else None


def _prepare(opts: EvalBenchOptions, mode: str, settings):
    """A run request for `mode`, checked as `just eval` checks one (request.prepare: the model, the machine,
    the variant, --limit, the data against SHA256SUMS, the chat plan); nothing is claimed or written."""
    from medbench.eval.request import RunRequest, prepare

    prompt, task_mode = PROMPT_OF_MODE[mode]
    return prepare(
        RunRequest(
            model=opts.model, variant=opts.variant, prompt=prompt, mode=task_mode, limit=opts.limit, settings=settings
        )
    )


def _instances(prepared, lm, limit: int | None, gen_kwargs: dict | None, seed: int) -> list:
    """The requests of `prepared`'s tasks as simple_evaluate builds them in a run (its generation arguments,
    few-shot seed and chat template, rendered by `lm`)."""
    from lm_eval.tasks import TaskManager

    from medbench import paths

    chat = prepared.chat
    tasks = TaskManager(include_path=str(paths.tasks_dir()), include_defaults=False).load(prepared.names)["tasks"]
    out = []
    for name in prepared.names:
        task = tasks[name]
        if gen_kwargs is not None and task.get_config("output_type") == "generate_until":
            task.set_config(key="generation_kwargs", value=gen_kwargs, update=True)
        if task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=seed)
        task.build_all_requests(
            limit=limit,
            rank=0,
            world_size=1,
            system_instruction=chat.system_instruction,
            apply_chat_template=chat.apply,
            fewshot_as_multiturn=chat.fewshot_as_multiturn,
            chat_template=lm.apply_chat_template if chat.apply else None,
            tokenizer_name=getattr(lm, "tokenizer_name", "") if chat.apply else "",
        )
        out += task.instances
    return out


def _medbench_lm(loaded, prepared, settings):
    """Our lm-eval model as a run builds it (MedbenchLM.from_loaded: canary, fast_mc, fast_gen, chat arguments)."""
    from medbench.eval.fastlm import MedbenchLM

    chat = prepared.chat
    return MedbenchLM.from_loaded(
        loaded, settings, progress=False, chat_template_args=chat.template_kwargs if chat.apply else None
    )


def _first_questions(instances: list, per_task: int | None) -> list:
    """The instances of the first `per_task` questions of each task."""
    if per_task is None:
        return instances
    kept: dict[str, set] = defaultdict(set)
    out = []
    for inst in instances:
        ids = kept[inst.task_name]
        if inst.doc_id in ids or len(ids) < per_task:
            ids.add(inst.doc_id)
            out.append(inst)
    return out


# --- the whole bench ----------------------------------------------------------------------------------


def bench_eval(opts: EvalBenchOptions, save=lambda result: None) -> dict:
    """Every mode of `opts`; `save(result)` is called after each measurement (the CLI writes the record)."""
    from lm_eval.models.huggingface import HFLM

    from medbench.models.loading import load, pick_device
    from medbench.settings import EvalSettings

    settings = EvalSettings(
        device=opts.device, batch_size=opts.batch_size, attn_implementation=opts.attn_implementation, dtype=opts.dtype
    )
    # Every refusal of `just eval` for each mode's run, before the load.
    prepared = {mode: _prepare(opts, mode, settings) for mode in opts.modes}
    spec = next(iter(prepared.values())).spec
    device = pick_device(opts.device)
    loaded = load(spec, opts.variant, settings)
    # lm-eval's own loading of the same weights, for its load time (then dropped).
    start = time.perf_counter()
    stock = (
        HFLM(
            pretrained=loaded.source,
            dtype=loaded.dtype,
            device=device,
            batch_size=1,
            trust_remote_code=spec.trust_remote_code,
        )
        if not loaded.adapter
        else None
    )
    stock_load = time.perf_counter() - start if stock is not None else None
    del stock
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    hardware = provenance.hardware()
    result = {
        "bench": "eval",
        "model": opts.model,
        "variant": opts.variant,
        "source": loaded.source,
        "weights": "real" if (spec.embedded or spec.verified) else "unverified",
        "device": hardware.get("gpu") or f"cpu: {hardware.get('cpu')}",
        "dtype": loaded.dtype,
        "attn_implementation": loaded.attn_implementation,
        "batch_size": opts.batch_size,
        "limit": opts.limit,
        "baseline_limit": opts.baseline_limit,
        "study_limit": opts.study_limit,
        "fast_gen": {
            "check_every": opts.check_every,
            "refill_below": opts.refill_below,
            "static_engine": opts.static_engine,
        },
        "settings": settings.as_dict(),
        "load_seconds": {
            "medbench": round(loaded.load_seconds, 2),
            "stock_hf": round(stock_load, 2) if stock_load is not None else None,
        },
        "modes": {},
        "hardware": hardware,
        "versions": provenance.package_versions(),
        "git_sha": provenance.git_sha(),
        "data_files": {k: v for p in prepared.values() for k, v in p.config["identity"]["data"].items()},
    }
    for mode in opts.modes:
        if mode == "mc":
            from medbench.eval.bench_mc import bench_mc

            result["modes"]["mc"] = bench_mc(loaded, prepared[mode], opts, settings)
        else:
            result["modes"][mode] = {}
            from medbench.eval.bench_gen import bench_gen

            bench_gen(loaded, prepared[mode], opts, settings, result["modes"][mode], lambda: save(result))
        result["peak_rss_gib"] = provenance.peak_memory()["peak_rss_gib"]
        save(result)
    return result
