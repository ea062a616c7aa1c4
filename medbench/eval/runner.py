"""One evaluation run: load the model, run lm-eval on our tasks, write the run's record.

results/runs/<run-id>/ holds run_config.json, lm-eval's results.json, samples_<task>.jsonl.gz,
record.json, and cache/ (the response cache, medbench/eval/response_cache.py: re-running the same run id
answers every question already answered from it, so a killed run resumes where it stopped).

Everything that can be refused is refused before the run claims its folder: the run id (a name,
never a path), every number and setting, the model directory, the machine, the data (verified
against SHA256SUMS) and a cache whose weights, data or versions changed (medbench/eval/identity.py).
A start that fails before any answer is computed leaves no folder behind; a run id in use by another
process is refused (a lock beside the folder).
"""

from __future__ import annotations

import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from medbench import paths
from medbench.data.loader import KORMEDMCQA_EXAMS, load_rows, verify_splits
from medbench.errors import MedbenchError
from medbench.eval import chat as chat_templates
from medbench.eval import permute, response_cache
from medbench.eval.identity import identity_changes, run_identity
from medbench.eval.task_records import task_record, weighted_average
from medbench.models.fingerprint import fingerprint
from medbench.models.loading import check_machine, load, pick_device, weight_sources
from medbench.models.registry import resolve
from medbench.models.variants import plan
from medbench.records import io, provenance
from medbench.records.io import RecordError, check_run_id, claim_dir
from medbench.records.schema import RunRecord
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
    progress: bool = True  # progress bars (off with --quiet)

    def resolved_mode(self) -> str:
        if self.prompt not in PROMPTS:
            raise RunError(f"unknown prompt {self.prompt!r}; choose from {', '.join(PROMPTS)}")
        mode = self.mode or ("mc" if self.prompt == "zeroshot" else "gen")
        if mode not in MODES:
            raise RunError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
        if self.prompt != "zeroshot" and mode == "mc":
            raise RunError(f"the {self.prompt} prompt is generative (5-shot answers); use --mode gen")
        return mode

    def check(self) -> None:
        """The request's own numbers and names, before anything is read (test-set sizes: check_sizes)."""
        for name, what in (("limit", "the first N questions of each task"), ("sample", "N questions drawn per task")):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise RunError(
                    f"--{name} must be a whole number >= 1 ({what}), got {value!r}; leave it out to run every question"
                )
        if self.limit is not None and self.sample is not None:
            raise RunError(
                "--sample and --limit exclude each other: --limit takes the first N questions of each "
                "task, --sample a seeded random N; choose one"
            )
        if self.run_id is not None:
            check_run_id(self.run_id)


def short_tasks(wanted: list[str]) -> list[str]:
    """Short names (kormedmcqa_doctor, kormedmcqa, medqa_usmle, medqa) -> the short task names they select."""
    chosen = []
    for name in wanted or list(SHORT_TASKS):
        expanded = [t for t in SHORT_TASKS if t == name or t.startswith(name + "_")]
        if not expanded:
            raise RunError(f"unknown task {name!r}; choose from {', '.join(SHORT_TASKS)}, kormedmcqa, medqa")
        chosen += [t for t in expanded if t not in chosen]
    return chosen


def task_names(prompt: str, mode: str, wanted: list[str]) -> list[str]:
    """Short names (kormedmcqa_doctor, kormedmcqa, medqa_usmle, medqa) -> our lm-eval task names."""
    chosen = short_tasks(wanted)
    suffix = {"mc": "", "gen": "_gen"}[mode] if prompt == "zeroshot" else f"_{prompt}"
    return [f"medbench_{t}{suffix}" for t in chosen]


def default_run_id(req: RunRequest, mode: str) -> str:
    parts = [req.model.replace("/", "--"), req.variant, req.prompt, mode]
    if req.tasks:
        parts.append("+".join(req.tasks))
    if req.limit is not None:
        parts.append(f"limit{req.limit}")
    if req.sample is not None:
        parts.append(f"sample{req.sample}")
    if req.settings.chat != "auto":
        parts.append(f"chat{req.settings.chat}")
    if req.settings.thinking:
        parts.append("thinking")
    # A model given as a path names its run by the path (as before), made a valid run id.
    run_id = "".join(c if io.RUN_ID_PATTERN.fullmatch("a" + c) else "_" for c in "-".join(parts))
    return run_id[-128:].lstrip(".")


def task_data(task: str) -> tuple[str, str | None]:
    """(dataset, exam) of a short task name."""
    dataset, exam = task.split("_", 1)
    return dataset, exam if dataset == "kormedmcqa" else None


def check_sizes(req: RunRequest, tasks: list[str]) -> None:
    """--sample (or --limit) larger than a chosen test set would be the full run under another name."""
    for name in ("sample", "limit"):
        k = getattr(req, name)
        if k is None:
            continue
        for task in tasks:
            n = len(load_rows(*task_data(task), "test"))
            if k > n:
                raise RunError(
                    f"--{name} {k} is more than the {n} questions of {task}'s test set: it would run every "
                    f"question under a {name}'s name; use --{name} {n} or less, or leave --{name} out to "
                    f"run every question"
                )


def seeded_sample(n_docs: int, k: int, seed: int) -> list[int]:
    return sorted(random.Random(seed).sample(range(n_docs), min(k, n_docs)))


@dataclass
class Prepared:
    """A request checked against everything it depends on, nothing claimed yet."""

    run_id: str
    run_dir: Path
    mode: str
    names: list[str]
    spec: object
    config: dict
    chat: object  # medbench.eval.chat's plan: whether and how the chat template applies


def prepare(req: RunRequest, results_dir: Path | None = None) -> Prepared:
    """Every refusal, before the run claims its folder or loads a model."""
    from medbench.eval.task_utils import EVAL_SPLITS

    results_dir = results_dir or paths.results_dir()
    req.check()
    mode = req.resolved_mode()
    tasks = short_tasks(req.tasks)
    names = task_names(req.prompt, mode, req.tasks)
    spec = resolve(req.model)  # unknown aliases, missing or broken model directories fail here
    check_machine(req.settings)  # device=cuda without CUDA, flash attention without a GPU
    device = pick_device(req.settings.device)
    plan(spec, req.variant, cuda_available=device.startswith("cuda"))  # variants needing CUDA, missing checkpoints
    chat = chat_templates.plan_chat(spec, mode, req.settings)
    run_id = check_run_id(req.run_id or default_run_id(req, mode))
    run_dir = results_dir / "runs" / run_id
    data = verify_splits([(*task_data(t), split) for t in tasks for split in EVAL_SPLITS[task_data(t)[0]]])
    check_sizes(req, tasks)
    weights = {role: fingerprint(source) for role, source in weight_sources(spec, req.variant, device).items()}
    identity = run_identity(weights, data, provenance.package_versions())
    config = {
        "model": req.model,
        "variant": req.variant,
        "prompt": req.prompt,
        "mode": mode,
        "tasks": names,
        "limit": req.limit,
        "sample": req.sample,
        "settings": req.settings.as_dict(),
        "identity": identity,
    }
    return Prepared(run_id, run_dir, mode, names, spec, config, chat)


def check_resumable(prepared: Prepared) -> frozenset[str]:
    """A run folder's cached answers may only be reused by a run of the same weights, data and versions.

    Returns the config keys that may change: a folder without cached answers (a committed record,
    a start that was refused) has nothing to go stale, so its identity is simply rewritten.
    """
    config_path = prepared.run_dir / RUN_CONFIG
    if not config_path.exists():
        return frozenset()
    try:
        previous = io.read_json(config_path)
    except RecordError as e:
        raise RunError(f"{e}; --force starts the run again") from None
    response_cache.check(prepared.run_dir / "cache")
    if not response_cache.count_rows(prepared.run_dir / "cache" / response_cache.FILENAME):
        return frozenset({"identity"})
    reasons = identity_changes(
        previous.get("identity") if isinstance(previous, dict) else None, prepared.config["identity"]
    )
    if reasons:
        raise RunError(
            f"{prepared.run_dir} holds answers cached from other inputs: {'; '.join(reasons)}. They would "
            f"be scored as this run's: --force discards them and evaluates again (or choose another "
            f"--run-id)"
        )
    return frozenset()


def run(req: RunRequest, results_dir: Path | None = None) -> dict:
    prepared = prepare(req, results_dir)
    with io.run_lock(prepared.run_dir, "evaluation run"):
        may_change = frozenset() if req.force else check_resumable(prepared)
        # Only a folder holding run_config.json is a run: --force never deletes anything else.
        created = claim_dir(
            prepared.run_dir,
            prepared.config,
            config_name=RUN_CONFIG,
            markers=(),
            force=req.force,
            what="evaluation run",
            allowed_changes=may_change,
        )
        store = None
        try:
            store = response_cache.ResponseStore(prepared.run_dir / "cache" / response_cache.FILENAME)
            return _evaluate(req, prepared, store)
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


def _no_answers(store: response_cache.ResponseStore | None) -> bool:
    try:
        return store is None or store.count() == 0
    except MedbenchError:
        return False  # an unreadable cache is kept for the user to look at


def _evaluate(req: RunRequest, prepared: Prepared, store: response_cache.ResponseStore) -> dict:
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

    loaded = load(spec, req.variant, req.settings)
    gen_kwargs = req.settings.generation_kwargs()
    if chat.apply:
        template = chat_templates.require_template(loaded.tokenizer, req.model)
        (run_dir / "chat_template.jinja").write_text(template)
        if mode == "gen":
            # A chat turn ends at the template's end-of-turn token (lm-eval adds EOS), not at a blank line.
            eot = chat_templates.end_of_turn(loaded.tokenizer, chat.template_kwargs)
            gen_kwargs["until"] = [eot] if eot else []
    lm = response_cache.CachedLM(
        MedbenchLM.from_loaded(
            loaded, req.settings, progress=req.progress, chat_template_args=chat.template_kwargs if chat.apply else None
        ),
        store,
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
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
    responses_computed = store.count() - cached_before

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
        "weights": "real" if (spec.embedded or spec.verified) else "unverified",
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
            "generated_tokens": lm.generated_tokens,
            "generated_tokens_per_second": round(lm.generated_tokens / lm.generate_seconds, 1)
            if lm.generate_seconds
            else None,
        },
        "memory": _memory(loaded.footprint_bytes),
        "responses": {"computed": responses_computed, "from_cache": cached_before},
        "canary": canary_summary(lm.canary_report),
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


def canary_summary(reports: list[dict]) -> dict | None:
    """The canary over every scoring call of the run: questions re-scored alone, worst difference."""
    if not reports:
        return None
    return {
        "checked": sum(r["checked"] for r in reports),
        "max_abs_diff": max(r["max_abs_diff"] for r in reports),
        "tolerance": reports[0]["tolerance"],
        "passed": all(r["passed"] for r in reports),
    }


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
