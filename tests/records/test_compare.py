"""Several GPUs on CPU: data-parallel evaluation (gloo processes), the sharding decision, published shapes,
and the plumbing of dev/gpu_scale.py that runs without a GPU."""

from pathlib import Path

import pytest

from medbench.records.compare import compare_answers

GIB = 2**30


# --- launching ----------------------------------------------------------------------------------------


def test_compare_answers_says_how_near_a_tie_each_flip_was(tmp_path, monkeypatch):
    from medbench.records import compare

    rows = {
        "a": [
            {"id": "q1", "predicted": "A", "correct": True, "scores": {"A": -1.00, "B": -1.02, "C": -3.0}},
            {"id": "q2", "predicted": "A", "correct": False, "scores": {"A": -0.5, "B": -2.0}},
            {"id": "q3", "predicted": "A", "correct": True, "scores": {"A": -1.0, "B": -1.5}},
        ],
        "b": [
            {"id": "q1", "predicted": "B", "correct": False, "scores": {"A": -1.015, "B": -1.01, "C": -3.0}},
            {"id": "q2", "predicted": "A", "correct": False, "scores": {"A": -0.5, "B": -2.0}},
            {"id": "q3", "predicted": "B", "correct": False, "scores": {"A": -1.6, "B": -1.5}},
        ],
    }
    for name in rows:
        (tmp_path / name).mkdir()
        (tmp_path / name / "samples_t.jsonl.gz").write_bytes(b"")
    monkeypatch.setattr(compare, "question_rows", lambda run_dir, task: rows[Path(run_dir).name])
    same = compare_answers(tmp_path / "a", tmp_path / "b")
    assert same["questions"] == 3 and same["same_answer"] == 1 and len(same["differing"]) == 2
    assert same["differing_top2_gaps"] == [0.02, 0.5] and same["differing_top2_gap_max"] == 0.5
    assert same["max_abs_score_difference"] == pytest.approx(0.6)
