"""Reading and writing what runs leave on disk: JSON records, gzipped samples, claimed directories."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

from medbench.errors import MedbenchError


class RecordError(MedbenchError):
    """A record or run directory that cannot be used; the message starts with the file."""


def samples_path(run_dir: Path, task: str) -> Path:
    """lm-eval's per-question log of one task, gzipped (full test sets are ~10× smaller so)."""
    return run_dir / f"samples_{task}.jsonl.gz"


def write_samples(path: Path, samples: list[dict]) -> None:
    # mtime=0: the same samples give the same bytes.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for s in samples:
            gz.write((json.dumps(s, ensure_ascii=False, default=str) + "\n").encode("utf-8"))


def read_samples(path: Path):
    """(line number, raw line) pairs of a samples file."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        yield from enumerate(f, start=1)


def write_json(path: Path, obj) -> None:
    """Written to a temporary file and renamed: a killed process never leaves half a record."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def config_changes(previous: dict, current: dict, allowed: frozenset[str] = frozenset(), prefix: str = "") -> list[str]:
    """Dotted keys whose values differ; `allowed` keys (dotted) may change."""
    out = []
    for key in sorted(set(previous) | set(current)):
        a, b = previous.get(key), current.get(key)
        if f"{prefix}{key}" in allowed:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, allowed, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def claim_dir(directory: Path, config: dict, *, config_name: str, markers: tuple[str, ...], force: bool,
              what: str, allowed_changes: frozenset[str] = frozenset()) -> None:
    """Make `directory` the home of the run `config`, or refuse.

    A directory already holding a run may only be resumed by the same configuration (anything but
    `allowed_changes`). `force` deletes it first, but only a directory that holds a medbench run
    (its config or one of `markers`) or nothing: never a user's folder.
    """
    config_path = directory / config_name
    if force and directory.exists():
        ours = any((directory / name).exists() for name in (config_name, *markers)) or not any(directory.iterdir())
        if not ours:
            raise RecordError(f"--force would delete {directory}, which holds no medbench {what}; "
                              f"remove it yourself or choose another name")
        shutil.rmtree(directory)
    current = json.loads(json.dumps(config, default=str))
    if config_path.exists():
        changed = config_changes(read_json(config_path), current, allowed_changes)
        if changed:
            raise RecordError(f"{directory} ({what}) was started with other {', '.join(changed)}; "
                              f"re-run it as it was to resume, or use --force (or another name) to start again")
    directory.mkdir(parents=True, exist_ok=True)
    write_json(config_path, current)
