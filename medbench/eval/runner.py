"""One evaluation run: load the model, run lm-eval on our tasks, write the run's record.

results/runs/<run-id>/ holds run_config.json, lm-eval's results.json, samples_<task>.jsonl.gz,
record.json, and cache/ (the response cache, medbench/eval/response_cache.py: re-running the same run id
answers every question already answered from it, so a killed run resumes where it stopped).

Everything that can be refused is refused before the run claims its folder: the run id (a name,
never a path), every number and setting, the model directory, the machine, the data (verified
against SHA256SUMS) and a cache whose weights, data or versions changed (medbench/eval/identity.py).
A start that fails before any answer is computed leaves no folder behind; a run id in use by another
process is refused (a lock beside the folder).

Started by `just eval --gpus N` (accelerate launch), every process runs this with its share of the
questions (medbench/eval/parallel.py); rank 0 checks, claims, gathers the answers and alone writes the
run's files.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import torch

from medbench import paths
from medbench.errors import MedbenchError
from medbench.eval import chat as chat_templates
from medbench.eval import parallel, permute, response_cache
from medbench.eval.request import (  # noqa: F401  (the run's request API, re-exported)
    MODES,
    PROMPTS,
    RUN_CONFIG,
    SHORT_TASKS,
    Prepared,
    RunError,
    RunRequest,
    check_resumable,
    check_sizes,
    default_run_id,
    prepare,
    seeded_sample,
    short_tasks,
    task_data,
    task_names,
)
from medbench.eval.task_records import task_record, weighted_average
from medbench.models.loading import convert_once, load
from medbench.models.shapes import RANDOM_MARKER
from medbench.records import io, provenance
from medbench.records.io import RecordError, claim_dir
from medbench.records.schema import RunRecord


def run(req: RunRequest, results_dir: Path | None = None) -> dict | None:
    """The run's record; None in a data-parallel process other than rank 0 (rank 0 writes the record)."""
    processes = parallel.setup()
    try:
        if not processes.is_main:
            prepared = processes.share()  # rank 0 checked the request and claimed the folder
            store = response_cache.ResponseStore(response_cache.rank_file(prepared.run_dir / "cache", processes.rank))
            try:
                return _evaluate(req, prepared, store, processes)
            finally:
                store.close()
        shared = False
        try:
            prepared = prepare(req, results_dir)
            with io.run_lock(prepared.run_dir, "evaluation run"):
                may_change = frozenset() if req.force else check_resumable(prepared)
                # Only a folder holding run_config.json is a run: --force never deletes anything else.
                # parallelize may change on resume: where the weights sit changes no answer.
                created = claim_dir(
                    prepared.run_dir,
                    prepared.config,
                    config_name=RUN_CONFIG,
                    markers=(),
                    force=req.force,
                    what="evaluation run",
                    allowed_changes=may_change | {"settings.parallelize"},
                )
                store = None
                try:
                    store = response_cache.ResponseStore(prepared.run_dir / "cache" / response_cache.FILENAME)
                    parallel.gather_caches(store)  # answers a stopped data-parallel run left in other files
                    if processes.world_size > 1:
                        parallel.spread_caches(store, processes.world_size)
                        convert_once(prepared.spec, req.variant, req.settings)  # once, before the others load
                    processes.share(prepared)  # the other processes start from rank 0's checked request
                    shared = True
                    return _evaluate(req, prepared, store, processes)
                except BaseException:
                    # A start that computed nothing leaves no claim; answers already computed stay, to resume from.
                    if created and _no_answers(store):
                        if store is not None:
                            store.close()
                            store = None
                        shutil.rmtree(prepared.run_dir, ignore_errors=True)
                    raise
                finally:
                    if store is not None:
                        store.close()
        except BaseException as e:
            if not shared:
                processes.refuse(e)
            raise
    finally:
        processes.close()


def _no_answers(store: response_cache.ResponseStore | None) -> bool:
    try:
        return store is None or store.count() == 0
    except MedbenchError:
        return False  # an unreadable cache is kept for the user to look at


def _evaluate(
    req: RunRequest, prepared: Prepared, store: response_cache.ResponseStore, processes: parallel.Processes
) -> dict | None:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    import medbench.eval.fastlm  # noqa: F401  (registers the medbench-hf model with lm-eval)
    from medbench.eval.fastlm import MedbenchLM

    run_id, run_dir, mode, names, spec = prepared.run_id, prepared.run_dir, prepared.mode, prepared.names, prepared.spec
    chat = prepared.chat
    task_manager = TaskManager(include_path=str(paths.tasks_dir()), include_defaults=False)
    specs, rotated = permute.expand(names, task_manager, req.settings.permute)
    samples = None
    if req.sample:
        loaded_tasks = task_manager.load(names)["tasks"]
        samples = {
            name: seeded_sample(len(t.eval_docs), req.sample, req.settings.seed) for name, t in loaded_tasks.items()
        }
        samples.update({r: samples[name] for name, rs in rotated.items() for r in rs})  # the same questions

    loaded = load(spec, req.variant, req.settings, device=processes.device, processes=processes.world_size)
    if chat.apply:
        template = chat_templates.require_template(loaded.tokenizer, req.model)
        if processes.is_main:
            (run_dir / "chat_template.jinja").write_text(template)
    # A chat gen turn ends at the template's end-of-turn token (lm-eval adds EOS), not at a blank line.
    gen_kwargs = chat_templates.generation_kwargs(chat, loaded.tokenizer, mode, req.settings)
    lm = response_cache.CachedLM(
        MedbenchLM.from_loaded(
            loaded, req.settings, progress=req.progress, chat_template_args=chat.template_kwargs if chat.apply else None
        ),
        store,
    )
    parallel.attach(lm.lm, processes)
    if torch.cuda.is_available():
        # Each GPU the model sits on (a data-parallel process touches only its own: asking a GPU starts a context).
        sharded = (loaded.placement or {}).get("mode") == "sharded"
        for i in range(torch.cuda.device_count()) if sharded else [torch.cuda.current_device()]:
            torch.cuda.reset_peak_memory_stats(i)
    cached_before = store.count()
    start = time.perf_counter()
    out = simple_evaluate(
        model=lm,
        tasks=specs,
        task_manager=task_manager,
        limit=req.limit,
        samples=samples,
        use_cache=None,
        gen_kwargs=gen_kwargs,
        apply_chat_template=chat.apply,
        fewshot_as_multiturn=chat.fewshot_as_multiturn,
        system_instruction=chat.system_instruction,
        log_samples=True,
        random_seed=req.settings.seed,
        numpy_random_seed=req.settings.seed,
        torch_random_seed=req.settings.seed,
        fewshot_random_seed=req.settings.seed,
    )
    eval_seconds = time.perf_counter() - start
    if not processes.is_main:
        store.close()  # rank 0 merges this rank's answers into the run's cache next
        processes.gather(parallel.process_facts(lm, provenance.peak_memory()))
        return None
    per_process = processes.gather(parallel.process_facts(lm, provenance.peak_memory()))
    if processes.world_size > 1:
        parallel.gather_caches(store)
        for name in out["samples"]:
            repeats = int((out.get("configs", {}).get(name) or {}).get("repeats") or 1)
            out["samples"][name] = parallel.tidy_samples(out["samples"][name], repeats)
    responses_computed = store.count() - cached_before
    generated_tokens = sum(p["generated_tokens"] for p in per_process)
    generate_seconds = max(p["generate_seconds"] for p in per_process)

    # A finished run re-run computes nothing: its record (and the timings of the run that computed the
    # answers) stays as it is, unless it cannot be read.
    keep = responses_computed == 0 and _readable(run_dir / "record.json")
    rotated_names = {r for rs in rotated.values() for r in rs}
    if not keep:
        for name in out["samples"]:
            samples_out = out["samples"][name]
            if name in rotated_names:
                samples_out = [permute.slim(s) for s in samples_out]
            io.write_samples(io.samples_path(run_dir, name), samples_out)
    task_records = [
        task_record(
            name,
            out["samples"][name],
            out["results"][name],
            lambda text: len(lm.tok_encode(text)),
            req.settings.prompt_max_tokens,
            {r: out["samples"][r] for r in rotated.get(name, [])},
            req.settings.seed,
        )
        for name in names
    ]
    n_questions = sum(t["n"] for t in task_records)
    out_no_samples = {k: v for k, v in out.items() if k != "samples"}
    if not keep:
        io.write_json(run_dir / "results.json", out_no_samples)

    prov = provenance.provenance()
    record: RunRecord = {
        "run_id": run_id,
        "created": prov["created"],
        "model": req.model,
        "model_source": loaded.source,
        "params_b": spec.params_b,
        "weights": _weights(spec),
        "variant": req.variant,
        "prompt": req.prompt,
        "mode": mode,
        "limit": req.limit,
        "sample": req.sample,
        "settings": req.settings.as_dict(),
        "generation_kwargs": gen_kwargs if mode == "gen" else None,
        "chat": chat_templates.describe(chat, loaded.tokenizer),
        "adapter": loaded.adapter,
        "quantization": loaded.quantization,
        "awq_route": loaded.awq_route,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "attn_implementation": loaded.attn_implementation,
        "sanity_perplexity": loaded.sanity_perplexity,
        "tasks": task_records,
        "kormedmcqa_average": weighted_average([t for t in task_records if t["dataset"] == "kormedmcqa"]),
        "timing": {
            "load_seconds": round(loaded.load_seconds, 2),
            "eval_seconds": round(eval_seconds, 2),
            # A resumed run's time covers only what it computed: no questions/s for it.
            "questions_per_second": round(n_questions / eval_seconds, 3)
            if eval_seconds and not cached_before
            else None,
            "responses_per_second": round(responses_computed / eval_seconds, 2) if eval_seconds else None,
            "generated_tokens": generated_tokens,
            "generated_tokens_per_second": round(generated_tokens / generate_seconds, 1) if generate_seconds else None,
            # fast_gen's engine(s) and why (the gen_engine setting, `auto` resolved); empty: nothing generated here
            "gen_engine": {k: v for p in per_process for k, v in (p.get("gen_engine") or {}).items()},
        },
        "memory": _memory(loaded.footprint_bytes),
        "parallel": parallel.parallel_record(processes, loaded.placement, per_process),
        "responses": {"computed": responses_computed, "from_cache": cached_before},
        "canary": parallel.canary_summary([r for p in per_process for r in p["canary"]]),
        "versions": prov["versions"],
        "git_sha": prov["git_sha"],
        "git_dirty": prov["git_dirty"],
        "hardware": prov["hardware"],
        "data_files": prepared.config["identity"]["data"],
        "weights_fingerprint": prepared.config["identity"]["weights"],
    }
    if keep:
        print(
            f"medbench eval: nothing computed; {run_dir / 'record.json'} is left as the run that computed these "
            f"answers wrote it (--force evaluates again)",
            file=sys.stderr,
        )
    else:
        io.write_json(run_dir / "record.json", record)
    return record


def _weights(spec) -> str:
    if spec.path and (Path(spec.path) / RANDOM_MARKER).exists():
        return "random"  # medbench/models/shapes.py: speed and memory only
    return "real" if (spec.embedded or spec.verified) else "unverified"


def _readable(path: Path) -> bool:
    try:
        return isinstance(io.read_json(path), dict)
    except (OSError, RecordError):
        return False


def _memory(footprint_bytes: int) -> dict:
    peak = provenance.peak_memory()
    out = {"model_footprint_gib": round(footprint_bytes / 2**30, 3), "peak_rss_gib": peak["peak_rss_gib"]}
    if peak["peak_gpu_gib"] is not None:
        out["peak_gpu_gib"] = peak["peak_gpu_gib"]
    out["peak_gib"] = out.get("peak_gpu_gib", out["peak_rss_gib"])
    return out
