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

import difflib
import functools
import json
import tempfile
import time
from pathlib import Path

from medbench import stats
from medbench.data.hub import write_hub_jsonl
from medbench.data.loader import KORMEDMCQA_EXAMS, LETTERS, load_rows
from medbench.errors import MedbenchError
from medbench.eval.request import seeded_sample
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
    """lm-eval's built-in tasks plus ours (indexing the built-ins is slow: done once)."""
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


def check_consistency(
    model: str,
    exams: list[str] | None = None,
    limit: int | None = None,
    sample: int | None = None,
    settings: EvalSettings | None = None,
    results_dir: Path | None = None,
) -> dict:
    from lm_eval import simple_evaluate

    from medbench.eval.lm import MedbenchLM  # torch and lm-eval's HF model: loaded only when a check runs
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
        "prompt_differences": merge_differences({e: v["prompt_differences"] for e, v in per_exam.items()}),
        "per_exam": per_exam,
        "versions": provenance.package_versions(),
        **provenance.code_state(),
    }
    path = results_dir / "consistency" / f"{spec.alias}-{subset}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(path, result)
    result["path"] = str(path)
    return result


# --- what differs between the two tasks' first request -------------------------------------------------


def render_first_request(task) -> tuple[str, dict, dict]:
    """(context, generation kwargs, doc) of the task's first request, as lm-eval builds it."""
    task.build_all_requests(limit=1, rank=0, world_size=1)
    instance = task.instances[0]
    return instance.args[0], dict(instance.args[1]), instance.doc


def context_differences(ours: str, upstream: str) -> list[dict]:
    """Every non-equal stretch of the two prompt texts (character offsets into ours)."""
    matcher = difflib.SequenceMatcher(None, ours, upstream, autojunk=False)
    return [
        {
            "aspect": "context",
            "op": tag,
            "offset": i1,
            "before": ours[max(0, i1 - 40) : i1],
            "ours": ours[i1:i2],
            "upstream": upstream[j1:j2],
        }
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


def kwargs_differences(ours: dict, upstream: dict, aspect: str) -> list[dict]:
    return [
        {"aspect": f"{aspect}.{key}", "ours": ours.get(key), "upstream": upstream.get(key)}
        for key in sorted(set(ours) | set(upstream))
        if ours.get(key) != upstream.get(key)
    ]


def _first_filter(task):
    """The class of the task's first answer filter (from its filter_list) and that filter's name."""
    entry = task.config.filter_list[0]
    function = entry["filter"][0]["function"]
    return function, entry["name"]


def _filter_text(task, text: str, doc: dict) -> str:
    cls, _ = _first_filter(task)
    return cls().apply([[text]], [doc])[0][0]


def filter_differences(ours, upstream, ours_doc: dict, up_doc: dict, texts: list[str]) -> list[dict]:
    """The two filters' classes, and every text (probes and this run's generations) they read differently."""
    ours_cls, ours_name = _first_filter(ours)
    up_cls, up_name = _first_filter(upstream)
    out = []
    if ours_cls is not up_cls:
        out.append(
            {
                "aspect": "filter",
                "ours": f"{ours_cls.__module__}.{ours_cls.__qualname__} ({ours_name})",
                "upstream": f"{up_cls.__module__}.{up_cls.__qualname__} ({up_name})",
            }
        )
    seen = set()
    for text in texts:
        if text in seen:
            continue
        seen.add(text)
        a, b = _filter_text(ours, text, ours_doc), _filter_text(upstream, text, up_doc)
        if a != b:
            out.append({"aspect": "filter.reads", "text": text, "ours": a, "upstream": b})
    return out


def _metric_options(task) -> dict:
    """{"exact_match.ignore_case": True, …} of the task's metric_list."""
    out = {}
    for m in task.config.metric_list:
        name = m["metric"] if isinstance(m["metric"], str) else getattr(m["metric"], "__name__", str(m["metric"]))
        out.update({f"{name}.{k}": v for k, v in m.items() if k != "metric"})
    return out


def task_differences(ours, upstream, builtin_num_fewshot, probes: list[str]) -> dict:
    """Render both tasks' first request and list every difference (the tasks' own settings, before
    the run's gen_kwargs are applied)."""
    ours_ctx, ours_gen, ours_doc = render_first_request(ours)
    up_ctx, up_gen, up_doc = render_first_request(upstream)
    diffs = context_differences(ours_ctx, up_ctx)
    diffs += kwargs_differences(ours_gen, up_gen, "generation_kwargs")
    if ours.config.num_fewshot != builtin_num_fewshot:
        diffs.append(
            {
                "aspect": "num_fewshot",
                "ours": ours.config.num_fewshot,
                "upstream": builtin_num_fewshot,
                "note": f"the built-in config sets no count; this check runs it with "
                f"num_fewshot={upstream.config.num_fewshot}"
                if builtin_num_fewshot is None
                else "",
            }
        )
    ours_target, up_target = str(ours.doc_to_target(ours_doc)), str(upstream.doc_to_target(up_doc))
    if ours_target != up_target:
        diffs.append({"aspect": "target", "ours": ours_target, "upstream": up_target})
    diffs += kwargs_differences(_metric_options(ours), _metric_options(upstream), "metric")
    diffs += filter_differences(ours, upstream, ours_doc, up_doc, probes)
    return {
        "first_request": {
            "ours": {"context": ours_ctx, "generation_kwargs": ours_gen},
            "upstream": {"context": up_ctx, "generation_kwargs": up_gen},
        },
        "context_identical": ours_ctx == up_ctx,
        "differences": diffs,
    }


# --- question by question ------------------------------------------------------------------------------


def _side(samples: list[dict]) -> dict:
    n = len(samples)
    correct = sum(int(s["exact_match"]) for s in samples)
    low, high = stats.wilson_interval(correct, n)
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "ci95_low": low,
        "ci95_high": high,
        "invalid": sum(1 for s in samples if s["filtered_resps"][0] in ("", None)),
    }


def compare_samples(ours_samples: list[dict], up_samples: list[dict]) -> dict:
    """Per question, matched on doc_id and checked on the question, options and answer."""
    by_id = {s["doc_id"]: s for s in up_samples}
    if sorted(by_id) != sorted(s["doc_id"] for s in ours_samples):
        raise ConsistencyError("the two tasks answered different questions")
    questions, agree, same_raw, same_prompt, causes = [], 0, 0, 0, {"filter": 0, "generation": 0}
    for s in sorted(ours_samples, key=lambda s: s["doc_id"]):
        u = by_id[s["doc_id"]]
        if not _same_question(s["doc"], u["doc"]):
            raise ConsistencyError(f"doc {s['doc_id']}: the two tasks read different questions")
        ours_raw, up_raw = s["resps"][0][0], u["resps"][0][0]
        ours_ans, up_ans = s["filtered_resps"][0], u["filtered_resps"][0]
        agree += ours_ans == up_ans
        same_raw += ours_raw == up_raw
        same_prompt += s["arguments"][0][0] == u["arguments"][0][0]
        if ours_ans != up_ans:
            causes["filter" if ours_raw == up_raw else "generation"] += 1
        questions.append(
            {
                "doc_id": s["doc_id"],
                "id": s["doc"]["id"],
                "target": s["doc"]["answer"],
                "ours": {"generation": ours_raw, "answer": ours_ans, "correct": bool(s["exact_match"])},
                "upstream": {"generation": up_raw, "answer": up_ans, "correct": bool(u["exact_match"])},
            }
        )
    n = len(questions)
    return {
        "n": n,
        "ours": _side(ours_samples),
        "upstream": _side(up_samples),
        "agree": agree,
        "agree_rate": agree / n if n else None,
        "same_raw_generation": same_raw,
        "identical_prompts": same_prompt,
        "disagreements_by_cause": causes,
        "effective_generation_kwargs": {
            "ours": ours_samples[0]["arguments"][0][1],
            "upstream": up_samples[0]["arguments"][0][1],
        }
        if n
        else None,
        "questions": questions,
    }


def merge_differences(per_exam: dict[str, list[dict]]) -> list[dict]:
    merged: dict[str, dict] = {}
    for exam, diffs in per_exam.items():
        for d in diffs:
            key = json.dumps(d, sort_keys=True, ensure_ascii=False, default=str)
            merged.setdefault(key, {**d, "exams": []})["exams"].append(exam)
    return list(merged.values())
