"""Run folders written as medbench.eval.runner writes them, for tests of everything that reads runs."""

from __future__ import annotations

import json

from medbench.records import io

# The fields of a record with full provenance (records/verify.py), made up but well formed.
PROVENANCE = {
    "medbench_version": "0.0.0",
    "source_fingerprint": {"sha256": "0" * 64, "files": 1},
    "git_sha_status": "read from the tree's git",
    "git_dirty": [],
    "data_files": {"kormedmcqa/doctor/test.jsonl": "0" * 64},
    "weights_fingerprint": {"model": {"sha256": "0" * 64}},
}


def write_run(
    results,
    run_id,
    scores,
    *,
    model="gemma3-270m",
    variant="base",
    prompt="zeroshot",
    mode="mc",
    params_b=0.27,
    checkpoint=None,
    limit=None,
    provenance=True,
    extra=None,
    drop=(),
):
    """A run folder as medbench.eval.runner writes it. scores: {exam: [(doc id, 0/1), ...]}; exam 'usmle' is MedQA.
    provenance: the fields a record with full provenance has (records/verify.py), made up but well formed."""
    run_dir = results / "runs" / run_id
    run_dir.mkdir(parents=True)
    metric = "acc" if mode == "mc" else "exact_match"
    suffix = {"mc": "", "gen": "_gen"}[mode] if prompt == "zeroshot" else f"_{prompt}"
    tasks = []
    for exam, answers in scores.items():
        dataset = "medqa" if exam == "usmle" else "kormedmcqa"
        name = f"medbench_{dataset}_{exam}{suffix}"
        samples = [
            {
                "doc_id": i,
                "doc": {"id": doc_id, "dataset": dataset, "exam": exam, "answer": "A", "question": "q", "options": []},
                "target": 0,
                "arguments": [["prompt", {}]],
                "resps": [["A"]],
                "filtered_resps": ["A" if score else "B"],
                "filter": "none",
                "metrics": [metric],
                metric: float(score),
            }
            for i, (doc_id, score) in enumerate(answers)
        ]
        io.write_samples(io.samples_path(run_dir, name), samples)
        n, correct = len(answers), sum(s for _, s in answers)
        tasks.append(
            {
                "task": name,
                "dataset": dataset,
                "exam": exam,
                "metric": metric,
                "n": n,
                "correct": correct,
                "accuracy": correct / n,
                "stderr": 0.05,
                "ci95_low": 0.0,
                "ci95_high": 1.0,
                "ci_method": "wilson",
                "invalid": 0,
                "invalid_rate": 0.0,
                "truncated_prompts": 0,
            }
        )
    record = {
        "run_id": run_id,
        "created": "2025-01-01T00:00:00",
        "model": model,
        "model_source": "test",
        "params_b": params_b,
        "weights": "real",
        "variant": variant,
        "prompt": prompt,
        "mode": mode,
        "checkpoint": checkpoint,
        "limit": limit,
        "sample": None,
        "settings": {},
        "generation_kwargs": None,
        "adapter": None,
        "quantization": None,
        "device": "cpu",
        "dtype": "float32",
        "attn_implementation": "sdpa",
        "sanity_perplexity": None,
        "tasks": tasks,
        "kormedmcqa_average": None,
        "timing": {
            "load_seconds": 1.0,
            "eval_seconds": 2.0,
            "questions_per_second": 3.5,
            "responses_per_second": 9.0,
            "generated_tokens": 0,
            "generated_tokens_per_second": None,
        },
        "memory": {"peak_gib": 1.25},
        "responses": {"computed": 0, "from_cache": 0},
        "versions": {},
        "git_sha": "abc",
        "hardware": {"gpu": None},
    }
    if provenance:
        record.update(PROVENANCE)
        if variant in ("full", "lora", "qlora"):
            record["training_record"] = {"sha256": "0" * 64, "published_as": f"{model}-{variant}.json"}
    record.update(extra or {})
    for key in drop:
        del record[key]
    (run_dir / "record.json").write_text(json.dumps(record, indent=2))
    return run_dir
