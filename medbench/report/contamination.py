"""The contamination section of results/summary.md: what the check compares, then its counts per test and source."""

from __future__ import annotations

from medbench.data.contamination import (
    ALL_SOURCES,
    CHAR_NGRAM,
    NEAR_DUPLICATE,
    NGRAM,
    POOL_OPTIONS,
    Contamination,
)
from medbench.report.markdown import table

HEADER = [
    "test",
    "source",
    "test items",
    "exact stem",
    "exact stem + options",
    "exact stem, other answer",
    "near-duplicate",
    "option pool",
    "matched",
    "same answer",
    f"< {NGRAM} words",
    f"no shared {NGRAM}-gram",
]


def explanation(notes: list[str]) -> str:
    """The paragraph above the table: the sources, each kind of match, and what the counts are a floor of."""
    return (
        "Every test item against every source that reaches a model before the test: KorMedMCQA train+valid "
        "of all four exams and MedQA dev (the fine-tuning mix, which pools the exams; MedQA dev also holds "
        "MedQA's 5-shot exemplars), and for a KorMedMCQA exam its own fewshot split (its 5-shot prompts). "
        "**Exact stem**: the stems are equal after NFKC, case folding and dropping punctuation, symbols and "
        "spaces (includes the next column). **Exact stem + options**: and the same options, in any order. "
        "**Exact stem, other answer**: exact-stem items whose correct option is another option in every "
        "equal-stem match (a generic stem asking about something else, or the stem reused over new options). "
        f"**Near-duplicate**: no exact stem, but an IDF-weighted Jaccard of character {CHAR_NGRAM}-grams of stem "
        f"and options of at least {NEAR_DUPLICATE} (a reworded copy; rare {CHAR_NGRAM}-grams weigh most, so exam "
        f"boilerplate does not count). **Option pool**: neither, but at least {POOL_OPTIONS} options in common, "
        "in any order, and the same correct option (a question reworded past the similarity threshold that kept "
        "its options and key; also different questions over a stock pool of options). Options and answers are "
        "compared by their normalised text, never by letter. **Same answer**: matched items with a match whose "
        "correct option is the same. "
        "Counts are of test items; an item counts under the first kind it meets (matched = exact stem + "
        "near-duplicate + option pool), and an item matched in several sources counts once in its *all sources* "
        f"row. < {NGRAM} words: matched items whose stem is shorter than {NGRAM} words; no shared {NGRAM}-gram: "
        f"matched items that share no word {NGRAM}-gram with what they matched, which the first version of this "
        f"check (shared word {NGRAM}-grams) could not see. Sources with no match are left out. Every matched "
        "pair, with its similarity, shared options and both correct options: `contamination.csv`."
        + "".join(f" {note}." for note in notes)
    )


def contamination_table(overlap: Contamination) -> str:
    """Per test: its all-sources row, then each source with a match."""
    body, tests = [], list(dict.fromkeys(o["test"] for o in overlap.summary))
    for o in sorted(overlap.summary, key=lambda o: (tests.index(o["test"]), o["source"] != ALL_SOURCES)):
        if o["source"] == ALL_SOURCES or o["matched"]:
            share = f" ({100 * o['matched'] / o['test_rows']:.1f}%)" if o["test_rows"] else ""
            source = f"{o['source']} ({o['source_rows']:,} items)" if o["source"] == ALL_SOURCES else o["source"]
            body.append(
                [
                    o["test"],
                    source,
                    o["test_rows"],
                    o["exact_stem"],
                    o["exact_stem_options"],
                    o["exact_stem_other_answer"],
                    o["near_duplicate"],
                    o["option_pool"],
                    f"{o['matched']}{share}",
                    o["same_answer"],
                    o["under_13_words"],
                    o["no_shared_13gram"],
                ]
            )
    return table(HEADER, body)


def contamination_section(overlap: Contamination) -> str:
    """The body of the section (no heading): the explanation, a blank line, the table."""
    return f"{explanation(overlap.notes)}\n\n{contamination_table(overlap)}\n"
