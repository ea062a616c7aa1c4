"""A run request and everything checked before a run claims its folder or loads a model.

The run id (a name, never a path), every number and setting, the model directory, the machine, the
data (verified against SHA256SUMS) and a cache whose weights, data or versions changed
(medbench/eval/identity.py) are refused here, so a refused start leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from medbench import paths
from medbench.data.checksums import verify_splits
from medbench.data.loader import KORMEDMCQA_EXAMS, load_rows
from medbench.errors import MedbenchError
from medbench.eval import response_cache
from medbench.eval.identity import identity_changes, run_identity
from medbench.models.fingerprint import fingerprint
from medbench.models.loading import check_machine, pick_device, weight_sources
from medbench.models.registry import resolve
from medbench.models.variants import plan
from medbench.prompts import chat as chat_templates
from medbench.records import io, provenance
from medbench.records.io import RecordError, check_run_id
from medbench.settings import EvalSettings

PROMPTS = ("zeroshot", "fewshot", "cot")
MODES = ("mc", "gen", "cloze")
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
    checkpoint: str | None = None  # a fine-tuned variant's folder under checkpoints/ (default <alias>-<method>)
    force: bool = False
    settings: EvalSettings = field(default_factory=EvalSettings)
    progress: bool = True  # progress bars (off with --quiet)

    def resolved_mode(self) -> str:
        if self.prompt not in PROMPTS:
            raise RunError(f"unknown prompt {self.prompt!r}; choose from {', '.join(PROMPTS)}")
        mode = self.mode or ("mc" if self.prompt == "zeroshot" else "gen")
        if mode not in MODES:
            raise RunError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
        if self.prompt != "zeroshot" and mode != "gen":
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
    suffix = {"mc": "", "gen": "_gen", "cloze": "_cloze"}[mode] if prompt == "zeroshot" else f"_{prompt}"
    return [f"medbench_{t}{suffix}" for t in chosen]


def default_run_id(req: RunRequest, mode: str) -> str:
    """A readable name (model, variant, prompt, mode and what narrows the run) and a short hash of everything that
    makes the run what it is: the model's full path or name, the checkpoint, the tasks, the sample and every setting.
    Two runs that differ in any of these never share an id, however long a model path is."""
    model = Path(req.model).name if _is_path(req.model) else req.model
    parts = [model, req.variant, req.prompt, mode]
    parts += [req.checkpoint] if req.checkpoint else []
    parts += ["+".join(req.tasks)] if req.tasks else []
    parts += [f"limit{req.limit}"] if req.limit is not None else []
    parts += [f"sample{req.sample}"] if req.sample is not None else []
    parts += [f"perm{req.settings.permute}"] if req.settings.permute != "none" else []
    readable = "".join(c if io.RUN_ID_PATTERN.fullmatch("a" + c) else "_" for c in "-".join(parts))
    identity = {
        "model": str(Path(req.model).resolve()) if _is_path(req.model) else req.model,
        "variant": req.variant,
        "prompt": req.prompt,
        "mode": mode,
        "checkpoint": req.checkpoint,
        "tasks": req.tasks,
        "limit": req.limit,
        "sample": req.sample,
        "settings": req.settings.as_dict(),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{readable[:110].strip('.-_') or 'run'}-{digest}"


def _is_path(model: str) -> bool:
    return Path(model).is_dir()


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
    chat: object  # medbench.prompts.chat's plan: whether and how the chat template applies


def prepare(req: RunRequest, results_dir: Path | None = None) -> Prepared:
    """Every refusal, before the run claims its folder or loads a model."""
    from medbench.prompts.tasks import EVAL_SPLITS

    results_dir = results_dir or paths.results_dir()
    req.check()
    mode = req.resolved_mode()
    tasks = short_tasks(req.tasks)
    names = task_names(req.prompt, mode, req.tasks)
    spec = resolve(req.model)  # unknown aliases, missing or broken model directories fail here
    check_machine(req.settings)  # device=cuda without CUDA, flash attention without a GPU
    device = pick_device(req.settings.device)
    # variants needing CUDA, missing checkpoints
    plan(spec, req.variant, cuda_available=device.startswith("cuda"), checkpoint=req.checkpoint)
    chat = chat_templates.plan_chat(spec, mode, req.settings)
    run_id = check_run_id(req.run_id or default_run_id(req, mode))
    run_dir = results_dir / "runs" / run_id
    data = verify_splits([(*task_data(t), split) for t in tasks for split in EVAL_SPLITS[task_data(t)[0]]])
    check_sizes(req, tasks)
    sources = weight_sources(spec, req.variant, device, req.checkpoint)
    weights = {role: fingerprint(source) for role, source in sources.items()}
    identity = run_identity(weights, data, provenance.package_versions())
    config = {
        "model": req.model,
        "variant": req.variant,
        "checkpoint": req.checkpoint,
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
    if not response_cache.count_all(prepared.run_dir / "cache"):
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
