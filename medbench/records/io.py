"""Reading and writing what runs leave on disk: JSON records, gzipped samples, claimed directories."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import re
import shutil
from pathlib import Path

from medbench.errors import MedbenchError


class RecordError(MedbenchError):
    """A record or run directory that cannot be used; the message starts with the file."""


def samples_path(run_dir: Path, task: str) -> Path:
    """lm-eval's per-question log of one task, gzipped (repetitive JSON compresses well)."""
    return run_dir / f"samples_{task}.jsonl.gz"


# The doc fields a sample keeps: what identifies the question and its key. The question and its options are the
# vendored data's (the record holds every data file's sha256): records/questions.py reads them back by id.
SAMPLE_DOC_KEYS = ("id", "dataset", "exam", "split", "year", "subject", "answer", "answer_index", "rotation")
SAMPLE_KEYS = ("doc_id", "target", "filtered_resps", "filter", "metrics")


def compact_sample(sample: dict) -> dict:
    """What a run keeps of lm-eval's logged sample: the question's id and key, the scores or the generated text, the
    metric. Left out: the rendered prompt (one copy per answer letter; the record's prompts_sha256 names them), the
    question text (the data's), lm-eval's hashes, and for scored samples `resps`, a copy of `filtered_resps`."""
    kept = {k: sample[k] for k in SAMPLE_KEYS if k in sample}
    if not _scored(sample.get("filtered_resps")):
        kept["resps"] = sample.get("resps")  # a generation's raw text: what the extracted answer was read from
    kept.update({m: sample[m] for m in sample.get("metrics", []) if m in sample})
    kept["doc"] = {k: v for k, v in sample["doc"].items() if k in SAMPLE_DOC_KEYS}
    return kept


def _scored(filtered) -> bool:
    return bool(filtered) and all(
        isinstance(f, (list, tuple)) and isinstance(f[0], (int, float)) and not isinstance(f[0], bool) for f in filtered
    )


def write_samples(path: Path, samples: list[dict]) -> None:
    # mtime=0: the same samples give the same bytes.
    with _replacing(path) as tmp, open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for s in samples:
            gz.write((json.dumps(s, ensure_ascii=False, default=str) + "\n").encode("utf-8"))


def read_samples(path: Path):
    """(line number, raw line) pairs of a samples file."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        yield from enumerate(f, start=1)


def write_json(path: Path, obj) -> None:
    """Written to a temporary file and renamed: a killed process or a full disk never leaves half a record."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n"
    with _replacing(path) as tmp:
        tmp.write_text(text)


def write_error(path: Path, e: OSError) -> RecordError:
    """A failed write as a user error: which file, why, what to do."""
    return RecordError(
        f"cannot write {path}: {e.strerror or e}; free space or make {path.parent} writable "
        f"(MEDBENCH_RESULTS and MEDBENCH_CHECKPOINTS move medbench's folders)"
    )


@contextlib.contextmanager
def _replacing(path: Path):
    """A temporary path beside `path`, renamed onto it when the block succeeds and removed when it fails."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        tmp.replace(path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise write_error(path, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError as e:
        raise RecordError(f"{path}: not valid UTF-8 (byte {e.start}): the file is corrupt") from None


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


def claim_dir(
    directory: Path,
    config: dict,
    *,
    config_name: str,
    markers: tuple[str, ...],
    force: bool,
    what: str,
    allowed_changes: frozenset[str] = frozenset(),
) -> bool:
    """Make `directory` the home of the run `config`, or refuse; True when this call created it.

    A directory already holding a run may only be resumed by the same configuration (anything but
    `allowed_changes`). `force` deletes it first, but only a directory that holds a medbench run
    (its config or one of `markers`) or nothing: never a user's folder.
    """
    config_path = directory / config_name
    try:
        if force and directory.exists():
            ours = any((directory / name).exists() for name in (config_name, *markers)) or not any(directory.iterdir())
            if not ours:
                raise RecordError(
                    f"--force would delete {directory}, which holds no medbench {what}; "
                    f"remove it yourself or choose another name"
                )
            shutil.rmtree(directory)
        current = json.loads(json.dumps(config, default=str))
        if config_path.exists():
            try:
                previous = read_json(config_path)
            except RecordError as e:
                raise RecordError(f"{e}; --force starts the {what} again") from None
            changed = config_changes(previous if isinstance(previous, dict) else {}, current, allowed_changes)
            if changed:
                raise RecordError(
                    f"{directory} ({what}) was started with other {', '.join(changed)}; re-run it as "
                    f"it was to resume, or use --force (or another name) to start again"
                )
        elif (
            directory.exists() and any(directory.iterdir()) and not any((directory / name).exists() for name in markers)
        ):
            raise RecordError(
                f"{directory} holds no medbench {what} ({config_name} is missing); remove it "
                f"yourself or choose another name"
            )
        created = not directory.exists()
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(Path(e.filename or directory), e) from None
    try:
        write_json(config_path, current)
    except RecordError:
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return created


# A run id names a folder in results/runs/: never a path, never hidden, never longer than a file name can be.
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,127}")


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise RecordError(
            f"invalid run id {run_id!r}: a run id names a folder in results/runs/, so it is letters, "
            f"digits, '.', '_', '+' and '-' (not starting with '.'), at most 128 characters, "
            f"never a path"
        )
    return run_id


@contextlib.contextmanager
def run_lock(directory: Path, what: str):
    """Hold `directory` for this process (a lock file beside it, `.NAME.lock`): a second run on it is refused.

    The lock is an fcntl lock, so a killed process never leaves a stale one; the file is removed on
    release (and re-checked on acquisition, so a file removed meanwhile is never trusted).
    """
    lock_path = directory.with_name(f".{directory.name}.lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RecordError(
                    f"{directory} is in use by another medbench {what} (pid {holder}); wait for it to "
                    f"finish, or choose another name"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file as we opened it: take the new one
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
    except OSError as e:
        raise write_error(Path(e.filename or lock_path), e) from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)
