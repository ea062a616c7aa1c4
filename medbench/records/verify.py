"""`medbench verify`: a record checked against what it says it measured.

For each record (a run's record.json, a training record, a bench record):

- data: every data file it lists is hashed again here and compared, and with the set the package pins;
- code: its source fingerprint against the fingerprint of the commit it names (computed from that commit's files
  in git), or against another commit, or the working tree;
- weights: where the weights it names are on this machine (a local model, checkpoint or adapter folder), their
  fingerprint again.

Each check says ok, mismatch, absent (nothing to compare here: weights on another machine, a commit this clone lacks)
or legacy (the record predates that field). A record with every field present is `full`; the report keeps the others
out of its headline tables ("legacy", listed apart).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from medbench.data.checksums import pinned_sums
from medbench.hashing import file_sha256
from medbench.paths import REPO_ROOT, data_dir
from medbench.records.io import read_json
from medbench.records.provenance import SOURCE_DIRS, fingerprint_of, is_source, source_fingerprint

OK, MISMATCH, ABSENT, LEGACY = "ok", "mismatch", "absent", "legacy"


@dataclass
class Check:
    name: str
    status: str
    detail: str = ""


@dataclass
class Verification:
    path: Path
    kind: str
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(c.status == MISMATCH for c in self.checks)

    @property
    def full(self) -> bool:
        """Every provenance field present and nothing contradicted."""
        return not self.failed and all(c.status in (OK, ABSENT) for c in self.checks)


def record_kind(record: dict) -> str:
    if "run_id" in record and "tasks" in record:
        return "run"
    if "method" in record and "steps" in record:
        return "train"
    return "bench"


def data_files_of(record: dict) -> dict | None:
    if "data_files" in record:
        return record["data_files"]
    return (record.get("data") or {}).get("files")


def attested_commit(record: dict) -> str | None:
    """The commit whose files have the record's source fingerprint, where that was established after the run
    (dev/attest_source_commit.py) because the tree that ran carried another commit's .git; `verify` checks it."""
    return (record.get("source_commit") or {}).get("sha")


def provenance_gaps(record: dict) -> list[str]:
    """The provenance fields a record lacks (empty: full provenance), from the record alone."""
    kind = record_kind(record)
    gaps = [k for k in ("source_fingerprint", "git_sha_status", "medbench_version") if not record.get(k)]
    if kind in ("run", "train") and not data_files_of(record):
        gaps.append("data hashes")
    if kind == "run" and not record.get("weights_fingerprint"):
        gaps.append("weights fingerprint")
    if str(record.get("git_sha_status", "")).startswith(("unverified", "unknown")):
        gaps.append("a verified git commit")
    if record.get("git_dirty") and not attested_commit(record):
        gaps.append("a clean tree (source files differed from the commit)")
    if kind == "run" and record.get("variant") in ("full", "lora", "qlora") and not record.get("training_record"):
        gaps.append("the training record of its weights")
    return gaps


def commit_fingerprint(commit: str, root: Path | None = None) -> dict | None:
    """The source fingerprint of a commit's files (None where this clone does not have the commit)."""
    root = root or REPO_ROOT
    try:
        listing = subprocess.run(
            ["git", "ls-tree", "-r", "-z", "--name-only", commit, "--", *SOURCE_DIRS],
            cwd=root,
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    names = [n for n in listing.stdout.decode().split("\0") if n and is_source(n)]
    batch = "".join(f"{commit}:{n}\n" for n in names).encode()
    out = subprocess.run(["git", "cat-file", "--batch"], cwd=root, input=batch, capture_output=True, check=True).stdout
    files, pos = {}, 0
    for name in names:
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        files[name] = out[header_end + 1 : header_end + 1 + size]
        pos = header_end + 1 + size + 1
    return fingerprint_of(files)


def verify(path: Path, commit: str | None = None, against_tree: bool = False) -> Verification:
    """Every check of one record file. `commit`: compare the code with this commit instead of the record's own;
    `against_tree`: with the working tree's sources."""
    from medbench.models.fingerprint import FingerprintError, changed_files, fingerprint

    record = read_json(path)
    if not isinstance(record, dict):
        return Verification(Path(path), "unknown", [Check("record", MISMATCH, "not a record (a JSON object)")])
    result = Verification(Path(path), record_kind(record))
    checks = result.checks

    files = data_files_of(record)
    if not files:
        checks.append(Check("data", LEGACY, "the record lists no data hashes"))
    else:
        root, pinned = data_dir(), pinned_sums()
        differ = [n for n, sha in files.items() if not (root / n).is_file() or file_sha256(root / n) != sha]
        unpinned = [n for n, sha in files.items() if pinned.get(n) != sha]
        if differ:
            checks.append(Check("data", MISMATCH, f"differs here: {', '.join(differ)}"))
        else:
            checks.append(Check("data", OK, f"{len(files)} files equal here"))
        if unpinned:
            checks.append(Check("data pinned", MISMATCH, f"not the pinned data: {', '.join(unpinned)}"))

    fp = (record.get("source_fingerprint") or {}).get("sha256")
    if not fp:
        checks.append(Check("code", LEGACY, "the record has no source fingerprint"))
    else:
        target = commit or attested_commit(record) or str(record.get("git_sha") or "").removesuffix("-dirty")
        if against_tree:
            here = source_fingerprint()["sha256"]
            checks.append(Check("code", OK if here == fp else MISMATCH, "against the working tree"))
        elif not target:
            checks.append(Check("code", ABSENT, "no commit named"))
        else:
            theirs = commit_fingerprint(target)
            if theirs is None:
                checks.append(Check("code", ABSENT, f"commit {target[:12]} is not in this clone"))
            else:
                same = theirs["sha256"] == fp
                checks.append(Check("code", OK if same else MISMATCH, f"against commit {target[:12]}"))

    weights = record.get("weights_fingerprint")
    if result.kind == "run":
        if not weights:
            checks.append(Check("weights", LEGACY, "the record has no weights fingerprint"))
        else:
            roles = {"model": record.get("model_source"), "adapter": record.get("adapter")}
            for role, expected in weights.items():
                where = roles.get(role)
                if "files" not in expected or not where or not Path(where).is_dir():
                    checks.append(Check(f"weights ({role})", ABSENT, "not on this machine"))
                    continue
                try:
                    changed = changed_files(expected, fingerprint(where))
                except FingerprintError as e:
                    checks.append(Check(f"weights ({role})", MISMATCH, str(e)))
                    continue
                status = MISMATCH if changed else OK
                checks.append(Check(f"weights ({role})", status, ", ".join(changed) or where))
    gaps = provenance_gaps(record)
    if gaps and not any(c.status == LEGACY for c in checks):
        checks.append(Check("provenance", LEGACY, "lacks " + ", ".join(gaps)))
    return result


def record_files(paths: list[Path]) -> list[Path]:
    """Record files named or found under folders: runs/*/record.json, train/*.json, bench/*.json."""
    out = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            out.append(path)
        elif (path / "record.json").is_file():
            out.append(path / "record.json")
        elif path.is_dir():
            out += sorted(path.glob("runs/*/record.json"))
            out += sorted(p for p in path.glob("train/*.json"))
            out += sorted(p for p in path.glob("bench/*.json"))
    return out
