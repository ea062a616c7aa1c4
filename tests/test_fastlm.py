"""Our one-forward answer-letter scorer against lm-eval's stock HF model, on a tiny random Gemma 3."""

import pytest
import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from transformers import AutoModelForCausalLM, AutoTokenizer

from medbench.eval.fastlm import MedbenchLM
from medbench.paths import tasks_dir

MC_TASKS = ["medbench_kormedmcqa_doctor", "medbench_kormedmcqa_nurse", "medbench_kormedmcqa_pharm",
            "medbench_kormedmcqa_dentist", "medbench_medqa_usmle"]


@pytest.fixture(scope="module")
def requests_and_models(tiny_gemma_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tiny_gemma_dir)
    tasks = TaskManager(include_path=str(tasks_dir()), include_defaults=False).load(MC_TASKS)["tasks"]
    instances = []
    for name in MC_TASKS:
        tasks[name].build_all_requests(limit=3, rank=0, world_size=1)
        instances += tasks[name].instances
    stock = HFLM(pretrained=model, tokenizer=tok, batch_size=1, device="cpu")
    fast = MedbenchLM(pretrained=model, tokenizer=tok, batch_size=4, device="cpu")
    return instances, stock, fast


def test_same_loglikelihoods_and_choices_as_stock_hflm(requests_and_models):
    instances, stock, fast = requests_and_models
    expected = stock.loglikelihood(instances)
    got = fast.loglikelihood(instances)
    assert len(got) == len(expected) == 3 * (4 * 5 + 4)
    for (lp_s, greedy_s), (lp_f, greedy_f) in zip(expected, got):
        assert lp_f == pytest.approx(lp_s, abs=2e-4)
        assert greedy_f == greedy_s
    # Per question, the chosen letter agrees wherever the top two are not a near-tie.
    i = 0
    while i < len(instances):
        doc_id, task = instances[i].doc_id, instances[i].task_name
        j = i
        while j < len(instances) and instances[j].doc_id == doc_id and instances[j].task_name == task:
            j += 1
        s = sorted(range(i, j), key=lambda k: expected[k][0], reverse=True)
        if expected[s[0]][0] - expected[s[1]][0] > 1e-3:
            assert max(range(i, j), key=lambda k: got[k][0]) == s[0]
        i = j


def test_left_padding_matches_unpadded(requests_and_models):
    """Batching (left padding + position ids, sliding window of 16 here) must not change a score."""
    instances, _, fast = requests_and_models
    one_by_one = MedbenchLM(pretrained=fast.model, tokenizer=fast.tokenizer, batch_size=1, device="cpu")
    for (a, _), (b, _) in zip(one_by_one.loglikelihood(instances), fast.loglikelihood(instances)):
        assert a == pytest.approx(b, abs=2e-4)


def test_prompt_truncation_keeps_the_end(requests_and_models):
    instances, _, fast = requests_and_models
    short = MedbenchLM(pretrained=fast.model, tokenizer=fast.tokenizer, batch_size=2, device="cpu",
                       prompt_max_tokens=40)
    ids, _ = short.tok_batch_encode(["word " * 200 + "정답："])
    assert ids.shape[1] == 40
    assert short.tokenizer.decode(ids[0]).endswith("정답：")
    # Scoring with a 40-token window equals scoring the last 40 context tokens alone.
    req = instances[0]
    ctx, cont = req.args
    ctx_enc, cont_enc = short._encode_pair(ctx, cont)
    (lp_trunc, _), = short._loglikelihood_tokens([((ctx, cont), ctx_enc, cont_enc)])
    (lp_tail, _), = short._loglikelihood_tokens([(("", cont), ctx_enc[-40:], cont_enc)])
    assert lp_trunc == pytest.approx(lp_tail, abs=1e-5)
