"""Permutation evaluation: rotated options, the records it writes, and the statistics that use it."""

import numpy as np
import pytest

from medbench import stats
from medbench.data.rotation import rotate_row
from medbench.eval.request import RunRequest
from medbench.eval.runner import run
from medbench.records.reader import TaskScores, load_runs
from medbench.report.compare import compare_tasks
from medbench.settings import EvalSettings, SettingsError


def test_rotation_moves_the_gold_letter_with_its_option():
    row = {"id": "q1", "options": ["w", "x", "y", "z"], "answer": "C", "answer_index": 2}
    for k in range(4):
        rotated = rotate_row(row, k)
        assert rotated["options"][rotated["answer_index"]] == "y"  # the same option is right
        assert rotated["answer"] == "ABCD"[rotated["answer_index"]] and rotated["rotation"] == k
        assert rotated["id"] == "q1" and sorted(rotated["options"]) == row["options"]
    assert [rotate_row(row, k)["answer"] for k in range(4)] == ["C", "B", "A", "D"]


def test_unknown_scheme_is_refused_before_anything_runs():
    with pytest.raises(SettingsError, match="permute expects one of none, cyclic"):
        EvalSettings(permute="random")


def test_cyclic_run_records_debiased_and_circular_accuracy(tiny_gemma_dir, results_dir):
    record = run(
        RunRequest(
            model=str(tiny_gemma_dir), tasks=["medqa"], limit=3, run_id="perm", settings=EvalSettings(permute="cyclic")
        ),
        results_dir,
    )
    (task,) = record["tasks"]
    perm = task["permutation"]
    assert perm["rotations"] == 4 and len(perm["per_rotation_accuracy"]) == 4
    assert perm["per_rotation_accuracy"][0] == task["accuracy"]  # rotation 0 is the plain task
    assert perm["debiased_accuracy"] == pytest.approx(np.mean(perm["per_rotation_accuracy"]))
    assert perm["circular_accuracy"] <= min(perm["per_rotation_accuracy"])
    assert record["canary"]["passed"] and record["canary"]["checked"] > 0
    # The report reads the rotated samples back and finds the same numbers, question by question.
    (loaded,) = load_runs(results_dir)
    scores = loaded.tasks[0]
    assert scores.debiased.mean() == pytest.approx(perm["debiased_accuracy"])
    assert scores.circular.mean() == pytest.approx(perm["circular_accuracy"])
    # Every rotation's letter scores come back too, in rotation order: rotation k's argmax is its sample's answer.
    assert scores.rotation_logp.shape == (3, 4, 4) and scores.gold is not None
    assert ((scores.rotation_logp[:, 0].argmax(1) == scores.gold) == (scores.scores == 1)).all()


def _scores(values, debiased=None):
    ids = tuple(f"q{i}" for i in range(len(values)))
    return TaskScores(
        task="t",
        dataset="medqa",
        exam="usmle",
        metric="acc",
        record={},
        ids=ids,
        scores=np.asarray(values, float),
        debiased=None if debiased is None else np.asarray(debiased),
    )


def test_comparisons_use_the_debiased_metric_when_both_runs_have_it():
    # b "gains" 4 questions in standard accuracy by answering one letter, but its debiased scores are a's.
    a = _scores([0, 0, 0, 0, 1, 1], debiased=[0.25, 0.25, 0.5, 0.25, 0.5, 0.75])
    b = _scores([1, 1, 1, 1, 1, 1], debiased=[0.25, 0.25, 0.5, 0.25, 0.5, 0.75])
    result = compare_tasks(a, b, seed=1, resamples=200)
    assert result["metric"] == "debiased" and result["test"] == "sign_flip_exact"
    assert result["difference"] == 0 and result["p_value"] == 1.0
    plain = compare_tasks(_scores(a.scores), _scores(b.scores), seed=1, resamples=200)
    assert plain["metric"] == "standard" and plain["difference"] == pytest.approx(4 / 6)


def test_holm_adjustment_and_sign_flip_test():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    strong = stats.sign_flip_p(np.full(30, 0.25), seed=0, resamples=2000)
    assert strong == pytest.approx(1 / 2001)  # every flip of a one-signed difference is less extreme
    assert stats.sign_flip_p(np.array([0.5, -0.5] * 10), seed=0, resamples=2000) == 1.0
