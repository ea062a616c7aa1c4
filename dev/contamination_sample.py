"""The hand-checked sample of contamination matches in docs/contamination.md, written from the data.

    python dev/contamination_sample.py           rewrite the block between the markers in docs/contamination.md
    python dev/contamination_sample.py --check   exit 1 if the block is not what the data and verdicts give
    python dev/contamination_sample.py --show    print the sampled pairs in full (both items), to read and judge

The sample is drawn from the matched pairs of medbench.data.contamination with a fixed seed, spread over the
kinds of match; the verdicts are read from docs/contamination_verdicts.yaml, keyed by (test_id, source_id),
one per sampled pair. Every number in the block (similarities, counts of verdicts) comes from here, so the
block changes only when the data, the rules or the verdicts do.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medbench.data import contamination as c  # noqa: E402
from medbench.data.loader import KORMEDMCQA_EXAMS, LETTERS, load_rows  # noqa: E402
from medbench.report.markdown import table  # noqa: E402

DOC = ROOT / "docs" / "contamination.md"
VERDICTS = ROOT / "docs" / "contamination_verdicts.yaml"
START, END = "<!-- contamination-sample:start -->", "<!-- contamination-sample:end -->"
SEED = 26  # the number: any fixed seed will do, this one was chosen before the sample was seen
SIZE = 20
PER_KIND = 5  # each kind gets this many (or all it has) before the rest is shared out by size
STEM_CHARS = 60
# The verdicts a pair may get, from a copy down to a coincidence; the summary counts them in this order.
VERDICT_ORDER = (
    "same question, same key",
    "same question, synonymous key",
    "same question, different key",
    "same fact asked anew, same key",
    "same topic, different question",
    "generic stem, different answer",
    "different question, shared option pool",
)
COPIES = VERDICT_ORDER[:2]


def distinct_pairs(pairs: list[dict]) -> list[dict]:
    """One pair per (test item, source item): a train row met again in its exam's fewshot split is one pair."""
    seen: dict[tuple[str, str], dict] = {}
    for p in pairs:
        seen.setdefault((p["test_id"], p["source_id"]), p)
    return list(seen.values())


def quotas(sizes: dict[str, int], total: int, floor: int) -> dict[str, int]:
    """How many pairs to draw of each kind: `floor` each where there are that many, the rest by largest remainder."""
    out = {k: min(n, floor) for k, n in sizes.items()}
    left = min(total, sum(sizes.values())) - sum(out.values())
    rest = {k: sizes[k] - out[k] for k in sizes}
    pool = sum(rest.values())
    if left > 0 and pool:
        shares = {k: left * r / pool for k, r in rest.items()}
        extra = {k: int(s) for k, s in shares.items()}
        for k in sorted(shares, key=lambda k: (extra[k] - shares[k], k))[: left - sum(extra.values())]:
            extra[k] += 1
        out = {k: out[k] + extra[k] for k in out}
    return out


def sample(pairs: list[dict], seed: int = SEED, size: int = SIZE) -> list[dict]:
    """A seeded draw over the kinds of match, in the order of c.MATCHES then test id."""
    by_kind: dict[str, list[dict]] = {}
    for p in sorted(distinct_pairs(pairs), key=lambda p: (p["test_id"], p["source_id"])):
        by_kind.setdefault(p["match"], []).append(p)
    rng = random.Random(seed)
    picked = []
    for kind, n in quotas({k: len(v) for k, v in by_kind.items()}, size, PER_KIND).items():
        picked += rng.sample(by_kind[kind], n)
    return sorted(picked, key=lambda p: (c.MATCHES.index(p["match"]), p["test_id"], p["source_id"]))


def all_rows() -> dict[str, dict]:
    rows = {}
    for exam in KORMEDMCQA_EXAMS:
        for split in ("train", "valid", "test", "fewshot"):
            rows.update({r["id"]: r for r in load_rows("kormedmcqa", exam, split)})
    for split in ("dev", "test"):
        rows.update({r["id"]: r for r in load_rows("medqa", None, split)})
    return rows


def load_verdicts(path: Path = VERDICTS) -> dict[tuple[str, str], dict]:
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else []
    out = {}
    for e in entries or []:
        if e["verdict"] not in VERDICT_ORDER:
            raise SystemExit(f"{path.name}: unknown verdict {e['verdict']!r} for {e['test_id']} / {e['source_id']}")
        out[(e["test_id"], e["source_id"])] = e
    return out


def short(text: str, n: int = STEM_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def gold(row: dict) -> str:
    return f"{row['answer']}. {row['options'][LETTERS.index(row['answer'])]}"


def block(picked: list[dict], n_pairs: int, rows: dict[str, dict], verdicts: dict[tuple[str, str], dict]) -> str:
    """The verdict counts (overall and per kind) and the table of sampled pairs; n_pairs: distinct pairs drawn from."""
    missing = [(p["test_id"], p["source_id"]) for p in picked if (p["test_id"], p["source_id"]) not in verdicts]
    if missing:
        raise SystemExit(f"no verdict in {VERDICTS.name} for: {missing}")
    unused = sorted(set(verdicts) - {(p["test_id"], p["source_id"]) for p in picked})
    if unused:
        raise SystemExit(f"verdicts for pairs not in the sample: {unused}")
    judged = [(p, verdicts[(p["test_id"], p["source_id"])]) for p in picked]
    counts = Counter(v["verdict"] for _, v in judged)
    kinds = list(dict.fromkeys(p["match"] for p in picked))
    by_kind = {k: Counter(v["verdict"] for p, v in judged if p["match"] == k) for k in kinds}
    copies = sum(counts[v] for v in COPIES)
    lines = [
        f"Sample: {len(picked)} of {n_pairs} distinct matched pairs, "
        f"seed {SEED}; {copies} of {len(picked)} are a copy (the same question with the same or a synonymous key).",
        "",
        table(
            ["verdict", "all", *kinds],
            [[v, counts[v], *(by_kind[k][v] for k in kinds)] for v in VERDICT_ORDER if counts[v]]
            + [["pairs", len(picked), *(sum(by_kind[k].values()) for k in kinds)]],
        ),
        "",
        table(
            [
                "#",
                "test id",
                "source id",
                "match",
                "similarity",
                "shared options",
                "same answer",
                "test stem",
                "source stem",
                "test key",
                "source key",
                "verdict",
                "why",
            ],
            [
                [
                    i,
                    f"`{p['test_id']}`",
                    f"`{p['source_id']}`",
                    p["match"],
                    f"{p['similarity']:.2f}",
                    p["shared_options"],
                    "yes" if p["same_answer"] else "no",
                    short(rows[p["test_id"]]["question"]),
                    short(rows[p["source_id"]]["question"]),
                    short(gold(rows[p["test_id"]]), 40),
                    short(gold(rows[p["source_id"]]), 40),
                    v["verdict"],
                    " ".join(v.get("why", "").split()),
                ]
                for i, (p, v) in enumerate(judged, 1)
            ],
        ),
    ]
    return "\n".join(lines)


def render(doc: str, body: str) -> str:
    head, sep, rest = doc.partition(START)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        raise SystemExit(f"{DOC.name}: the markers {START} / {END} are missing")
    return f"{head}{START}\n{body}\n{END}{tail}"


def show(picked: list[dict], rows: dict[str, dict]) -> None:
    for i, p in enumerate(picked, 1):
        print(f"=== {i}. {p['match']} sim {p['similarity']:.3f} shared {p['shared_options']} same {p['same_answer']}")
        for rid in (p["test_id"], p["source_id"]):
            r = rows[rid]
            print(f"--- {rid} ({r['split']}) key {r['answer']}\n{r['question']}")
            for letter, o in zip(LETTERS, r["options"]):
                print(f"  {letter}. {o}")
        print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the doc's block is out of date")
    ap.add_argument("--show", action="store_true", help="print the sampled pairs in full")
    args = ap.parse_args(argv)
    pairs = c.contamination().pairs
    picked, rows = sample(pairs), all_rows()
    if args.show:
        show(picked, rows)
        return 0
    doc = DOC.read_text(encoding="utf-8")
    new = render(doc, block(picked, len(distinct_pairs(pairs)), rows, load_verdicts()))
    if args.check:
        if new != doc:
            print(f"{DOC.relative_to(ROOT)} is out of date: run python dev/contamination_sample.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
