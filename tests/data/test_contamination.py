"""The contamination check: hand-built items for each kind of match, then once over the vendored data."""

import pytest

from medbench.data import contamination as c
from medbench.data.loader import DataError, load_rows

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


# A nursing-management item and a rewording of it: another stem, the same five options in another order.
POOL = ["해임", "구두경고", "무급정직", "부서 이동", "징계위원회 회부"]
POOL_TEST = (
    "간호관리자가 여러 차례 지각하는 간호사를 면담하여 출근 시간을 준수하라고 하였다. 이후에도 지각을 계속한다면, "
    "다음 단계로 고려할 수 있는 관리방안은?"
)
POOL_SOURCE = "병동 수간호사가 반복해서 늦게 오는 직원과 상담을 마쳤으나 같은 행동이 이어진다. 취할 조치로 옳은 것은?"


def test_reworded_item_keeping_four_options_and_its_key_is_an_option_pool_match():
    test = kor("t1", POOL_TEST, POOL, answer="B")  # 구두경고
    # Four of the five options kept (one distractor replaced), shuffled: the key moves from B to D.
    reworded = kor("s1", POOL_SOURCE, ["무급정직", "해임", "전보 발령", "구두 경고!", "징계위원회회부"], answer="D")
    pairs, summary = check([test], [reworded])
    assert [(p["source_id"], p["match"], p["shared_options"], p["same_answer"]) for p in pairs] == [
        ("s1", "option_pool", 4, True)
    ]
    assert pairs[0]["similarity"] < c.NEAR_DUPLICATE  # the rewording is beyond the near-duplicate rule
    assert (pairs[0]["test_answer"], pairs[0]["source_answer"]) == ("구두경고", "구두 경고!")
    row_ = summary["train"]
    assert (row_["exact_stem"], row_["near_duplicate"], row_["option_pool"], row_["matched"], row_["same_answer"]) == (
        0,
        0,
        1,
        1,
        1,
    )


def test_shared_options_with_another_key_or_too_few_shared_are_no_match():
    test = kor("t1", POOL_TEST, POOL, answer="B")
    other_key = kor("s1", POOL_SOURCE, ["무급정직", "해임", "전보 발령", "구두경고", "징계위원회 회부"], answer="A")
    three_shared = kor(
        "s2", POOL_SOURCE + " (2)", ["무급정직", "서면경고", "전보 발령", "구두경고", "해임"], answer="D"
    )
    assert len(c.option_keys(test) & c.option_keys(other_key)) == 4 and not c.same_answer(test, other_key)
    assert c.same_answer(test, three_shared) and len(c.option_keys(test) & c.option_keys(three_shared)) == 3
    pairs, summary = check([test], [other_key, three_shared])
    assert pairs == [] and summary["train"]["matched"] == 0


def test_same_answer_compares_the_gold_options_not_the_letters():
    test = kor("t1", "질문?", ["가 약물", "나 약물", "다 약물", "라 약물", "마 약물"], answer="C")
    moved = kor("s1", "질문?", ["다 약물", "가 약물", "나 약물", "라 약물", "마 약물"], answer="A")
    same_letter = kor("s2", "질문?", ["가 약물", "나 약물", "바 약물", "라 약물", "마 약물"], answer="C")
    respelled = kor("s3", "질문?", ["ＤＡ", "다약물.", "x", "y", "z"], answer="B")
    assert c.same_answer(test, moved) and c.same_answer(test, respelled)
    assert not c.same_answer(test, same_letter)
    # No gold option to compare (no letter, or a letter past the options): never the same answer.
    assert not c.same_answer({**test, "answer": None}, {**moved, "answer": None})
    assert not c.same_answer({**test, "answer": "E", "options": test["options"][:4]}, moved)
    # An option of punctuation only has no identity, so two such keys are not the same option.
    dash = kor("t2", "질문?", ["—", "a", "b", "c", "d"], answer="A")
    assert c.gold_option(dash) is None and not c.same_answer(dash, {**dash, "id": "s4"})


def test_exact_stem_reports_whether_the_answer_is_the_same_and_takes_precedence():
    stem = "사후처치 간호중재로 옳은 것은?"
    test = kor("t1", stem, ["의치를 다시 끼운다.", "a", "b", "c", "d"])
    other_answer = kor("s1", stem, ["둔부 밑에 패드를 대 준다.", "e", "f", "g", "h"])
    # Also four shared options and the same key: still counted once, as an exact-stem match.
    same = kor("s2", stem, ["b", "의치를 다시 끼운다", "a", "c", "z"], answer="B")
    pairs, summary = check([test], [other_answer, same])
    assert [(p["source_id"], p["match"], p["same_answer"]) for p in pairs] == [
        ("s1", "exact_stem", False),
        ("s2", "exact_stem", True),
    ]
    assert (summary["train"]["exact_stem"], summary["train"]["exact_stem_other_answer"]) == (1, 0)
    assert summary["train"]["option_pool"] == 0 and summary["train"]["matched"] == 1
    pairs, summary = check([test], [other_answer])
    assert (summary["train"]["exact_stem"], summary["train"]["exact_stem_other_answer"]) == (1, 1)
    assert summary["train"]["same_answer"] == 0


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


@pytest.fixture(scope="module")
def vendored():
    return c.contamination()


@pytest.mark.slow  # reads every record, the whole data or a browser: seconds
def test_vendored_data_runs_and_counts_are_consistent(vendored):
    out = vendored
    keys = [(p["test"], p["test_id"], p["source"], p["source_id"]) for p in out.pairs]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for p in out.pairs:
        assert set(p) == set(c.CONTAMINATION_FIELDS)
        if p["match"] == "exact_stem_options":
            assert p["shared_options"] in (4, 5) and p["similarity"] == pytest.approx(1)
        elif p["match"] == "near_duplicate":
            assert p["similarity"] >= c.NEAR_DUPLICATE
        elif p["match"] == "option_pool":
            assert p["similarity"] < c.NEAR_DUPLICATE and p["shared_options"] >= c.POOL_OPTIONS and p["same_answer"]
            assert c.text_key(p["test_stem"]) != c.text_key(p["source_stem"])
    for s in out.summary:
        assert s["exact_stem_options"] <= s["exact_stem"] <= s["matched"] <= s["test_rows"]
        assert s["matched"] == s["exact_stem"] + s["near_duplicate"] + s["option_pool"]
        assert s["exact_stem_other_answer"] <= s["exact_stem"] and s["same_answer"] <= s["matched"]
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
    assert out.notes[0] == c.FLOOR_NOTE and "floor" in c.FLOOR_NOTE


def test_vendored_same_answer_is_the_gold_option_of_each_row(vendored):
    """Recomputed from the rows themselves: the pair's same_answer is whether the two gold options' texts agree."""
    rows = {
        r["id"]: r
        for e in c.KORMEDMCQA_EXAMS
        for split in ("train", "valid", "test", "fewshot")
        for r in load_rows("kormedmcqa", e, split)
    }
    rows.update({r["id"]: r for split in ("dev", "test") for r in load_rows("medqa", None, split)})
    for p in vendored.pairs:
        t, s = rows[p["test_id"]], rows[p["source_id"]]
        gold_t = t["options"]["ABCDE".index(t["answer"])]
        gold_s = s["options"]["ABCDE".index(s["answer"])]
        assert p["same_answer"] == (c.text_key(gold_t) == c.text_key(gold_s)), (p["test_id"], p["source_id"])


def test_vendored_option_pool_finds_the_reworded_nurse_management_item(vendored):
    # nurse-2023-3-22 (test) rewords nurse-2020-3-22 (train): the late nurse after a talk, the same five
    # options in the same order, key B "구두경고" in both; too reworded for a near-duplicate.
    pair = next(p for p in vendored.pairs if (p["test_id"], p["source_id"]) == ("nurse-2023-3-22", "nurse-2020-3-22"))
    assert (pair["test"], pair["source"]) == ("kormedmcqa/nurse test", "kormedmcqa/nurse train+valid")
    assert (pair["match"], pair["shared_options"], pair["same_answer"]) == ("option_pool", 5, True)
    assert pair["test_answer"] == pair["source_answer"] == "구두경고"
    assert pair["similarity"] < c.NEAR_DUPLICATE


def test_vendored_generic_exact_stem_with_another_answer_is_counted(vendored):
    # The one-line stem "사후처치 간호중재로 옳은 것은?" recurs with another key: "의치를 다시 끼운다." in the
    # test, "둔부 밑에 패드를 대 준다." in train.
    pair = next(p for p in vendored.pairs if p["test_id"] == "nurse-2024-3-52")
    assert (pair["source_id"], pair["match"], pair["same_answer"]) == ("nurse-2020-3-52", "exact_stem", False)
    nurse = next(s for s in vendored.summary if (s["test"], s["source"]) == ("kormedmcqa/nurse test", c.ALL_SOURCES))
    assert nurse["exact_stem_other_answer"] >= 1 and nurse["option_pool"] >= 1
