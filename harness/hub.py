"""`just data --from-hub`: the same datasets from the Hugging Face hub, for users with network.

Rows are written as they come (the hub's own schema) to data/hub/, and read back through
harness.data like the vendored copies: one loader, one validator. This is also the only source
of the MedQA train split (no offline copy exists).
"""

from __future__ import annotations

import json

from harness.data import KORMEDMCQA_EXAMS, hub_dir, load_rows

KORMEDMCQA_HUB_ID = "sean0042/KorMedMCQA"
MEDQA_HUB_ID = "GBaker/MedQA-USMLE-4-options"
# The hub's split names -> ours.
KORMEDMCQA_SPLIT_NAMES = {"train": "train", "dev": "valid", "test": "test", "fewshot": "fewshot"}
MEDQA_SPLIT_NAMES = {"train": "train", "test": "test"}  # the hub copy has no dev split


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
