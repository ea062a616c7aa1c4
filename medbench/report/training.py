"""The training tables of `just report`: fine-tuning runs (results/train/) and `just bench train` (results/bench/).

Reads JSON records only. Fine-tuning runs are real trainings whose models are evaluated in the
accuracy table; bench rows are short runs (often random weights) that measure speed and memory.
"""

from __future__ import annotations

from pathlib import Path

from medbench.records.reader import read_json
from medbench.report.markdown import device, num, table
from medbench.report.scale import scale_section


def _load(paths: list[Path]) -> list[tuple[Path, dict]]:
    return [(path, read_json(path)) for path in sorted(paths)]


def _mfu_pct(x) -> str:
    return num(None if x is None else 100 * x, ".2f")


def _gpu(record: dict) -> str:
    return device((record.get("hardware") or {}).get("gpu") or record.get("gpu"))


def finetune_table(results_dir: Path) -> str | None:
    """One row per train_record (results/train/*.json): what was trained, for how long, how fast."""
    runs = [(p, r) for p, r in _load(list((results_dir / "train").glob("*.json"))) if "method" in r and "steps" in r]
    if not runs:
        return None
    body = []
    for path, r in runs:
        steady = r.get("steady_state") or {}
        deepspeed = Path((r.get("deepspeed") or {}).get("file") or "none").stem
        method = r["method"] + (f" --profile {r['profile']}" if r.get("profile", "study") != "study" else "")
        body.append(
            [
                f"`{path.name}`",
                r["model"],
                method,
                r["data"]["mix"],
                r["examples"],
                r["steps"],
                num(r.get("epochs"), ".2f"),
                f"{deepspeed} x{r.get('gpus', 1)}",
                num(steady.get("tokens_per_second") or r.get("train_tokens_per_second"), ".0f"),
                _mfu_pct(steady.get("mfu") if steady else r.get("mfu")),
                num((r.get("memory") or {}).get("peak_gpu_gib"), ".2f"),
                num(r.get("final_train_loss"), ".3f"),
                num(r.get("final_eval_loss"), ".3f"),
                _gpu(r),
            ]
        )
    header = [
        "record",
        "model",
        "method",
        "mix",
        "examples",
        "steps",
        "epochs",
        "DeepSpeed x GPUs",
        "train tok/s",
        "MFU %",
        "peak GiB",
        "train loss",
        "eval loss",
        "device",
    ]
    return table(header, body)


def bench_table(results_dir: Path) -> str | None:
    """One row per configuration of every `just bench train` record, with its ratios to `full` and `reference`."""
    benches = [
        (p, r) for p, r in _load(list((results_dir / "bench").glob("train-*.json"))) if r.get("bench") == "train"
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
                        _gpu(b),
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
                    _mfu_pct(c.get("mfu")),
                    num(c["peak_gpu_gib"], ".2f"),
                    num(ratio.get("tokens_per_second_over_full"), ".2f"),
                    num(ratio.get("tokens_per_second_over_reference"), ".3f"),
                    notes.get(key, ""),
                    _gpu(b),
                ]
            )
        for key in notes.keys() - b["configs"].keys():  # asked for, but the run ended before its record
            body.append([name, b["weights"], key, *["–"] * 7, f"not measured: {notes[key]}", _gpu(b)])
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


def training_section(results_dir: Path) -> str:
    """Markdown for summary.md and the README: both tables, or an empty string when there are none."""
    parts = []
    finetune = finetune_table(results_dir)
    if finetune:
        parts += [
            "### Fine-tuning runs",
            "",
            (
                "From `results/train/` (`just train MODEL METHOD`). tok/s and MFU are steady-state (the first "
                "steps left out) where the record has it; MFU = 6 x params x tok/s / bf16 peak; peak GiB is GPU "
                "memory of rank 0."
            ),
            "",
            finetune,
            "",
        ]
    bench = bench_table(results_dir)
    if bench:
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
            bench,
            "",
        ]
    parts += scale_section(results_dir)
    return "\n".join(parts)
