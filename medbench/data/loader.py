"""One loader for every data source: vendored CSV/JSONL files (default) or hub copies.

Every source becomes the same canonical row, validated on the way in:
    id, dataset, exam, split, year, question, options (list), answer (letter), answer_index, cot
Training and evaluation both read rows through here, so a model is trained on exactly the rows
(and, through the task templates, the prompt) it is evaluated on.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from medbench.errors import MedbenchError
from medbench.paths import data_dir

LETTERS = "ABCDE"

KORMEDMCQA_EXAMS = ("doctor", "nurse", "pharm", "dentist")
# Our split names. The hub calls KorMedMCQA's `valid` split `dev`; MedQA's dev split is `dev`.
KORMEDMCQA_SPLITS = ("train", "valid", "test", "fewshot")
MEDQA_SPLITS = ("train", "dev", "test")
OPTION_COUNT = {"kormedmcqa": 5, "medqa": 4}
# The vendored copy uses `pharmacy` for some pharm rows (see data/PROVENANCE.md).
SUBJECT_ALIASES = {"pharmacy": "pharm"}


class DataError(MedbenchError):
    """A data row or file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Source:
    dataset: str
    exam: str | None
    split: str

    def __post_init__(self):
        if self.dataset == "kormedmcqa":
            if self.exam not in KORMEDMCQA_EXAMS:
                raise DataError(f"unknown KorMedMCQA exam {self.exam!r}; choose from {KORMEDMCQA_EXAMS}")
            if self.split not in KORMEDMCQA_SPLITS:
                raise DataError(f"unknown KorMedMCQA split {self.split!r}; choose from {KORMEDMCQA_SPLITS}")
        elif self.dataset == "medqa":
            if self.split not in MEDQA_SPLITS:
                raise DataError(f"unknown MedQA split {self.split!r}; choose from {MEDQA_SPLITS}")
        else:
            raise DataError(f"unknown dataset {self.dataset!r}; choose from kormedmcqa, medqa")


def hub_dir() -> Path:
    """Where `just data --from-hub` writes canonical JSONL copies (git-ignored)."""
    return data_dir() / "hub"


def source_path(src: Source, prefer_hub: bool = False) -> Path:
    """The file that holds a split: the vendored copy, else (or if preferred) the hub copy.

    MedQA train exists only as a hub copy (`just data --from-hub`).
    """
    if src.dataset == "kormedmcqa":
        vendored = data_dir() / "kormedmcqa" / src.exam / f"{src.split}.csv"
    elif src.split == "train":
        vendored = None
    else:
        vendored = data_dir() / "medqa" / f"{src.split}.jsonl"
    hub = hub_dir() / src.dataset / f"{src.exam + '_' if src.exam else ''}{src.split}.jsonl"
    if prefer_hub and hub.exists():
        return hub
    if vendored is not None and vendored.exists():
        return vendored
    if hub.exists():
        return hub
    if vendored is None:
        raise DataError(
            f"MedQA train has no offline copy (see data/PROVENANCE.md). With network, run "
            f"`just data --from-hub` to fetch it into {hub}; offline, train on MedQA dev instead."
        )
    raise DataError(f"missing data file {vendored}; restore the vendored data (git checkout data/) or run `just data`")


def load_rows(dataset: str, exam: str | None, split: str, prefer_hub: bool | None = None) -> list[dict]:
    """Canonical, validated rows of one split (hub copies first if MEDBENCH_PREFER_HUB=1)."""
    src = Source(dataset, exam if dataset == "kormedmcqa" else None, split)
    if prefer_hub is None:
        prefer_hub = os.environ.get("MEDBENCH_PREFER_HUB") == "1"
    path = source_path(src, prefer_hub)
    if path.suffix == ".csv":
        raw = _read_csv(path)
    else:
        raw = _read_jsonl(path)
    rows = [_canonical(src, path, line, rec) for line, rec in raw]
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{path}: duplicate row id {dup}")
    return rows


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; a file cut mid-character or not UTF-8 is named with its line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte {e.start} of {len(raw)}): the file is truncated or "
            f"corrupt; restore it (git checkout data/, or `just data --from-hub` for hub copies) and "
            f"check it with `just data`"
        ) from None


def _read_csv(path: Path):
    """(starting line number, record) pairs; quoted fields may span lines."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}:1: empty file")
        # 15 of the 16 KorMedMCQA files start with pandas' unnamed index column.
        if header[0] == "":
            header = ["_index"] + header[1:]
        start = reader.line_num + 1
        for fields in reader:
            if len(fields) != len(header):
                raise DataError(f"{path}:{start}: expected {len(header)} fields, found {len(fields)}")
            yield start, dict(zip(header, fields))
            start = reader.line_num + 1
    except csv.Error as e:
        # e.g. a file cut inside a quoted field
        raise DataError(f"{path}:{reader.line_num}: not valid CSV ({e}): the file is truncated or corrupt") from None


def _read_jsonl(path: Path):
    for line_no, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None


def _canonical(src: Source, path: Path, line: int, rec: dict) -> dict:
    where = f"{path}:{line}"
    if src.dataset == "kormedmcqa":
        row = _kormedmcqa_row(src, where, rec)
    else:
        row = _medqa_row(src, where, rec, line)
    validate_row(row, where, OPTION_COUNT[src.dataset])
    return row


def _required(rec: dict, where: str, *keys: str) -> None:
    missing = [k for k in keys if k not in rec or rec[k] is None or str(rec[k]).strip() == ""]
    if missing:
        raise DataError(f"{where}: missing or empty field(s) {', '.join(missing)}")


def _kormedmcqa_row(src: Source, where: str, rec: dict) -> dict:
    _required(rec, where, "year", "period", "q_number", "question", "A", "B", "C", "D", "E", "answer")
    subject = SUBJECT_ALIASES.get(rec.get("subject", src.exam), rec.get("subject", src.exam))
    if subject and subject != src.exam:
        raise DataError(f"{where}: subject {rec['subject']!r} does not belong to exam {src.exam!r}")
    answer = str(rec["answer"]).strip()
    # Letters A–E in train/valid/test; numbers 1–5 in the fewshot split (and on the hub).
    if answer in {"1", "2", "3", "4", "5"}:
        answer = LETTERS[int(answer) - 1]
    return {
        "id": f"{src.exam}-{rec['year']}-{rec['period']}-{rec['q_number']}",
        "dataset": "kormedmcqa",
        "exam": src.exam,
        "split": src.split,
        "year": int(rec["year"]),
        "question": rec["question"],
        "options": [rec[k] for k in LETTERS],
        "answer": answer,
        "cot": rec.get("cot") or "",
    }


def _medqa_row(src: Source, where: str, rec: dict, line: int) -> dict:
    _required(rec, where, "question", "options", "answer_idx")
    options = rec["options"]
    if not isinstance(options, dict) or sorted(options) != list(LETTERS[:4]):
        raise DataError(f"{where}: options must map A, B, C, D to texts, got {options!r}")
    # MedQA rows carry no id; the question text plus its options identifies a row across copies.
    digest = hashlib.sha1((rec["question"] + "\x1f".join(options[k] for k in "ABCD")).encode()).hexdigest()[:12]
    return {
        "id": f"medqa-{digest}",
        "dataset": "medqa",
        "exam": "usmle",
        "split": src.split,
        "year": None,
        "question": rec["question"],
        "options": [options[k] for k in "ABCD"],
        "answer": str(rec["answer_idx"]).strip(),
        "cot": "",
    }


def validate_row(row: dict, where: str, n_options: int) -> None:
    if not str(row.get("question", "")).strip():
        raise DataError(f"{where}: empty question")
    options = row.get("options")
    if not isinstance(options, list) or len(options) != n_options:
        raise DataError(f"{where}: expected {n_options} options, found {options!r}")
    if any(not str(o).strip() for o in options):
        raise DataError(f"{where}: an option is empty")
    letters = LETTERS[:n_options]
    if row.get("answer") not in letters:
        raise DataError(f"{where}: answer {row.get('answer')!r} is not one of the options {', '.join(letters)}")
    row["answer_index"] = letters.index(row["answer"])
