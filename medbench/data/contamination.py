"""Training/test overlap that sees every test item, the one-line Korean stems included.

The first version looked for shared word 13-grams, which a stem of fewer than 13 words cannot have on its
own: 59% of the nurse and 70% of the dentist test stems are that short. Each test item is now compared
with every item of each source that reaches a model before the test, three ways:

  exact_stem          the normalised stems are equal
  exact_stem_options  ... and so are the option sets, in any order (a copy with shuffled options counts)
  near_duplicate      neither, but the items' similarity is at least NEAR_DUPLICATE

Similarity is an IDF-weighted Jaccard of character 5-grams of the whole item, the stem and each option
shingled on its own (so the option order does not matter), on normalize()d text without spaces. Character
n-grams need no tokenizer and work alike for Korean and English; a text shorter than 5 characters is its
own single shingle. The IDF weight, log((N + 1) / df) over all N distinct items checked, keeps exam
boilerplate from making everything similar: "which of the following" is in 84% of MedQA stems and
"…으로 옳은 것은?" in one KorMedMCQA stem in seven, so their 5-grams weigh a sixth to a quarter of a rare
one's. With no cut-off to tune it works the same on the 10,000 real items and on a test's dozen.

Why the whole item and not the stem alone: many Korean stems are one short sentence whose topic recurs
every year, and a one-word change asks another question over other options: "기체크로마토그래피에 대한
설명으로 옳은 것은?" vs "순상 액체크로마토그래피에 …" scores 0.72 on stems, 0.04 as items; "상황위기에
해당되는 사건은?" vs "성숙위기에 …" 0.56 and 0.27. A copied question whose stem was reworded but whose five
options were kept ("고등학생이 … 소문난 약을 복용한 후 …" vs "고등학교 학생이 …") scores 0.36 on stems and 0.41
as items. Equal stems are still reported (exact_stem) whatever the options, with how many the two share.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp  # installed with lm-eval (via scikit-learn)

from medbench.data.loader import KORMEDMCQA_EXAMS, LETTERS, DataError, load_rows

NGRAM = 13  # the old check's word n-gram; kept to show which matches it could not see
CHAR_NGRAM = 5
# Calibrated on the real data (each test item's best similarity per source, the pairs read by hand). At
# 0.4 and above (21 pairs) all but one are the same question again: a reworded stem keeping 2–5 of its
# options, or the same stem over new options; 10 keep the very same correct answer. The exception asks
# another question over the same five options. Of the 20 pairs between 0.3 and 0.4 about half are that
# too and half are new questions on a recurring topic or over a shared option pool ("the nerve supplying
# the muscle that …", 4 options shared), so 0.4 keeps the near-duplicate count free of false alarms and
# makes it a floor.
NEAR_DUPLICATE = 0.4
STEM_CHARS = 80
ALL_SOURCES = "all sources"
EXACT_STEM, EXACT_STEM_OPTIONS, NEAR = "exact_stem", "exact_stem_options", "near_duplicate"
CONTAMINATION_FIELDS = (
    "test",
    "test_id",
    "source",
    "source_id",
    "match",
    "similarity",
    "shared_options",
    "same_answer",
    "stem_words",
    "shares_13gram",
    "test_stem",
    "source_stem",
)


@dataclass(frozen=True)
class Split:
    name: str  # as shown in the tables, e.g. "kormedmcqa/doctor train+valid"
    dataset: str
    exam: str | None
    splits: tuple[str, ...]


@dataclass(frozen=True)
class Contamination:
    pairs: list[dict]  # every matched (test item, source item), sorted
    summary: list[dict]  # per test and source, plus per test against all its sources
    notes: list[str]  # sources that could not be checked


class _PunctuationToSpace(dict):  # a str.translate table filled as characters are met: 3x faster than per char
    def __missing__(self, code: int) -> int:
        self[code] = 32 if unicodedata.category(chr(code))[0] in "PS" else code
        return self[code]


_PUNCTUATION = _PunctuationToSpace()


def normalize(text: str) -> str:
    """NFKC (full/half width), casefold, punctuation and symbols (Unicode P*, S*) to spaces, spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().translate(_PUNCTUATION).split())


def text_key(text: str) -> str:
    # Spaces are dropped too: Korean spacing changes between exam years ("행동 특성" / "행동특성").
    return normalize(text).replace(" ", "")


def char_shingles(text: str, n: int = CHAR_NGRAM) -> set[str]:
    s = text_key(text)
    return {s[i : i + n] for i in range(len(s) - n + 1)} if len(s) > n else ({s} if s else set())


def item_shingles(row: dict) -> set[str]:
    return char_shingles(row["question"]).union(*(char_shingles(o) for o in row["options"]))


def row_text(row: dict) -> str:  # what the first version compared
    return " ".join([row["question"], *row["options"]])


def ngram_hashes(text: str, n: int = NGRAM) -> set[int]:
    """Word n-grams (lower-cased, whitespace tokens) as the first version compared them."""
    words = text.lower().split()
    return {hash(tuple(words[i : i + n])) for i in range(len(words) - n + 1)}


def splits() -> tuple[list[Split], dict[str, list[Split]]]:
    """The test splits, and for each the sources that reach a model before it."""
    kor = {e: Split(f"kormedmcqa/{e} test", "kormedmcqa", e, ("test",)) for e in KORMEDMCQA_EXAMS}
    medqa = Split("medqa test", "medqa", None, ("test",))
    # The fine-tuning mix (trainers/sft_data.py) is every exam's train+valid plus MedQA train (hub copy)
    # or dev (offline), and any mixed model answers every test, so all of it precedes every test.
    mix = [Split(f"kormedmcqa/{e} train+valid", "kormedmcqa", e, ("train", "valid")) for e in KORMEDMCQA_EXAMS]
    # MedQA dev is also where MedQA's 5-shot exemplars come from.
    mix += [Split("medqa dev", "medqa", None, ("dev",)), Split("medqa train", "medqa", None, ("train",))]
    plan = {t.name: mix + [Split(f"kormedmcqa/{e} fewshot", "kormedmcqa", e, ("fewshot",))] for e, t in kor.items()}
    plan[medqa.name] = mix
    return [*kor.values(), medqa], plan


def load_plan(loader=load_rows) -> tuple[dict[str, list[dict]], dict[str, list[dict]], dict[str, list[str]], list[str]]:
    """Rows of every test and source, which sources precede which test, and notes on sources not found."""
    tests, plan_splits = splits()
    rows = {t.name: [r for s in t.splits for r in loader(t.dataset, t.exam, s)] for t in tests}
    sources, missing, plan = {}, set(), {}
    for test, srcs in plan_splits.items():
        for src in srcs:
            if src.name not in sources and src.name not in missing:
                try:
                    sources[src.name] = [r for s in src.splits for r in loader(src.dataset, src.exam, s)]
                except DataError:
                    if src.name != "medqa train":  # the only split with no offline copy
                        raise
                    missing.add(src.name)
        plan[test] = [s.name for s in srcs if s.name in sources]
    notes = ["MedQA train is not checked: no local copy (`just data --from-hub` fetches it)"] if missing else []
    return rows, sources, plan, notes


def _similarity(shingles: list[set[str]], left: list[int], right: list[int]) -> sp.csr_matrix:
    """IDF-weighted Jaccard of items left × right (as a sparse matrix: pairs sharing no shingle are absent)."""
    vocab: dict[str, int] = {}
    indptr, indices = [0], []
    for s in shingles:
        indices += [vocab.setdefault(g, len(vocab)) for g in s]
        indptr.append(len(indices))
    x = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(shingles), len(vocab)))
    df = np.bincount(x.indices, minlength=len(vocab))
    xw = x @ sp.diags(np.log((len(shingles) + 1) / np.maximum(df, 1)))
    norm = np.asarray(xw.sum(axis=1)).ravel()
    inter = (xw[left] @ x[right].T).tocoo()
    union = norm[np.asarray(left)[inter.row]] + norm[np.asarray(right)[inter.col]] - inter.data
    return sp.csr_matrix((inter.data / np.maximum(union, 1e-12), (inter.row, inter.col)), shape=inter.shape)


def contamination_pairs(
    tests: dict[str, list[dict]], sources: dict[str, list[dict]], plan: dict[str, list[str]]
) -> list[dict]:
    """Every (test item, source item) match, for each test and each source that precedes it."""
    items: list[dict] = []
    index: dict[tuple, int] = {}  # one item per distinct row: fewshot rows are train rows too

    def item(row: dict) -> int:
        key = (row["id"], row["question"], tuple(row["options"]))
        if key not in index:
            index[key] = len(items)
            items.append(row)
        return index[key]

    test_items = {name: [item(r) for r in rows] for name, rows in tests.items()}
    source_items = {name: {item(r) for r in rows} for name, rows in sources.items()}
    left = sorted({i for v in test_items.values() for i in v})
    right = sorted(set().union(*source_items.values())) if source_items else []
    row_of, col_of = {i: k for k, i in enumerate(left)}, {i: k for k, i in enumerate(right)}
    sim = _similarity([item_shingles(r) for r in items], left, right) if left and right else sp.csr_matrix((0, 0))

    candidates: dict[int, set[int]] = defaultdict(set)
    near = sim.multiply(sim >= NEAR_DUPLICATE).tocoo()
    for r, c in zip(near.row, near.col):
        candidates[left[r]].add(right[c])
    by_stem = defaultdict(list)
    for i in right:
        by_stem[text_key(items[i]["question"])].append(i)
    for i in left:
        stem = text_key(items[i]["question"])
        if stem:  # a stem of punctuation only would equal every other one
            candidates[i].update(by_stem.get(stem, []))

    out = []
    for test, members in test_items.items():
        for t in dict.fromkeys(members):
            for s in sorted(candidates.get(t, ())):
                for src in plan.get(test, []):
                    if s in source_items[src]:
                        out.append(_pair(test, src, items[t], items[s], float(sim[row_of[t], col_of[s]])))
    return sorted(out, key=lambda p: (p["test"], p["test_id"], p["source"], p["source_id"]))


def _pair(test: str, source: str, t: dict, s: dict, similarity: float) -> dict:
    t_opts, s_opts = [text_key(o) for o in t["options"]], [text_key(o) for o in s["options"]]
    if text_key(t["question"]) != text_key(s["question"]):
        match = NEAR
    else:
        match = EXACT_STEM_OPTIONS if sorted(t_opts) == sorted(s_opts) else EXACT_STEM
    return {
        "test": test,
        "test_id": t["id"],
        "source": source,
        "source_id": s["id"],
        "match": match,
        "similarity": round(similarity, 4),
        "shared_options": len(set(t_opts) & set(s_opts)),
        "same_answer": _answer(t) is not None and _answer(t) == _answer(s),
        "stem_words": len(t["question"].split()),
        "shares_13gram": not ngram_hashes(row_text(t)).isdisjoint(ngram_hashes(row_text(s))),
        "test_stem": _short(t["question"]),
        "source_stem": _short(s["question"]),
    }


def _answer(row: dict) -> str | None:
    i = {letter: i for i, letter in enumerate(LETTERS)}.get(row.get("answer"), len(row["options"]))
    return text_key(row["options"][i]) if i < len(row["options"]) else None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= STEM_CHARS else text[: STEM_CHARS - 1] + "…"


def contamination_summary(
    pairs: list[dict], tests: dict[str, list[dict]], sources: dict[str, list[dict]], plan: dict[str, list[str]]
) -> list[dict]:
    """Counts of test items (not pairs) per test and source, then per test against all its sources.

    exact_stem includes exact_stem_options; near_duplicate counts items with no exact stem match, so
    matched = exact_stem + near_duplicate. under_13_words: matched items whose stem has fewer than 13 words;
    no_shared_13gram: matched items sharing no word 13-gram (question + options) with any item they matched,
    i.e. what the first version could not see.
    """
    by: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for p in pairs:
        by[(p["test"], p["source"])].append(p)
        by[(p["test"], ALL_SOURCES)].append(p)
    out = []
    for test, test_rows in tests.items():
        for source in [*plan.get(test, []), ALL_SOURCES]:
            ps = by.get((test, source), [])
            matched = {p["test_id"] for p in ps}
            exact = {p["test_id"] for p in ps if p["match"] != NEAR}
            n_source = (
                len({r["id"] for s in plan.get(test, []) for r in sources[s]})
                if source == ALL_SOURCES
                else len(sources[source])
            )
            out.append(
                {
                    "test": test,
                    "source": source,
                    "source_rows": n_source,
                    "test_rows": len(test_rows),
                    "exact_stem": len(exact),
                    "exact_stem_options": len({p["test_id"] for p in ps if p["match"] == EXACT_STEM_OPTIONS}),
                    "near_duplicate": len(matched - exact),
                    "matched": len(matched),
                    "under_13_words": len({p["test_id"] for p in ps if p["stem_words"] < NGRAM}),
                    "no_shared_13gram": len(matched - {p["test_id"] for p in ps if p["shares_13gram"]}),
                }
            )
    return out


def contamination(loader=load_rows) -> Contamination:
    """The whole check over the data on disk (DataError if a required split is missing)."""
    tests, sources, plan, notes = load_plan(loader)
    pairs = contamination_pairs(tests, sources, plan)
    return Contamination(pairs, contamination_summary(pairs, tests, sources, plan), notes)
