"""Run folders written before samples were compacted, compacted the way runs now write them (records/io.py).

    python dev/compact_samples.py results/runs/RUN...

Each samples file is rewritten with `compact_sample` only after checking that nothing the report or the explorer
reads changes: the run reads as the report reads it (records/reader.py) before and after, and every question's row
(records/questions.py: its question and options, read back from the vendored data by id; its scores, prediction and
correctness) is the same. The folder then holds samples_compacted.json: this script's commit, and each file's
sha256 and size before and after, so that what was changed is on record.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medbench.records import io  # noqa: E402
from medbench.records.provenance import code_state  # noqa: E402
from medbench.records.questions import question_rows  # noqa: E402
from medbench.records.reader import load_run  # noqa: E402


def compact(run_dir: Path) -> dict:
    before_run = load_run(run_dir)
    files = sorted(run_dir.glob("samples_*.jsonl.gz"))
    names = [p.name.removeprefix("samples_").removesuffix(".jsonl.gz") for p in files]
    rows_before = {name: question_rows(run_dir, name) for name in names}
    ledger = {}
    for path, name in zip(files, names):
        old = path.read_bytes()
        samples = [json.loads(line) for _, line in io.read_samples(path)]
        io.write_samples(path, [io.compact_sample(s) for s in samples])
        new = path.read_bytes()
        ledger[path.name] = {
            "before": {"sha256": hashlib.sha256(old).hexdigest(), "bytes": len(old)},
            "after": {"sha256": hashlib.sha256(new).hexdigest(), "bytes": len(new)},
        }
        if question_rows(run_dir, name) != rows_before[name]:
            path.write_bytes(old)
            raise SystemExit(f"{path}: the compacted rows differ from the original ones; restored")
    after_run = load_run(run_dir)
    assert [t.record for t in after_run.tasks] == [t.record for t in before_run.tasks]
    note = {
        "tool": "dev/compact_samples.py (records.io.compact_sample)",
        "git_sha": code_state()["git_sha"],
        "why": "lm-eval's logged samples repeat the rendered prompt per answer letter and the question text of the "
        "vendored data; the compacted samples keep ids, keys, scores and generations, and every question's row is "
        "the same before and after (checked by this script)",
        "files": ledger,
    }
    io.write_json(run_dir / "samples_compacted.json", note)
    return note


def main(argv: list[str]) -> int:
    for arg in argv:
        note = compact(Path(arg))
        before = sum(f["before"]["bytes"] for f in note["files"].values())
        after = sum(f["after"]["bytes"] for f in note["files"].values())
        print(f"{arg}: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB, every question's row unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
