"""The run's response cache: every answer the model gave, as JSON in SQLite; never a pickle.

lm-eval's own cache (`use_cache=`, CachingLM) pickles each response into SqliteDict, so a crafted
cache file runs code when a run resumes from it. This one stores plain values (a loglikelihood is
`[logprob, is_greedy]`, a generation a string), checks their types on the way out, and wraps our
LM as CachingLM does: a request already answered is answered from here, every new answer is
written (and committed) as soon as it is computed, so a killed run resumes where it stopped.

results/runs/<id>/cache/responses.sqlite:
    meta(key, value)              format = medbench-responses/1
    responses(key, attr, value)   key = sha256 of [attr, *request args] as JSON

A data-parallel run's other processes write responses.rank<R>.sqlite beside it (medbench/eval/parallel.py
merges them before and after the run).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from lm_eval.api.model import LM

from medbench.errors import MedbenchError
from medbench.records.io import write_error

FILENAME = "responses.sqlite"
FORMAT = "medbench-responses/1"
# lm-eval's pickle cache, as medbench wrote it before: never opened.
LEGACY_FILES = ("responses_rank0.db",)
ATTRS = ("loglikelihood", "loglikelihood_rolling", "generate_until")


class CacheError(MedbenchError):
    """A response cache that cannot be trusted; the message names the file and the remedy."""


def _remedy(what: str) -> str:
    return f"{what}; --force discards this run's cached answers and starts it again"


def request_key(attr: str, args) -> str:
    return hashlib.sha256(json.dumps([attr, *args], sort_keys=True, default=str).encode("utf-8")).hexdigest()


def rank_file(cache_dir: Path, rank: int) -> Path:
    """The file a data-parallel process answers into: rank 0 the run's own, each other rank one of its own."""
    return Path(cache_dir) / (FILENAME if rank == 0 else f"responses.rank{rank}.sqlite")


def rank_files(cache_dir: Path) -> list[Path]:
    """The other ranks' files in a cache folder (left by a data-parallel run, merged into FILENAME after it)."""
    return sorted(Path(cache_dir).glob("responses.rank*.sqlite"))


def check(cache_dir: Path) -> None:
    """Refuse a cache folder holding a corrupt or foreign cache, before anything loads."""
    for name in LEGACY_FILES:
        if (cache_dir / name).exists():
            raise CacheError(
                _remedy(
                    f"{cache_dir / name}: an lm-eval response cache from an older medbench, which "
                    f"stores pickles (they run code when read), so medbench never opens it"
                )
            )
    for path in [cache_dir / FILENAME, *rank_files(cache_dir)]:
        if path.exists():
            ResponseStore(path).close()


def count_all(cache_dir: Path) -> int:
    """Responses in every file of a cache folder (an answer held by two files counts twice; 0: none at all)."""
    return sum(count_rows(path) for path in [Path(cache_dir) / FILENAME, *rank_files(cache_dir)])


class ResponseStore:
    """The SQLite file; opening it checks that it is ours and intact."""

    def __init__(self, path: Path):
        self.path = Path(path)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.con = sqlite3.connect(self.path, timeout=5)
        except OSError as e:
            raise write_error(self.path, e) from None
        except sqlite3.Error as e:
            raise self._error(e) from None
        try:
            if fresh:
                with self.con:
                    self.con.execute("PRAGMA journal_mode=WAL")
                    self.con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                    self.con.execute(
                        "CREATE TABLE responses (key TEXT PRIMARY KEY, attr TEXT NOT NULL, value TEXT NOT NULL)"
                    )
                    self.con.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
            else:
                self._validate()
            # A commit reaches the OS at once (a killed process loses nothing); no fsync per answer.
            self.con.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as e:
            self.con.close()
            raise self._error(e) from None

    def _error(self, e: sqlite3.Error) -> MedbenchError:
        text = str(e)
        if "full" in text or "I/O" in text:
            return write_error(self.path, OSError(f"{text} (is the disk full?)"))
        if "readonly" in text or "unable to open" in text:
            return write_error(self.path, OSError(text))
        return CacheError(_remedy(f"{self.path}: not a usable medbench response cache ({text})"))

    def _validate(self) -> None:
        tables = {r[0] for r in self.con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        fmt = None
        if {"meta", "responses"} <= tables:
            fmt = dict(self.con.execute("SELECT key, value FROM meta")).get("format")
        if fmt != FORMAT:
            raise CacheError(
                _remedy(f"{self.path}: not a medbench response cache (format {fmt!r}, expected {FORMAT!r})")
            )
        problem = self.con.execute("PRAGMA quick_check").fetchone()[0]
        if problem != "ok":
            raise CacheError(_remedy(f"{self.path}: the response cache is corrupt ({problem})"))
        for attr, value in self.con.execute("SELECT attr, value FROM responses"):  # every value, before any load
            self._decode(attr, value)

    def get(self, attr: str, args):
        """The cached response, or None."""
        try:
            row = self.con.execute("SELECT value FROM responses WHERE key = ?", (request_key(attr, args),)).fetchone()
        except sqlite3.Error as e:
            raise self._error(e) from None
        if row is None:
            return None
        return self._decode(attr, row[0])

    def _decode(self, attr: str, text: str):
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            value = None
        if (
            attr == "loglikelihood"
            and isinstance(value, list)
            and len(value) == 2
            and isinstance(value[0], int | float)
            and isinstance(value[1], bool)
        ):
            return float(value[0]), value[1]
        if attr == "loglikelihood_rolling" and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if attr == "generate_until" and isinstance(value, str):
            return value
        raise CacheError(_remedy(f"{self.path}: a cached {str(attr)[:30]} response is not one ({str(text)[:60]!r})"))

    def put(self, attr: str, args, value) -> None:
        if isinstance(value, tuple):
            value = list(value)
        try:
            with self.con:
                self.con.execute(
                    "INSERT OR REPLACE INTO responses VALUES (?, ?, ?)",
                    (request_key(attr, args), attr, json.dumps(value)),
                )
        except sqlite3.Error as e:
            raise self._error(e) from None

    def copy_from(self, source: Path) -> int:
        """Every answer of another response cache (checked as any is when opened) that this one lacks."""
        ResponseStore(source).close()
        before = self.count()
        try:
            self.con.execute("ATTACH DATABASE ? AS other", (str(source),))
            try:
                with self.con:
                    self.con.execute("INSERT OR IGNORE INTO responses SELECT key, attr, value FROM other.responses")
            finally:
                self.con.execute("DETACH DATABASE other")
        except sqlite3.Error as e:
            raise self._error(e) from None
        return self.count() - before

    def count(self) -> int:
        try:
            return self.con.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        except sqlite3.Error as e:
            raise self._error(e) from None

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> ResponseStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def count_rows(path: Path) -> int:
    """Responses in a cache file, read by another process while a run writes it (0 if none yet)."""
    if not Path(path).exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=0.1) as con:
            return con.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.Error:
        return 0


class _Hook:
    """lm-eval's cache hook: models report each answer as it is computed (`add_partial`)."""

    def __init__(self, store: ResponseStore):
        self.store = store

    def add_partial(self, attr: str, req, res) -> None:
        self.store.put(attr, req, res)


class CachedLM:
    """Our LM behind the response cache (lm-eval's CachingLM, with JSON values)."""

    def __init__(self, lm: LM, store: ResponseStore):
        self.lm = lm
        self.store = store
        lm.set_cache_hook(_Hook(store))

    def __getattr__(self, attr: str):
        return getattr(self.lm, attr)

    def loglikelihood(self, requests, *args, **kwargs):
        return self._answer("loglikelihood", requests, *args, **kwargs)

    def loglikelihood_rolling(self, requests, *args, **kwargs):
        return self._answer("loglikelihood_rolling", requests, *args, **kwargs)

    def generate_until(self, requests, *args, **kwargs):
        return self._answer("generate_until", requests, *args, **kwargs)

    def _answer(self, attr: str, requests, *args, **kwargs):
        results, remaining = [], []
        for req in requests:
            # Sampled generations are never cached: repeats must differ (as lm-eval does).
            sampled = attr == "generate_until" and req.args[1].get("do_sample", False)
            cached = None if sampled else self.store.get(attr, req.args)
            results.append(cached)
            if cached is None:
                remaining.append((len(results) - 1, req, sampled))
        if remaining:
            computed = getattr(self.lm, attr)([req for _, req, _ in remaining], *args, **kwargs)
            for (i, req, sampled), res in zip(remaining, computed, strict=True):
                results[i] = res
                # Most answers were written as they were computed (the cache hook); the rest now.
                if not sampled and self.store.get(attr, req.args) is None:
                    self.store.put(attr, req.args, res)
        return results


# simple_evaluate takes only an LM instance; the wrapper delegates everything else to our LM.
LM.register(CachedLM)
