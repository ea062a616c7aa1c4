"""The host-side shortcuts of the `mc` path change no prompt, no token id and no batch's content."""

import pytest
from lm_eval import utils as lm_utils
from lm_eval.tasks import TaskManager
from transformers import AutoModelForCausalLM, AutoTokenizer

from medbench.eval.lm import MedbenchLM, _pair_strings
from medbench.paths import tasks_dir
from medbench.prompts import templates

TASKS = ["medbench_kormedmcqa_nurse", "medbench_medqa_usmle", "medbench_kormedmcqa_doctor_cot"]


def _stock_render(template, doc):
    return lm_utils.env.from_string(template).render(**doc)


@pytest.mark.slow  # reads every record, the whole data or a browser: seconds
def test_cached_templates_render_every_prompt_as_lm_eval_does(monkeypatch):
    tasks = TaskManager(include_path=str(tasks_dir()), include_defaults=False).load(TASKS)["tasks"]
    for name in TASKS:
        task = tasks[name]
        docs = list(task.eval_docs)
        monkeypatch.setattr(lm_utils, "apply_template", _stock_render)
        stock = [task.doc_to_text(d) for d in docs]
        templates.install()
        assert [task.doc_to_text(d) for d in docs] == stock, name
        assert templates._compiled.cache_info().hits >= len(docs) - 1


@pytest.fixture(scope="module")
def lm(tiny_gemma_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir)
    return MedbenchLM(pretrained=model, tokenizer=AutoTokenizer.from_pretrained(tiny_gemma_dir), device="cpu")


def test_batched_encoding_gives_lm_evals_token_ids(lm):
    tasks = TaskManager(include_path=str(tasks_dir()), include_defaults=False).load(TASKS[:2])["tasks"]
    pairs = []
    for name in TASKS[:2]:
        tasks[name].build_all_requests(limit=60, rank=0, world_size=1)
        pairs += [inst.args for inst in tasks[name].instances]
    # The edges lm-eval treats apart: trailing spaces move to the continuation; a leading BOS string.
    pairs += [("Question: x?\nAnswer: ", "A"), ("<bos>Already has a BOS", " B"), ("정답：  ", " C")]
    stock = [lm._encode_pair(c, x) for c, x in pairs]
    assert not lm._encoded
    lm.encode_many(_pair_strings(pairs))
    assert len(lm._encoded) == len({s for s in _pair_strings(pairs)})
    assert [lm._encode_pair(c, x) for c, x in pairs] == stock
    # Truncation and explicit arguments still go through lm-eval's own path.
    text = pairs[0][0]
    assert lm.tok_encode(text, left_truncate_len=5) == lm.tokenizer.encode(text)[-5:]
    assert lm.tok_encode(text, add_special_tokens=False) == lm.tokenizer.encode(text, add_special_tokens=False)


def test_token_budget_batches(lm, monkeypatch):
    contexts = [tuple(range(n)) for n in (900, 800, 300, 300, 300, 100, 100, 100, 100, 100, 5)]
    lm.batch_tokens = 1000
    monkeypatch.setattr(MedbenchLM, "batch_size", 2)
    batches, widths, rows = zip(*lm._batches(contexts))
    # Widths in buckets of 64 (960, 832, 320, 128, 64), never crossed; rows: 1000 // width, but never fewer than
    # batch_size: 2, 2, 3, 7, 15.
    assert [len(b) for b in batches] == [1, 1, 3, 5, 1]
    assert list(widths) == [960, 832, 320, 128, 64] and list(rows) == [2, 2, 3, 7, 15]
    assert [c for b in batches for c in b] == contexts
    lm.batch_tokens = 0
    assert [len(b) for b, _, _ in lm._batches(contexts)] == [1, 1, 2, 1, 2, 2, 1, 1]


def test_the_faulty_sdpa_kernel_is_taken_out_on_cuda(monkeypatch):
    """loading.load on a GPU turns off the memory-efficient SDPA kernel (wrong at key lengths 1 mod 32)."""
    import torch

    from medbench.models import loading

    calls = []
    monkeypatch.setattr(torch.backends.cuda, "enable_mem_efficient_sdp", calls.append)
    loading.avoid_faulty_sdpa_kernel()
    assert calls == [False]
