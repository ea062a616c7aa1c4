"""Consistency check against upstream: our 5-shot KorMedMCQA task next to lm-eval's built-in one.

lm-eval ships `kormedmcqa_{doctor,nurse,pharm,dentist}` (lm_eval/tasks/kormedmcqa/): the hub's schema
(question, A–E, answer as 1–5), shots from the `fewshot` split, greedy generation, and the paper's
Appendix B answer filter. Our closest task is `medbench_kormedmcqa_{exam}_fewshot`. This module:

1. writes our vendored rows (medbench.data.loader.load_rows, test and fewshot splits) in the hub's schema as
   JSONL in a temporary folder, and loads the built-in task's own YAML (as lm-eval's TaskManager finds
   it, include_defaults=True) with only the data source changed to those files (`dataset_path: json`),
   so both tasks read the same rows in the same order (checked row by row before anything runs);
2. runs both tasks in one lm-eval call on one model, loaded as medbench/eval/runner.py loads it, on the
   same questions (--limit / --sample, the runner's seeded sample) with the same generation
   settings (EvalSettings.generation_kwargs(), e.g. the study's repetition_penalty);
3. compares them question by question (accuracy of each, agreement of the extracted answers,
   identical prompts) and lists every difference between the two tasks' first rendered request
   (the prompt text, the task-defined generation kwargs, the few-shot count, the target, the
   answer filter, the metric), plus where the two answer filters read the same text differently.

The result goes to results/consistency/<model>-<subset>.json; everything in it comes from the run.
Command line: `medbench consistency` (medbench/cli/consistency.py).
"""

from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path

from medbench.data.hub import write_hub_jsonl
from medbench.data.loader import KORMEDMCQA_EXAMS, LETTERS, load_rows
from medbench.errors import MedbenchError
from medbench.eval.consistency_diff import (
    filter_differences,
    kwargs_differences,
    task_differences,
)
from medbench.eval.runner import seeded_sample
from medbench.paths import results_dir as default_results_dir
from medbench.paths import tasks_dir
from medbench.records import io, provenance
from medbench.settings import EvalSettings

SPLITS = ("test", "fewshot")
# Texts both answer filters read; the report lists those the two read differently (computed, never assumed).
FILTER_PROBES = (
    "C",
    " C",
    "c",
    "정답: c",
    "정답：C",
    "정답： (C)",
    "정답은 C 입니다",
    "정답: 3",
    "정답은 3번",
    "③",
    "3",
    "Answer: B",
    "The answer is c.",
    "a patient with fever",
    "C. 남아 소재지",
    "(E)",
)


class ConsistencyError(MedbenchError):
    pass


def ours_task(exam: str) -> str:
    return f"medbench_kormedmcqa_{exam}_fewshot"


def upstream_task(exam: str) -> str:
    return f"kormedmcqa_{exam}"


def write_hub_files(exam: str, out_dir: Path) -> dict[str, str]:
    """{split: path} of one exam's test and fewshot rows in the hub's schema."""
    return {
        split: str(write_hub_jsonl(load_rows("kormedmcqa", exam, split), out_dir / f"{exam}_{split}.jsonl"))
        for split in SPLITS
    }


# ---------------------------------------------------------------- tasks


@functools.cache
def task_manager():
    """lm-eval's built-in tasks plus ours (indexing the built-ins takes ~20 s on 2 busy cores: once)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(tasks_dir()), include_defaults=True)


def builtin_config(exam: str) -> dict:
    """The built-in task's own YAML, includes and !function filters resolved, as lm-eval reads it."""
    from lm_eval.tasks._yaml_loader import load_yaml  # the loader lm-eval's TaskFactory uses

    entry = task_manager().task_index.get(upstream_task(exam))
    if entry is None or entry.yaml_path is None:
        raise ConsistencyError(f"lm-eval has no built-in task {upstream_task(exam)!r}")
    return load_yaml(entry.yaml_path, resolve_func=True)


def upstream_config(exam: str, data_files: dict[str, str], cache_dir: Path) -> dict:
    """The built-in config with only the data source changed, and num_fewshot 5 when it names none."""
    cfg = builtin_config(exam)
    cfg.update(
        dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": data_files, "cache_dir": str(cache_dir)}
    )
    if cfg.get("num_fewshot") is None:
        # The built-in names a fewshot split and sampler but no count: lm-eval would run it 0-shot unless
        # told --num_fewshot 5. The paper's protocol (and ours) is 5-shot; listed among the differences.
        cfg["num_fewshot"] = 5
    return cfg


def verify_same_rows(ours, upstream) -> int:
    """Both tasks must read the same questions in the same order: doc i of one is doc i of the other."""
    a, b = list(ours.eval_docs), list(upstream.eval_docs)
    if len(a) != len(b):
        raise ConsistencyError(f"{ours.config.task} has {len(a)} test rows, {upstream.config.task} {len(b)}")
    for i, (x, y) in enumerate(zip(a, b)):
        if not _same_question(x, y):
            raise ConsistencyError(f"row {i} differs between {ours.config.task} and {upstream.config.task}")
    return len(a)


def _same_question(ours_doc: dict, hub_doc: dict) -> bool:
    return (
        ours_doc["question"] == hub_doc["question"]
        and list(ours_doc["options"]) == [hub_doc[k] for k in LETTERS]
        and ours_doc["answer"] == LETTERS[int(hub_doc["answer"]) - 1]
    )


def subset_name(exams: list[str], limit: int | None, sample: int | None) -> str:
    part = "kormedmcqa" if list(exams) == list(KORMEDMCQA_EXAMS) else "+".join(exams)
    return f"{part}-" + (f"limit{limit}" if limit else f"sample{sample}" if sample else "all")


def check(
    model: str,
    exams: list[str] | None = None,
    limit: int | None = None,
    sample: int | None = None,
    settings: EvalSettings | None = None,
    results_dir: Path | None = None,
) -> dict:
    from lm_eval import simple_evaluate

    # Imported here, not at the top: consistency_compare imports this module's error and row check.
    from medbench.eval.consistency_compare import _merge_differences, compare_samples
    from medbench.eval.fastlm import MedbenchLM  # also registers medbench-hf with lm-eval
    from medbench.models.loading import load
    from medbench.models.registry import resolve

    settings = settings or EvalSettings()
    exams = list(exams or KORMEDMCQA_EXAMS)
    unknown = [e for e in exams if e not in KORMEDMCQA_EXAMS]
    if unknown:
        raise ConsistencyError(f"unknown exam(s) {', '.join(unknown)}; choose from {', '.join(KORMEDMCQA_EXAMS)}")
    if limit and sample:
        raise ConsistencyError("--limit and --sample exclude each other")
    results_dir = results_dir or default_results_dir()
    spec = resolve(model)  # unknown models fail here, before anything is indexed or loaded
    tm = task_manager()
    with tempfile.TemporaryDirectory(prefix="medbench-consistency-") as tmp:
        specs, builtin_counts = [], {}
        for exam in exams:
            builtin_counts[exam] = builtin_config(exam).get("num_fewshot")
            specs += [ours_task(exam), upstream_config(exam, write_hub_files(exam, Path(tmp)), Path(tmp) / "cache")]
        tasks = tm.load(specs)["tasks"]
        samples, differences, rows = None, {}, {}
        for exam in exams:
            ours, upstream = tasks[ours_task(exam)], tasks[upstream_task(exam)]
            rows[exam] = verify_same_rows(ours, upstream)
            differences[exam] = task_differences(ours, upstream, builtin_counts[exam], list(FILTER_PROBES))
        if sample:
            samples = {}
            for exam in exams:
                idx = seeded_sample(rows[exam], sample, settings.seed)
                samples[ours_task(exam)] = samples[upstream_task(exam)] = idx

        loaded = load(spec, "base", settings)
        lm = MedbenchLM.from_loaded(loaded, settings)
        start = time.perf_counter()
        out = simple_evaluate(
            model=lm,
            tasks=list(tasks.values()),
            task_manager=tm,
            limit=limit,
            samples=samples,
            gen_kwargs=settings.generation_kwargs(),
            log_samples=True,
            random_seed=settings.seed,
            numpy_random_seed=settings.seed,
            torch_random_seed=settings.seed,
            fewshot_random_seed=settings.seed,
        )
        eval_seconds = time.perf_counter() - start

    per_exam = {}
    for exam in exams:
        ours_s, up_s = out["samples"][ours_task(exam)], out["samples"][upstream_task(exam)]
        cmp = compare_samples(ours_s, up_s)
        # This run's generations, read by both filters too: disagreements the filters alone cause.
        generations = [q[side]["generation"] for q in cmp["questions"] for side in ("ours", "upstream")]
        run_filter = filter_differences(
            tasks[ours_task(exam)], tasks[upstream_task(exam)], ours_s[0]["doc"], up_s[0]["doc"], generations
        )
        eff = cmp["effective_generation_kwargs"] or {"ours": {}, "upstream": {}}
        per_exam[exam] = {
            "ours_task": ours_task(exam),
            "upstream_task": upstream_task(exam),
            "test_rows": rows[exam],
            "rows_verified": True,
            **{k: v for k, v in cmp.items() if k != "questions"},
            "context_identical": differences[exam]["context_identical"],
            "prompt_differences": differences[exam]["differences"],
            "effective_differences": kwargs_differences(eff["ours"], eff["upstream"], "generation_kwargs(run)"),
            "generations_read_differently": [d for d in run_filter if d["aspect"] == "filter.reads"],
            "first_request": differences[exam]["first_request"],
            "questions": cmp["questions"],
        }
    n = sum(e["n"] for e in per_exam.values())
    ours_correct = sum(e["ours"]["correct"] for e in per_exam.values())
    up_correct = sum(e["upstream"]["correct"] for e in per_exam.values())
    agree = sum(e["agree"] for e in per_exam.values())
    subset = subset_name(exams, limit, sample)
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": model,
        "model_source": loaded.source,
        "subset": subset,
        "exams": exams,
        "limit": limit,
        "sample": sample,
        "settings": settings.as_dict(),
        "generation_kwargs": settings.generation_kwargs(),
        "device": loaded.device,
        "dtype": loaded.dtype,
        "eval_seconds": round(eval_seconds, 2),
        "overall": {
            "n": n,
            "ours_accuracy": ours_correct / n if n else None,
            "upstream_accuracy": up_correct / n if n else None,
            "ours_correct": ours_correct,
            "upstream_correct": up_correct,
            "agree": agree,
            "agree_rate": agree / n if n else None,
            "identical_prompts": sum(e["identical_prompts"] for e in per_exam.values()),
            "prompt_text_identical": all(e["context_identical"] for e in per_exam.values()),
        },
        "prompt_differences": _merge_differences({e: v["prompt_differences"] for e, v in per_exam.items()}),
        "per_exam": per_exam,
        "versions": provenance.package_versions(),
        "git_sha": provenance.git_sha(),
    }
    path = results_dir / "consistency" / f"{spec.alias}-{subset}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(path, result)
    result["path"] = str(path)
    return result
