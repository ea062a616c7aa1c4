"""Position bias measured and removed at the score level, on constructed rotation scores."""

import numpy as np
import pytest

from medbench.records.reader import TaskScores
from medbench.report.position_bias import calibrated, length_view, locked, score_debiased


def _task(logp, gold):
    logp = np.asarray(logp, dtype=float)
    return TaskScores(
        task="t",
        dataset="medqa",
        exam="usmle",
        metric="acc",
        record={},
        ids=tuple(f"q{i}" for i in range(len(logp))),
        scores=(logp[:, 0].argmax(1) == np.asarray(gold)).astype(float),
        rotation_logp=logp,
        gold=np.asarray(gold),
    )


def _rotated(option_logp, position_bias):
    """[rotation, position] log-scores of a model with these option preferences plus a position preference:
    rotation k shows original option (j + k) mod n at position j."""
    n = len(option_logp)
    return [[option_logp[(j + k) % n] + position_bias[j] for j in range(n)] for k in range(n)]


def test_a_position_lock_is_seen_and_the_option_preference_recovered():
    # The model prefers option 2 a little and position 0 a lot: every rotation answers position 0 (locked), and
    # the unrotated answer is option 0, wrong; averaging each option's probability over rotations finds option 2.
    bias = [5.0, 0.0, 0.0, 0.0]
    option = [0.0, 0.0, 1.0, 0.0]
    task = _task([_rotated(option, bias)], gold=[2])
    assert locked(task).tolist() == [True]
    assert task.scores.tolist() == [0.0]
    assert score_debiased(task).tolist() == [1.0]


def test_an_unbiased_model_is_not_locked_and_keeps_its_answers():
    option = [0.0, 2.0, 0.0, 0.0]
    task = _task([_rotated(option, [0.0] * 4)], gold=[1])
    assert locked(task).tolist() == [False]
    assert task.scores.tolist() == [1.0] and score_debiased(task).tolist() == [1.0]


def test_calibration_divides_out_the_position_prior_from_other_questions():
    rng = np.random.default_rng(0)
    bias = [3.0, 0.0, 0.0, 0.0]
    gold = rng.integers(0, 4, 200)
    rows = []
    for g in gold:
        option = [0.0] * 4
        option[g] = 1.0
        rows.append(_rotated(option, bias))
    task = _task(rows, gold)
    assert task.scores.mean() == pytest.approx((gold == 0).mean())  # the bias answers position 0 always
    answers, size = calibrated(task, fraction=0.1, seed=1)
    assert size == 20 and answers.size == 180
    assert answers.mean() == 1.0  # with the prior divided out every held-out question is right


def test_length_view_counts_the_longest_option():
    rows = [
        {"options": ["a", "bbbb", "cc"], "gold": "B", "predicted": "B", "correct": True, "invalid": False},
        {"options": ["aaaa", "b", "cc"], "gold": "C", "predicted": "A", "correct": False, "invalid": False},
    ]
    view = length_view(rows)
    assert view["longest_baseline"] == 0.5 and view["chose_longest"] == 1.0
    assert view["acc_gold_longest"] == 1.0 and view["acc_gold_other"] == 0.0
