"""The beyond-one-GPU tables of `just report`, from dev/gpu_scale.py's records (results/bench/scale-*.json).

Throughput ratios come from the records (each measured on one machine, side by side). Training rows give
tokens/s two ways: the steady-state mean (all timed steps) and one median step (its tokens over its
seconds), because a single slow step in a run of four moves the mean far more than the median.
"""

from __future__ import annotations

from pathlib import Path

from medbench.records.reader import read_json
from medbench.report.markdown import device, num, table


def _records(results_dir: Path, part: str) -> list[tuple[Path, dict]]:
    """The records of a part (`train` takes train-8b and train-1b too)."""
    paths = sorted((results_dir / "bench").glob("scale-*.json"))
    records = ((p, read_json(p)) for p in paths)
    return [(p, r) for p, r in records if r.get("part") == part or str(r.get("part", "")).startswith(part + "-")]


def _units(results_dir: Path, part: str):
    """(record path, record, unit name, unit) for every measured unit of a part's records."""
    for path, r in _records(results_dir, part):
        for name, u in r["units"].items():
            if isinstance(u, dict):
                yield path, r, name, u


def _placement(device_map) -> str:
    if isinstance(device_map, dict):
        return ", ".join(f"{k}: {v}" for k, v in device_map.items())
    return device_map or "–"


def _machine(r: dict) -> str:
    return f"{r.get('gpu_count', '?')} x {device(r.get('gpu'))}"


def dp_table(results_dir: Path) -> str | None:
    body = []
    for path, r, name, u in _units(results_dir, "dp"):
        scaling = (r.get("scaling") or {}).get(name) or {}
        same = scaling.get("identical_to_x1") or {}
        body.append(
            [
                f"`{path.name}`",
                u.get("parallel", {}).get("processes") or name.lstrip("x"),
                u.get("questions"),
                num(u.get("questions_per_second"), ".1f"),
                num(u.get("eval_seconds"), ".1f"),
                num(u.get("wall_seconds"), ".1f"),
                num(scaling.get("questions_per_second_over_x1"), ".2f"),
                f"{same['same_answer']}/{same['questions']}" if same else "–",
                num(same.get("max_abs_score_difference"), ".3f"),
                num(max(u.get("parallel", {}).get("peak_gpu_gib_per_process") or [], default=None), ".2f"),
                u.get("error") or "",
                _machine(r),
            ]
        )
    header = ["record", "GPUs", "questions", "questions/s", "eval s", "wall s", "x 1 GPU", "same answer as 1 GPU"]
    header += ["max abs score diff", "peak GiB/process", "note", "machine"]
    return table(header, body) if body else None


def train_table(results_dir: Path) -> str | None:
    body = []
    for path, r, name, u in _units(results_dir, "train"):
        scaling = r.get("scaling") or {}
        median = None
        if u.get("median_step_seconds") and u.get("mean_tokens_per_step"):
            median = u["mean_tokens_per_step"] / u["median_step_seconds"]
        ratios = (scaling.get(name) or {}).items()
        ratio = next((v for k, v in ratios if k.startswith("tokens_per_second_over")), None)
        smi = u.get("gpu_memory_used_peak_gib") or []
        body.append(
            [
                f"`{path.name}`",
                name,
                num(u.get("tokens_per_second"), ".0f"),
                num(median, ".0f"),
                num(ratio, ".2f"),
                num(u.get("peak_gpu_gib_rank0"), ".1f"),
                num(max(smi, default=None), ".1f"),
                num(None if u.get("mfu") is None else 100 * u["mfu"], ".1f"),
                (u.get("error") or u.get("reason") or "")[:160],
                _machine(r),
            ]
        )
    header = ["record", "config@GPUs", "tok/s (mean)", "tok/s (median step)", "x base (mean)", "peak GiB rank 0"]
    header += ["nvidia-smi peak GiB/GPU", "MFU %", "note", "machine"]
    return table(header, body) if body else None


def oversize_table(results_dir: Path) -> str | None:
    body = []
    for path, r, name, u in _units(results_dir, "oversize"):
        if name == "sharded-270m":
            sharded = u.get("sharded") or {}
            placed = (sharded.get("parallel") or {}).get("placement") or {}
            same = sharded.get("identical_to_one_gpu") or {}
            where = placed.get("device_map") or "one GPU (accelerate's balanced map kept it whole)"
            qps, peak = sharded.get("questions_per_second"), None
            note = f"same answers as one GPU: {same.get('same_answer')}/{same.get('questions')}" if same else ""
        else:
            where, qps = u.get("device_map"), u.get("questions_per_second")
            peak = max(u.get("peak_gpu_gib_per_gpu") or [], default=None)
            note = ""
        body.append(
            [
                f"`{path.name}`",
                name,
                u.get("shape") or (u.get("weights") and "gemma3-270m"),
                num(u.get("estimated_gib"), ".1f"),
                _placement(where),
                num(qps, ".2f"),
                num(peak, ".1f"),
                (u.get("error") or note)[:160],
                _machine(r),
            ]
        )
    header = ["record", "unit", "shape", "weights GiB (estimate)", "placement", "questions/s", "peak GiB/GPU"]
    header += ["error / note", "machine"]
    return table(header, body) if body else None


def batch_table(results_dir: Path) -> str | None:
    body = []
    for path, r, name, u in _units(results_dir, "batch"):
        for batch, t in sorted((u.get("tries") or {}).items(), key=lambda kv: int(kv[0])):
            fits = "no" if t.get("error") else "yes"
            body.append(
                [
                    f"`{path.name}`",
                    name,
                    batch,
                    fits,
                    num(t.get("peak_gpu_gib_rank0"), ".1f"),
                    num(max(t.get("gpu_memory_used_peak_gib") or [], default=None), ".1f"),
                    num(t.get("tokens_per_second_whole_run"), ".0f"),
                    (t.get("error") or "")[:120],
                    _machine(r),
                ]
            )
        largest = u.get("largest")
        searched = f"largest that fits: {largest}" if u.get("done") else "search stopped by its time budget"
        body.append([f"`{path.name}`", name, "–", searched, "", "", "", "", _machine(r)])
    header = ["record", "config@GPUs", "rows of 1,024 tokens", "fits", "peak GiB rank 0", "nvidia-smi peak GiB"]
    header += ["tok/s (whole run)", "error", "machine"]
    return table(header, body) if body else None


def scale_section(results_dir: Path) -> list[str]:
    """Markdown lines for the training section: the tables whose records exist."""
    parts = []
    for title, text, rendered in (
        (
            "Data-parallel evaluation (`just eval … --gpus N`)",
            "From `results/bench/scale-dp-*.json` (`dev/gpu_scale.py --part dp`): all 4,282 zero-shot mc "
            "questions, one process per GPU; answers compared question by question with the one-GPU run.",
            dp_table(results_dir),
        ),
        (
            "Training on several GPUs (`just train … --gpus N`)",
            "From `results/bench/scale-train-*.json` (`dev/gpu_scale.py --part train|train-1b`): a few steps "
            "per configuration on a seeded sample of the training mix, random weights at the named shape; "
            "`x base` is the record's own ratio to the configuration's fewest-GPU run.",
            train_table(results_dir),
        ),
        (
            "The largest per-GPU batch (Qwen3-8B shape)",
            "From `results/bench/scale-batch-8b-*.json` (`dev/gpu_scale.py --part batch`): every row padded to "
            "1,024 tokens (the longest a training example may be), batch doubled while 3 steps run.",
            batch_table(results_dir),
        ),
        (
            "Models larger than one GPU",
            "From `results/bench/scale-oversize-*.json` (`dev/gpu_scale.py --part oversize`): random "
            "weights built on the meta device, sharded in bf16 or NF4 on one GPU, zero-shot mc on a few questions.",
            oversize_table(results_dir),
        ),
    ):
        if rendered:
            parts += [f"### {title}", "", text, "", rendered, ""]
    return parts
