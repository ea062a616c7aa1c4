"""Results folders gathered from several machines, merged into one: `just merge DIR…` (or `just report --merge DIR`).

Each source is a results folder (or a folder of them) as `just eval` / `just train` / `just bench` left it:
runs/<run-id>/, train/*.json and *-loss.png, bench/*.json. Nothing from a source is trusted before it is read:

- only plain files and folders are taken: a symbolic link, a device, a pipe anywhere in what would be copied stops
  the merge before anything is copied (a link would copy a file from outside the folder, a device file would write
  until the disk is full);
- every run is read as the report reads it (records/reader.py: its record.json against the schema, its samples
  against the record), and keyed by the run id inside its record, as the report keys runs: it is merged into
  runs/<that id>/ whatever its folder is called, and the runs already here are keyed by the ids inside theirs;
- a run id already here (or in two sources) with the same content (its record.json and samples, byte for byte) is
  the same run and is counted once; with other content, nothing is merged and both places are named; so is a
  runs/<id>/ here that holds no finished run of that id (a run in progress, another run's folder);
- train/ and bench/ files are JSON records that must parse (and their loss-curve PNGs), compared the same way.

The merge is staged in a hidden folder beside runs/ and each run renamed into place; a failure part-way removes
what this merge had put in place, so results are either merged whole or left as they were. Response caches
(runs/*/cache/) are never copied: a merged run is a record, not a run to resume.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from medbench.records.io import RecordError, check_run_id, read_json

RUN_CONTENT = ("record.json",)  # with samples_*.jsonl.gz: what makes a run the same run
FILE_FOLDERS = ("train", "bench")
FILE_SUFFIXES = (".json", ".png")
NOT_COPIED = ("cache",)


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


def _plain(path: Path) -> None:
    """Refuse anything but a plain file or folder, without following a link."""
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        raise MergeError(f"{path}: a symbolic link; merge copies plain files only: replace it with the file itself")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise MergeError(f"{path}: not a plain file or folder (a device, pipe or socket); remove it and merge again")


def results_folders(source: Path) -> list[Path]:
    """`source` itself when it is a results folder (has runs/, train/ or bench/), else its subfolders that are."""
    source = Path(source)
    if not source.exists():
        raise MergeError(f"{source}: no such folder")
    _plain(source)
    if not source.is_dir():
        raise MergeError(f"{source}: not a folder")

    def is_results(p: Path) -> bool:
        # A linked runs/ makes a results folder too: plan_merge then refuses the link, never follows it.
        return any((p / name).is_symlink() or (p / name).is_dir() for name in ("runs", *FILE_FOLDERS))

    if is_results(source):
        return [source]
    found = sorted(p for p in source.iterdir() if not p.is_symlink() and p.is_dir() and is_results(p))
    if not found:
        raise MergeError(f"{source}: not a results folder (no runs/, train/ or bench/ in it or in its subfolders)")
    return found


def run_files(run_dir: Path) -> list[Path]:
    """Every file a merge copies from a run folder (its response cache left out), each checked to be plain."""
    _plain(run_dir)
    out = []
    for root, dirs, files in os.walk(run_dir):  # never follows links: os.walk's default
        here = Path(root)
        for name in dirs:
            _plain(here / name)
        dirs[:] = [d for d in dirs if not (here == run_dir and d in NOT_COPIED)]
        for name in files:
            _plain(here / name)
            out.append(here / name)
    return sorted(out)


def run_content(run_dir: Path) -> dict[str, bytes]:
    files = [run_dir / name for name in RUN_CONTENT] + sorted(run_dir.glob("samples_*.jsonl.gz"))
    return {f.name: f.read_bytes() for f in files if f.exists()}


def _checked_run(run_dir: Path) -> str:
    """The run's id, after reading it as the report does; an id that cannot name a folder is refused."""
    from medbench.records.reader import load_run

    run = load_run(run_dir)
    try:
        return check_run_id(run.run_id)
    except RecordError as e:
        raise MergeError(f"{run_dir / 'record.json'}: {e}") from None


def _run_id_here(run_dir: Path) -> str | None:
    """The id inside a run folder already in the target (None: no finished run, or a record that names none)."""
    try:
        record = read_json(run_dir / "record.json")
    except (OSError, RecordError):
        return None
    run_id = record.get("run_id") if isinstance(record, dict) else None
    return run_id if isinstance(run_id, str) else None


def runs_here(into: Path) -> dict[str, Path]:
    """The target's runs keyed by the run id inside each record (as the report keys them), not by folder name."""
    runs = Path(into) / "runs"
    if not runs.is_dir():
        return {}
    found: dict[str, Path] = {}
    for run_dir in sorted(runs.iterdir()):
        if not run_dir.is_symlink() and run_dir.is_dir():
            run_id = _run_id_here(run_dir)
            if run_id is not None:
                found.setdefault(run_id, run_dir)
    return found


def _checked_file(path: Path) -> None:
    _plain(path)
    if path.suffix not in FILE_SUFFIXES:
        raise MergeError(f"{path}: not a record (.json) or loss curve (.png); remove it and merge again")
    if path.suffix == ".json" and not isinstance(read_json(path), dict):
        raise MergeError(f"{path}: not a JSON object")


def plan_merge(sources: list[Path], into: Path) -> MergePlan:
    """What merging `sources` into `into` would do, every incoming file checked; conflicts are collected."""
    into = Path(into)
    plan = MergePlan()
    here_runs = runs_here(into)  # run id (inside its record) -> its folder here
    claimed: dict[str, Path] = {}  # run id -> the incoming run it will come from (two sources may clash too)
    claimed_files: dict[Path, Path] = {}  # destination -> the incoming file
    for folder in [f for s in sources for f in results_folders(s)]:
        if folder.resolve() == into.resolve():
            continue
        for name in ("runs", *FILE_FOLDERS):
            if os.path.lexists(folder / name):
                _plain(folder / name)  # a linked runs/, train/ or bench/ is refused, never followed
        runs = folder / "runs"
        for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
            run_files(run_dir)
            if not run_dir.is_dir():
                continue
            if not (run_dir / "record.json").exists():
                plan.unfinished.append(str(run_dir))
                continue
            run_id = _checked_run(run_dir)
            dest = into / "runs" / run_id
            other = claimed.get(run_id) or here_runs.get(run_id)
            if other is None and os.path.lexists(dest):
                plan.conflicts.append(
                    f"run {run_id}: {dest} is here without a finished run of that id (a run in progress, or "
                    f"another run's folder), so {run_dir} cannot be merged into it"
                )
            elif other is None:
                claimed[run_id] = run_dir
                plan.copy_runs.append((run_dir, dest))
            elif run_content(other) == run_content(run_dir):
                plan.identical.append(run_id)
            else:
                plan.conflicts.append(f"run {run_id}: {run_dir} and {other} differ")
        for sub in FILE_FOLDERS:
            here = folder / sub
            if not here.is_dir():
                continue
            for path in sorted(here.iterdir()):
                _checked_file(path)
                dest = into / sub / path.name
                other = claimed_files.get(dest, dest if dest.exists() else None)
                if other is None:
                    claimed_files[dest] = path
                    plan.copy_files.append((path, dest))
                elif other.read_bytes() == path.read_bytes():
                    plan.identical.append(f"{sub}/{path.name}")
                else:
                    plan.conflicts.append(f"{sub}/{path.name}: {path} and {other} differ")
    return plan


def merge(sources: list[Path], into: Path) -> MergePlan:
    """Copies what `plan_merge` found, whole or not at all; raises (copying nothing) when two different things
    share a name."""
    into = Path(into)
    plan = plan_merge(sources, into)
    if plan.conflicts:
        raise MergeError(
            "nothing merged: the same name holds different content in "
            f"{len(plan.conflicts)} place(s) (rename or remove one of each, then merge again):\n  "
            + "\n  ".join(plan.conflicts)
        )
    staging = into / f".merging-{os.getpid()}"
    placed: list[Path] = []
    try:
        for k, (source, _) in enumerate(plan.copy_runs):
            staged = staging / "runs" / str(k)
            for path in run_files(source):
                target = staged / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target, follow_symlinks=False)
        for k, (source, _) in enumerate(plan.copy_files):
            target = staging / "files" / str(k)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target, follow_symlinks=False)
        for k, (_, dest) in enumerate(plan.copy_runs):  # every copy made: now into place, one rename each
            dest.parent.mkdir(parents=True, exist_ok=True)
            (staging / "runs" / str(k)).rename(dest)
            placed.append(dest)
        for k, (_, dest) in enumerate(plan.copy_files):
            dest.parent.mkdir(parents=True, exist_ok=True)
            (staging / "files" / str(k)).rename(dest)
            placed.append(dest)
    except BaseException as e:
        for dest in placed:  # rolled back: the results are as they were before this merge
            if dest.is_dir():
                shutil.rmtree(dest)
            else:
                dest.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise MergeError(
                f"nothing merged: {e} (what this merge had copied is removed; {into} is as it was); free space or "
                f"make {into} writable, then merge again"
            ) from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return plan
