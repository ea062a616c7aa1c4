"""What differs between our 5-shot KorMedMCQA task and lm-eval's built-in one: the first rendered
request (prompt text, generation kwargs, few-shot count, target, metric options, answer filter) and
the texts the two answer filters read differently. Used by medbench/eval/consistency.py.
"""

from __future__ import annotations

import difflib


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
