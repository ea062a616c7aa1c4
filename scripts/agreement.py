"""Answer agreement between runs on the same questions, and how close the reference's disagreeing answers were.

    python scripts/agreement.py REFERENCE_RUN_DIR OTHER_RUN_DIR... [--out results/bench/agreement.json]

For multiple-choice runs, a disagreement where the reference's best two letters are within a hair is a
near-tie (rounding can flip it); one with a wide gap means the two runs computed different numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medbench.records.io import read_json, write_json
from medbench.records.questions import question_rows


def compare(reference: Path, other: Path) -> dict:
    tasks = [t["task"] for t in read_json(reference / "record.json")["tasks"]]
    out = {"reference": reference.name, "other": other.name, "questions": 0, "same_answer": 0, "disagreements": []}
    for task in tasks:
        ref = {r["id"]: r for r in question_rows(reference, task)}
        oth = {r["id"]: r for r in question_rows(other, task)}
        for qid, r in ref.items():
            if qid not in oth:
                continue
            out["questions"] += 1
            if r["predicted"] == oth[qid]["predicted"]:
                out["same_answer"] += 1
                continue
            scores = sorted((r.get("scores") or {}).values(), reverse=True)
            out["disagreements"].append(
                {
                    "task": task,
                    "id": qid,
                    "reference": r["predicted"],
                    "other": oth[qid]["predicted"],
                    "reference_top2_gap": scores[0] - scores[1] if len(scores) > 1 else None,
                }
            )
    gaps = sorted(d["reference_top2_gap"] for d in out["disagreements"] if d["reference_top2_gap"] is not None)
    out["max_reference_top2_gap"] = gaps[-1] if gaps else None
    out["median_reference_top2_gap"] = gaps[len(gaps) // 2] if gaps else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference")
    parser.add_argument("others", nargs="+")
    parser.add_argument("--out")
    args = parser.parse_args()
    results = [compare(Path(args.reference), Path(o)) for o in args.others]
    for r in results:
        print(
            f"{r['other']} vs {r['reference']}: same answer on {r['same_answer']}/{r['questions']}; "
            f"{len(r['disagreements'])} differ, reference top-2 gap there: median {r['median_reference_top2_gap']}, "
            f"max {r['max_reference_top2_gap']}"
        )
    if args.out:
        write_json(Path(args.out), results)


if __name__ == "__main__":
    main()
