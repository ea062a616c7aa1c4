import pytest

from medbench.prompts.answers import extract_answer


@pytest.mark.parametrize(
    "text,expected",
    [
        # Korean, the paper's own forms
        ("정답: C", "C"),
        ("정답：B", "B"),
        (" 정답은 D 입니다.", "D"),
        ("차근차근 생각해봅시다. … 따라서, 정답은 (E) 입니다.", "E"),
        (" A", "A"),
        (" B. 보건복지부장관", "B"),
        # Korean digits and circled numbers (documented extension)
        ("정답: 3", "C"),
        ("정답은 5번입니다", "E"),
        (" ③", "C"),
        ("2", "B"),
        ("4번", "D"),
        # English
        ("The answer is C.", "C"),
        ("Answer: (B) because of the fever.", "B"),
        ("(C)", "C"),
        (" D. Refuse to dictate the operative report", "D"),
        # the last match of the first matching pattern wins
        ("A seems plausible, but the answer is D", "D"),
    ],
)
def test_extracts(text, expected):
    assert extract_answer(text, 5) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "잘 모르겠습니다",
        "I think it is a tough case for a patient.",  # lower-case "a" is an article, not option A
        "정답: 7",
    ],
)
def test_nothing_parsable_is_invalid(text):
    assert extract_answer(text, 5) == ""


def test_only_the_questions_own_letters_count():
    assert extract_answer("The answer is E.", 4) == ""
    assert extract_answer("정답: 5", 4) == ""
    assert extract_answer("The answer is D.", 4) == "D"


def test_letter_beats_digit():
    assert extract_answer("정답: B (2번)", 5) == "B"


# Realistic MedQA chain-of-thought generations (the shots end "Therefore, the answer is (X)."): the reasoning
# names other options, by letter and in parentheses, before the final phrase.
@pytest.mark.parametrize(
    "text,expected",
    [
        (
            (
                "Let's think step by step. The organism is Neisseria gonorrhoeae. Gentamicin (A) acts on the 30S subunit "
                "and ciprofloxacin (B) on DNA gyrase, so neither blocks the cell wall. Therefore, the answer is (C)."
            ),
            "C",
        ),
        (
            (
                "Let's think step by step. A. Diazepam treats only the insomnia. B. Paroxetine treats depression. "
                "D. Trazodone treats both. Therefore, the answer is (D)."
            ),
            "D",
        ),
        (
            (
                "Let's think step by step. At first the answer seems to be (B), hyperglycemia, but he is hypotensive "
                "and tachycardic, so perfusion comes first. Therefore, the answer is (A)."
            ),
            "A",
        ),
        (
            (
                "Let's think step by step. Hepatitis B serology and vitamin D levels do not matter here. "
                "Therefore, the answer is (B)."
            ),
            "B",
        ),
        (
            (
                "Let's think step by step. This is pyelonephritis. Therefore, the answer is (B). A CT scan (A) is not "
                "needed yet."
            ),
            "B",
        ),
        ("Let's think step by step. The symptoms fit cyclic vomiting syndrome. The answer is A.", "A"),
        ("Let's think step by step. Answer: C", "C"),
        # markdown bold around the final answer, with an option list after it
        ("Let's think step by step. The answer is **C. Ceftriaxone**, not B. Ciprofloxacin.", "C"),
        ("**Answer:** (D) Trazodone. A. Diazepam would not treat the depression.", "D"),
    ],
)
def test_extracts_english_chain_of_thought(text, expected):
    assert extract_answer(text, 4) == expected


def test_unfinished_chain_of_thought_without_a_letter_is_invalid():
    # Cut off by the 512-token budget before any option letter: no answer, counted invalid.
    assert extract_answer("Let's think step by step. The patient is in diabetic ketoacidosis with", 4) == ""
