"""sha256 of files, remembered across runs by each file's size, mtime, ctime and inode.

One cache for every file medbench hashes before a run (the vendored data, every weight file of a model), so a
re-run pays a stat per file: a file's ctime moves on every write, even one that restores its old mtime. Only a cache:
an unreadable cache file means an empty one, and a file changed less than RACY_SECONDS before it was hashed is not
remembered (git's "racily clean" files: a change within the same timestamp tick would go unseen).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from medbench.paths import cache_dir

CACHE_FILE = "file_sha256.json"  # under MEDBENCH_CACHE: {absolute path: {size, mtime_ns, ctime_ns, ino, sha256}}
RACY_SECONDS = 1.0
BLOCK = 1 << 20


def file_sha256(path: Path) -> str:
    """The file's sha256, read in blocks (a checkpoint of many GB never sits in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(BLOCK):
            digest.update(chunk)
    return digest.hexdigest()


class HashCache:
    def __init__(self):
        self.path = cache_dir() / CACHE_FILE
        try:
            self.entries = json.loads(self.path.read_text())
            if not isinstance(self.entries, dict):
                self.entries = {}
        except (OSError, ValueError):
            self.entries = {}
        self.changed = False

    def sha256(self, path: Path) -> str:
        key = str(Path(path).resolve())
        st = Path(path).stat()
        stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}
        entry = self.entries.get(key)
        if (
            isinstance(entry, dict)
            and all(entry.get(k) == v for k, v in stamp.items())
            and isinstance(entry.get("sha256"), str)
        ):
            return entry["sha256"]
        digest = file_sha256(Path(path))
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_SECONDS * 1e9:
            self.entries[key] = {**stamp, "sha256": digest}
            self.changed = True
        return digest

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
        self.changed = False
