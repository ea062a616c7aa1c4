"""docs/contamination.md's sample block is what dev/contamination_sample.py writes from the data and the verdicts."""

import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent


@pytest.fixture
def sample_script(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    sys.modules.pop("contamination_sample", None)
    import contamination_sample

    yield contamination_sample
    sys.modules.pop("contamination_sample", None)


def test_quotas_give_each_kind_its_floor_then_share_the_rest_by_size(sample_script):
    q = sample_script.quotas
    # 5 each, then 5 left over 3 + 16 + 43: shares 0.24, 1.29, 3.47 -> 0, 1, 3, and the largest remainder (c) +1.
    assert q({"a": 8, "b": 21, "c": 48}, 20, 5) == {"a": 5, "b": 6, "c": 9}
    assert q({"a": 2, "b": 30}, 20, 5) == {"a": 2, "b": 18}  # a kind smaller than the floor gives all it has
    assert q({"a": 3, "b": 4}, 20, 5) == {"a": 3, "b": 4}  # fewer pairs than the sample: every one
    assert sum(q({"a": 7, "b": 7, "c": 7}, 20, 5).values()) == 20


def test_sample_is_seeded_distinct_and_spread_over_kinds(sample_script):
    pairs = [
        {"test_id": f"t{i}", "source_id": f"s{i}", "match": kind, "source": src}
        for i, kind in enumerate(["exact_stem"] * 6 + ["near_duplicate"] * 10 + ["option_pool"] * 30)
        for src in ("train+valid", "fewshot")  # one pair met in two sources is drawn once
    ]
    first = sample_script.sample(pairs, seed=1, size=20)
    assert first == sample_script.sample(pairs, seed=1, size=20) != sample_script.sample(pairs, seed=2, size=20)
    keys = [(p["test_id"], p["source_id"]) for p in first]
    assert len(set(keys)) == len(keys) == 20
    kinds = [p["match"] for p in first]
    assert kinds == sorted(kinds, key=["exact_stem", "near_duplicate", "option_pool"].index)
    assert min(kinds.count(k) for k in ("exact_stem", "near_duplicate", "option_pool")) >= 5


@pytest.mark.slow  # reads every record, the whole data or a browser: seconds
def test_doc_block_is_up_to_date_and_every_sampled_pair_has_a_verdict(sample_script):
    # Fails when the data, the rules or the verdicts changed and the script was not rerun.
    assert sample_script.main(["--check"]) == 0
    doc = sample_script.DOC.read_text(encoding="utf-8")
    assert doc.count(sample_script.START) == doc.count(sample_script.END) == 1
    verdicts = sample_script.load_verdicts()
    assert len(verdicts) == sample_script.SIZE
    assert {v["verdict"] for v in verdicts.values()} <= set(sample_script.VERDICT_ORDER)
    # The sample reaches the new kind of match, not only the ones the first hand check read.
    assert "| option_pool |" in doc
