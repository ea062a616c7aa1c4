"""Every registry architecture, scaled down, through the whole harness on CPU.

For each distinct architecture of the registry (model_type and chat template): its published config.json
(medbench/models/configs/) at 2 layers and hidden size 64, random weights, the embedded 270M's tokenizer dressed
as the family's (tests/fixtures/chat_templates/). Each runs `gen` through its chat template, LoRA training for
2 steps (trainers/, TRL) and the `mc` scorer on that adapter (which runs the base model's `mc` path beneath it).
The registry's `architecture_checked` dates record the entries whose architecture passed here; weights stay
unverified.
"""

from __future__ import annotations

import json

import pytest
import torch

from medbench.eval.request import RunRequest
from medbench.eval.runner import run
from medbench.models.registry import load_registry, resolve
from medbench.models.shapes import save_tiny, shape_dict, text_part
from medbench.prompts.chat import families, family_tokenizer
from medbench.settings import EvalSettings
from trainers import sft, sft_data
from trainers.arguments import parse_args

pytestmark = pytest.mark.model

# One alias per architecture (model_type, and the chat template its family uses); the others share its code path.
ARCHITECTURES = {
    "gemma3-1b": "gemma3",
    "gemma3-4b": "gemma3",
    "qwen3-0.6b": "qwen3",
    "qwen2.5-0.5b": "qwen2.5",
    "exaone3.5-2.4b": "exaone3.5",
    "llama3.2-1b": "llama3.2",
    "hyperclovax-1.5b": "hyperclovax",
    "phi4-mini": "phi4-mini",
}
SHORT_TRAIN_IDS = {"pharm-2019-2-52", "pharm-2020-1-27"}
USER_TURN = {
    "gemma3": "<start_of_turn>user\n",
    "qwen3": "<|im_start|>user\n",
    "qwen2.5": "<|im_start|>user\n",
    "exaone3.5": "[|user|]",
    "llama3.2": "<|start_header_id|>user<|end_header_id|>",
    "phi4-mini": "<|user|>",
    "hyperclovax": "<|im_start|>user\n",
}


def architecture(alias: str) -> tuple:
    raw, _ = shape_dict(alias)
    return raw["model_type"], text_part(raw)["model_type"], tuple(raw.get("architectures", ()))


def family_of(alias: str) -> str:
    return next(f for f, facts in families().items() if alias in facts["aliases"])


def test_every_registry_entry_has_its_architecture_here():
    """Each entry's published architecture (and chat family) is one that a test below runs."""
    tested = {(architecture(a), f) for a, f in ARCHITECTURES.items()}
    for alias, spec in load_registry().items():
        if spec.embedded:
            continue
        assert (architecture(alias), family_of(alias)) in tested, alias
        if spec.architecture_checked:
            assert not spec.verified or spec.embedded


def test_published_shapes_have_the_published_sizes():
    """The configs reproduce each card's parameter count (random weights on the meta device: no memory)."""
    from transformers import AutoModelForCausalLM

    from medbench.models.shapes import config_at_shape

    for alias, spec in load_registry().items():
        if not spec.shape:
            continue
        config, _ = config_at_shape(alias)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        params = sum(p.numel() for p in model.parameters()) / 1e9
        assert abs(params - spec.params_b) / spec.params_b < 0.08, (alias, params)


@pytest.fixture
def short_data(monkeypatch):
    """Two short KorMedMCQA questions; datasets' fingerprint of the 262k-token tokenizer made cheap (see
    tests/test_trainers.py)."""
    from datasets.utils._dill import Pickler
    from transformers import GemmaTokenizer

    from medbench.data.loader import load_rows

    monkeypatch.setitem(
        Pickler.dispatch,
        GemmaTokenizer,
        lambda pickler, obj: pickler.save_reduce(str, (f"tokenizer {obj.name_or_path}",), obj=obj),
    )
    rows = [
        (r, "medbench_kormedmcqa_pharm")
        for r in load_rows("kormedmcqa", "pharm", "train")
        if r["id"] in SHORT_TRAIN_IDS
    ]
    parts = [([r for r, _ in rows], "medbench_kormedmcqa_pharm")]
    train_ds = sft_data.build_examples(parts, cot=False, limit=None, seed=0)
    monkeypatch.setattr(sft_data, "train_dataset", lambda *a, **k: (train_ds, [{"dataset": "kormedmcqa"}]))
    monkeypatch.setattr(sft_data, "eval_dataset", lambda limit=None, seed=0: (train_ds, [{"dataset": "kormedmcqa"}]))


@pytest.mark.parametrize("alias", list(ARCHITECTURES))
def test_tiny_architecture_runs_mc_chat_gen_lora_and_the_adapter(
    alias, embedded_dir, tmp_path, results_dir, short_data, monkeypatch
):
    monkeypatch.setenv("MEDBENCH_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    family = ARCHITECTURES[alias]
    tokenizer = family_tokenizer(embedded_dir, family)
    model_dir = save_tiny(alias, tmp_path / f"tiny-{alias}", tokenizer)
    assert json.loads((model_dir / "config.json").read_text())["model_type"] == architecture(alias)[0]
    kwargs = dict(resolve(alias).chat_template_kwargs or {})
    settings = dict(batch_size=2, max_gen_toks=3)

    # The tiny directory stands in for the registry entry: its chat flag and template arguments.
    import dataclasses

    import medbench.eval.request as request

    real_resolve = request.resolve
    monkeypatch.setattr(
        request,
        "resolve",
        lambda name: dataclasses.replace(real_resolve(name), chat=True, chat_template_kwargs=kwargs or None),
    )

    gen = run(
        RunRequest(
            model=str(model_dir),
            prompt="zeroshot",
            mode="gen",
            tasks=["medqa_usmle"],
            limit=1,
            settings=EvalSettings(**settings),
        )
    )
    assert gen["chat"]["apply"] and gen["chat"]["template_kwargs"] == kwargs
    assert gen["generation_kwargs"]["until"] == [gen["chat"]["end_of_turn"]]
    run_dir = results_dir / "runs" / gen["run_id"]
    template = (run_dir / "chat_template.jinja").read_text()
    assert template == tokenizer.chat_template
    prompt = gen["tasks"][0]["first_prompt"]  # the samples keep no prompt; the record keeps the first
    assert USER_TURN[family] in prompt and "Question:" in prompt

    record = sft.train(
        parse_args(
            [
                str(model_dir),
                "lora",
                "--mix",
                "korean",
                "--max-steps",
                "2",
                "--eval-limit",
                "0",
                "--set",
                "per_device_train_batch_size=2",
                "--set",
                "logging_steps=1",
                "--set",
                "warmup_steps=0",
                "--set",
                "save_strategy=no",
            ]
        )
    )
    assert record["steps"] == 2 and 0 < record["params"]["trainable"] < record["params"]["total"]
    adapter = json.loads((tmp_path / "checkpoints" / f"{model_dir.name}-lora" / "adapter_config.json").read_text())
    targets = {m.rsplit(".", 1)[-1] for m in adapter["target_modules"]}
    # Phi-3's attention and MLP are fused: LoRA adapts qkv_proj and gate_up_proj as whole matrices.
    fused = architecture(alias)[0] == "phi3"
    assert targets >= (
        {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
        if fused
        else {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    ), targets
    if "vision_config" in shape_dict(alias)[0]:
        # all-linear on the multimodal Gemma 3 (4B, MedGemma) adapts the SigLIP tower too (fc1, fc2, out_proj).
        assert targets & {"fc1", "fc2", "out_proj"}

    lora = run(
        RunRequest(
            model=str(model_dir),
            variant="lora",
            prompt="zeroshot",
            mode="mc",
            tasks=["medqa_usmle"],
            limit=2,
            settings=EvalSettings(**settings),
        )
    )
    assert lora["adapter"] and lora["tasks"][0]["n"] == 2
    assert lora["chat"]["apply"] is False  # auto: mc stays a plain completion on a chat model
