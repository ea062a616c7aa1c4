"""Markdown pieces shared by the report's tables (medbench/report/build.py, medbench/report/training.py)."""

from __future__ import annotations

import math


def num(x, fmt: str) -> str:
    """A number in `fmt`, or a dash for a missing or NaN value."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], body: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def device(gpu: str | None) -> str:
    """The GPU's name without the vendor, or CPU."""
    return gpu.replace("NVIDIA ", "") if gpu else "CPU"
