"""Registry resolution, variant plans and their refusals, and fine-tuned checkpoints round-tripping."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from medbench.eval.request import RunRequest
from medbench.eval.runner import run
from medbench.models.loading import from_pretrained_kwargs, load
from medbench.models.registry import RegistryError, load_registry, resolve
from medbench.models.variants import VariantError, load_variants, plan
from medbench.settings import EvalSettings

STUDY_NF4 = {
    "quant_method": "bitsandbytes",
    "load_in_4bit": True,
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": True,
    "bnb_4bit_compute_dtype": "bfloat16",
}


def test_registry_aliases_and_families():
    registry = load_registry()
    for alias in (
        "gemma3-270m",
        "gemma3-1b",
        "gemma3-4b",
        "qwen3-0.6b",
        "qwen3-1.7b",
        "qwen3-4b",
        "qwen3-8b",
        "qwen2.5-0.5b",
        "qwen2.5-1.5b",
        "qwen2.5-3b",
        "qwen2.5-7b",
        "exaone3.5-2.4b",
        "exaone3.5-7.8b",
    ):
        assert alias in registry and registry[alias].params_b > 0
    assert resolve("qwen3").alias == "qwen3-4b"
    assert resolve("qwen2.5").alias == "qwen2.5-3b"
    assert resolve("gemma3").alias == "gemma3-1b"
    assert resolve("exaone3.5").alias == "exaone3.5-2.4b"
    assert resolve("Qwen/Qwen3-14B").hub_id == "Qwen/Qwen3-14B"
    assert not any(spec.trust_remote_code for spec in registry.values())
    # Only weights a run here has loaded count as verified.
    assert [a for a, s in registry.items() if s.verified] == ["gemma3-270m", "smollm2-135m"]


def test_registry_refuses_unknown_keys(tmp_path):
    bad = tmp_path / "models.yaml"
    bad.write_text("m:\n  hub_id: a/b\n  parms_b: 1\n")
    with pytest.raises(RegistryError, match=r"unknown key\(s\) \['parms_b'\]"):
        load_registry(bad)
    with pytest.raises(RegistryError, match="unknown model 'llama9'"):
        resolve("llama9")


def test_local_directory_is_a_model(tmp_path):
    (tmp_path / "config.json").write_text("{}")  # an empty folder is refused (tests/test_reliability.py)
    (tmp_path / "tokenizer.json").write_text("{}")
    spec = resolve(str(tmp_path))
    assert spec.path == str(tmp_path.resolve()) and spec.alias == tmp_path.name


def test_bnb_is_the_studys_nf4_config():
    assert load_variants()["bnb"].quantization == STUDY_NF4
    assert load_variants()["qlora"].quantization == STUDY_NF4
    p = plan(resolve("gemma3-270m"), "bnb", cuda_available=True)
    kwargs = from_pretrained_kwargs(resolve("gemma3-270m"), p, EvalSettings(), "cuda")
    q = kwargs["quantization_config"]
    assert (q.load_in_4bit, q.bnb_4bit_quant_type, q.bnb_4bit_use_double_quant, q.bnb_4bit_compute_dtype) == (
        True,
        "nf4",
        True,
        torch.bfloat16,
    )
    assert kwargs["dtype"] == torch.bfloat16 and kwargs["attn_implementation"] in {"sdpa", "flash_attention_2"}


def test_cpu_defaults_are_fp32_sdpa():
    kwargs = from_pretrained_kwargs(
        resolve("gemma3-270m"), plan(resolve("gemma3-270m"), "base", False), EvalSettings(), "cpu"
    )
    assert kwargs == {"dtype": torch.float32, "attn_implementation": "sdpa", "trust_remote_code": False}


@pytest.mark.parametrize("variant", ["bnb", "awq", "qlora"])
def test_quantized_variants_refuse_without_cuda(variant):
    with pytest.raises(VariantError, match="needs a CUDA GPU"):
        plan(resolve("qwen3"), variant, cuda_available=False)


def test_no_cuda_refusal_comes_before_any_load(results_dir):
    # qwen3's weights are not here: the CUDA refusal must come first, not a missing-weights error.
    with pytest.raises(VariantError, match="'bnb'.*needs a CUDA GPU"):
        run(RunRequest(model="qwen3", variant="bnb"), results_dir)
    assert not (results_dir / "runs").exists()


def test_awq_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDBENCH_CHECKPOINTS", str(tmp_path))
    assert plan(resolve("qwen3-8b"), "awq", True).weights == "Qwen/Qwen3-8B-AWQ"
    with pytest.raises(VariantError, match=r"no AWQ checkpoint for gemma3-270m.*just quantize-awq gemma3-270m"):
        plan(resolve("gemma3-270m"), "awq", True)
    with pytest.raises(VariantError, match="no official AWQ upload"):
        plan(resolve("gemma3-1b"), "awq", True)
    (tmp_path / "gemma3-270m-awq").mkdir()
    assert plan(resolve("gemma3-270m"), "awq", True).weights == str(tmp_path / "gemma3-270m-awq")


@pytest.mark.parametrize("method", ["full", "lora"])
def test_missing_checkpoint_names_the_train_command(tmp_path, monkeypatch, method):
    monkeypatch.setenv("MEDBENCH_CHECKPOINTS", str(tmp_path))
    with pytest.raises(VariantError, match=f"`just train gemma3-270m {method}`"):
        plan(resolve("gemma3-270m"), method, cuda_available=False)


def test_unknown_variant_lists_the_known_ones():
    with pytest.raises(VariantError, match="unknown variant 'gptq'; choose from base, bnb, awq, full, lora, qlora"):
        plan(resolve("gemma3-270m"), "gptq", True)


def _logits(model, tok):
    ids = tok(["정답： A", "The answer is"], return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**ids).logits


def test_lora_adapter_round_trip(tiny_gemma_dir, tmp_path, monkeypatch):
    """Train one step with PEFT (r=32, alpha=64), save it where `just train` would, load it as `lora`."""
    from peft import LoraConfig, get_peft_model

    monkeypatch.setenv("MEDBENCH_CHECKPOINTS", str(tmp_path))
    tok = AutoTokenizer.from_pretrained(tiny_gemma_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32)
    model = get_peft_model(
        base, LoraConfig(r=32, lora_alpha=64, lora_dropout=0.0, task_type="CAUSAL_LM", target_modules="all-linear")
    )
    batch = tok(["정답： C\n\nThe answer is B"], return_tensors="pt")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(**batch, labels=batch["input_ids"]).loss.backward()
    opt.step()
    model.eval()
    spec = resolve(str(tiny_gemma_dir))
    model.save_pretrained(tmp_path / f"{spec.alias}-lora")
    expected = _logits(model, tok)

    loaded = load(spec, "lora", EvalSettings())
    assert loaded.adapter == str(tmp_path / f"{spec.alias}-lora")
    got = _logits(loaded.model, loaded.tokenizer)
    assert torch.allclose(got, expected, atol=1e-5)
    plain = _logits(AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32), tok)
    assert not torch.allclose(got, plain, atol=1e-3)  # the adapter really changed the model


def test_full_checkpoint_loads(tiny_gemma_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDBENCH_CHECKPOINTS", str(tmp_path))
    spec = resolve(str(tiny_gemma_dir))
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32)
    with torch.no_grad():
        model.model.norm.weight.add_(1.0)  # a "fine-tune": any change the base does not have
    model.save_pretrained(tmp_path / f"{spec.alias}-full")
    loaded = load(spec, "full", EvalSettings())
    assert loaded.source == str(tmp_path / f"{spec.alias}-full")
    tok = AutoTokenizer.from_pretrained(tiny_gemma_dir)
    assert torch.allclose(_logits(loaded.model, loaded.tokenizer), _logits(model, tok), atol=1e-5)


def test_fp32_on_a_gpu_attends_eagerly_and_bf16_keeps_sdpa():
    from medbench.models.loading import pick_attention

    assert pick_attention("auto", "cuda", torch.float32) == "eager"  # the measured fp32 sdpa fault (canary)
    assert pick_attention("auto", "cuda", torch.bfloat16) in ("sdpa", "flash_attention_2")
    assert pick_attention("auto", "cpu", torch.float32) == "sdpa"
    assert pick_attention("sdpa", "cuda", torch.float32) == "sdpa"  # a named choice is kept
