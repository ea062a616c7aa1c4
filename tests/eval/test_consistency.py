"""The upstream consistency check: our 5-shot KorMedMCQA task vs lm-eval's built-in kormedmcqa, offline."""

import json

import pytest

from medbench.cli import main
from medbench.data import hub
from medbench.data.loader import load_rows
from medbench.eval import consistency


def test_hub_schema_round_trips(tmp_path, monkeypatch):
    rows = load_rows("kormedmcqa", "doctor", "test")[:3] + load_rows("kormedmcqa", "doctor", "fewshot")[:1]
    first = hub.to_hub_row(rows[0])
    assert list(first) == list(hub.KORMEDMCQA_HUB_COLUMNS)
    assert rows[0]["answer"] == "C" and first["answer"] == 3
    assert first["question"].startswith("2개월 남아가 BCG예방접종") and first["C"] == rows[0]["options"][2]
    # Read back through the project's own hub-copy loader: the same canonical rows.
    hub.write_hub_jsonl(rows[:3], tmp_path / "hub" / "kormedmcqa" / "doctor_test.jsonl")
    monkeypatch.setenv("MEDBENCH_DATA", str(tmp_path))
    assert load_rows("kormedmcqa", "doctor", "test", prefer_hub=True) == rows[:3]


@pytest.mark.slow
def test_builtin_task_renders_our_prompt_from_the_local_rows(tmp_path):
    cfg = consistency.upstream_config("doctor", consistency.write_hub_files("doctor", tmp_path), tmp_path / "cache")
    assert cfg["dataset_path"] == "json" and cfg["task"] == "kormedmcqa_doctor"
    tasks = consistency.task_manager().load([cfg, consistency.ours_task("doctor")])["tasks"]
    upstream, ours = tasks["kormedmcqa_doctor"], tasks["medbench_kormedmcqa_doctor_fewshot"]
    assert consistency.verify_same_rows(ours, upstream) == 435
    up_ctx, up_gen, up_doc = consistency.render_first_request(upstream)
    ours_ctx, _, _ = consistency.render_first_request(ours)
    assert up_doc["question"].startswith("2개월 남아가 BCG예방접종") and up_doc["answer"] == 3
    assert up_ctx.endswith("정답：") and ours_ctx.endswith("정답：")
    assert up_ctx.split("\n\n")[-1].startswith("2개월 남아가 BCG예방접종")
    assert up_ctx.count("\n정답：") == 6  # five shots and the question
    assert upstream.doc_to_target(up_doc) == "C"
    assert "." in up_gen["until"]  # the built-in's own stop sequences; ours stop only at a blank line


def test_both_tasks_run_offline_and_are_compared(tiny_gemma_dir, results_dir):
    assert (
        main(
            [
                "consistency",
                str(tiny_gemma_dir),
                "--exams",
                "doctor",
                "--limit",
                "2",
                "--batch-size",
                "2",
                "--set",
                "max_gen_toks=4",
            ]
        )
        == 0
    )
    (path,) = (results_dir / "consistency").glob("*.json")
    assert path.name == f"{tiny_gemma_dir.name}-doctor-limit2.json"
    result = json.loads(path.read_text())
    overall = result["overall"]
    assert overall["n"] == 2 and 0 <= overall["ours_accuracy"] <= 1 and 0 <= overall["upstream_accuracy"] <= 1
    assert 0 <= overall["agree"] <= 2
    doctor = result["per_exam"]["doctor"]
    assert doctor["rows_verified"] and doctor["test_rows"] == 435 and len(doctor["questions"]) == 2
    assert doctor["ours"]["correct"] == sum(q["ours"]["correct"] for q in doctor["questions"])
    assert doctor["agree"] == sum(q["ours"]["answer"] == q["upstream"]["answer"] for q in doctor["questions"])
    # The run's settings reach both tasks; the stop sequences stay each task's own.
    eff = doctor["effective_generation_kwargs"]
    for side in ("ours", "upstream"):
        assert eff[side]["max_gen_toks"] == 4 and eff[side]["repetition_penalty"] == 1.5
    assert eff["ours"]["until"] != eff["upstream"]["until"]
    diffs = result["prompt_differences"]
    aspects = {d["aspect"] for d in diffs}
    assert diffs and {"generation_kwargs.until", "generation_kwargs.max_gen_toks"} <= aspects
    budget = next(d for d in diffs if d["aspect"] == "generation_kwargs.max_gen_toks")
    assert (budget["ours"], budget["upstream"]) == (32, 1024)  # each task's own budget, before --set
    assert "." in next(d for d in diffs if d["aspect"] == "generation_kwargs.until")["upstream"]
    assert "filter" in aspects and any(d["aspect"] == "filter.reads" for d in diffs)
