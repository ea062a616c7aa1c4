"""Compare two runs' extracted answers question by question (used for the batch-size invariance check).

python scripts/compare_answers.py results/runs/batchcheck-bs1-gpu results/runs/batchcheck-bs32-gpu
"""

import json
import sys
from pathlib import Path

from medbench.records import io


def load(run_dir: Path, name: str) -> dict:
    return {(s := json.loads(line))["doc"]["id"]: s for _, line in io.read_samples(run_dir / name)}


def main(a: str, b: str) -> None:
    same = diff = 0
    for path in sorted(Path(a).glob("samples_*.jsonl.gz")):
        ra, rb = load(Path(a), path.name), load(Path(b), path.name)
        for doc_id, sa in ra.items():
            x, y = sa["filtered_resps"][0], rb[doc_id]["filtered_resps"][0]
            if x == y:
                same += 1
            else:
                diff += 1
                print("DIFF", path.name, doc_id, repr(sa["resps"][0][0][:80]), repr(rb[doc_id]["resps"][0][0][:80]))
        raw = sum(ra[k]["resps"][0][0] == rb[k]["resps"][0][0] for k in ra)
        print(path.name, "raw generations identical:", raw, "/", len(ra))
    print(f"extracted answers identical for {same} of {same + diff} questions")


if __name__ == "__main__":
    main(*sys.argv[1:3])
