"""Every measured number in the README and docs comes from a record, never from a hand.

A measurement is a number with a unit (%, seconds, GiB, tokens/s, ×, points…) or a p-value. In README.md and docs/*.md
it may appear only inside a generated block (`<!-- NAME:start -->` … `<!-- NAME:end -->`, written by `just report`,
`just tasks-readme` or docker/image.py) or in a generated file (docs/results.md); in the code's comments and
docstrings it may not appear at all, because a comment outlives the measurement it quotes. What is not a measurement
is allowed by name below: statistical conventions (a 95% interval, 80% power) and settings (a default timeout).
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = (
    r"(?:%|×|\s?(?:s|sec|secs|seconds?|minutes?|mins?|ms|hours?|GiB|GB|MB|KB|MiB|KiB|TB|tok/s|tokens/s|questions/s"
    r"|q/s|scorings/s|it/s|steps/s|x|pt|points?|fold)\b)"
)
MEASUREMENT = re.compile(r"(?<![\w.\-/%])\d[\d,]*(?:\.\d+)?" + UNIT + r"|\bp\s?[=<≈]\s?0?\.\d+|\b\d+(?:\.\d+)?k tok")
# Conventions of the statistics, not measurements.
CONVENTIONS = re.compile(r"^(95%|80%|95 %|80 %)$")
# Settings and limits stated where they are set: (file, the matched text) -> why it is no measurement.
SETTINGS = {
    ("medbench/bench/train.py", "8 x"): "the reference step's batch shape (8 x 512 tokens)",
    ("medbench/models/placement.py", "10%"): "the sharding margin the code applies",
    ("dev/gpu_remake.py", "15 MB"): "the device tool's limit on a returned file",
    ("dev/gpu_scale.py", "420 s"): "--budget's default",
    ("dev/gpu_scale.py", "10 minutes"): "the device machine's limit per call",
    ("dev/gpu_scale.py", "480 s"): "--hard-limit's default",
    ("dev/gpu_scale.py", "60 s"): "the grace a child gets past the hard limit",
    ("dev/gpu_scale_lib.py", "60 s"): "the grace a child gets past the hard limit",
    ("dev/gpu_scale_lib.py", "0.5 s"): "the poller's interval",
    ("docs/multinode.md", "1,800 s"): "--peer-timeout's default",
    ("docs/multinode.md", "90%"): "accelerate's max_memory share the placement uses",
    ("docs/training.md", "3%"): "the warmup share of the study's recipe",
}
GENERATED_FILES = {"docs/results.md"}


def prose_measurements(text: str) -> list[tuple[int, str]]:
    """(line, text) of every measurement outside generated blocks."""
    out, block = [], None
    for number, line in enumerate(text.splitlines(), 1):
        start = re.match(r"\s*<!-- ([\w:.-]+):start -->", line)
        if block is None and start:
            block = start.group(1)
            continue
        if block is not None:
            if re.match(rf"\s*<!-- {re.escape(block)}:end -->", line):
                block = None
            continue
        out += [(number, m.group(0)) for m in MEASUREMENT.finditer(line) if not _hardware(line, m)]
    return out


def _hardware(text: str, match: re.Match) -> bool:
    """`2 x H200`, `4× GPU`: a machine's size, not a measurement."""
    return match.group(0).rstrip().endswith(("x", "×")) and bool(
        re.match(r"\s*(H100|H200|GPU|A100)", text[match.end() :])
    )


def comment_measurements(source: str, yaml: bool = False) -> list[tuple[int, str]]:
    """(line, text) of every measurement in a Python file's comments and docstrings (a YAML file's comments)."""
    out = []
    if yaml:
        for number, line in enumerate(source.splitlines(), 1):
            comment = line[line.index("#") :] if "#" in line else ""
            out += [(number, m.group(0)) for m in MEASUREMENT.finditer(comment) if not _hardware(comment, m)]
        return out
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        docstring = token.type == tokenize.STRING and token.string.lstrip("rbuRBUf").startswith(('"""', "'''"))
        if token.type != tokenize.COMMENT and not docstring:
            continue
        for m in MEASUREMENT.finditer(token.string):
            if _hardware(token.string, m):
                continue
            out.append((token.start[0] + token.string[: m.start()].count("\n"), m.group(0)))
    return out


def _allowed(name: str, found: str) -> bool:
    return bool(CONVENTIONS.match(found.strip())) or (name, found) in SETTINGS


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _code() -> list[Path]:
    files = [
        p for top in ("medbench", "trainers", "dev", "tasks", "docker", "scripts") for p in (ROOT / top).rglob("*.py")
    ]
    return sorted(p for p in files if not p.name.startswith("test_"))  # a test's expected values are its own


def test_no_hand_typed_measurement_in_readme_or_docs():
    found = []
    for path in _documents():
        name = path.relative_to(ROOT).as_posix()
        if name in GENERATED_FILES:
            continue
        found += [f"{name}:{n}: {m!r}" for n, m in prose_measurements(path.read_text()) if not _allowed(name, m)]
    assert not found, "measurements typed by hand (put them in a generated block):\n" + "\n".join(found)


def test_generated_files_say_so():
    for name in GENERATED_FILES:
        assert "Generated by `just report`" in (ROOT / name).read_text()


def test_no_comment_quotes_a_measurement():
    found = []
    for path in _code():
        name = path.relative_to(ROOT).as_posix()
        measured = comment_measurements(path.read_text(), yaml=path.suffix == ".yaml")
        found += [f"{name}:{n}: {m!r}" for n, m in measured if not _allowed(name, m)]
    assert not found, "comments and docstrings that quote measurements:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "planted",
    [
        "The demo runs in 4.5 s on two cores.",
        "LoRA trains at 3,046 tokens/s.",
        "NF4 needs 2.1 GiB.",
        "the engine is 3.6× faster",
        "a gain of +6.2 pts, p = 0.0007",
        "24k tok/s at 18% MFU",
    ],
)
def test_a_planted_number_is_caught_in_prose_and_in_comments(planted):
    assert prose_measurements(f"# Doc\n\n{planted}\n")
    assert comment_measurements(f"x = 1  # {planted}\n")
    generated = f"<!-- table:x:start -->\n{planted}\n<!-- table:x:end -->\n"
    assert prose_measurements(generated) == []  # inside a generated block it is the generator's


def test_versions_years_and_data_sizes_are_no_measurements():
    text = "transformers 5.24.0, torch 2.13.0, KorMedMCQA (2024), 4,282 questions, 1,273 MedQA test items, r=32 α=64."
    assert prose_measurements(text) == []
