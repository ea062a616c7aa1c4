"""The bench records' tables for `just report` (results/bench/*.json): training speed per method and the
beyond-one-GPU tables. The CLI hands them to the report, which never imports this package."""

from __future__ import annotations

from pathlib import Path

from medbench.bench.scale import scale_section
from medbench.report.markdown import num, table
from medbench.report.training import load_records, mfu_pct, record_device


def train_speed_table(results_dir: Path) -> str | None:
    """One row per configuration of every `just bench train` record, with its ratios to `full` and `reference`."""
    benches = [
        (p, r) for p, r in load_records(list((results_dir / "bench").glob("train-*.json"))) if r.get("bench") == "train"
    ]
    if not benches:
        return None
    body = []
    for path, b in benches:
        notes = b.get("notes") or {}
        name = f"`{path.name}`"
        for key, c in b["configs"].items():
            if "error" in c:
                body.append(
                    [
                        name,
                        b["weights"],
                        key,
                        *["–"] * 7,
                        f"failed ({c['error']}) {notes.get(key, '')}".strip(),
                        record_device(b),
                    ]
                )
                continue
            ratio = b.get("ratios", {}).get(key, {})
            body.append(
                [
                    name,
                    b["weights"],
                    key,
                    num(c["tokens_per_second"], ".0f"),
                    num(c["mean_tokens_per_step"], ".0f"),
                    num(c["median_step_seconds"], ".3f"),
                    mfu_pct(c.get("mfu")),
                    num(c["peak_gpu_gib"], ".2f"),
                    num(ratio.get("tokens_per_second_over_full"), ".2f"),
                    num(ratio.get("tokens_per_second_over_reference"), ".3f"),
                    notes.get(key, ""),
                    record_device(b),
                ]
            )
        for key in notes.keys() - b["configs"].keys():  # asked for, but the run ended before its record
            body.append([name, b["weights"], key, *["–"] * 7, f"not measured: {notes[key]}", record_device(b)])
    header = [
        "record",
        "weights",
        "config@GPUs",
        "tok/s",
        "tok/step",
        "s/step",
        "MFU %",
        "peak GiB/GPU",
        "x full",
        "x reference",
        "note",
        "device",
    ]
    return table(header, body)


def bench_sections(results_dir: Path) -> str:
    """Markdown for summary.md and the README: every bench table whose records exist."""
    parts = []
    speed = train_speed_table(results_dir)
    if speed:
        parts += [
            "### Training speed and memory (`just bench train`)",
            "",
            (
                "From `results/bench/train-*.json`: each configuration is a short `just train` run on the real "
                "training mix in its own process (30 steps, the first 5 left out), beside `reference`, a plain "
                "PyTorch step at a fixed 8 x 512 tokens. Ratios are within one record (one machine). "
                "`weights: random` = random-init weights at the real model's shape: speed and memory only."
            ),
            "",
            speed,
            "",
        ]
    parts += scale_section(results_dir)
    return "\n".join(parts)
