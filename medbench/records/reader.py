"""Read results/runs/*/: each record.json checked against the fields the report needs, and the
per-question scores of each task from its samples_<task>.jsonl.

The report trusts nothing it has not checked: a record without a field it uses, or a task whose
samples are missing or disagree with the record, stops the report with the file named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medbench.data.loader import KORMEDMCQA_EXAMS
from medbench.records import io
from medbench.records.io import RecordError, read_json
from medbench.records.schema import Memory, RunRecord, TaskRecord, Timing, required_keys

AVERAGE_TASK = "kormedmcqa_average"

# The fields every record has (medbench/records/schema.py); newer fields are optional, so old runs stay readable.
REQUIRED_RECORD_FIELDS = required_keys(RunRecord)
REQUIRED_NESTED_FIELDS = (
    *(("timing", k) for k in required_keys(Timing)),
    *(("memory", k) for k in required_keys(Memory)),
)
REQUIRED_TASK_FIELDS = required_keys(TaskRecord)
# The fields the report computes with, and the types it can compute with: a record edited by hand or written by
# something else is named, not crashed on.
RECORD_TYPES = {
    "run_id": str,
    "model": str,
    "variant": str,
    "prompt": str,
    "mode": str,
    "params_b": (int, float, type(None)),
    "timing": dict,
    "memory": dict,
    "hardware": dict,
    "limit": (int, type(None)),
    "sample": (int, type(None)),
}
TASK_TYPES = {
    "task": str,
    "dataset": str,
    "exam": str,
    "metric": str,
    "n": int,
    "accuracy": (int, float, type(None)),
    "invalid": int,
    "truncated_prompts": int,
}


def _kinds(kinds) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


class ReportError(RecordError):
    """Results the report cannot use; the message starts with the offending file."""


@dataclass(frozen=True)
class TaskScores:
    task: str
    dataset: str
    exam: str
    metric: str
    record: dict  # the task's entry in record.json
    ids: tuple[str, ...]  # doc.id per question, in samples order
    scores: np.ndarray  # 0/1 per question, aligned with ids
    # With permuted options (--set permute=cyclic): per question, the mean score over rotations
    # (position-debiased) and whether it was right under every rotation (circular); else None.
    debiased: np.ndarray | None = None
    circular: np.ndarray | None = None
    # With permuted options scored by log-likelihood: [question, rotation, position] letter log-likelihoods, the
    # rotations in order (0 first; rotation k shows original option (j + k) mod n at position j). What score-level
    # debiasing and the position-lock share are computed from (medbench/report/position_bias.py).
    rotation_logp: np.ndarray | None = None
    gold: np.ndarray | None = None  # each question's gold option index in its unrotated order (lm-eval's target)

    @property
    def n(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Run:
    run_id: str
    path: Path  # the run directory
    record: dict
    tasks: tuple[TaskScores, ...]

    @property
    def config(self) -> tuple[str, str, str]:
        return (self.record["variant"], self.record["prompt"], self.record["mode"])

    def scored_tasks(self) -> dict[str, TaskScores]:
        """Tasks keyed by dataset_exam (the same across prompts and modes), plus the pooled average."""
        out = {f"{t.dataset}_{t.exam}": t for t in self.tasks}
        pooled = pooled_kormedmcqa(self.tasks)
        if pooled is not None:
            out[AVERAGE_TASK] = pooled
        return out


def pooled_kormedmcqa(tasks) -> TaskScores | None:
    """All four exams' questions as one task: the mean is the n-weighted exam average.

    Only with all four exams, because a mean over some of them is not the exam average. On full
    test sets n-weighting is the paper's test-size weighting; on a --sample run it is not.
    """
    by_exam = {t.exam: t for t in tasks if t.dataset == "kormedmcqa"}
    if set(by_exam) != set(KORMEDMCQA_EXAMS):
        return None
    parts = [by_exam[e] for e in KORMEDMCQA_EXAMS]
    n = sum(p.n for p in parts)
    invalid = sum(p.record["invalid"] for p in parts)
    correct = int(sum(p.scores.sum() for p in parts))
    record = {
        "task": AVERAGE_TASK,
        "dataset": "kormedmcqa",
        "exam": "average",
        "metric": parts[0].metric,
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "stderr": None,
        "invalid": invalid,
        "invalid_rate": invalid / n if n else None,
        "truncated_prompts": sum(p.record["truncated_prompts"] for p in parts),
    }
    return TaskScores(
        task=AVERAGE_TASK,
        dataset="kormedmcqa",
        exam="average",
        metric=parts[0].metric,
        record=record,
        ids=tuple(i for p in parts for i in p.ids),
        scores=np.concatenate([p.scores for p in parts]),
        debiased=_pooled(parts, "debiased"),
        circular=_pooled(parts, "circular"),
        rotation_logp=_pooled(parts, "rotation_logp"),
        gold=_pooled(parts, "gold"),
    )


def _pooled(parts, field: str) -> np.ndarray | None:
    arrays = [getattr(p, field) for p in parts]
    return None if any(a is None for a in arrays) else np.concatenate(arrays)


def load_runs(results_dir: Path, *more_dirs: Path) -> list[Run]:
    """Every run with a record.json in these results folders, sorted by run id (runs still in progress
    have none). A run id found in two folders must be the same run: the second copy is skipped when
    its record is identical, and refused otherwise (two different runs under one name)."""
    runs: dict[str, Run] = {}
    for folder in (results_dir, *more_dirs):
        for path in sorted((Path(folder) / "runs").glob("*/record.json")):
            run = load_run(path.parent)
            if run.run_id in runs:
                if runs[run.run_id].record != run.record:
                    raise ReportError(
                        f"{path}: run id {run.run_id} also names a different run in "
                        f"{runs[run.run_id].path}; rename one (--run-id) before reporting both"
                    )
                continue
            runs[run.run_id] = run
    return [runs[k] for k in sorted(runs)]


def load_run(run_dir: Path) -> Run:
    record_path = run_dir / "record.json"
    record = read_json(record_path)
    check_record(record, record_path)
    return Run(
        run_id=record["run_id"],
        path=run_dir,
        record=record,
        tasks=tuple(_task_scores(run_dir, t) for t in record["tasks"]),
    )


def check_record(record, record_path: Path) -> None:
    if not isinstance(record, dict):
        raise ReportError(f"{record_path}: expected a JSON object, found {type(record).__name__}")
    missing = [k for k in REQUIRED_RECORD_FIELDS if k not in record]
    missing += [
        f"{outer}.{inner}"
        for outer, inner in REQUIRED_NESTED_FIELDS
        if isinstance(record.get(outer), dict) and inner not in record[outer]
    ]
    missing += [k for k in ("timing", "memory", "hardware") if k in record and not isinstance(record[k], dict)]
    if missing:
        raise ReportError(f"{record_path}: missing field(s) {', '.join(missing)}")
    if not isinstance(record["tasks"], list) or not record["tasks"]:
        raise ReportError(f"{record_path}: field tasks must be a non-empty list")
    for key, kinds in RECORD_TYPES.items():
        if key in record and not isinstance(record[key], kinds):
            raise ReportError(f"{record_path}: field {key} is {type(record[key]).__name__}, expected {_kinds(kinds)}")
    for i, task in enumerate(record["tasks"]):
        missing = [k for k in REQUIRED_TASK_FIELDS if not isinstance(task, dict) or k not in task]
        name = task.get("task", f"#{i}") if isinstance(task, dict) else f"#{i}"
        if missing:
            raise ReportError(f"{record_path}: task {name} missing field(s) {', '.join(missing)}")
        for key, kinds in TASK_TYPES.items():
            if not isinstance(task[key], kinds) or isinstance(task[key], bool) and bool not in kinds:
                raise ReportError(
                    f"{record_path}: task {name} field {key} is {type(task[key]).__name__}, expected {_kinds(kinds)}"
                )


def _task_scores(run_dir: Path, task: dict) -> TaskScores:
    ids, scores, letter_scores, gold = _sample_scores(run_dir, task["task"], task["metric"])
    # A stale or partial samples file would silently change every number derived from it.
    path = io.samples_path(run_dir, task["task"])
    if len(ids) != task["n"]:
        raise ReportError(f"{path}: {len(ids)} questions, but record.json says n={task['n']}")
    if ids and task["accuracy"] is not None and abs(sum(scores) / len(ids) - task["accuracy"]) > 1e-9:
        raise ReportError(
            f"{path}: accuracy {sum(scores) / len(ids):.4f} from the samples, "
            f"but record.json says {task['accuracy']:.4f}"
        )
    debiased = circular = rotation_logp = None
    permutation = task.get("permutation")
    if permutation:
        columns = [np.asarray(scores, dtype=float)]
        logp = [letter_scores]
        for name in permutation["rotated_tasks"]:
            rot_ids, rot_scores, rot_letters, _ = _sample_scores(run_dir, name, task["metric"])
            by_id = dict(zip(rot_ids, rot_scores, strict=True))
            if set(by_id) != set(ids):
                raise ReportError(f"{io.samples_path(run_dir, name)}: not the questions of {task['task']}")
            columns.append(np.asarray([by_id[i] for i in ids], dtype=float))
            if rot_letters is not None:
                index = {doc_id: k for k, doc_id in enumerate(rot_ids)}
                logp.append(rot_letters[[index[i] for i in ids]])
        matrix = np.stack(columns, axis=1)
        if all(x is not None for x in logp) and len({x.shape for x in logp}) == 1:
            rotation_logp = np.stack(logp, axis=1)
        debiased, circular = matrix.mean(axis=1), matrix.min(axis=1)
        if abs(float(debiased.mean()) - permutation["debiased_accuracy"]) > 1e-9:
            raise ReportError(f"{run_dir / 'record.json'}: {task['task']} debiased accuracy disagrees with its samples")
    return TaskScores(
        task=task["task"],
        dataset=task["dataset"],
        exam=task["exam"],
        metric=task["metric"],
        record=task,
        ids=tuple(ids),
        scores=np.asarray(scores, dtype=float),
        debiased=debiased,
        circular=circular,
        rotation_logp=rotation_logp,
        gold=gold,
    )


def read_lines(path: Path):
    """(line number, line) of a gzipped samples file; a truncated or corrupt file is named, not crashed on."""
    import gzip
    import zlib

    try:
        yield from io.read_samples(path)
    except (EOFError, OSError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: unreadable ({type(e).__name__}: {e}); the file is truncated or corrupt") from None


def _letter_scores(sample: dict) -> list[float] | None:
    """A scored sample's log-likelihood per answer letter (lm-eval's filtered_resps); None for a generation."""
    filtered = sample.get("filtered_resps")
    if not filtered or not all(isinstance(f, (list, tuple)) and isinstance(f[0], (int, float)) for f in filtered):
        return None
    return [float(f[0]) for f in filtered]


def _sample_scores(run_dir: Path, name: str, metric: str):
    """(question ids, 0/1 scores, [question, letter] log-likelihoods or None, gold index per question or None), in
    samples order."""
    path = io.samples_path(run_dir, name)
    if not path.exists():
        raise ReportError(f"{path}: samples file missing for task {name} (listed in {run_dir / 'record.json'})")
    ids, scores, letters, targets = [], [], [], []
    for line_no, line in read_lines(path):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
            doc_id = str(sample["doc"]["id"])
            score = float(sample[metric])
            letters.append(_letter_scores(sample))
            targets.append(sample.get("target"))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ReportError(
                f"{path}:{line_no}: unusable sample, need doc.id and {metric} ({type(e).__name__}: {e})"
            ) from None
        if score not in (0.0, 1.0):
            raise ReportError(f"{path}:{line_no}: {metric} is {score}, expected 0 or 1")
        ids.append(doc_id)
        scores.append(score)
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ReportError(f"{path}: question {dup} appears more than once")
    scored = letters and all(x is not None for x in letters) and len({len(x) for x in letters}) == 1
    gold = np.asarray(targets, dtype=int) if all(type(t) is int for t in targets) else None
    return ids, scores, np.asarray(letters, dtype=np.float64) if scored else None, gold
