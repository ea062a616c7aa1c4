"""The fine-tuning table of `just report`: one row per training record (results/train/).

Reads JSON records only. Fine-tuning runs are real trainings whose models are evaluated in the accuracy table;
the training benches (short runs, often random weights, measuring speed and memory) are medbench/bench/'s.
"""

from __future__ import annotations

from pathlib import Path

from medbench.records.reader import read_json
from medbench.report.markdown import device, num, table


def load_records(paths: list[Path]) -> list[tuple[Path, dict]]:
    return [(path, read_json(path)) for path in sorted(paths)]


def mfu_pct(x) -> str:
    return num(None if x is None else 100 * x, ".2f")


def record_device(record: dict) -> str:
    return device((record.get("hardware") or {}).get("gpu") or record.get("gpu"))


def finetune_table(results_dir: Path) -> str | None:
    """One row per train_record (results/train/*.json): what was trained, for how long, how fast."""
    runs = [
        (p, r) for p, r in load_records(list((results_dir / "train").glob("*.json"))) if "method" in r and "steps" in r
    ]
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
                mfu_pct(steady.get("mfu") if steady else r.get("mfu")),
                num((r.get("memory") or {}).get("peak_gpu_gib"), ".2f"),
                num(r.get("final_train_loss"), ".3f"),
                num(r.get("final_eval_loss"), ".3f"),
                record_device(r),
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
    return "\n".join(parts)
