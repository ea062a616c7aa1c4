"""The hub's schema both ways: `just data --from-hub` reads it, and canonical rows are written back in it.

Rows are written as they come (the hub's own schema) to data/hub/, and read back through
medbench.data.loader like the vendored copies: one loader, one validator. This is also the only source
of the MedQA train split (no offline copy exists).
"""

from __future__ import annotations

import json
from pathlib import Path

from medbench.data.loader import KORMEDMCQA_EXAMS, LETTERS, hub_dir, load_rows

KORMEDMCQA_HUB_ID = "sean0042/KorMedMCQA"
MEDQA_HUB_ID = "GBaker/MedQA-USMLE-4-options"
# The hub's split names -> ours.
KORMEDMCQA_SPLIT_NAMES = {"train": "train", "dev": "valid", "test": "test", "fewshot": "fewshot"}
MEDQA_SPLIT_NAMES = {"train": "train", "test": "test"}  # the hub copy has no dev split
KORMEDMCQA_HUB_COLUMNS = ("question", "A", "B", "C", "D", "E", "answer", "cot", "subject", "year", "period", "q_number")


def fetch_from_hub(load_dataset=None) -> dict[str, int]:
    """Download, write under data/hub/, validate by loading back. Returns rows per written file."""
    if load_dataset is None:
        from datasets import load_dataset
    written = {}
    for exam in KORMEDMCQA_EXAMS:
        dd = load_dataset(KORMEDMCQA_HUB_ID, exam)
        for hub_split, ours in KORMEDMCQA_SPLIT_NAMES.items():
            if hub_split in dd:
                path = _write(dd[hub_split], "kormedmcqa", f"{exam}_{ours}")
                written[str(path)] = len(load_rows("kormedmcqa", exam, ours, prefer_hub=True))
    dd = load_dataset(MEDQA_HUB_ID)
    for hub_split, ours in MEDQA_SPLIT_NAMES.items():
        if hub_split in dd:
            path = _write(dd[hub_split], "medqa", ours)
            written[str(path)] = len(load_rows("medqa", None, ours, prefer_hub=True))
    return written


def _write(split, dataset: str, stem: str):
    path = hub_dir() / dataset / f"{stem}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in split)
    return path


def _number(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def to_hub_row(row: dict) -> dict:
    """A canonical KorMedMCQA row in the hub's schema (answer 1–5); load_rows reads it back unchanged."""
    _, year, period, q_number = row["id"].split("-")
    hub = {
        "question": row["question"],
        **dict(zip(LETTERS, row["options"])),
        "answer": LETTERS.index(row["answer"]) + 1,
        "cot": row["cot"],
        "subject": row["exam"],
        "year": int(year),
        "period": _number(period),
        "q_number": _number(q_number),
    }
    return {k: hub[k] for k in KORMEDMCQA_HUB_COLUMNS}


def write_hub_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(to_hub_row(r), ensure_ascii=False) + "\n" for r in rows)
    return path
