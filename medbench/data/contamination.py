"""Training/test overlap that sees every test item, the one-line Korean stems included.

The first version looked for shared word 13-grams, which a stem of fewer than 13 words cannot have on its
own, and most nurse and dentist test stems are that short. Each test item is now compared with every item
of each source that reaches a model before the test, four ways:

  exact_stem          the normalised stems are equal
  exact_stem_options  ... and so are the option sets, in any order (a copy with shuffled options counts)
  near_duplicate      neither, but the items' similarity is at least NEAR_DUPLICATE
  option_pool         none of these, but the items share at least POOL_OPTIONS options (any order) and the
                      correct option is the same option: a question reworded past NEAR_DUPLICATE that kept
                      its options and its key

Every count is a floor of what these rules look for: a copy reworded below NEAR_DUPLICATE that also changed
its options, or one translated from the other language, is missed. It is not a count of copies either way: a
match is a pair to read, and some are not the same question (a generic stem over other options, a stock pool
of options such as numbers of days or payment systems shared by different questions). docs/contamination.md
reads a seeded sample of the matches by hand.

Options and answers are compared by identity, i.e. by their normalised text (text_key), never by letter: the
same option sits at another letter when the options are shuffled, and the same letter holds another option
when they are not. same_answer says whether the two gold options are the same option in this sense.

Similarity is an IDF-weighted Jaccard of character 5-grams of the whole item, the stem and each option
shingled on its own (so the option order does not matter), on normalize()d text without spaces. Character
n-grams need no tokenizer and work alike for Korean and English; a text shorter than 5 characters is its
own single shingle. The IDF weight, log((N + 1) / df) over all N distinct items checked, keeps exam
boilerplate from making everything similar: "which of the following" is in most MedQA stems and
"…으로 옳은 것은?" ends many KorMedMCQA stems, so their 5-grams weigh far less than a rare one. With no
cut-off to tune it works the same on the real items and on a test's dozen.

Why the whole item and not the stem alone: many Korean stems are one short sentence whose topic recurs
every year, and a one-word change asks another question over other options ("기체크로마토그래피에 대한
설명으로 옳은 것은?" vs "순상 액체크로마토그래피에 …"; "상황위기에 해당되는 사건은?" vs "성숙위기에 …"):
their stems are close, the items are not. A copied question whose stem was reworded but whose options were
kept ("고등학생이 … 소문난 약을 복용한 후 …" vs "고등학교 학생이 …") is closer as an item than as a stem.
Equal stems are still reported (exact_stem) whatever the options, with how many options the two share and
whether the answer is the same: a generic stem ("사후처치 간호중재로 옳은 것은?", "유치의 유착에 관한 설명으로
옳은 것은?") recurs over other options with another key, and such a match is not a copy.
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
# Calibrated on the real data (each test item's best similarity per source, the pairs read by hand): at 0.4
# and above nearly every pair is the same question again (a reworded stem keeping most of its options, or the
# same stem over new options), and below it the same-question pairs mix with new questions on a recurring
# topic or over a shared option pool. 0.4 keeps the near-duplicate count nearly free of false alarms (the odd
# one asks another question over the same options), which makes it a floor; option_pool picks up the copies
# below it that kept their options and key.
NEAR_DUPLICATE = 0.4
# Four of five KorMedMCQA options (all four of MedQA's) and the same key: one option swapped for a new
# distractor still counts, while a shared pair or triple of stock options ("없음", drug names) does not.
POOL_OPTIONS = 4
STEM_CHARS = 80
ALL_SOURCES = "all sources"
EXACT_STEM, EXACT_STEM_OPTIONS, NEAR, OPTION_POOL = "exact_stem", "exact_stem_options", "near_duplicate", "option_pool"
MATCHES = (EXACT_STEM, EXACT_STEM_OPTIONS, NEAR, OPTION_POOL)
CONTAMINATION_FIELDS = (
    "test",
    "test_id",
    "source",
    "source_id",
    "match",
    "similarity",
    "shared_options",
    "same_answer",
    "test_answer",
    "source_answer",
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
    notes: list[str]  # what the counts cannot see: that they are a floor, and sources that could not be checked


class _PunctuationToSpace(dict):  # a str.translate table filled as characters are met, rather than a test per character
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
    # An option-pool match needs the same gold option, so only source items whose key is the test item's
    # key are counted against: far fewer than all those sharing some stock option.
    options = {i: option_keys(items[i]) for i in (*left, *right)}
    by_gold = defaultdict(list)
    for i in right:
        if (gold := gold_option(items[i])) is not None:
            by_gold[gold].append(i)
    for i in left:
        if (gold := gold_option(items[i])) is not None:
            candidates[i].update(j for j in by_gold.get(gold, []) if len(options[i] & options[j]) >= POOL_OPTIONS)

    out = []
    for test, members in test_items.items():
        for t in dict.fromkeys(members):
            for s in sorted(candidates.get(t, ())):
                for src in plan.get(test, []):
                    if s in source_items[src]:
                        pair = _pair(test, src, items[t], items[s], float(sim[row_of[t], col_of[s]]))
                        if pair is not None:  # match_kind alone decides; the candidate search only narrows
                            out.append(pair)
    return sorted(out, key=lambda p: (p["test"], p["test_id"], p["source"], p["source_id"]))


def match_kind(t: dict, s: dict, similarity: float) -> str | None:
    """Which rule the pair meets, the first in MATCHES order (exact_stem_options before exact_stem), or None."""
    stem = text_key(t["question"])
    if stem and stem == text_key(s["question"]):
        return (
            EXACT_STEM_OPTIONS
            if sorted(map(text_key, t["options"])) == sorted(map(text_key, s["options"]))
            else EXACT_STEM
        )
    if similarity >= NEAR_DUPLICATE:
        return NEAR
    if same_answer(t, s) and len(option_keys(t) & option_keys(s)) >= POOL_OPTIONS:
        return OPTION_POOL
    return None


def _pair(test: str, source: str, t: dict, s: dict, similarity: float) -> dict | None:
    match = match_kind(t, s, similarity)
    if match is None:
        return None
    return {
        "test": test,
        "test_id": t["id"],
        "source": source,
        "source_id": s["id"],
        "match": match,
        "similarity": round(similarity, 4),
        "shared_options": len(option_keys(t) & option_keys(s)),
        "same_answer": same_answer(t, s),
        "test_answer": _short(gold_text(t) or ""),
        "source_answer": _short(gold_text(s) or ""),
        "stem_words": len(t["question"].split()),
        "shares_13gram": not ngram_hashes(row_text(t)).isdisjoint(ngram_hashes(row_text(s))),
        "test_stem": _short(t["question"]),
        "source_stem": _short(s["question"]),
    }


def option_keys(row: dict) -> set[str]:
    """The item's options by identity (text_key), in no order; an option of punctuation only is no option."""
    return {k for k in map(text_key, row["options"]) if k}


def gold_text(row: dict) -> str | None:
    """The correct option as written, or None if the answer letter names no option."""
    i = LETTERS.find(row.get("answer") or "?")
    return row["options"][i] if 0 <= i < len(row["options"]) else None


def gold_option(row: dict) -> str | None:
    """The correct option's identity (its text_key), or None if there is none to compare."""
    text = gold_text(row)
    return (text_key(text) or None) if text is not None else None


def same_answer(t: dict, s: dict) -> bool:
    """Whether the two correct options are the same option, wherever each sits: the letters are not compared."""
    gold = gold_option(t)
    return gold is not None and gold == gold_option(s)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= STEM_CHARS else text[: STEM_CHARS - 1] + "…"


def contamination_summary(
    pairs: list[dict], tests: dict[str, list[dict]], sources: dict[str, list[dict]], plan: dict[str, list[str]]
) -> list[dict]:
    """Counts of test items (not pairs) per test and source, then per test against all its sources.

    Each count is a floor of what the rules look for (a copy reworded past every rule is missed) and not a count
    of copies (some matches are other questions). An item is counted under the first kind it meets with any source item, so
    matched = exact_stem + near_duplicate + option_pool, and exact_stem includes exact_stem_options.
    exact_stem_other_answer: exact-stem items none of whose equal-stem matches has the same correct option
    (a generic stem asking about something else, or the same question over new options with another key).
    same_answer: matched items with a match whose correct
    option is the same. under_13_words: matched items whose stem has fewer than 13 words; no_shared_13gram:
    matched items sharing no word 13-gram (question + options) with any item they matched, i.e. what the
    first version could not see.
    """
    by: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for p in pairs:
        by[(p["test"], p["source"])].append(p)
        by[(p["test"], ALL_SOURCES)].append(p)
    out = []
    for test, test_rows in tests.items():
        for source in [*plan.get(test, []), ALL_SOURCES]:
            ps = by.get((test, source), [])

            def ids(*kinds: str, ps=ps) -> set[str]:
                return {p["test_id"] for p in ps if p["match"] in kinds}

            def same(*kinds: str, ps=ps) -> set[str]:
                return {p["test_id"] for p in ps if p["match"] in kinds and p["same_answer"]}

            matched = {p["test_id"] for p in ps}
            exact = ids(EXACT_STEM, EXACT_STEM_OPTIONS)
            near = ids(NEAR) - exact
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
                    "exact_stem_options": len(ids(EXACT_STEM_OPTIONS)),
                    "exact_stem_other_answer": len(exact - same(EXACT_STEM, EXACT_STEM_OPTIONS)),
                    "near_duplicate": len(near),
                    "option_pool": len(ids(OPTION_POOL) - exact - near),
                    "matched": len(matched),
                    "same_answer": len(same(*MATCHES)),
                    "under_13_words": len({p["test_id"] for p in ps if p["stem_words"] < NGRAM}),
                    "no_shared_13gram": len(matched - {p["test_id"] for p in ps if p["shares_13gram"]}),
                }
            )
    return out


FLOOR_NOTE = (
    "The counts are a floor: a copy reworded below the similarity threshold that also changed its options, or one "
    "in the other language, is not found. Not every match is a copy (a generic stem over other options, a stock "
    "option pool shared by different questions): docs/contamination.md reads a sample by hand"
)


def contamination(loader=load_rows) -> Contamination:
    """The whole check over the data on disk (DataError if a required split is missing)."""
    tests, sources, plan, notes = load_plan(loader)
    pairs = contamination_pairs(tests, sources, plan)
    return Contamination(pairs, contamination_summary(pairs, tests, sources, plan), [FLOOR_NOTE, *notes])
