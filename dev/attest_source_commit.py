"""Name the commit that ran, for records whose tree carried another commit's .git.

    python dev/attest_source_commit.py COMMIT RECORD...

A GPU machine gets a copy of the working tree; where that copy holds an older repository, the record says
"read from the tree's git" with that older HEAD and lists the files that differ from it (git_dirty), and the
report keeps it out of the headline. The source fingerprint in the record is what identifies the code: this
script computes COMMIT's fingerprint from git and, only where it equals the record's, adds

    "source_commit": {"sha": COMMIT, "source_fingerprint": ..., "attested_by": "dev/attest_source_commit.py"}

leaving every other field as it was. `medbench verify` then checks the record's code against that commit.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medbench.records.io import read_json, write_json  # noqa: E402
from medbench.records.verify import commit_fingerprint, record_files  # noqa: E402


def attest(commit: str, paths: list[Path]) -> list[str]:
    expected = commit_fingerprint(commit)
    if expected is None:
        raise SystemExit(f"{commit}: not a commit of this clone")
    out = []
    for path in record_files(paths):
        record = read_json(path)
        if not isinstance(record, dict) or not record.get("git_dirty") or record.get("source_commit"):
            continue
        if (record.get("source_fingerprint") or {}).get("sha256") != expected["sha256"]:
            out.append(f"{path}: its source fingerprint is not {commit[:12]}'s; left as it was")
            continue
        record["source_commit"] = {
            "sha": commit,
            "source_fingerprint": expected["sha256"],
            "attested_by": "dev/attest_source_commit.py",
        }
        write_json(path, record)
        out.append(f"{path}: source_commit {commit[:12]}")
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    for line in attest(argv[0], [Path(p) for p in argv[1:]]):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
