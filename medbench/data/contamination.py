"""Training/test overlap: which test questions share a word 13-gram with a training source.

13 words (lower-cased, split on whitespace; Korean is spaced into words too) is the usual
threshold of contamination studies: long enough that shared boilerplate ("다음 중 옳은 것은")
does not count, short enough to catch a question copied with a new option order. A question's
text is its question plus its options, because options are what a model could memorise.
"""

from __future__ import annotations

from dataclasses import dataclass

from medbench.data.loader import KORMEDMCQA_EXAMS, load_rows

NGRAM = 13
# A near-duplicate has at least this share of its 13-grams in the source. MedQA's exam boilerplate
# ("... shows no abnormalities. Which of the following is the most appropriate next step in
# management?") alone is 13 words, so "any shared 13-gram" overstates copying there.
NEAR_DUPLICATE = 0.5
CONTAMINATION_FIELDS = ("source", "test", "source_rows", "test_rows", "overlapping", "share", "near_duplicates")


@dataclass(frozen=True)
class Split:
    name: str  # as shown in the table, e.g. "kormedmcqa/doctor train+valid"
    dataset: str
    exam: str | None
    splits: tuple[str, ...]


def row_text(row: dict) -> str:
    return " ".join([row["question"], *row["options"]])


def ngram_hashes(text: str, n: int = NGRAM) -> set[int]:
    """Hashes of every word n-gram; hashing keeps the sets small and only compares within a process."""
    words = text.lower().split()
    return {hash(tuple(words[i:i + n])) for i in range(len(words) - n + 1)}


def pairs() -> list[tuple[Split, Split]]:
    """The sources that reach a model before the test: training data and few-shot examples."""
    tests = {e: Split(f"kormedmcqa/{e} test", "kormedmcqa", e, ("test",)) for e in KORMEDMCQA_EXAMS}
    out = []
    # Fine-tuning may mix every exam's train+valid, so each is checked against every test exam.
    for src_exam in KORMEDMCQA_EXAMS:
        src = Split(f"kormedmcqa/{src_exam} train+valid", "kormedmcqa", src_exam, ("train", "valid"))
        out += [(src, tests[e]) for e in KORMEDMCQA_EXAMS]
    out.append((Split("medqa dev", "medqa", None, ("dev",)), Split("medqa test", "medqa", None, ("test",))))
    # Few-shot examples only ever precede questions of their own exam.
    out += [(Split(f"kormedmcqa/{e} fewshot", "kormedmcqa", e, ("fewshot",)), tests[e]) for e in KORMEDMCQA_EXAMS]
    return out


def contamination(pair_list: list[tuple[Split, Split]] | None = None) -> list[dict]:
    """Per (source, test) pair: how many test questions share at least one 13-gram with the source."""
    rows_cache: dict[tuple, list[dict]] = {}

    def rows(split: Split) -> list[dict]:
        key = (split.dataset, split.exam, split.splits)
        if key not in rows_cache:
            rows_cache[key] = [r for s in split.splits for r in load_rows(split.dataset, split.exam, s)]
        return rows_cache[key]

    source_grams: dict[str, set[int]] = {}
    test_grams: dict[str, list[set[int]]] = {}
    out = []
    for src, test in pair_list if pair_list is not None else pairs():
        if src.name not in source_grams:
            source_grams[src.name] = set().union(*(ngram_hashes(row_text(r)) for r in rows(src)))
        if test.name not in test_grams:
            test_grams[test.name] = [ngram_hashes(row_text(r)) for r in rows(test)]
        grams = source_grams[src.name]
        hits = sum(1 for q in test_grams[test.name] if not grams.isdisjoint(q))
        near = sum(1 for q in test_grams[test.name] if q and len(q & grams) >= NEAR_DUPLICATE * len(q))
        n_test = len(test_grams[test.name])
        out.append({"source": src.name, "test": test.name, "source_rows": len(rows(src)), "test_rows": n_test,
                    "overlapping": hits, "share": hits / n_test if n_test else float("nan"),
                    "near_duplicates": near})
    return out
