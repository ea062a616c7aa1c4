"""The bench records' tables for `just report` (results/bench/*.json): evaluation speed end to end and the decode
step, training speed per method and the beyond-one-GPU tables. The CLI hands them to the report, which never imports
this package. A record without full provenance (records/verify.py) is marked `legacy` where it is shown."""

from __future__ import annotations

from pathlib import Path

from medbench.bench.scale import scale_section
from medbench.records.verify import provenance_gaps
from medbench.report.markdown import code, escape, num, table
from medbench.report.training import load_records, mfu_pct, record_device


def record_name(path: Path, record: dict) -> str:
    return code(path.name) + ("" if not provenance_gaps(record) else " (legacy)")


def eval_speed_table(results_dir: Path) -> str | None:
    """`just bench eval`'s end-to-end rows: the user's command, timed as a user runs it, beside stock lm-eval's on
    the same tasks (stock on the first questions of each task only, where it would take too long), and the ratio of
    their questions per second."""
    benches = [
        (p, r)
        for p, r in load_records(list((results_dir / "bench").glob("eval-*.json")))
        if isinstance(r, dict) and r.get("end_to_end")
    ]
    if not benches:
        return None
    body = []
    for path, b in benches:
        rows = b["end_to_end"]
        by_mode: dict[str, dict[str, dict]] = {}
        for row in rows:
            by_mode.setdefault(row["mode"], {})[row["method"]] = row
        for mode, methods in by_mode.items():
            ours, stock = methods.get("medbench"), methods.get("stock_lm_eval_hf")
            ratio = (
                ours["questions_per_second"] / stock["questions_per_second"]
                if ours and stock and stock.get("questions_per_second")
                else None
            )
            for name, row in methods.items():
                body.append(
                    [
                        record_name(path, b),
                        mode,
                        escape(name),
                        row.get("questions"),
                        num(row.get("wall_seconds"), ".1f"),
                        num(row.get("load_seconds"), ".1f"),
                        num(row.get("eval_seconds"), ".1f"),
                        num(row.get("questions_per_second"), ".2f"),
                        num(row.get("generated_tokens_per_second"), ",.0f"),
                        num(ratio, ".1f") if name == "medbench" else "1" if name == "stock_lm_eval_hf" else "–",
                        escape(b.get("device") or "CPU"),
                    ]
                )
    header = ["record", "mode", "method", "questions", "wall s", "load s", "eval s", "questions/s", "generated tok/s",
              "questions/s x stock", "device"]  # fmt: skip
    return table(header, body)


def decode_table(results_dir: Path) -> str | None:
    """`just bench eval --decode`'s fixed-length decoding: output tokens per second of the engine's decode step at a
    model shape, per batch of slots, and whether the step ran as a captured CUDA graph."""
    benches = [
        (p, r)
        for p, r in load_records(list((results_dir / "bench").glob("decode-*.json")))
        if isinstance(r, dict) and r.get("rows")
    ]
    if not benches:
        return None
    body = []
    for path, b in benches:
        for row in b["rows"]:
            engine = row.get("engine") or {}
            graphs = "yes" if engine.get("graphs") else f"no: {escape(engine.get('graphs_reason') or '')[:60]}"
            body.append(
                [
                    record_name(path, b),
                    escape(b.get("shape")),
                    escape(b.get("weights")),
                    row["batch"],
                    row["sequences"],
                    num(row["output_tokens_per_second"], ",.0f"),
                    num(row["decode_step_seconds"], ".4f"),
                    num(row.get("peak_gpu_gib"), ".1f"),
                    graphs,
                    record_device(b),
                ]
            )
    header = ["record", "shape", "weights", "slots", "sequences", "output tok/s", "s/decode step", "GPU GiB",
              "CUDA graph", "device"]  # fmt: skip
    return table(header, body)


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
        name = record_name(path, b)
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
    evaluation, decode = eval_speed_table(results_dir), decode_table(results_dir)
    if evaluation:
        parts += [
            "### Evaluation end to end (`just bench eval`)",
            "",
            (
                "From `results/bench/eval-*.json`: each row is the command a user types, run as a new process and "
                "timed from start to exit (model load included), on the same tasks. Stock lm-eval (`lm-eval run "
                "--model hf`) answers the first questions of each task only, where the whole set would take too "
                "long; the ratio is of questions per second."
            ),
            "",
            evaluation,
            "",
        ]
    if decode:
        parts += [
            "### The decode step (`just bench eval --decode`)",
            "",
            (
                "From `results/bench/decode-*.json`: the generation engine decoding a fixed number of tokens for "
                "every slot at a model shape (random weights: speed and memory only)."
            ),
            "",
            decode,
            "",
        ]
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
