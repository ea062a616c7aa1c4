"""The KorMedMCQA paper's published accuracies (data/reference/kormedmcqa_paper_results.csv)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from medbench.data.loader import KORMEDMCQA_EXAMS, data_dir

# The paper's exam average weights each exam by its test size (data/PROVENANCE.md checks this
# against every printed average that was found).
TEST_SIZES = {"doctor": 435, "nurse": 878, "pharm": 885, "dentist": 811}
PROTOCOL = "5-shot direct answering"


@dataclass(frozen=True)
class PaperResult:
    model: str
    params_b: float | None  # None for the human examinees
    size_is_estimate: bool
    accuracy: dict  # doctor, nurse, pharm, dentist, average, medqa -> percent, or None


def paper_path() -> Path:
    return data_dir() / "reference" / "kormedmcqa_paper_results.csv"


def _number(text: str) -> float | None:
    return float(text) if text.strip() else None


def load_paper(path: Path | None = None) -> list[PaperResult]:
    """Every row, with `average` filled: the printed value where one was found, else the weighted mean."""
    out = []
    with open(path or paper_path(), newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            acc = {k: _number(row[k]) for k in (*KORMEDMCQA_EXAMS, "average", "medqa")}
            if acc["average"] is None and all(acc[e] is not None for e in KORMEDMCQA_EXAMS):
                acc["average"] = weighted_average({e: acc[e] for e in KORMEDMCQA_EXAMS})
            out.append(
                PaperResult(
                    model=row["model"],
                    params_b=_number(row["params_b"]),
                    size_is_estimate=row["size_is_estimate"].strip().lower() == "true",
                    accuracy=acc,
                )
            )
    return out


def weighted_average(per_exam: dict) -> float:
    return sum(per_exam[e] * TEST_SIZES[e] for e in KORMEDMCQA_EXAMS) / sum(TEST_SIZES.values())
