"""The question-by-question comparison of the two tasks' logged samples (accuracy of each, agreement of the
extracted answers, identical prompts), and the prompt differences merged over exams. Used by
medbench/eval/consistency.py.
"""

from __future__ import annotations

import json

from medbench import stats
from medbench.eval.consistency import ConsistencyError, _same_question


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


def _merge_differences(per_exam: dict[str, list[dict]]) -> list[dict]:
    merged: dict[str, dict] = {}
    for exam, diffs in per_exam.items():
        for d in diffs:
            key = json.dumps(d, sort_keys=True, ensure_ascii=False, default=str)
            merged.setdefault(key, {**d, "exams": []})["exams"].append(exam)
    return list(merged.values())
