"""Several GPUs on CPU: data-parallel evaluation (gloo processes), the sharding decision, published shapes,
and the plumbing of dev/gpu_scale.py that runs without a GPU."""

import pytest
import torch

from medbench.bench import oversize

GIB = 2**30


# --- launching ----------------------------------------------------------------------------------------


def test_a_meta_model_materializes_with_working_random_weights():
    from transformers import AutoModelForCausalLM

    sizes = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2}
    cfg = oversize.config("llama3-70b", num_hidden_layers=3, vocab_size=300, **sizes)
    meta = oversize.meta_model(cfg, torch.float32)
    device_map = {"model.embed_tokens": "cpu", "model.layers": "cpu", "model.norm": "cpu", "lm_head": "cpu"}
    model = oversize.materialize(meta, device_map)
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))  # the rotary buffers too
    reference = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    reference.load_state_dict(model.state_dict())
    ids = torch.randint(0, 300, (2, 12))
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, reference(input_ids=ids).logits, atol=1e-5)
    weight = model.model.layers[0].mlp.up_proj.weight
    assert abs(weight.std().item() - oversize.RANDOM_STD) < 0.005


def test_a_meta_model_materializes_in_4bit_layer_by_layer():
    pytest.importorskip("bitsandbytes")  # not a dependency here: the GPU image and its wheels carry it
    import bitsandbytes as bnb

    sizes = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2}
    cfg = oversize.config("llama3-70b", num_hidden_layers=2, vocab_size=300, **sizes)
    model = oversize.materialize_4bit(oversize.meta_model(cfg), "cpu")
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in linear) == 7 * 2  # q k v o gate up down, per layer
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit) and model.lm_head.weight.dtype == torch.bfloat16
    with torch.no_grad():
        logits = model(input_ids=torch.randint(0, 300, (1, 8))).logits
    assert logits.shape == (1, 8, 300) and torch.isfinite(logits).all()
