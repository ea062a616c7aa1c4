"""Official AWQ (GEMM) checkpoints: unpacking against a packer written here from the format, and both
conversion routes loading into a model whose logits match one built from the hand-dequantized weights."""

import json

import pytest
import torch
from safetensors.torch import save_file

from medbench.models import awq_convert
from medbench.models.awq_convert import AwqFormatError, convert, dequantize_awq_gemm, prepare, unpack_awq_gemm

# AutoAWQ's WQLinear_GEMM.from_linear packs output column col*8 + PACK_ORDER[i] into bits 4i..4i+3 of word col.
PACK_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
GROUP = 128
TINY = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "vocab_size": 320,
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
}
AWQ_CONFIG = {
    "bits": 4,
    "group_size": GROUP,
    "modules_to_not_convert": None,
    "quant_method": "awq",
    "version": "gemm",
    "zero_point": True,
}


def pack_reference(ints: torch.Tensor) -> torch.Tensor:
    """[rows, cols] of 0..15 -> int32 [rows, cols/8], one nibble at a time, the way AutoAWQ packs."""
    rows, cols = ints.shape
    words = torch.zeros(rows, cols // 8, dtype=torch.int64)
    for col in range(cols // 8):
        for i in range(8):
            words[:, col] |= ints[:, col * 8 + PACK_ORDER[i]].to(torch.int64) << (4 * i)
    # Reinterpret as two's-complement int32: a top nibble >= 8 makes the word negative.
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def test_one_word_decodes_in_awq_order():
    # 0x76543210 holds value i in nibble slot i. Slot i carries column PACK_ORDER[i], so columns 0..7 read
    # slots 0,4,1,5,2,6,3,7: values [0, 4, 1, 5, 2, 6, 3, 7].
    assert awq_convert.unpack_int32_awq(torch.tensor([[0x76543210]], dtype=torch.int32)).tolist() == [
        [0, 4, 1, 5, 2, 6, 3, 7]
    ]
    # 0xFEDCBA98 (negative as int32) holds 8 + i in slot i: columns read [8, 12, 9, 13, 10, 14, 11, 15].
    word = torch.tensor([[0xFEDCBA98 - 2**32]], dtype=torch.int32)
    assert awq_convert.unpack_int32_awq(word).tolist() == [[8, 12, 9, 13, 10, 14, 11, 15]]
    assert pack_reference(torch.tensor([[0, 4, 1, 5, 2, 6, 3, 7]])).item() == 0x76543210


def _awq_layer(out_f: int, in_f: int, gen: torch.Generator):
    q = torch.randint(0, 16, (out_f, in_f), generator=gen)
    z = torch.randint(0, 16, (out_f, in_f // GROUP), generator=gen)
    s = (torch.rand(out_f, in_f // GROUP, generator=gen) * 0.02 + 0.001).half()
    return q, z, s


def _hand_dequant(q, z, s) -> torch.Tensor:
    # (q - z) * s in float64 is exact; one rounding to fp16 is what AWQ's fp16 arithmetic gives.
    zz = z.repeat_interleave(GROUP, dim=1).double()
    ss = s.repeat_interleave(GROUP, dim=1).double()
    return ((q.double() - zz) * ss).half()


def test_unpack_recovers_the_packed_integers_and_dequantizes_exactly():
    gen = torch.Generator().manual_seed(1)
    q, z, s = _awq_layer(96, 384, gen)
    qweight, qzeros, scales = pack_reference(q.t()), pack_reference(z.t()), s.t().contiguous()
    assert qweight.shape == (384, 12) and qzeros.shape == (3, 12) and scales.shape == (3, 96)
    uq, uz, us = unpack_awq_gemm(qweight, qzeros, scales, GROUP)
    assert torch.equal(uq.long(), q) and torch.equal(uz.long(), z) and torch.equal(us, s)
    assert torch.equal(dequantize_awq_gemm(qweight, qzeros, scales, GROUP), _hand_dequant(q, z, s))


def test_unpack_refuses_inconsistent_shapes():
    q = torch.zeros(256, 4, dtype=torch.int32)
    with pytest.raises(AwqFormatError, match="inconsistent AWQ GEMM shapes"):
        unpack_awq_gemm(q, torch.zeros(1, 4, dtype=torch.int32), torch.zeros(2, 32).half(), GROUP)


@pytest.fixture(scope="module")
def awq_checkpoint(tmp_path_factory):
    """A random Qwen2 (q/k/v biases included) packed as AutoAWQ GEMM, in two shards, and its reference model."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**TINY)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).half()
    gen = torch.Generator().manual_seed(2)
    tensors, reference = {}, {}
    for name, p in model.state_dict().items():
        module = name.rsplit(".", 1)[0]
        if name.endswith(".weight") and ".layers." in name and p.dim() == 2:
            q, z, s = _awq_layer(*p.shape, gen)
            tensors[f"{module}.qweight"] = pack_reference(q.t())
            tensors[f"{module}.qzeros"] = pack_reference(z.t())
            tensors[f"{module}.scales"] = s.t().contiguous()
            reference[name] = _hand_dequant(q, z, s)
        else:
            tensors[name] = p.clone()
            reference[name] = p.clone()
    out = tmp_path_factory.mktemp("tiny-qwen2-awq")
    names = sorted(tensors)
    shards = {
        "model-00001-of-00002.safetensors": names[: len(names) // 2],
        "model-00002-of-00002.safetensors": names[len(names) // 2 :],
    }
    for fname, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(out / fname), metadata={"format": "pt"})
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {k: f for f, ks in shards.items() for k in ks}})
    )
    cfg = config.to_dict() | {"quantization_config": AWQ_CONFIG, "torch_dtype": "float16"}
    (out / "config.json").write_text(json.dumps(cfg))
    (out / "generation_config.json").write_text(json.dumps({"do_sample": False}))

    ref_model = Qwen2ForCausalLM(config)
    missing, unexpected = ref_model.load_state_dict({k: v.float() for k, v in reference.items()}, strict=False)
    assert not missing and not unexpected
    return out, ref_model.eval()


def _logits(model):
    ids = torch.tensor([[1, 17, 42, 99, 250, 3, 7, 300]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_dequantized_route_loads_and_matches_the_hand_dequantized_model(awq_checkpoint, tmp_path):
    from transformers import AutoModelForCausalLM

    src, ref_model = awq_checkpoint
    out = convert(src, tmp_path / "dq", route="dequantized")
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    marker = json.loads((out / awq_convert.MARKER).read_text())
    assert marker["awq_route"] == "dequantized" and marker["source_quantization_config"] == AWQ_CONFIG
    assert (out / "generation_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    for name, p in ref_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], p), name
    assert torch.equal(_logits(model), _logits(ref_model))


def test_compressed_tensors_route_loads_and_matches(awq_checkpoint, tmp_path):
    pytest.importorskip("compressed_tensors")
    from transformers import AutoModelForCausalLM

    src, ref_model = awq_checkpoint
    out = convert(src, tmp_path / "ct", route="compressed-tensors")
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "pack-quantized"
    assert len(qc["config_groups"]["group_0"]["targets"]) == 2 * 7
    model = AutoModelForCausalLM.from_pretrained(
        out, dtype=torch.float32, **awq_convert.load_kwargs("compressed-tensors")
    ).eval()
    for name, p in ref_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], p), name
    assert torch.equal(_logits(model), _logits(ref_model))


def test_compressed_tensors_cannot_load_asymmetric_pack_quantized_compressed(awq_checkpoint, tmp_path):
    """Why the route loads with dequantize=True: compressed-tensors 0.19.0 shapes the meta model's zero points
    unpacked ([out, groups]) while the format stores them packed ([out/8, groups]). When this starts to load,
    the route can keep the weights packed until the first forward pass."""
    pytest.importorskip("compressed_tensors")
    from transformers import AutoModelForCausalLM

    src, _ = awq_checkpoint
    out = convert(src, tmp_path / "ct", route="compressed-tensors")
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)


def test_prepare_converts_once_and_passes_other_checkpoints(awq_checkpoint, tmp_path):
    src, _ = awq_checkpoint
    cache = tmp_path / "cache"
    path, route = prepare(str(src), cache)
    assert route == "dequantized" and path.startswith(str(cache / "awq"))
    stamp = (awq_convert.Path(path) / awq_convert.MARKER).stat().st_mtime_ns
    assert prepare(str(src), cache) == (path, "dequantized")
    assert (awq_convert.Path(path) / awq_convert.MARKER).stat().st_mtime_ns == stamp
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert prepare(str(plain), cache) == (str(plain), None)
    # Offline, a hub id missing from the cache passes through: the loader's own refusal names it.
    assert prepare("nobody/not-cached-AWQ", cache) == ("nobody/not-cached-AWQ", None)


def test_refuses_awq_variants_it_does_not_read():
    with pytest.raises(AwqFormatError, match="only 4-bit AWQ GEMM"):
        awq_convert.awq_settings({"quantization_config": AWQ_CONFIG | {"version": "gemv"}})
    with pytest.raises(AwqFormatError, match="not an AWQ checkpoint"):
        awq_convert.awq_settings({"quantization_config": {"quant_method": "gptq"}})


def _word_tokenizer(out):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i + 3 for i in range(TINY["vocab_size"] - 3)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>").save_pretrained(
        out
    )


def test_load_converts_an_official_awq_source_and_records_the_route(awq_checkpoint, tmp_path, monkeypatch):
    from medbench.models import loading
    from medbench.models.registry import ModelSpec
    from medbench.models.variants import LoadPlan
    from medbench.settings import EvalSettings

    src, ref_model = awq_checkpoint
    base = tmp_path / "base"
    _word_tokenizer(base)
    monkeypatch.setenv("MEDBENCH_CACHE", str(tmp_path / "cache"))
    # The awq variant's plan names the AWQ checkpoint; its CUDA refusal is plan()'s own test.
    monkeypatch.setattr(
        loading, "plan", lambda spec, variant, cuda_available, checkpoint=None: LoadPlan(variant, str(src), None, None)
    )
    loaded = loading.load(ModelSpec(alias="tiny", path=str(base)), "awq", EvalSettings(device="cpu"))
    assert loaded.awq_route == "dequantized" and loaded.quantization is None and loaded.dtype == "float16"
    assert loaded.source.startswith(str(tmp_path / "cache" / "awq"))
    assert torch.equal(
        loaded.model.model.layers[1].mlp.down_proj.weight, ref_model.model.layers[1].mlp.down_proj.weight.half()
    )
