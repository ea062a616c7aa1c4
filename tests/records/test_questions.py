"""Per-question rows (medbench/records/questions.py) from samples in lm-eval's real shapes, and letter distributions."""

import json

import pytest

from medbench.paths import REPO_ROOT
from medbench.records import io
from medbench.records.questions import letter_distribution, question_row, question_rows
from medbench.records.reader import ReportError

DOC = {
    "id": "doctor-2024-1-7",
    "dataset": "kormedmcqa",
    "exam": "doctor",
    "split": "test",
    "year": 2024,
    "question": "다음 중 옳은 것은?",
    "options": ["가", "나", "다", "라", "마"],
    "answer": "C",
    "answer_index": 2,
}


def mc_sample(lls, acc, doc=DOC):
    """As lm-eval logs a multiple-choice question: one (log-likelihood, is-greedy) pair per option."""
    pairs = [[ll, False] for ll in lls]
    return {
        "doc_id": 0,
        "doc": doc,
        "target": 2,
        "resps": [[p] for p in pairs],
        "filtered_resps": pairs,
        "filter": "none",
        "metrics": ["acc"],
        "acc": acc,
    }


def gen_sample(text, extracted, score, doc=DOC):
    return {
        "doc_id": 0,
        "doc": doc,
        "target": "C",
        "resps": [[text]],
        "filtered_resps": [extracted],
        "filter": "extract_answer",
        "metrics": ["exact_match"],
        "exact_match": score,
    }


def test_mc_row_takes_the_best_letter_and_keeps_every_score():
    row = question_row(mc_sample([-2.0, -1.5, -0.25, -3.0, -1.0], 1.0))
    assert row == {
        "id": "doctor-2024-1-7",
        "dataset": "kormedmcqa",
        "exam": "doctor",
        "year": 2024,
        "question": "다음 중 옳은 것은?",
        "options": ["가", "나", "다", "라", "마"],
        "gold": "C",
        "correct": True,
        "mode": "mc",
        "predicted": "C",
        "invalid": False,
        "tie": False,
        "scores": {"A": -2.0, "B": -1.5, "C": -0.25, "D": -3.0, "E": -1.0},
    }


def test_mc_tie_takes_the_first_letter_as_lm_eval_does_and_is_flagged():
    # The committed GPU runs have such ties (bf16 log-likelihoods); lm-eval's argmax scores the first.
    row = question_row(mc_sample([-1.5, -0.5, -2.0, -0.5, -3.0], 0.0))
    assert (row["predicted"], row["tie"], row["correct"]) == ("B", True, False)
    # A tie below the best is no tie for the answer.
    assert question_row(mc_sample([-1.5, -0.25, -2.0, -1.5, -3.0], 0.0))["tie"] is False


def test_gen_row_keeps_the_text_and_the_extracted_letter():
    row = question_row(gen_sample(" 정답: C 입니다.", "C", 1.0))
    assert (row["mode"], row["predicted"], row["output"], row["correct"], row["invalid"]) == (
        "gen",
        "C",
        " 정답: C 입니다.",
        True,
        False,
    )
    assert "scores" not in row and "tie" in row and row["tie"] is False


def test_gen_row_without_an_extracted_letter_is_invalid_and_wrong():
    row = question_row(gen_sample("잘 모르겠습니다", "", 0.0))
    assert (row["predicted"], row["invalid"], row["correct"], row["output"]) == ("", True, False, "잘 모르겠습니다")
    assert question_row(gen_sample("x", None, 0.0))["invalid"] is True


def test_medqa_row_has_no_year_and_four_letters():
    doc = {
        "id": "medqa-1",
        "dataset": "medqa",
        "exam": "usmle",
        "year": None,
        "question": "Q?",
        "options": ["a", "b", "c", "d"],
        "answer": "D",
    }
    row = question_row(mc_sample([-1.0, -2.0, -3.0, -0.5], 1.0, doc))
    assert "year" not in row and list(row["scores"]) == ["A", "B", "C", "D"] and row["predicted"] == "D"


def test_question_rows_reads_a_run_folder_and_names_a_bad_line(tmp_path):
    path = io.samples_path(tmp_path, "medbench_kormedmcqa_doctor")
    io.write_samples(
        path, [mc_sample([-1.0, -0.5, -2.0, -3.0, -4.0], 0.0), mc_sample([-1.0, -2.0, -0.5, -3.0, -4.0], 1.0)]
    )
    rows = question_rows(tmp_path, "medbench_kormedmcqa_doctor")
    assert [(r["predicted"], r["correct"]) for r in rows] == [("B", False), ("C", True)]

    bad = mc_sample([-1.0], 1.0)
    bad["filtered_resps"] = [{"unexpected": 1}]
    io.write_samples(path, [mc_sample([-1.0, -0.5, -2.0, -3.0, -4.0], 0.0), bad])
    with pytest.raises(ReportError, match=rf"{path}:2: unusable sample"):
        question_rows(tmp_path, "medbench_kormedmcqa_doctor")
    with pytest.raises(ReportError, match="samples file missing"):
        question_rows(tmp_path, "medbench_medqa_usmle")


def test_letter_distribution_and_baselines():
    def row(gold, predicted, invalid=False):
        return {"gold": gold, "predicted": predicted, "invalid": invalid, "options": ["w", "x", "y", "z"]}

    # Gold: A A B C (D never gold). Answers: A A A, one invalid.
    rows = [row("A", "A"), row("A", "A"), row("B", "A"), row("C", "", invalid=True)]
    dist = letter_distribution(rows)
    assert dist["letters"] == ["A", "B", "C", "D"]  # D is offered, so it shows as zero
    assert dist["gold"] == {"A": 2, "B": 1, "C": 1, "D": 0}
    assert dist["predicted"] == {"A": 3, "B": 0, "C": 0, "D": 0}
    assert dist["invalid"] == 1 and dist["n"] == 4
    assert dist["majority_baseline"] == pytest.approx(2 / 4)
    assert dist["prior_baseline"] == pytest.approx((3 / 4) * (2 / 4))  # Σ p_pred · p_gold; invalid scores 0
    assert dist["dominant"] == "A"
    balanced = [row(g, p) for g, p in zip("ABCD", "ABCD")]
    assert letter_distribution(balanced)["dominant"] is None
    assert letter_distribution(balanced)["prior_baseline"] == pytest.approx(4 * (1 / 4) ** 2)
    # Exactly half is not "more than half".
    assert letter_distribution([row("A", "A"), row("B", "B")])["dominant"] is None
    assert letter_distribution([])["majority_baseline"] is None


@pytest.mark.slow  # reads every record, the whole data or a browser: seconds
def test_rows_agree_with_lm_eval_metric_on_every_committed_run():
    # lm-eval's own metric (kept in each compacted sample) and this module's argmax over the letter scores must
    # never disagree, on every committed run and task; fp32 letter scores leave no exact tie to break.
    checked = 0
    for run_dir in sorted((REPO_ROOT / "results" / "runs").iterdir()):
        for path in sorted(run_dir.glob("samples_*.jsonl.gz")):
            rows = [question_row(json.loads(line)) for _, line in io.read_samples(path)]
            assert rows and all(r["id"] and r["question"] and r["options"] for r in rows), path
            assert all((r["predicted"] == r["gold"]) == r["correct"] for r in rows if r.get("valid", True)), path
            if "scores" in rows[0]:
                assert not any(r["tie"] for r in rows), path
            checked += len(rows)
    assert checked > 100_000
