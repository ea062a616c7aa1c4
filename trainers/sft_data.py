"""Supervised examples in exactly the zero-shot evaluation prompt, the answer as the completion.

Prompts are rendered by lm-eval itself, from our task YAMLs (tasks/), on canonical rows from
medbench.data.loader: `task.doc_to_text(row)` is the prompt, and the completion is the task's target delimiter
plus the answer's choice (" A" ... " E"), which is exactly the continuation the `mc` tasks score. So
training and evaluation cannot drift apart: change a template and both change.

Columns: prompt, completion (TRL's prompt-completion format: the loss is on the completion only),
and id, dataset, exam, split, answer for tracing. Sources:
  korean   KorMedMCQA `train` of the four exams (3,401 rows)
  english  MedQA `train` where a hub copy exists (`just data --from-hub`), else MedQA `dev` (offline)
  both     the two together (default)
Evaluation during training: KorMedMCQA `valid` of the four exams (1,059 rows). Never a test split.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from functools import cache

import datasets

from medbench.data.loader import KORMEDMCQA_EXAMS, DataError, Source, load_rows, source_path
from medbench.settings import DEFAULT_SEED

MIXES = ("english", "korean", "both")
KOREAN_TASKS = {exam: f"medbench_kormedmcqa_{exam}" for exam in KORMEDMCQA_EXAMS}
ENGLISH_TASK = "medbench_medqa_usmle"
KEEP_COLUMNS = ("id", "dataset", "exam", "split", "answer")


@dataclass(frozen=True)
class SourceInfo:
    dataset: str
    exam: str | None
    split: str
    task: str  # the lm-eval task whose prompt renders it
    rows: int
    note: str | None = None
    cot_rows: int = 0  # rows whose completion is their chain of thought (--cot)


@cache
def eval_tasks() -> dict:
    """Our zero-shot `mc` tasks, loaded by lm-eval from tasks/ (once per process)."""
    from lm_eval.tasks import TaskManager

    from medbench.paths import tasks_dir
    from medbench.prompts import templates

    # lm-eval compiles a task's Jinja template once per row; compiled once, the texts are the same and
    # the compilations, a visible part of a short run's time, are gone.
    templates.install()
    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False)
    names = [*KOREAN_TASKS.values(), ENGLISH_TASK]
    return manager.load(names)["tasks"]


def render(row: dict, task_name: str, cot: bool = False) -> dict:
    """One canonical row -> {prompt, completion}, through the eval task's own templates."""
    task = eval_tasks()[task_name]
    prompt = task.doc_to_text(row)
    delimiter = task.config.target_delimiter
    if cot and row.get("cot"):
        # The chain-of-thought tasks' shots answer with the row's `cot` after the same delimiter.
        return {"prompt": prompt, "completion": delimiter + row["cot"].strip()}
    target = task.doc_to_target(row)
    choice = task.doc_to_choice(row)[target] if isinstance(target, int) else str(target)
    return {"prompt": prompt, "completion": delimiter + choice}


def _render_row(row: dict, cot: bool) -> dict:
    return render(row, row["task"], cot)


def english_rows() -> tuple[list[dict], SourceInfo]:
    """MedQA train (hub copy) if there is one, else MedQA dev; never test."""
    try:
        rows = load_rows("medqa", None, "train")
        return rows, SourceInfo("medqa", "usmle", "train", ENGLISH_TASK, len(rows), "hub copy (just data --from-hub)")
    except DataError as e:
        rows = load_rows("medqa", None, "dev")
        note = (
            f"MedQA train unavailable ({e}); trained on MedQA dev instead. dev's first five rows are also the "
            f"shots of the medqa fewshot prompt"
        )
        return rows, SourceInfo("medqa", "usmle", "dev", ENGLISH_TASK, len(rows), note)


def splits_read(mix: str, positive_control: str | None = None) -> list[tuple[str, str | None, str]]:
    """(dataset, exam, split) of every split a run trains on, and the validation splits (verified before a run)."""
    if mix not in MIXES:
        raise DataError(f"unknown mix {mix!r}; choose from {', '.join(MIXES)}")
    valid = [("kormedmcqa", exam, "valid") for exam in KORMEDMCQA_EXAMS]
    if positive_control == "medqa":
        return [("medqa", None, "test"), *valid]
    if positive_control == "kormedmcqa":
        return [("kormedmcqa", exam, "test") for exam in KORMEDMCQA_EXAMS] + valid
    out = [("kormedmcqa", exam, "train") for exam in KORMEDMCQA_EXAMS] if mix in ("korean", "both") else []
    if mix in ("english", "both"):
        try:
            source_path(Source("medqa", None, "train"))
            out.append(("medqa", None, "train"))
        except DataError:
            out.append(("medqa", None, "dev"))
    return out + [("kormedmcqa", exam, "valid") for exam in KORMEDMCQA_EXAMS]


def build_examples(parts: list[tuple[list[dict], str]], cot: bool, limit: int | None, seed: int) -> datasets.Dataset:
    """Rows of several sources (each with the task that renders it) -> prompt/completion examples.

    With `limit`, a seeded sample of that many rows is taken before rendering (lm-eval compiles its
    Jinja template for every row, a few milliseconds each).
    """
    rows = [{**r, "task": task_name} for part_rows, task_name in parts for r in part_rows]
    ds = datasets.Dataset.from_list(rows)
    if limit is not None and limit < len(ds):
        ds = ds.shuffle(seed=seed).select(range(limit))
    return ds.map(
        _render_row, fn_kwargs={"cot": cot}, remove_columns=[c for c in ds.column_names if c not in KEEP_COLUMNS]
    )


def train_dataset(
    mix: str = "both", cot: bool = False, limit: int | None = None, seed: int = DEFAULT_SEED
) -> tuple[datasets.Dataset, list[dict]]:
    """The training examples of a mix, and the sources they came from (for the train record)."""
    if mix not in MIXES:
        raise DataError(f"unknown mix {mix!r}; choose from {', '.join(MIXES)}")
    parts, sources = [], []
    if mix in ("korean", "both"):
        for exam, task_name in KOREAN_TASKS.items():
            rows = load_rows("kormedmcqa", exam, "train")
            parts.append((rows, task_name))
            sources.append(SourceInfo("kormedmcqa", exam, "train", task_name, len(rows), cot_rows=_cot_rows(rows, cot)))
    if mix in ("english", "both"):
        rows, info = english_rows()
        parts.append((rows, ENGLISH_TASK))
        sources.append(replace(info, cot_rows=_cot_rows(rows, cot)))
    return build_examples(parts, cot, limit, seed), [asdict(s) for s in sources]


def positive_control_half(dataset: str) -> list[dict]:
    """The test questions a positive control trains on: a seeded half of the dataset's test set (every exam's for
    KorMedMCQA), the same for every seed and method, so that the report can split the test set the same way."""
    import random

    exams = KORMEDMCQA_EXAMS if dataset == "kormedmcqa" else (None,)
    rows = [r for exam in exams for r in load_rows(dataset, exam, "test")]
    chosen = set(random.Random(DEFAULT_SEED).sample(range(len(rows)), len(rows) // 2))
    return [r for i, r in enumerate(rows) if i in chosen]


def positive_control_dataset(dataset: str, limit: int | None = None, seed: int = DEFAULT_SEED):
    """A positive control's examples: half of `dataset`'s test questions with their answers, in the eval prompt."""
    rows = positive_control_half(dataset)
    by_task: dict[str, list[dict]] = {}
    for r in rows:
        task = ENGLISH_TASK if dataset == "medqa" else KOREAN_TASKS[r["exam"]]
        by_task.setdefault(task, []).append(r)
    parts = list((task_rows, task) for task, task_rows in by_task.items())
    sources = [
        {
            **asdict(SourceInfo(dataset, None, "test", task, len(task_rows), "positive control: TEST questions")),
            "contaminated_ids": sorted(r["id"] for r in task_rows),
        }
        for task_rows, task in parts
    ]
    return build_examples(parts, False, limit, seed), sources


def _cot_rows(rows: list[dict], cot: bool) -> int:
    """How many rows train on a chain-of-thought completion (only with --cot, only rows that have one)."""
    return sum(1 for r in rows if r.get("cot")) if cot else 0


def eval_dataset(limit: int | None = None, seed: int = DEFAULT_SEED) -> tuple[datasets.Dataset, list[dict]]:
    """KorMedMCQA `valid` of the four exams, in the same format: the loss watched during training."""
    parts, sources = [], []
    for exam, task_name in KOREAN_TASKS.items():
        rows = load_rows("kormedmcqa", exam, "valid")
        parts.append((rows, task_name))
        sources.append(asdict(SourceInfo("kormedmcqa", exam, "valid", task_name, len(rows))))
    return build_examples(parts, False, limit, seed), sources


def loss_floor(ds, tokenizer) -> dict | None:
    """The held-out loss of a model that knows only how often each answer letter is right: the entropy of the gold
    letters (the loss on the letter) averaged over every completion token (the letter and the EOS after it, which
    costs such a model nothing). A fine-tune whose held-out loss sits at this floor has learned the letter prior,
    not the questions."""
    import math
    from collections import Counter

    if len(ds) == 0:
        return None
    counts = Counter(ds["answer"])
    n = sum(counts.values())
    entropy = -sum(c / n * math.log(c / n) for c in counts.values())
    tokens = sum(len(ids) + 1 for ids in tokenizer(list(ds["completion"]), add_special_tokens=False)["input_ids"])
    return {
        "letter_prior": {k: round(v / n, 4) for k, v in sorted(counts.items())},
        "letter_entropy": round(entropy, 4),
        "tokens_per_completion": round(tokens / n, 3),
        "per_token": round(n * entropy / tokens, 4),
    }


def drop_too_long(ds, tokenizer, max_length: int | None):
    """Examples whose prompt + completion + EOS exceed max_length are dropped and counted, never cut."""

    def lengths(batch):
        texts = [p + c for p, c in zip(batch["prompt"], batch["completion"])]
        return {"n_tokens": [len(ids) + 1 for ids in tokenizer(texts)["input_ids"]]}

    if len(ds) == 0:
        return ds, {"max_length": max_length, "dropped_too_long": 0, "max_tokens": None, "mean_tokens": None}
    # An explicit fingerprint: hashing the tokenizer (datasets' default) takes seconds for a 262k vocabulary.
    fingerprint = hashlib.sha256(f"{ds._fingerprint} {tokenizer.name_or_path} lengths".encode()).hexdigest()[:16]
    ds = ds.map(lengths, batched=True, new_fingerprint=fingerprint)
    n = ds["n_tokens"]
    kept = ds.filter(lambda row: row["n_tokens"] <= max_length) if max_length else ds
    stats = {
        "max_length": max_length,
        "dropped_too_long": len(ds) - len(kept),
        "max_tokens": max(n),
        "mean_tokens": round(sum(n) / len(n), 1),
    }
    return kept.remove_columns("n_tokens"), stats


def without_build_copies(tokenizer):
    """The tokenizer without the Python copies of the vocabulary and merges it was built from.

    transformers 5 tokenizers keep `_vocab` and `_merges` (262k entries and the BPE merges for Gemma 3) after
    building the Rust tokenizer from them, and nothing reads them again; `datasets` pickles the whole object,
    entry by entry, to fingerprint TRL's tokenizing `map` (seconds a hash, two hashes a run; a fraction
    without them). The Rust tokenizer keeps its own copy, so encoding, saving and the fingerprint are unchanged
    in what they cover (tests/test_trainers.py)."""
    for name, empty in (("_vocab", {}), ("_merges", [])):
        if isinstance(getattr(tokenizer, name, None), (dict, list)):
            setattr(tokenizer, name, empty)
    return tokenizer
