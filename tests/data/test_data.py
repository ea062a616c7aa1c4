import json
import shutil

import datasets
import pytest

from medbench.data import checksums
from medbench.data import loader as data
from medbench.data.hub import fetch_from_hub
from medbench.data.loader import DataError, load_rows

COUNTS = {  # data/PROVENANCE.md: train / valid / test / fewshot
    "doctor": (1890, 164, 435, 5),
    "nurse": (582, 291, 878, 5),
    "pharm": (632, 300, 885, 5),
    "dentist": (297, 304, 811, 5),
}


@pytest.mark.parametrize("exam", data.KORMEDMCQA_EXAMS)
def test_kormedmcqa_counts_and_schema(exam):
    for split, expected in zip(data.KORMEDMCQA_SPLITS, COUNTS[exam]):
        rows = load_rows("kormedmcqa", exam, split)
        assert len(rows) == expected
        assert len({r["id"] for r in rows}) == expected  # exam-year-period-q_number is unique
        for r in rows:
            assert set(r) == {
                "id",
                "dataset",
                "exam",
                "split",
                "year",
                "question",
                "options",
                "answer",
                "answer_index",
                "cot",
            }
            assert len(r["options"]) == 5 and r["answer"] in "ABCDE"
            assert r["options"][r["answer_index"]] == r["options"]["ABCDE".index(r["answer"])]


def test_medqa_counts():
    assert len(load_rows("medqa", None, "test")) == 1273
    dev = load_rows("medqa", None, "dev")
    assert len(dev) == 1272
    assert {r["answer"] for r in dev} == set("ABCD")
    test_ids = {r["id"] for r in load_rows("medqa", None, "test")}
    assert not test_ids & {r["id"] for r in dev}


def test_index_column_is_dropped_where_present():
    # doctor/train.csv has no pandas index column, doctor/test.csv has one; both parse the same way.
    with_index = load_rows("kormedmcqa", "doctor", "test")[0]
    without = load_rows("kormedmcqa", "doctor", "train")[0]
    assert with_index["question"].startswith("2개월 남아가 BCG예방접종")
    assert with_index["answer"] == "C" and with_index["id"] == "doctor-2022-1-1"
    assert without["question"] == "항문압 측정 검사에서 항문 압력이 증가하는 경우는?"
    assert without["answer"] == "B" and without["options"][0] == "직장질루(rectovaginal fistula)"


def test_fewshot_numeric_answers_become_letters_and_keep_cot():
    rows = load_rows("kormedmcqa", "doctor", "fewshot")
    first = rows[0]
    assert first["answer"] == "E"  # stored as 5
    assert first["cot"].endswith("정답은 (E) 입니다.")
    for r in rows:  # every expert rationale ends in its own answer
        assert r["cot"].endswith(f"({r['answer']}) 입니다.")


def test_pharmacy_subject_is_pharm():
    rows = load_rows("kormedmcqa", "pharm", "test")
    assert len(rows) == 885 and {r["exam"] for r in rows} == {"pharm"}


def test_multiline_quoted_fields_survive():
    q = load_rows("kormedmcqa", "doctor", "train")[2]["question"]
    assert q.startswith("58세 남자가 대량 장절제 후") and "\n" in q and "결핍이 의심되는 것은?" in q


def test_unknown_names_are_errors():
    with pytest.raises(DataError, match="unknown KorMedMCQA exam"):
        load_rows("kormedmcqa", "surgeon", "test")
    with pytest.raises(DataError, match="unknown KorMedMCQA split 'dev'"):
        load_rows("kormedmcqa", "doctor", "dev")
    with pytest.raises(DataError, match="no offline copy"):
        load_rows("medqa", None, "train")


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    root = tmp_path / "data"
    shutil.copytree(data.data_dir(), root, ignore=shutil.ignore_patterns("hub"))
    monkeypatch.setenv("MEDBENCH_DATA", str(root))
    return root


def _rewrite(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_broken_csv_row_names_file_and_line(data_copy):
    path = data_copy / "kormedmcqa" / "doctor" / "test.csv"
    # Line 3 is the second row; make its answer a letter that is not an option.
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[2].endswith(",C,")
    lines[2] = lines[2][: -len(",C,")] + ",F,"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match=r"doctor/test\.csv:3: answer 'F' is not one of the options"):
        load_rows("kormedmcqa", "doctor", "test")


def test_csv_line_numbers_count_multiline_rows(data_copy):
    path = data_copy / "kormedmcqa" / "doctor" / "train.csv"
    # Row 3 spans lines 4-12; the row after it starts further down. Empty the 5th row's question.
    rows = load_rows("kormedmcqa", "doctor", "train")
    fifth = rows[4]["question"]
    _rewrite(path, fifth, "")
    text = path.read_text(encoding="utf-8")
    import csv
    import io

    reader = csv.reader(io.StringIO(text))
    next(reader)
    for _ in range(4):
        next(reader)
    start = reader.line_num + 1
    with pytest.raises(DataError, match=rf"doctor/train\.csv:{start}: missing or empty field\(s\) question"):
        load_rows("kormedmcqa", "doctor", "train")
    assert start > 6  # the multi-line third row pushed it down


def test_wrong_field_count_and_bad_json(data_copy):
    path = data_copy / "kormedmcqa" / "nurse" / "valid.csv"
    with open(path, "a", encoding="utf-8") as f:
        f.write("1,2,3\n")
    n_lines = path.read_text(encoding="utf-8").count("\n")
    with pytest.raises(DataError, match=rf"nurse/valid\.csv:{n_lines}: expected 13 fields, found 3"):
        load_rows("kormedmcqa", "nurse", "valid")
    medqa = data_copy / "medqa" / "dev.jsonl"
    with open(medqa, "a") as f:
        f.write("{not json\n")
    with pytest.raises(DataError, match=r"medqa/dev\.jsonl:1273: not valid JSON"):
        load_rows("medqa", None, "dev")


def test_medqa_missing_option(data_copy):
    path = data_copy / "medqa" / "test.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[9])
    del row["options"]["D"]
    lines[9] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"medqa/test\.jsonl:10: options must map A, B, C, D"):
        load_rows("medqa", None, "test")


def test_checksums_verify_and_catch_changes(data_copy):
    assert len(checksums.verify_checksums()) == 20
    _rewrite(data_copy / "medqa" / "test.jsonl", "junior orthopaedic", "senior orthopaedic")
    with pytest.raises(DataError, match="medqa/test.jsonl has sha256"):
        checksums.verify_checksums()


def test_from_hub_uses_the_hubs_schema_and_split_names(data_copy):
    """A local fixture in the hub's format stands in for the network."""

    def fake_load_dataset(hub_id, name=None):
        if hub_id == "sean0042/KorMedMCQA":

            def split(s):
                rows = load_rows("kormedmcqa", name, s)[:3]
                return datasets.Dataset.from_list(
                    [
                        {
                            "subject": name,
                            "year": r["year"],
                            "period": 1,
                            "q_number": i + 1,
                            "question": r["question"],
                            **dict(zip("ABCDE", r["options"])),
                            "answer": r["answer_index"] + 1,
                            "cot": r["cot"],
                            "exam_type": name,
                        }
                        for i, r in enumerate(rows)
                    ]
                )

            return datasets.DatasetDict(
                {"train": split("train"), "dev": split("valid"), "test": split("test"), "fewshot": split("fewshot")}
            )
        assert hub_id == "GBaker/MedQA-USMLE-4-options"
        rows = [json.loads(x) for x in (data_copy / "medqa" / "dev.jsonl").read_text().splitlines()[:4]]
        return datasets.DatasetDict(
            {"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:2])}
        )

    written = fetch_from_hub(fake_load_dataset)
    assert len(written) == 4 * 4 + 2
    assert (data_copy / "hub" / "kormedmcqa" / "doctor_valid.jsonl").exists()  # hub `dev` is our `valid`
    train = load_rows("medqa", None, "train")  # now available, from the hub copy
    assert len(train) == 4 and train[0]["answer"] in "ABCD"
    hub_rows = load_rows("kormedmcqa", "nurse", "test", prefer_hub=True)
    assert len(hub_rows) == 3 and hub_rows[0]["answer"] == load_rows("kormedmcqa", "nurse", "test")[0]["answer"]
    assert len(load_rows("kormedmcqa", "nurse", "test")) == 878  # vendored copy stays the default
