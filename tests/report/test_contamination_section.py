"""The contamination section's Markdown: every kind of match a column, the floor said, sources with no match left out."""

from medbench.data.contamination import ALL_SOURCES, FLOOR_NOTE, Contamination
from medbench.report.contamination import HEADER, contamination_section


def summary_row(test, source, test_rows, source_rows, **counts):
    kinds = ("exact_stem", "exact_stem_options", "exact_stem_other_answer", "near_duplicate", "option_pool")
    row = {"test": test, "source": source, "test_rows": test_rows, "source_rows": source_rows}
    row.update({k: counts.get(k, 0) for k in kinds})
    row["matched"] = row["exact_stem"] + row["near_duplicate"] + row["option_pool"]
    row.update({k: counts.get(k, 0) for k in ("same_answer", "under_13_words", "no_shared_13gram")})
    return row


def overlap():
    return Contamination(
        pairs=[],
        summary=[
            summary_row("kormedmcqa/nurse test", "kormedmcqa/nurse train+valid", 200, 1500, exact_stem=2,
                        exact_stem_other_answer=1, near_duplicate=1, option_pool=4, same_answer=5, under_13_words=3),
            summary_row("kormedmcqa/nurse test", "medqa dev", 200, 1000),
            summary_row("kormedmcqa/nurse test", ALL_SOURCES, 200, 12345, exact_stem=2, exact_stem_other_answer=1,
                        near_duplicate=1, option_pool=5, same_answer=6, under_13_words=3, no_shared_13gram=7),
        ],
        notes=[FLOOR_NOTE, "MedQA train is not checked"],
    )  # fmt: skip


def test_section_has_a_column_per_kind_and_rows_for_matched_sources_only():
    table = contamination_section(overlap()).split("\n\n")[1]
    lines = table.rstrip("\n").split("\n")
    assert lines[0] == "| " + " | ".join(HEADER) + " |" and "option pool" in HEADER
    assert "exact stem, other answer" in HEADER and "same answer" in HEADER
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    # The all-sources row first, then each source with a match; medqa dev matched nothing and is left out.
    assert [r[1] for r in cells] == ["all sources (12,345 items)", "kormedmcqa/nurse train+valid"]
    row = dict(zip(HEADER, cells[0]))
    assert (row["exact stem"], row["exact stem, other answer"], row["near-duplicate"], row["option pool"]) == (
        "2",
        "1",
        "1",
        "5",
    )
    assert (row["matched"], row["same answer"], row["no shared 13-gram"]) == ("8 (4.0%)", "6", "7")
    assert dict(zip(HEADER, cells[1]))["matched"] == "7 (3.5%)"


def test_paragraph_explains_the_rules_and_says_the_counts_are_a_floor():
    paragraph = contamination_section(overlap()).split("\n\n")[0]
    assert "**Option pool**" in paragraph and "at least 4 options in common" in paragraph
    assert "never by letter" in paragraph and "at least 0.4" in paragraph
    assert paragraph.endswith(f" {FLOOR_NOTE}. MedQA train is not checked.")
    assert "floor" in paragraph
