"""Results folders gathered from several machines, merged into one: `just merge DIR…` (or `just report --merge DIR`).

Each source is a results folder (or a folder of them) as `just eval` / `just train` / `just bench` left it:
runs/<run-id>/, train/*.json and *-loss.png, bench/*.json. A run is copied whole (record, samples, lm-eval's
results, run_config, cache) when its id is new here; a run already here with the same content (its
record.json, run_config.json and samples files, byte for byte) is the same run and is skipped, so
merging twice counts nothing twice; a run id already here with other content is refused, before
anything is copied, naming both folders: two different runs under one id would make the report count
one of them silently. Runs without a record.json (still running, or stopped) are left out and listed.
The same rules hold for the files under train/ and bench/.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from medbench.records.io import RecordError

RUN_CONTENT = ("record.json", "run_config.json")  # with samples_*.jsonl.gz: what makes a run the same run
FILE_FOLDERS = ("train", "bench")


class MergeError(RecordError):
    pass


@dataclass
class MergePlan:
    copy_runs: list[tuple[Path, Path]] = field(default_factory=list)  # (source run dir, destination)
    copy_files: list[tuple[Path, Path]] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"{len(self.copy_runs)} run(s) and {len(self.copy_files)} file(s) to copy",
            f"{len(self.identical)} already here (identical)",
        ]
        if self.unfinished:
            parts.append(f"{len(self.unfinished)} unfinished run(s) left out: {', '.join(self.unfinished)}")
        return "; ".join(parts)


def results_folders(source: Path) -> list[Path]:
    """`source` itself when it is a results folder (has runs/, train/ or bench/), else its subfolders that are."""
    source = Path(source)
    if not source.is_dir():
        raise MergeError(f"{source}: no such folder")

    def is_results(p: Path) -> bool:
        return any((p / name).is_dir() for name in ("runs", *FILE_FOLDERS))

    if is_results(source):
        return [source]
    found = sorted(p for p in source.iterdir() if p.is_dir() and is_results(p))
    if not found:
        raise MergeError(f"{source}: not a results folder (no runs/, train/ or bench/ in it or in its subfolders)")
    return found


def run_content(run_dir: Path) -> dict[str, bytes]:
    files = [run_dir / name for name in RUN_CONTENT] + sorted(run_dir.glob("samples_*.jsonl.gz"))
    return {f.name: f.read_bytes() for f in files if f.exists()}


def plan_merge(sources: list[Path], into: Path) -> MergePlan:
    """What merging `sources` into `into` would do; conflicts are collected, not raised."""
    into = Path(into)
    plan = MergePlan()
    claimed: dict[Path, Path] = {}  # destination -> the source it will come from (two sources may clash too)
    for folder in [f for s in sources for f in results_folders(s)]:
        if folder.resolve() == into.resolve():
            continue
        for run_dir in sorted((folder / "runs").glob("*/")) if (folder / "runs").is_dir() else []:
            if not (run_dir / "record.json").exists():
                plan.unfinished.append(str(run_dir))
                continue
            dest = into / "runs" / run_dir.name
            other = claimed.get(dest, dest if (dest / "record.json").exists() else None)
            if other is None:
                claimed[dest] = run_dir
                plan.copy_runs.append((run_dir, dest))
            elif run_content(other) == run_content(run_dir):
                plan.identical.append(run_dir.name)
            else:
                plan.conflicts.append(f"run {run_dir.name}: {run_dir} and {other} differ")
        for sub in FILE_FOLDERS:
            for path in sorted((folder / sub).glob("*")) if (folder / sub).is_dir() else []:
                if not path.is_file():
                    continue
                dest = into / sub / path.name
                other = claimed.get(dest, dest if dest.exists() else None)
                if other is None:
                    claimed[dest] = path
                    plan.copy_files.append((path, dest))
                elif other.read_bytes() == path.read_bytes():
                    plan.identical.append(f"{sub}/{path.name}")
                else:
                    plan.conflicts.append(f"{sub}/{path.name}: {path} and {other} differ")
    return plan


def merge(sources: list[Path], into: Path) -> MergePlan:
    """Copies what `plan_merge` found, or copies nothing and raises when two different things share a name."""
    plan = plan_merge(sources, into)
    if plan.conflicts:
        raise MergeError(
            "nothing merged: the same name holds different content in "
            f"{len(plan.conflicts)} place(s) (rename or remove one of each, then merge again):\n  "
            + "\n  ".join(plan.conflicts)
        )
    for source, dest in plan.copy_runs:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(into) / ".merging" / dest.name  # beside runs/, so the report never reads half a run
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, tmp)
        tmp.rename(dest)  # a run appears whole or not at all
    for source, dest in plan.copy_files:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
    shutil.rmtree(Path(into) / ".merging", ignore_errors=True)
    return plan
