"""The contamination check: hand-built items for each kind of match, then once over the vendored data."""

import pytest

from medbench.data import contamination as c
from medbench.data.loader import DataError

# MedQA-style boilerplate: the same vitals and closing question around a one-sentence case.
VITALS = (
    "His temperature is 37.0°C (98.6°F), pulse is 80/min, respirations are 14/min, and blood pressure is "
    "120/80 mm Hg. Physical examination shows no other abnormalities. Laboratory studies are within normal "
    "limits."
)
ASK = "Which of the following is the most appropriate next step in management?"
SYMPTOMS = (
    "a rash on both palms",
    "blood in the urine",
    "double vision at night",
    "a limp since a fall",
    "hoarseness for a month",
    "itching after hot showers",
    "numb fingertips in the cold",
    "a swollen knee",
    "ringing in one ear",
    "a cough with green sputum",
    "weight loss despite eating",
    "a painless neck lump",
)
FIRST = (
    "aspirin",
    "biopsy",
    "splinting",
    "antibiotics",
    "MRI of the head",
    "reassurance",
    "colonoscopy",
    "surgery",
    "steroids",
    "audiometry",
    "insulin",
    "phlebotomy",
)
SECOND = (
    "ultrasound",
    "observation",
    "lumbar puncture",
    "endoscopy",
    "vitamin B12",
    "dialysis",
    "cast",
    "laser",
    "beta blockers",
    "allergy testing",
    "chest CT",
    "bone scan",
)


def row(id_, question, options, answer="A", dataset="medqa"):
    return {
        "id": id_,
        "dataset": dataset,
        "exam": "usmle" if dataset == "medqa" else "nurse",
        "split": "x",
        "question": question,
        "options": options,
        "answer": answer,
    }


def kor(id_, question, options, answer="A"):
    return row(id_, question, options, answer, "kormedmcqa")


def vignette(id_, age, symptom, first, second, third, fourth):
    return row(
        id_,
        f"A {age}-year-old man comes to the physician because of {symptom}. {VITALS} {ASK}",
        [first, second, third, fourth],
    )


def background(n=12):
    """Unrelated items sharing the boilerplate, so that its 5-grams are common as in the real MedQA."""
    return [
        vignette(
            f"bg{i}",
            20 + 3 * i,
            SYMPTOMS[i],
            FIRST[i],
            SECOND[i],
            f"{FIRST[i]} then {SECOND[(i + 5) % 12]}",
            f"no {SECOND[(i + 3) % 12]}",
        )
        for i in range(n)
    ]


def check(test_rows, source_rows):
    tests, sources = {"test": test_rows}, {"train": source_rows}
    plan = {"test": ["train"]}
    pairs = c.contamination_pairs(tests, sources, plan)
    summary = {s["source"]: s for s in c.contamination_summary(pairs, tests, sources, plan)}
    return pairs, summary


def test_normalize_folds_width_case_punctuation_and_spaces():
    assert c.normalize("ＡＢＣ　１２３！ Déjà—vu") == "abc 123 déjà vu"
    assert c.text_key("제２형  당뇨병, 환자?") == c.text_key("제2형당뇨병 환자") == "제2형당뇨병환자"
    assert c.char_shingles("렘 수면") == {"렘수면"}  # shorter than n: the whole string is one shingle


def test_short_korean_duplicate_with_shuffled_options_is_found():
    options = ["저단백 식이", "고지방 식이", "탄수화물 제한", "수분 제한", "고섬유 식이"]
    test = kor("t1", "제2형 당뇨병 환자의 식이요법은?", options)
    copy = kor("s1", "제２형 당뇨병환자의  식이요법은 ?!", [options[4], *options[:4]], answer="B")  # same answer text
    other = kor("s2", "급성 신부전 환자의 식이요법은?", ["저염 식이", "고칼륨 식이", "수분 제한", "단백 제한", "금식"])
    pairs, summary = check([test], [copy, other])
    assert [(p["source_id"], p["match"], p["shared_options"], p["same_answer"]) for p in pairs] == [
        ("s1", "exact_stem_options", 5, True)
    ]
    assert pairs[0]["stem_words"] == 4 and pairs[0]["shares_13gram"] is False  # the 13-gram check saw nothing
    row_ = summary["train"]
    assert (
        row_["exact_stem"],
        row_["exact_stem_options"],
        row_["matched"],
        row_["under_13_words"],
        row_["no_shared_13gram"],
    ) == (1, 1, 1, 1, 1)


def test_same_stem_with_different_options_is_an_exact_stem_match_only():
    test = kor(
        "t1",
        "혈압이 실제보다 낮게 측정되는 경우는?",
        ["운동 직후", "팔이 심장보다 낮을 때", "커프가 넓을 때", "흡연 직후", "커프를 느슨히 감을 때"],
    )
    source = kor(
        "s1",
        "혈압이 실제보다 낮게 측정되는 경우는?",
        ["운동 직후", "흡연 직후", "커프가 좁을 때", "팔을 지지하지 않을 때", "밸브를 빨리 풀 때"],
    )
    pairs, summary = check([test], [source])
    assert [(p["match"], p["shared_options"]) for p in pairs] == [("exact_stem", 2)]
    assert pairs[0]["shared_options"] < len(test["options"])
    assert (summary["train"]["exact_stem"], summary["train"]["exact_stem_options"]) == (1, 0)


def test_reworded_long_item_is_a_near_duplicate_and_shared_boilerplate_is_not():
    test = row(
        "t1",
        (
            "A 34-year-old man comes to the emergency department because of crushing substernal chest pain "
            "radiating to the left jaw that began while he was shoveling snow two hours ago. "
            + VITALS
            + " An ECG shows ST-segment elevations in leads II, III and aVF. "
            + ASK
        ),
        [
            "Percutaneous coronary intervention",
            "Oral aspirin and discharge",
            "CT angiography of the chest",
            "Thrombolysis after 24 hours",
        ],
    )
    reworded = row(
        "s1",
        (
            "A 36-year-old man presents to the emergency department with crushing substernal chest "
            "pain that radiates to his left jaw; it started two hours ago while shoveling snow. "
            + VITALS
            + " ECG shows ST elevation in leads II, III, and aVF. "
            + ASK
        ),
        [
            "CT angiography of the chest",
            "Percutaneous coronary intervention",
            "Thrombolysis after 24 hours",
            "Oral aspirin and discharge",
        ],
    )
    unrelated = vignette(
        "s2",
        34,
        "a burning pain in both feet at night",
        "Gabapentin",
        "Foot X-rays",
        "Nerve conduction studies",
        "Vitamin D",
    )
    sources = [reworded, unrelated, *background()]
    # Without the IDF weighting the boilerplate alone would make the unrelated item look copied.
    a, b = c.item_shingles(test), c.item_shingles(unrelated)
    assert len(a & b) / len(a | b) > c.NEAR_DUPLICATE
    pairs, summary = check([test], sources)
    assert [(p["source_id"], p["match"]) for p in pairs] == [("s1", "near_duplicate")]
    assert c.NEAR_DUPLICATE <= pairs[0]["similarity"] < 1 and pairs[0]["shared_options"] == 4
    assert (summary["train"]["near_duplicate"], summary[c.ALL_SOURCES]["matched"]) == (1, 1)


def test_plan_skips_only_a_missing_medqa_train():
    def loader(dataset, exam, split):
        if split == "train" and dataset == "medqa":
            raise DataError("no offline copy")
        return [kor(f"{exam}-{split}-1", f"{exam} {split} 질문은?", ["가", "나", "다", "라", "마"])]

    tests, sources, plan, notes = c.load_plan(loader)
    assert (
        len(tests) == 5
        and "medqa train" not in sources
        and notes == ["MedQA train is not checked: no local copy (`just data --from-hub` fetches it)"]
    )
    assert plan["kormedmcqa/nurse test"][-1] == "kormedmcqa/nurse fewshot"
    assert "kormedmcqa/doctor fewshot" not in plan["kormedmcqa/nurse test"]
    assert "kormedmcqa/dentist train+valid" in plan["medqa test"] and "medqa dev" in plan["kormedmcqa/pharm test"]

    def broken(dataset, exam, split):
        raise DataError(f"missing {dataset} {split}")

    with pytest.raises(DataError):
        c.load_plan(broken)


def test_vendored_data_runs_and_counts_are_consistent():
    out = c.contamination()
    keys = [(p["test"], p["test_id"], p["source"], p["source_id"]) for p in out.pairs]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for p in out.pairs:
        assert set(p) == set(c.CONTAMINATION_FIELDS)
        if p["match"] == "exact_stem_options":
            assert p["shared_options"] in (4, 5) and p["similarity"] == pytest.approx(1)
        elif p["match"] == "near_duplicate":
            assert p["similarity"] >= c.NEAR_DUPLICATE
    for s in out.summary:
        assert s["exact_stem_options"] <= s["exact_stem"] <= s["matched"] <= s["test_rows"]
        assert s["matched"] == s["exact_stem"] + s["near_duplicate"]
        assert s["under_13_words"] <= s["matched"] and s["no_shared_13gram"] <= s["matched"]
    totals = {s["test"]: s for s in out.summary if s["source"] == c.ALL_SOURCES}
    assert set(totals) == {
        "kormedmcqa/doctor test",
        "kormedmcqa/nurse test",
        "kormedmcqa/pharm test",
        "kormedmcqa/dentist test",
        "medqa test",
    }
    for s in out.summary:
        assert s["matched"] <= totals[s["test"]]["matched"]
    # A real 4-word stem repeated five years on with other spacing ("행동 특성" / "행동특성") and one option kept.
    autism = next(p for p in out.pairs if p["test_id"] == "nurse-2024-2-104")
    assert (autism["source_id"], autism["match"], autism["stem_words"], autism["shares_13gram"]) == (
        "nurse-2019-2-104",
        "exact_stem",
        4,
        False,
    )
    assert totals["kormedmcqa/nurse test"]["under_13_words"] > 0
