"""Markdown pieces shared by the report's tables (medbench/report/build.py, medbench/report/training.py)."""

from __future__ import annotations

import html
import math
import re

# Inline syntax a name or path could carry; `|` is the table's to escape (cell), `<`/`>`/`&` become entities.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]~])")


def num(x, fmt: str) -> str:
    """A number in `fmt`, or a dash for a missing or NaN value."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def escape(text) -> str:
    """Text from a record or a path as plain Markdown text: HTML and Markdown syntax shown, never interpreted (a
    folder named `<img src=x onerror=…>` is text in the README, as it is in the explorer)."""
    flat = " ".join(str(text).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(flat, quote=False))


def code(text) -> str:
    """Text from a record as a code span: inside one nothing is interpreted but a backtick, which is replaced."""
    return "`" + " ".join(str(text).split()).replace("`", "'") + "`"


def cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], body: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def device(gpu: str | None) -> str:
    """The GPU's name without the vendor, or CPU."""
    return gpu.replace("NVIDIA ", "") if gpu else "CPU"
