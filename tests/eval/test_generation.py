"""The generation engine (medbench/eval/generation/) against batch-1 `model.generate`, token for token, in fp32.

The reference is what the study's loop and lm-eval at batch size 1 run: `generate` on one unpadded
prompt, greedy, repetition_penalty 1.5, stopped by lm-eval's own stop-string criteria. The tiny
Gemma 3 has a sliding window of 16 tokens, shorter than the prompts and generations here.
"""

import pytest
import torch
from lm_eval.models.utils_hf import stop_sequences_criteria
from lm_eval.tasks import TaskManager
from transformers import AutoModelForCausalLM, AutoTokenizer

from medbench.eval.generation.engine import generate
from medbench.eval.generation.lm import unsupported_processors
from medbench.eval.generation.scheduler import common_prefix
from medbench.eval.generation.sequence import GenerationRequest
from medbench.eval.generation.stop import StopChecker
from medbench.eval.lm import MedbenchLM
from medbench.paths import tasks_dir

TEXTS = [
    "다음 중 옳은 것은? A. 하나 B. 둘 C. 셋\n정답：",
    "Question: what is the capital of France?\nAnswer:",
    "hello " * 30,
    "x",
    "The patient presents with fever and cough. " * 4,
    "A 45-year-old man has chest pain.",
]
BUDGET = 40


@pytest.fixture(autouse=True)
def one_thread(_offline):
    # Tiny matrices on a shared 2-core machine: a second thread only waits for the first (10-20x slower).
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tiny_gemma_dir):
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_gemma_dir)
    return model, tok, [tok(t)["input_ids"] for t in TEXTS]


def batch1_generate(model, tok, prompts, stops, budget=BUDGET, penalty=1.5):
    out = []
    for p in prompts:
        ids = torch.tensor([p])
        gen = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_length=len(p) + budget,
            stopping_criteria=stop_sequences_criteria(tok, stops, len(p), 1),
            pad_token_id=tok.pad_token_id,
            do_sample=False,
            repetition_penalty=penalty,
        )
        out.append(gen[0, len(p) :].tolist())
    return out


@pytest.fixture(scope="module")
def stops_that_fire(tiny):
    """Stop strings this random model really produces, at different steps in different prompts."""
    model, tok, prompts = tiny
    free = batch1_generate(model, tok, prompts, [])
    stops = []
    for row, at in ((0, 6), (2, 17), (4, 29)):
        piece = tok.decode(free[row][at : at + 1])
        if piece.strip():
            stops.append(piece)
    assert len(stops) >= 2
    return free, stops


def run(model, tok, prompts, stops, budget=BUDGET, penalty=1.5, **kwargs):
    requests = [GenerationRequest(p, budget, tuple(stops)) for p in prompts]
    return generate(model, tok, requests, repetition_penalty=penalty, **kwargs)


@pytest.mark.parametrize("slots,check_every,refill_fraction", [(6, 8, 0.125), (4, 3, 0.5), (2, 1, 0.0), (1, 2, 1.0)])
def test_same_tokens_as_batch1_generate(tiny, stops_that_fire, slots, check_every, refill_fraction):
    model, tok, prompts = tiny
    _, stops = stops_that_fire
    expected = batch1_generate(model, tok, prompts, stops)
    lengths = sorted({len(e) for e in expected})
    assert len(lengths) >= 3 and lengths[0] < BUDGET  # stops fire, at different steps: the case that matters
    got, stats = run(model, tok, prompts, stops, slots=slots, check_every=check_every, refill_fraction=refill_fraction)
    assert got == expected
    assert stats.generated_tokens == sum(len(e) for e in expected)
    assert stats.slots == slots and stats.cache_len == max(len(p) for p in prompts) + BUDGET
    if slots < len(prompts):  # waiting prompts took the slots finished ones left
        assert stats.admissions > 1


def test_eos_and_budget_and_no_penalty(tiny, stops_that_fire):
    model, tok, prompts = tiny
    free, _ = stops_that_fire
    eos_before = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [eos_before, free[1][9]]  # an EOS id this model emits in prompt 1
    try:
        for penalty in (1.5, 1.0):
            expected = batch1_generate(model, tok, prompts, ["<eos>"], budget=25, penalty=penalty)
            got, _ = run(model, tok, prompts, ["<eos>"], budget=25, penalty=penalty, slots=3)
            assert got == expected
            if penalty == 1.5:
                assert len(got[1]) == 10 and got[1][-1] == free[1][9]
    finally:
        model.generation_config.eos_token_id = eos_before


def test_prefill_split_by_rows_changes_nothing(tiny, stops_that_fire):
    model, tok, prompts = tiny
    _, stops = stops_that_fire
    whole, _ = run(model, tok, prompts, stops, slots=6)
    split, _ = run(model, tok, prompts, stops, slots=6, prefill_tokens=20)
    assert split == whole


def test_one_queue_for_requests_of_several_tasks(tiny, stops_that_fire):
    """Budgets, stops and groups differ per request (several tasks in one call): each gets its batch-1 tokens."""
    model, tok, prompts = tiny
    _, stops = stops_that_fire
    plan = [(p, (BUDGET, 9, 17)[i % 3], stops[: 1 + i % 2], f"task{i % 2}") for i, p in enumerate(prompts)]
    expected = [batch1_generate(model, tok, [p], list(s), budget=b)[0] for p, b, s, _ in plan]
    finished = []
    got, stats = generate(
        model,
        tok,
        [GenerationRequest(p, b, tuple(s), g) for p, b, s, g in plan],
        repetition_penalty=1.5,
        slots=3,
        on_finish=lambda i, tokens: finished.append((i, list(tokens))),
    )
    assert got == expected
    assert sorted(finished) == sorted(enumerate(expected))  # each answer reported once, as it finished


def test_a_shared_prefix_is_prefilled_once_and_changes_no_token(tiny):
    model, tok, _ = tiny
    shots = "Question: which organ pumps blood? A. liver B. heart C. lung\nAnswer: B\n\n" * 3
    questions = ["Question: what filters blood?\nAnswer:", "Question: where is bile made?\nAnswer:", "Q: x?\nA:"]
    prompts = [tok(shots + q)["input_ids"] for q in questions]
    expected = batch1_generate(model, tok, prompts, ["\n\n"])
    for slots in (3, 2):
        requests = [GenerationRequest(p, BUDGET, ("\n\n",), "task") for p in prompts]
        got, stats = generate(model, tok, requests, repetition_penalty=1.5, slots=slots, prefix_min=16)
        assert got == expected
        shared = common_prefix(prompts)
        # The prefix once, then every prompt token that was not read from it (a padded row recomputes a few).
        assert shared >= 16 and stats.prefill_tokens + stats.shared_prefix_tokens == shared + sum(map(len, prompts))
        assert stats.shared_prefix_tokens >= shared * (len(prompts) - 1)


def test_eager_attention_masks_give_the_same_tokens(tiny_gemma_dir, stops_that_fire):
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32, attn_implementation="eager")
    tok = AutoTokenizer.from_pretrained(tiny_gemma_dir)
    prompts = [tok(t)["input_ids"] for t in TEXTS]
    _, stops = stops_that_fire
    got, _ = run(model.eval(), tok, prompts, stops, slots=4)
    assert got == batch1_generate(model, tok, prompts, stops)


def test_stop_checker_skips_only_windows_that_cannot_stop(tiny):
    _, tok, _ = tiny
    checker = StopChecker(tok, ["\n\n", "<eos>"], eos_ids=set())
    text_ids = tok("Answer: B\n\nQuestion", add_special_tokens=False)["input_ids"]
    stop = checker.stop_index(text_ids, 0)
    assert stop is not None and "\n\n" in tok.decode(text_ids[: stop + 1]) and "\n\n" not in tok.decode(text_ids[:stop])
    # "\n" then "\n" as two tokens, and the EOS token's text: both stop, as lm-eval's criteria do.
    nl = tok.convert_tokens_to_ids("\n")
    assert checker.stop_index([5000, nl, nl, 6000], 0) == 2
    assert checker.stop_index([5000, tok.eos_token_id], 0) == 1
    # The filter never hides a window that decodes to a stop: windows of tokens across the whole vocabulary.
    unfiltered = StopChecker(tok, ["\n\n", "<eos>"], eos_ids=set())
    unfiltered.maybe = None
    for t in [*range(0, len(tok), 97), *tok.all_special_ids, *range(200, 300)]:  # 200-300: byte tokens
        for window in ([t], [t, t], [nl, t], [t, 5000]):
            assert checker.stop_index(window, 0) == unfiltered.stop_index(window, 0), window
    assert checker.maybe[nl] and not checker.maybe[5000]


def test_only_the_repetition_penalty_is_taken(tiny):
    model, _, _ = tiny
    assert unsupported_processors(model, 1.5) == []
    model.generation_config.no_repeat_ngram_size = 3
    try:
        assert unsupported_processors(model, 1.5) == ["NoRepeatNGramLogitsProcessor"]
    finally:
        model.generation_config.no_repeat_ngram_size = None


def _zero_shot_requests(names: list[str], limit: int, budget: int) -> list:
    """lm-eval's requests of some zero-shot generative tasks, with the study's setting as the runner passes it."""
    tasks = TaskManager(include_path=str(tasks_dir()), include_defaults=False).load(names)["tasks"]
    requests = []
    for name in names:
        tasks[name].build_all_requests(limit=limit, rank=0, world_size=1)
        requests += tasks[name].instances
    for r in requests:
        r.arguments = (r.arguments[0], {**r.arguments[1], "repetition_penalty": 1.5, "max_gen_toks": budget})
    return requests


def test_generate_until_fast_equals_stock_and_batch1(tiny):
    """The whole lm-eval path on the zero-shot generative tasks: the answers' text is the same three ways."""
    model, tok, _ = tiny
    requests = _zero_shot_requests(["medbench_kormedmcqa_doctor_gen", "medbench_medqa_usmle_gen"], 3, 12)
    fast = MedbenchLM(pretrained=model, tokenizer=tok, batch_size=4, device="cpu")
    stock = MedbenchLM(pretrained=model, tokenizer=tok, batch_size=4, device="cpu", fast_gen=False)
    one = MedbenchLM(pretrained=model, tokenizer=tok, batch_size=1, device="cpu", fast_gen=False)
    got = fast.generate_until(requests)
    assert fast.fast_gen_stats and not fast.fast_gen_fallbacks
    assert got == one.generate_until(requests)
    assert got == stock.generate_until(requests)
    assert fast.generated_tokens == sum(len(t) for t in fast.last_generated_ids.values())


def test_anything_but_greedy_goes_to_stock_lm_eval(tiny):
    model, tok, _ = tiny
    lm = MedbenchLM(pretrained=model, tokenizer=tok, batch_size=2, device="cpu")
    assert lm._fast_gen_refusal({"do_sample": False, "temperature": 0.0, "repetition_penalty": 1.5}, 1.5) is None
    assert lm._fast_gen_refusal({"do_sample": True, "temperature": 0.7}, 1.0) == "sampling"
    assert lm._fast_gen_refusal({"do_sample": False, "num_beams": 4}, 1.0) == "generation arguments num_beams"
    remote = type("RemoteModel", (type(model),), {"__module__": "transformers_modules.exaone.modeling_exaone"})
    lm.model.__class__ = remote
    try:
        assert lm._fast_gen_refusal({"do_sample": False}, 1.5).startswith("a model class from remote code")
    finally:
        lm.model.__class__ = remote.__mro__[1]


def _chat_requests(lm, budget: int) -> list:
    """Zero-shot gen requests rendered through the tiny Gemma's chat template by lm-eval, stopping at the end of
    turn, as a chat run builds them (medbench/prompts/chat.py)."""
    from medbench.prompts.chat import end_of_turn

    name = "medbench_medqa_usmle_gen"
    task = TaskManager(include_path=str(tasks_dir()), include_defaults=False).load([name])["tasks"][name]
    stop = end_of_turn(lm.tokenizer)
    task.set_config(key="generation_kwargs", value={"until": [stop], "repetition_penalty": 1.5}, update=True)
    task.build_all_requests(
        limit=3, rank=0, world_size=1, apply_chat_template=True, fewshot_as_multiturn=True,
        chat_template=lm.apply_chat_template, tokenizer_name=lm.tokenizer_name,
    )  # fmt: skip
    for r in task.instances:
        r.arguments = (r.arguments[0], {**r.arguments[1], "max_gen_toks": budget})
    assert all(r.args[0].startswith("<bos><start_of_turn>user\n") for r in task.instances)
    return task.instances


def test_fast_answers_reach_the_response_cache_as_stock_ones(tiny, tiny_gemma_dir, tmp_path, monkeypatch):
    """Through CachedLM (the runner's path): the same keys and values as stock generate_until, written as each
    answer is computed, and a second pass answers from the cache without generating; chat-rendered prompts."""
    from medbench.eval.generation import lm as fastgen_lm
    from medbench.eval.response_cache import CachedLM, ResponseStore
    from medbench.prompts.chat import family_tokenizer

    model, _, _ = tiny
    tok = family_tokenizer(tiny_gemma_dir, "gemma3")  # the tiny's own tokenizer with Gemma 3's chat template
    stores = {}
    answers = {}
    for name, fast in (("fast", True), ("stock", False)):
        lm = MedbenchLM(pretrained=model, tokenizer=tok, batch_size=2, device="cpu", fast_gen=fast, progress=False)
        requests = _chat_requests(lm, 12) + _chat_requests(lm, 12)[:1]  # a repeat: one key, one row
        stores[name] = ResponseStore(tmp_path / f"{name}.sqlite")
        answers[name] = CachedLM(lm, stores[name]).generate_until(requests)
        if fast:
            assert lm.fast_gen_stats and not lm.fast_gen_fallbacks
    assert answers["fast"] == answers["stock"]
    rows = {name: sorted(s.con.execute("SELECT key, attr, value FROM responses")) for name, s in stores.items()}
    assert rows["fast"] == rows["stock"] and len(rows["fast"]) == 3

    def no_generation(*args, **kwargs):
        raise AssertionError("a cached answer was generated again")

    monkeypatch.setattr(fastgen_lm, "generate", no_generation)
    lm = MedbenchLM(pretrained=model, tokenizer=tok, batch_size=2, device="cpu", progress=False)
    assert CachedLM(lm, stores["fast"]).generate_until(_chat_requests(lm, 12)) == answers["fast"][:3]
    for store in stores.values():
        store.close()


def test_gen_engine_auto_graphs_only_on_one_cuda_device(tiny):
    """`auto` replays the decode step as a CUDA graph on one GPU and says why not anywhere else; on CPU a run
    decodes eagerly and the record names it."""
    from medbench.eval.generation.lm import resolve_engine

    model, tok, _ = tiny
    assert resolve_engine("auto", model, "cuda:0") == ("graphs", "auto: one CUDA device")
    assert resolve_engine("auto", model, "cpu") == ("eager", "auto: not on CUDA")
    assert resolve_engine("eager", model, "cuda:0") == ("eager", "the gen_engine setting")

    class Sharded(torch.nn.Module):
        hf_device_map = {"model.layers.0": 0, "lm_head": 1}

    assert resolve_engine("auto", Sharded(), "cuda:0") == ("eager", "auto: a model sharded across devices")
    with pytest.raises(ValueError, match="choose from auto, graphs, eager"):
        resolve_engine("static", model, "cpu")
    lm = MedbenchLM(pretrained=model, tokenizer=tok, batch_size=2, device="cpu")
    requests = _zero_shot_requests(["medbench_medqa_usmle_gen"], 2, 6)
    lm.generate_until(requests)
    assert lm.gen_engine_used == {"eager": "auto: not on CUDA"}
    assert lm.fast_gen_stats[0]["graphs"] is False and lm.fast_gen_stats[0]["graphs_reason"] == "graphs=off"


def test_graphs_chosen_but_not_captured_are_recorded_as_the_eager_decode_they_were(tiny, monkeypatch):
    """A capture that fails falls back to eager decoding; the record names the eager decode and why, never the
    engine that was only chosen (GPU records once said `graphs` for runs whose capture had failed)."""
    import medbench.eval.generation.engine as engine
    from medbench.eval.generation.runner import ModelRunner

    model, tok, _ = tiny
    requests = _zero_shot_requests(["medbench_medqa_usmle_gen"], 2, 6)
    lm = MedbenchLM(pretrained=model, tokenizer=tok, batch_size=2, device="cpu", gen_engine="graphs")
    lm.generate_until(requests)  # on CPU graphs are refused before any capture
    assert lm.gen_engine_used == {"eager": "the gen_engine setting; graphs not captured: not on CUDA"}

    def capture(self):
        raise RuntimeError("Cannot copy between CPU and CUDA tensors during CUDA graph capture")

    monkeypatch.setattr(engine, "graphs_refusal", lambda model, device: None)
    monkeypatch.setattr(ModelRunner, "capture", capture)
    failed = MedbenchLM(pretrained=model, tokenizer=tok, batch_size=2, device="cpu", gen_engine="graphs")
    assert failed.generate_until(requests) == lm.generate_until(requests)
    reason = "capture failed: RuntimeError: Cannot copy between CPU and CUDA tensors during CUDA graph capture"
    assert failed.gen_engine_used == {"eager": f"the gen_engine setting; graphs not captured: {reason}"}
    assert failed.fast_gen_stats[0]["engine"] == "eager" and failed.fast_gen_stats[0]["graphs"] is False


class _HostTensors(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts tensors made from host values (torch.tensor, `t[i] = True`): on CUDA each is a host-to-device copy,
    which CUDA graph capture refuses ("Cannot copy between CPU and CUDA tensors during CUDA graph capture")."""

    def __init__(self):
        super().__init__()
        self.made: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.lift_fresh.default:
            self.made.append(repr(args[0]))
        return func(*args, **(kwargs or {}))


def test_the_decode_step_makes_no_host_tensor_so_cuda_graph_capture_can_take_it(tiny):
    from medbench.eval.generation.runner import ModelRunner
    from medbench.eval.generation.sequence import GenerationStats

    model, tok, _ = tiny
    runner = ModelRunner(
        model, slots=2, cache_len=16, penalty=1.5, pad=tok.pad_token_id, prefill_tokens=64, stats=GenerationStats()
    )
    with _HostTensors() as probe:
        runner._step()
    assert probe.made == []
    assert runner.seen.sum().item() == 2  # the step still marks each slot's token as seen
