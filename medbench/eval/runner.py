"""One evaluation run: load the model, run lm-eval on our tasks, write the run's record.

results/runs/<run-id>/ holds run_config.json, lm-eval's results.json, samples_<task>.jsonl.gz,
record.json, and cache/ (the response cache, medbench/eval/response_cache.py: re-running the same run id
answers every question already answered from it, so a killed run resumes where it stopped).

Everything that can be refused is refused before the run claims its folder (medbench/eval/request.py):
the run id (a name, never a path), every number and setting, the model directory, the machine, the data
(verified against SHA256SUMS) and a cache whose weights, data or versions changed. A start that fails
before any answer is computed leaves no folder behind; a run id in use by another process is refused
(a lock beside the folder). An interruption never removes the folder: every answer is committed to the cache
as its batch is scored, so SIGKILL loses at most the batch in flight, and Ctrl-C says how many answers were
kept (exit status 130); the same command resumes, computing only what is missing.

Started by `just eval --gpus N` (accelerate launch), every process runs this with its share of the
questions (medbench/eval/parallel.py); rank 0 checks, claims, gathers the answers and alone writes the
run's files.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from medbench import paths
from medbench.errors import Interrupted, MedbenchError
from medbench.eval import parallel, permute, response_cache
from medbench.eval.request import RUN_CONFIG, Prepared, RunRequest, check_resumable, prepare, seeded_sample
from medbench.eval.run_record import build_run_record
from medbench.models.loading import convert_once, load
from medbench.prompts import chat as chat_templates
from medbench.records import io
from medbench.records.io import RecordError, claim_dir
from medbench.records.schema import RunRecord


def run(req: RunRequest, results_dir: Path | None = None) -> RunRecord | None:
    """The run's record; None in a data-parallel process other than rank 0 (rank 0 writes the record)."""
    with parallel.processes() as procs:
        if not procs.is_main:
            prepared = procs.share()  # rank 0 checked the request and claimed the folder
            rank_file = response_cache.rank_file(prepared.run_dir / "cache", procs.rank)
            with response_cache.ResponseStore(rank_file) as store:
                return _evaluate(req, prepared, store, procs)
        with contextlib.ExitStack() as held:
            with parallel.refusal_shared(procs):
                prepared = prepare(req, results_dir)
                held.enter_context(io.run_lock(prepared.run_dir, "evaluation run"))
                created = _claim(req, prepared)
                store = held.enter_context(_answers_kept(prepared.run_dir, created))
                parallel.gather_caches(store)  # answers a stopped data-parallel run left in other files
                if procs.world_size > 1:
                    parallel.spread_caches(store, procs.world_size)
                    convert_once(
                        prepared.spec, req.variant, req.settings, req.checkpoint
                    )  # once, before the others load
                procs.share(prepared)  # the other processes start from rank 0's checked request
            return _evaluate(req, prepared, store, procs)


def _claim(req: RunRequest, prepared: Prepared) -> bool:
    """The run folder for this request (True: created now). Only a folder holding run_config.json is a run:
    --force never deletes anything else; parallelize may change on resume (where the weights sit changes no
    answer)."""
    may_change = frozenset() if req.force else check_resumable(prepared)
    return claim_dir(
        prepared.run_dir,
        prepared.config,
        config_name=RUN_CONFIG,
        markers=(),
        force=req.force,
        what="evaluation run",
        allowed_changes=may_change | {"settings.parallelize"},
    )


@contextlib.contextmanager
def _answers_kept(run_dir: Path, created: bool):
    """The run's response cache. On any failure the answers already computed stay, to resume from; a folder this
    start created and that holds no answer is removed (nothing was computed, nothing is lost). An interruption
    (Ctrl-C) removes nothing: the folder and every answer written stay, and the same command resumes."""
    store = None
    try:
        store = response_cache.ResponseStore(run_dir / "cache" / response_cache.FILENAME)
        yield store
    except KeyboardInterrupt:
        kept = _answers(store)
        if kept == 0:
            raise Interrupted(f"no answer computed yet; {run_dir} is kept, and the same command starts it") from None
        count = "the answers computed so far" if kept is None else f"{kept} answer(s)"
        raise Interrupted(f"{count} kept in {run_dir}; the same command resumes the run from them") from None
    except BaseException:
        if created and _no_answers(store):
            if store is not None:
                store.close()
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if store is not None:
            store.close()


def _no_answers(store: response_cache.ResponseStore | None) -> bool:
    try:
        return store is None or store.count() == 0
    except MedbenchError:
        return False  # an unreadable cache is kept for the user to look at


def _answers(store: response_cache.ResponseStore | None) -> int | None:
    try:
        return 0 if store is None else store.count()
    except MedbenchError:
        return None


@dataclass
class TaskPlan:
    """What lm-eval is asked to run: the task manager, the task specs (rotated copies included), and samples."""

    manager: object
    specs: list
    rotated: dict[str, list[str]]  # task -> its rotated copies (permute=cyclic)
    samples: dict[str, list[int]] | None  # task -> the seeded sample of question indices (--sample)


def _task_plan(req: RunRequest, prepared: Prepared) -> TaskPlan:
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(paths.tasks_dir()), include_defaults=False)
    specs, rotated = permute.expand(prepared.names, manager, req.settings.permute)
    samples = None
    if req.sample:
        tasks = manager.load(prepared.names)["tasks"]
        samples = {name: seeded_sample(len(t.eval_docs), req.sample, req.settings.seed) for name, t in tasks.items()}
        samples.update({r: samples[name] for name, rs in rotated.items() for r in rs})  # the same questions
    return TaskPlan(manager, specs, rotated, samples)


def _model(req: RunRequest, prepared: Prepared, store, procs: parallel.Processes):
    """The loaded weights, and our lm-eval model behind the response cache."""
    import torch

    import medbench.eval.lm  # noqa: F401  (registers the medbench-hf model with lm-eval)
    from medbench.eval.lm import MedbenchLM

    chat = prepared.chat
    loaded = load(
        prepared.spec,
        req.variant,
        req.settings,
        device=procs.device,
        processes=procs.world_size,
        checkpoint=req.checkpoint,
    )
    if chat.apply:
        template = chat_templates.require_template(loaded.tokenizer, req.model)
        if procs.is_main:
            (prepared.run_dir / "chat_template.jinja").write_text(template)
    lm = MedbenchLM.from_loaded(
        loaded, req.settings, progress=req.progress, chat_template_args=chat.template_kwargs if chat.apply else None
    )
    parallel.attach(lm, procs)
    if torch.cuda.is_available():
        # Each GPU the model sits on (a data-parallel process touches only its own: asking a GPU starts a context).
        sharded = (loaded.placement or {}).get("mode") == "sharded"
        for i in range(torch.cuda.device_count()) if sharded else [torch.cuda.current_device()]:
            torch.cuda.reset_peak_memory_stats(i)
    return loaded, response_cache.CachedLM(lm, store)


def _simple_evaluate(req: RunRequest, prepared: Prepared, plan: TaskPlan, lm, gen_kwargs: dict) -> dict:
    from lm_eval import simple_evaluate

    chat = prepared.chat
    return simple_evaluate(
        model=lm,
        tasks=plan.specs,
        task_manager=plan.manager,
        limit=req.limit,
        samples=plan.samples,
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


def _evaluate(
    req: RunRequest, prepared: Prepared, store: response_cache.ResponseStore, procs: parallel.Processes
) -> RunRecord | None:
    plan = _task_plan(req, prepared)
    loaded, lm = _model(req, prepared, store, procs)
    # A chat gen turn ends at the template's end-of-turn token (lm-eval adds EOS), not at a blank line.
    gen_kwargs = chat_templates.generation_kwargs(prepared.chat, loaded.tokenizer, prepared.mode, req.settings)
    cached_before = store.count()
    start = time.perf_counter()
    out = _simple_evaluate(req, prepared, plan, lm, gen_kwargs)
    eval_seconds = time.perf_counter() - start

    facts = parallel.process_facts(lm.lm, _peak_memory())
    if not procs.is_main:
        store.close()  # rank 0 merges this rank's answers into the run's cache next
        procs.gather(facts)
        return None
    per_process = procs.gather(facts)
    if procs.world_size > 1:
        parallel.gather_caches(store)
        for name in out["samples"]:
            repeats = int((out.get("configs", {}).get(name) or {}).get("repeats") or 1)
            out["samples"][name] = parallel.tidy_samples(out["samples"][name], repeats)
    computed = store.count() - cached_before

    # A finished run re-run computes nothing: its record (and the timings of the run that computed the answers)
    # stays as it is, unless it cannot be read.
    record_path = prepared.run_dir / "record.json"
    keep = computed == 0 and _readable(record_path)
    if not keep:
        _write_answers(prepared.run_dir, out)
    record = build_run_record(
        req,
        prepared,
        loaded,
        out,
        plan.rotated,
        count_tokens=lambda text: len(lm.tok_encode(text)),
        per_process=per_process,
        procs=procs,
        gen_kwargs=gen_kwargs,
        eval_seconds=eval_seconds,
        responses={"computed": computed, "from_cache": cached_before},
    )
    if keep:
        print(
            f"medbench eval: nothing computed; {record_path} is left as the run that computed these answers wrote it "
            f"(--force evaluates again)",
            file=sys.stderr,
        )
    else:
        io.write_json(record_path, record)
    return record


def _peak_memory() -> dict:
    from medbench.records import provenance

    return provenance.peak_memory()


def _write_answers(run_dir: Path, out: dict) -> None:
    """Every task's logged samples (compacted: records/io.py) and lm-eval's results without them."""
    for name, samples in out["samples"].items():
        io.write_samples(io.samples_path(run_dir, name), [io.compact_sample(s) for s in samples])
    io.write_json(run_dir / "results.json", {k: v for k, v in out.items() if k != "samples"})


def _readable(path: Path) -> bool:
    try:
        return isinstance(io.read_json(path), dict)
    except (OSError, RecordError):
        return False
