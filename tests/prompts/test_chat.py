"""Chat templates: the published templates render the prompts lm-eval sends, with exactly one BOS.

Tokenizers: the embedded 270M's tokenizer dressed as each family's (template, special tokens, BOS/EOS and
whether the tokenizer prepends BOS; tests/fixtures/chat_templates/families.yaml). Ordinary words keep Gemma's
ids; what is checked is the structure: special tokens as single ids, and the BOS count.
"""

from __future__ import annotations

import pytest
import torch

from medbench.models.registry import load_registry, resolve
from medbench.prompts.chat import ChatError, end_of_turn, families, family_tokenizer, plan_chat
from medbench.settings import EvalSettings

FAMILIES = list(families())
CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}]
EXPECTED = {
    "gemma3": "<bos><start_of_turn>user\nBe brief.\n\nQ?<end_of_turn>\n<start_of_turn>model\n",
    "qwen3": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n"
    "<think>\n\n</think>\n\n",
    "qwen2.5": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n",
    "exaone3.5": "[|system|]Be brief.[|endofturn|]\n[|user|]Q?\n[|assistant|]",
    "llama3.2": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
    "Today Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "phi4-mini": "<|system|>Be brief.<|end|><|user|>Q?<|end|><|assistant|>",
    "hyperclovax": "<|im_start|>tool_list\n<|im_end|>\n<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ?"
    "<|im_end|>\n<|im_start|>assistant\n",
    "smollm2": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n",
}
END_OF_TURN = {
    "gemma3": "<end_of_turn>",
    "qwen3": "<|im_end|>",
    "qwen2.5": "<|im_end|>",
    "exaone3.5": "[|endofturn|]",
    "llama3.2": "<|eot_id|>",
    "phi4-mini": "<|end|>",
    "hyperclovax": "<|im_end|>",
    "smollm2": "<|im_end|>",
}


def kwargs_of(family: str) -> dict:
    return dict(resolve(families()[family]["aliases"][0]).chat_template_kwargs or {})


@pytest.fixture(scope="module")
def tokenizers(embedded_dir):
    return {family: family_tokenizer(embedded_dir, family) for family in FAMILIES}


@pytest.fixture(scope="module")
def lm_for(tiny_gemma_dir):
    """An lm-eval model (our MedbenchLM) around the tiny Gemma with a family's tokenizer: its tok_encode and
    tok_batch_encode are what every request goes through."""
    from transformers import AutoModelForCausalLM

    from medbench.eval.lm import MedbenchLM

    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32)

    def make(tokenizer, chat_template_args=None):
        return MedbenchLM(
            pretrained=model, tokenizer=tokenizer, batch_size=2, device="cpu", chat_template_args=chat_template_args
        )

    return make


def test_every_registry_chat_model_has_a_template_fixture():
    covered = {alias for facts in families().values() for alias in facts["aliases"]}
    chat_models = {alias for alias, spec in load_registry().items() if spec.chat}
    assert chat_models == covered


@pytest.mark.parametrize("family", FAMILIES)
def test_published_template_renders_the_family_prompt(tokenizers, family):
    tok = tokenizers[family]
    text = tok.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True, **kwargs_of(family))
    assert text == EXPECTED[family]
    assert end_of_turn(tok, kwargs_of(family)) == END_OF_TURN[family]
    for special in families()[family]["special"]:
        assert len(tok.encode(special, add_special_tokens=False)) == 1, special


@pytest.mark.parametrize("family", FAMILIES)
def test_lm_eval_encodes_a_chat_prompt_with_exactly_one_bos(tokenizers, lm_for, family):
    """The Gemma pitfall: the template writes <bos> and the tokenizer would add another. lm-eval's encoders see the
    BOS prefix and add no special tokens; families whose tokenizer adds no BOS get none."""
    tok = tokenizers[family]
    lm = lm_for(tok, kwargs_of(family))
    text = lm.apply_chat_template(CONVERSATION)  # what lm-eval's task calls
    assert text == EXPECTED[family]
    naive = tok(text).input_ids
    single = lm.tok_encode(text)
    batch, _ = lm.tok_batch_encode([text, text])
    assert batch[0].tolist() == single
    bos = tok.bos_token_id
    if families()[family]["add_bos"]:
        assert naive[:2] == [bos, bos], "the pitfall is real: a plain encode doubles BOS"
        assert single[0] == bos and single.count(bos) == 1
    else:
        # nothing is prepended: BOS appears only where the template writes it (SmolLM2's BOS is <|im_start|>)
        assert bos is None or single.count(bos) == text.count(tok.bos_token)
        assert single == naive
    # An mc request (--chat on) scores " A" after this prompt: lm-eval moves the template's trailing newline
    # into the continuation, and the whole sequence holds no BOS beyond the prompt's.
    context, continuation = lm._encode_pair(text, " A")
    assert context + continuation == lm.tok_encode(text + " A")
    assert context[0] == single[0] and (context + continuation).count(bos) == single.count(bos)


def test_qwen3_thinking_switch(tokenizers):
    tok = tokenizers["qwen3"]
    off = tok.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    on = tok.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n") and on.endswith("<|im_start|>assistant\n")
    for marker in ("<think>", "</think>"):  # added tokens that survive decoding, so extraction can strip them
        (token,) = tok.encode(marker, add_special_tokens=False)
        assert tok.decode([token], skip_special_tokens=True) == marker


def test_llama_template_is_pinned_to_a_date(tokenizers):
    tok = tokenizers["llama3.2"]
    import datetime

    unpinned = tok.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert f"Today Date: {datetime.date.today():%d %b %Y}\n" in unpinned  # without the registry's kwarg: today
    pinned = tok.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True, **kwargs_of("llama3.2"))
    assert "Today Date: 26 Jul 2024\n" in pinned


def test_fewshot_shots_become_turns_through_lm_eval(tokenizers, lm_for):
    """lm-eval's own rendering of our 5-shot MedQA task as a multi-turn Qwen3 chat."""
    from lm_eval.tasks import TaskManager

    from medbench.paths import tasks_dir

    task = TaskManager(include_path=str(tasks_dir()), include_defaults=False).load(["medbench_medqa_usmle_fewshot"])[
        "tasks"
    ]["medbench_medqa_usmle_fewshot"]
    lm = lm_for(tokenizers["qwen3"], kwargs_of("qwen3"))
    task.build_all_requests(
        limit=1,
        rank=0,
        world_size=1,
        apply_chat_template=True,
        fewshot_as_multiturn=True,
        chat_template=lm.apply_chat_template,
        tokenizer_name=lm.tokenizer_name,
        system_instruction="Answer with the letter.",
    )
    context = task.instances[0].args[0]
    assert context.startswith("<|im_start|>system\nAnswer with the letter.<|im_end|>\n<|im_start|>user\nQuestion:")
    assert context.count("<|im_start|>user\n") == 6 and context.count("<|im_start|>assistant\n") == 6
    assert context.endswith("Answer:<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # Earlier assistant turns carry no thinking block (the published template drops it before the last query).
    assert context.count("<think>") == 1


@pytest.mark.parametrize(
    "chat, mode, chat_model, applies",
    [
        ("auto", "gen", True, True),
        ("auto", "mc", True, False),
        ("auto", "gen", False, False),
        ("on", "mc", True, True),
        ("on", "mc", False, True),
        ("off", "gen", True, False),
    ],
)
def test_plan(chat, mode, chat_model, applies):
    spec = resolve("qwen3-4b" if chat_model else "gemma3-270m")
    plan = plan_chat(spec, mode, EvalSettings(chat=chat))
    assert plan.apply is applies
    assert plan.template_kwargs == ({"enable_thinking": False} if applies and chat_model else {})


def test_thinking_needs_a_chat_gen_run_and_a_switch():
    settings = EvalSettings(thinking=True)
    assert plan_chat(resolve("qwen3-4b"), "gen", settings).template_kwargs == {"enable_thinking": True}
    with pytest.raises(ChatError, match="gen mode"):
        plan_chat(resolve("qwen3-4b"), "mc", settings)
    with pytest.raises(ChatError, match="no thinking switch"):
        plan_chat(resolve("llama3.2-3b"), "gen", settings)
