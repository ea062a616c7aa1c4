"""The fine-tuning table of `just report`: one row per training record (results/train/).

Reads JSON records only. Fine-tuning runs are real trainings whose models are evaluated in the accuracy table;
the training benches (short runs, often random weights, measuring speed and memory) are medbench/bench/'s.
"""

from __future__ import annotations

from pathlib import Path

from medbench.records.reader import read_json
from medbench.report.markdown import code, device, escape, num, table


def load_records(paths: list[Path]) -> list[tuple[Path, dict]]:
    return [(path, read_json(path)) for path in sorted(paths)]


def mfu_pct(x) -> str:
    return num(None if x is None else 100 * x, ".2f")


def record_device(record: dict) -> str:
    return device((record.get("hardware") or {}).get("gpu") or record.get("gpu"))


def last_eval_loss(record: dict) -> float | None:
    """The held-out loss at the last step trained, from the loss history (the record's final_eval_loss is the
    kept checkpoint's, evaluated again after it was reloaded)."""
    evals = [h for h in record.get("loss_history") or [] if isinstance(h, dict) and "eval_loss" in h]
    if not evals:
        return record.get("final_eval_loss")
    last = max(h["step"] for h in evals)
    return next(h["eval_loss"] for h in evals if h["step"] == last)


def finetune_table(results_dir: Path, published: bool = True) -> str | None:
    """One row per training record (results/train/*.json) with full provenance: what was trained, for how long, how
    far its held-out loss got beside the loss a model that knows only the letter frequencies reaches (the floor),
    and how fast. Records without full provenance are listed apart by the report."""
    from medbench.records.verify import provenance_gaps

    runs = [
        (p, r)
        for p, r in load_records(list((results_dir / "train").glob("*.json")))
        if isinstance(r, dict) and "method" in r and "steps" in r and not provenance_gaps(r)
    ]
    if not runs:
        return None
    body = []
    for path, r in runs:
        steady = r.get("steady_state") or {}
        best = r.get("best_checkpoint") or {}
        floor = (r.get("loss_floor") or {}).get("per_token")
        seed = (r.get("training_arguments") or {}).get("seed")
        seen = r.get("contaminated")
        body.append(
            [
                code(path.name),
                escape(r["model"]),
                escape(r["method"]) + (" (positive control)" if seen else ""),
                escape(r.get("profile") or "study"),
                num(seed, "d") if isinstance(seed, int) else "–",
                r["steps"],
                num(r.get("epochs"), ".2f"),
                num(r.get("tokens_trained"), ",d") if isinstance(r.get("tokens_trained"), int) else "–",
                f"{best.get('step', '–')}",
                num(best.get("eval_loss"), ".3f"),
                num(last_eval_loss(r), ".3f"),
                num(floor, ".3f"),
                num(r.get("final_train_loss"), ".3f"),
                num(steady.get("tokens_per_second") or r.get("train_tokens_per_second"), ".0f"),
                mfu_pct(steady.get("mfu") if steady else r.get("mfu")),
                num((r.get("memory") or {}).get("peak_gpu_gib"), ".2f"),
                record_device(r),
            ]
        )
    header = [
        "record",
        "model",
        "method",
        "profile",
        "seed",
        "steps",
        "epochs",
        "tokens",
        "best step",
        "best held-out loss",
        "last held-out loss",
        "loss floor",
        "last train loss",
        "train tok/s",
        "MFU %",
        "GPU GiB",
        "device",
    ]
    return table(header, body)


def training_section(results_dir: Path) -> str:
    """Markdown for summary.md and docs/results.md, or an empty string when there is no training record."""
    finetune = finetune_table(results_dir)
    if not finetune:
        return ""
    return "\n".join(
        [
            (
                "From `results/train/` (`just train MODEL METHOD --profile protocol --seed N`). Held-out loss: the "
                "completion loss on KorMedMCQA valid, watched every few steps; **best step**: the checkpoint kept "
                "and evaluated (lowest held-out loss). **loss floor**: the per-token loss of a model that knows only "
                "the answer letters' frequencies (the letter's entropy spread over the completion's tokens): a "
                "held-out loss at the floor learned the letter prior and nothing else. tok/s and MFU are steady "
                "state (first steps left out); MFU = 6 x params x tok/s / bf16 peak; GPU GiB is rank 0's peak."
            ),
            "",
            finetune,
            "",
        ]
    )
