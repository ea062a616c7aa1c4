"""The vendored data's checksums: `just data` checks every file in full; each evaluation and training
checks the files it reads (verify_splits), through a hash cache so a run pays milliseconds."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from medbench.data.loader import DataError, Source, hub_dir, source_path
from medbench.paths import cache_dir, data_dir


def verify_checksums(root: Path | None = None) -> list[str]:
    """Check every file listed in data/SHA256SUMS; returns the files checked, raises on a mismatch."""
    root = root or data_dir()
    sums = root / "SHA256SUMS"
    checked = []
    for name, (expected, line_no) in expected_sums(root).items():
        path = root / name
        if not path.exists():
            raise DataError(f"{sums}:{line_no}: {name} is missing")
        # In full, never from the hash cache: `just data` is the check that trusts nothing.
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected:
            raise DataError(f"{sums}:{line_no}: {name} has sha256 {actual}, expected {expected}: the file changed")
        checked.append(name)
    return checked


# --- verification at every run -----------------------------------------------------------------------

HASH_CACHE = "data_sha256.json"  # under MEDBENCH_CACHE: {absolute path: {size, mtime_ns, ctime_ns, ino, sha256}}
# A file changed less than this long before it was hashed may change again within the same timestamp
# tick unseen (git's "racily clean" files): its hash is not remembered.
RACY_SECONDS = 1.0


def expected_sums(root: Path | None = None) -> dict[str, tuple[str, int]]:
    """{file relative to the data folder: (sha256, line of SHA256SUMS)}."""
    root = root or data_dir()
    sums = root / "SHA256SUMS"
    if not sums.exists():
        raise DataError(f"{sums} is missing; restore the vendored data (git checkout data/) and run `just data`")
    out = {}
    for line_no, line in enumerate(sums.read_text().splitlines(), start=1):
        if line.strip():
            expected, name = line.split(maxsplit=1)
            out[name.strip().removeprefix("./")] = (expected, line_no)
    return out


def verify_splits(splits: Iterable[tuple[str, str | None, str]], prefer_hub: bool | None = None) -> dict[str, str]:
    """{file relative to the data folder: sha256} of the files these (dataset, exam, split) are read from.

    Each vendored file is checked against SHA256SUMS and a mismatch refused, naming the file and
    `just data`. Hub copies (data/hub/, written by `just data --from-hub`) are in no SHA256SUMS:
    they are hashed, so the record still says exactly what was read. Hashes are cached by each
    file's size, mtime, ctime and inode, so a run pays milliseconds unless a file changed; ctime
    moves on every write, even one that restores the old mtime.
    """
    if prefer_hub is None:
        prefer_hub = os.environ.get("MEDBENCH_PREFER_HUB") == "1"
    root = data_dir()
    paths = []
    for dataset, exam, split in splits:
        path = source_path(Source(dataset, exam if dataset == "kormedmcqa" else None, split), prefer_hub)
        if path not in paths:
            paths.append(path)
    expected = None
    cache = _HashCache()
    out = {}
    for path in paths:
        name = _relative(path, root)
        actual = cache.sha256(path)
        if not path.is_relative_to(hub_dir()):
            expected = expected if expected is not None else expected_sums(root)
            if name not in expected:
                raise DataError(
                    f"{path} is not listed in {root / 'SHA256SUMS'}: medbench reads only data it can "
                    f"verify; restore the vendored data (git checkout data/) and run `just data`"
                )
            want, line_no = expected[name]
            if actual != want:
                raise DataError(
                    f"data file {path} has sha256 {actual}, but SHA256SUMS:{line_no} says {want}: it "
                    f"changed since the checksums were written. Restore it (git checkout data/) and "
                    f"check with `just data`"
                )
        out[name] = actual
    cache.save()
    return out


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


class _HashCache:
    """sha256 of files, remembered by (size, mtime_ns, ctime_ns, inode); only a cache: unreadable means empty."""

    def __init__(self):
        self.path = cache_dir() / HASH_CACHE
        try:
            self.entries = json.loads(self.path.read_text())
            if not isinstance(self.entries, dict):
                self.entries = {}
        except (OSError, ValueError):
            self.entries = {}
        self.changed = False

    def sha256(self, path: Path) -> str:
        key = str(path.resolve())
        st = path.stat()
        stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}
        entry = self.entries.get(key)
        if (
            isinstance(entry, dict)
            and all(entry.get(k) == v for k, v in stamp.items())
            and isinstance(entry.get("sha256"), str)
        ):
            return entry["sha256"]
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_SECONDS * 1e9:
            self.entries[key] = {**stamp, "sha256": digest.hexdigest()}
            self.changed = True
        return digest.hexdigest()

    def save(self) -> None:
        if not self.changed:
            return
        entries = {k: v for k, v in self.entries.items() if Path(k).exists()}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
            tmp.replace(self.path)
        except OSError:  # a read-only or full cache folder costs time, never the run
            tmp.unlink(missing_ok=True)
