"""Our one-forward answer-letter scorer against lm-eval's stock HF model, on a tiny random Gemma 3."""

import math

import pytest
import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from transformers import AutoModelForCausalLM, AutoTokenizer

from medbench.eval.lm import CanaryError, MedbenchLM, exact_logits
from medbench.paths import tasks_dir

MC_TASKS = [
    "medbench_kormedmcqa_doctor",
    "medbench_kormedmcqa_nurse",
    "medbench_kormedmcqa_pharm",
    "medbench_kormedmcqa_dentist",
    "medbench_medqa_usmle",
]


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
    one_by_one = MedbenchLM(pretrained=fast.model, tokenizer=fast.tokenizer, batch_size=1, batch_tokens=0, device="cpu")
    for (a, _), (b, _) in zip(one_by_one.loglikelihood(instances), fast.loglikelihood(instances)):
        assert a == pytest.approx(b, abs=2e-4)


def test_prompt_truncation_keeps_the_end(requests_and_models):
    instances, _, fast = requests_and_models
    short = MedbenchLM(
        pretrained=fast.model, tokenizer=fast.tokenizer, batch_size=2, device="cpu", prompt_max_tokens=40
    )
    ids, _ = short.tok_batch_encode(["word " * 200 + "정답："])
    assert ids.shape[1] == 40
    assert short.tokenizer.decode(ids[0]).endswith("정답：")
    # Scoring with a 40-token window equals scoring the last 40 context tokens alone.
    req = instances[0]
    ctx, cont = req.args
    ctx_enc, cont_enc = short._encode_pair(ctx, cont)
    ((lp_trunc, _),) = short._loglikelihood_tokens([((ctx, cont), ctx_enc, cont_enc)])
    ((lp_tail, _),) = short._loglikelihood_tokens([(("", cont), ctx_enc[-40:], cont_enc)])
    assert lp_trunc == pytest.approx(lp_tail, abs=1e-5)


def test_exact_letter_logits_separate_what_bf16_rounds_together():
    """Two letters whose logits differ by less than bf16's resolution at that size: fp32 keeps them apart."""
    hidden = torch.ones(1, 8, dtype=torch.bfloat16)
    head = torch.nn.Linear(8, 3, bias=False).to(torch.bfloat16)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[0, :] = 2.5  # logit 20.0
        head.weight[1, :] = 2.5
        head.weight[1, 0] = 2.515625  # exact in bf16; logit 20.015625, which bf16 rounds to 20.0 (step 0.125 there)
    rounded = head(hidden)
    assert rounded[0, 0] == rounded[0, 1]  # what a bf16 head gives: a tie, broken by letter order
    with torch.no_grad():
        exact = exact_logits(hidden, head, config=None)
    assert exact.dtype == torch.float32 and exact[0, 1] - exact[0, 0] == pytest.approx(0.015625)
    # The normaliser comes from the same fp32 logits: the letters' probabilities never sum to more than 1.
    assert float(torch.softmax(exact, dim=-1).sum()) == pytest.approx(1.0, abs=1e-6)


def test_bf16_model_scores_no_exact_ties_where_fp32_has_none(requests_and_models, tiny_gemma_dir):
    instances, _, _ = requests_and_models
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.bfloat16)
    lm = MedbenchLM(
        pretrained=model, tokenizer=AutoTokenizer.from_pretrained(tiny_gemma_dir), batch_size=4, device="cpu"
    )
    got = lm.loglikelihood(instances)
    by_question: dict = {}
    for inst, (lp, _) in zip(instances, got, strict=True):
        by_question.setdefault((inst.task_name, inst.doc_id), []).append(lp)
    ties = sum(1 for lps in by_question.values() if len(set(lps)) < len(lps))
    assert ties == 0 and len(by_question) == 3 * 5
    # Letters and normaliser from the same fp32 logits: a question's letter probabilities never sum past 1.
    assert max(sum(math.exp(lp) for lp in lps) for lps in by_question.values()) <= 1 + 1e-6
    assert lm.canary_report and all(c["passed"] for c in lm.canary_report)


def test_canary_stops_a_run_whose_batched_scores_are_wrong(requests_and_models, monkeypatch):
    instances, _, fast = requests_and_models
    lm = MedbenchLM(pretrained=fast.model, tokenizer=fast.tokenizer, batch_size=4, device="cpu")
    honest = MedbenchLM._score_batch

    def faulty(self, batch, wanted, width=None):  # a kernel fault: batched rows come back shifted, batch 1 is right
        rows = honest(self, batch, wanted, width)
        if len(batch) == 1:
            return rows
        return [(h, {t: lp - 0.5 * (t % 3) for t, lp in lps.items()}, g) for h, lps, g in rows]

    monkeypatch.setattr(MedbenchLM, "_score_batch", faulty)
    with pytest.raises(CanaryError, match="batched scores differ from the same questions scored alone"):
        lm.loglikelihood(instances)


def test_each_task_is_scored_in_batches_of_its_own(requests_and_models, monkeypatch):
    instances, _, fast = requests_and_models
    lm = MedbenchLM(pretrained=fast.model, tokenizer=fast.tokenizer, batch_size=64, device="cpu", canary_size=0)
    seen = []
    honest = MedbenchLM._score_batch
    monkeypatch.setattr(MedbenchLM, "_score_batch", lambda self, b, *a: seen.append(len(b)) or honest(self, b, *a))
    alone = {}
    for name in MC_TASKS:
        part = [i for i in instances if i.task_name == name]
        alone.update(zip((id(i) for i in part), lm.loglikelihood(part), strict=True))
    seen_alone, seen[:] = list(seen), []
    together = lm.loglikelihood(instances)
    assert sorted(seen) == sorted(seen_alone)  # the same batches alone as together (tasks in another order)
    assert [alone[id(i)] for i in instances] == together  # a task's scores do not depend on what ran beside it


def test_a_questions_scores_do_not_depend_on_the_others(requests_and_models):
    """Padded to width buckets and filled to a fixed row count, every batch a question is scored in has the same
    shape whatever else was asked: a subset (as --limit or one data-parallel process gets) scores bit for bit
    as the whole does."""
    instances, _, fast = requests_and_models
    lm = MedbenchLM(pretrained=fast.model, tokenizer=fast.tokenizer, batch_size=4, device="cpu", canary_size=0)
    assert not lm.fixed_shapes  # on by default on CUDA only (filler rows cost a short CPU run too much)
    lm.fixed_shapes = True
    whole = dict(zip((id(i) for i in instances), lm.loglikelihood(instances), strict=True))
    # Interleaved shares, as lm-eval deals documents to ranks, and slices, as --limit takes them. Batched by
    # length alone (no buckets, no filler rows) and with one head product for all letters, one of these
    # 111 scores moved in its last bit.
    shares = (instances[0::2], instances[1::3], instances[::-1][::5], instances[len(instances) // 2 :])
    for share in shares:
        for inst, got in zip(share, lm.loglikelihood(share), strict=True):
            assert got == whole[id(inst)]  # exactly: not approx
