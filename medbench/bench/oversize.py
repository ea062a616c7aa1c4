"""Random-init models at published shapes too large to download or write here, built on the meta device
and materialized straight onto the GPUs: sharded in bf16 across several, or 4-bit on one. Nothing is
read from or written to disk but the `like` tokenizer (and `save_random`'s checkpoint, for training).

Speed and memory do not depend on the weights' values (medbench/models/shapes.py says the same for the
registry's shapes), so these give honest throughput and memory figures for sizes whose real weights
cannot be had here; their answers are chance. The only tokenizer at hand offline is Gemma 3's (the
embedded model's), so every shape here takes Gemma 3's vocabulary (262,144 tokens) in place of its own:
the decoder is the published one, the embedding and output layers are larger (PUBLISHED's `params`
counts the published config as transformers builds it, `params_here` what `config()` builds with
Gemma 3's vocabulary; tests check both).
"""

from __future__ import annotations

import time

import torch

# The decoder of each, from the model's published config.json (values copied by hand; `source` says which).
PUBLISHED = {
    "llama3-70b": {
        "source": "meta-llama/Meta-Llama-3-70B config.json (also Llama 3.1/3.3 70B: same dimensions)",
        "params": 70_553_706_496,
        "config": {
            "model_type": "llama",
            "hidden_size": 8192,
            "intermediate_size": 28672,
            "num_hidden_layers": 80,
            "num_attention_heads": 64,
            "num_key_value_heads": 8,
            "vocab_size": 128256,
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "tie_word_embeddings": False,
            "attention_bias": False,
            "mlp_bias": False,
            "hidden_act": "silu",
        },
    },
    "qwen3-8b": {
        "source": "Qwen/Qwen3-8B config.json (Qwen3-8B-Base: same dimensions)",
        "params": 8_190_735_360,
        "config": {
            "model_type": "qwen3",
            "hidden_size": 4096,
            "intermediate_size": 12288,
            "num_hidden_layers": 36,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "vocab_size": 151936,
            "max_position_embeddings": 40960,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": False,
            "attention_bias": False,
            "hidden_act": "silu",
        },
    },
}
RANDOM_STD = 0.02  # both configs' initializer_range


def config(name: str, tokenizer=None, **overrides):
    """The published shape as a transformers config; with `tokenizer`, its vocabulary and special tokens."""
    from transformers import AutoConfig

    values = dict(PUBLISHED[name]["config"])
    model_type = values.pop("model_type")
    if tokenizer is not None:
        values.update(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    values.update(overrides)
    return AutoConfig.for_model(model_type, **values)


def meta_model(cfg, dtype: torch.dtype = torch.bfloat16):
    """The model with every parameter and buffer on the meta device (no memory)."""
    from medbench.models.placement import meta_model as on_meta

    return on_meta(cfg, dtype=dtype)


def device_map_for(model, max_memory: dict, dtype: torch.dtype = torch.bfloat16) -> dict:
    """Whole decoder layers per GPU within `max_memory` (accelerate's infer_auto_device_map, balanced)."""
    from accelerate.utils import get_balanced_memory, infer_auto_device_map

    from medbench.models.placement import PlacementError

    no_split = model._no_split_modules or []
    balanced = get_balanced_memory(model, max_memory=max_memory, no_split_module_classes=no_split, dtype=dtype)
    device_map = infer_auto_device_map(model, max_memory=balanced, no_split_module_classes=no_split, dtype=dtype)
    off_gpu = sorted({str(d) for d in device_map.values() if not isinstance(d, int)})
    if off_gpu and any(isinstance(k, int) for k in max_memory):
        raise PlacementError(f"the model does not fit the GPUs' budget {max_memory}: part of it would go to {off_gpu}")
    return device_map


def _device(where) -> torch.device:
    return torch.device(f"cuda:{where}") if isinstance(where, int) else torch.device(where)


def _init_one(model, m: torch.nn.Module) -> None:
    """Random weights (normal, std 0.02) for a linear or embedding layer, the model's own init for the rest
    (norms to one, rotary frequencies recomputed: they were never computed on the meta device)."""
    if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
        with torch.no_grad():
            m.weight.normal_(0.0, RANDOM_STD)
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
    else:
        model._init_weights(m)


def _materialize_rest(model, where) -> None:
    """Every module still holding meta tensors (its own, not its children's) allocated on `where` and initialized."""
    for module in model.modules():
        if any(t.is_meta for t in (*module.parameters(recurse=False), *module.buffers(recurse=False))):
            module.to_empty(device=_device(where), recurse=False)
            _init_one(model, module)


def materialize(model, device_map: dict, seed: int = 0):
    """Allocates each part of a meta model on its device with random weights, then adds accelerate's hooks
    (dispatch_model) so a forward pass moves activations from one GPU to the next."""
    from accelerate import dispatch_model

    torch.manual_seed(seed)
    for name, where in device_map.items():
        module = model.get_submodule(name) if name else model
        module.to_empty(device=_device(where))
        for m in module.modules():
            _init_one(model, m)
    # Modules the map names only through a parent (the body's rotary embedding, say) go where its first entry went.
    _materialize_rest(model, next(iter(device_map.values())))
    if len(set(device_map.values())) > 1:
        return dispatch_model(model, device_map=device_map)
    return model


def materialize_4bit(model, device: int | str = 0, seed: int = 0, compute_dtype: torch.dtype = torch.bfloat16):
    """The model on one device with every linear layer but the LM head in bitsandbytes NF4 (double
    quantization, bf16 compute: the `bnb` variant's settings), quantized layer by layer so that the bf16
    model never exists whole; embeddings, norms and the LM head in `compute_dtype`."""
    import bitsandbytes as bnb

    torch.manual_seed(seed)
    target = _device(device)
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear) or child_name == "lm_head":
                continue
            weight = torch.empty(child.out_features, child.in_features, dtype=compute_dtype, device=target)
            weight.normal_(0.0, RANDOM_STD)
            layer = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=compute_dtype,
                compress_statistics=True,
                quant_type="nf4",
                device=target,
            )
            layer.weight = bnb.nn.Params4bit(
                weight, requires_grad=False, compress_statistics=True, quant_type="nf4"
            ).to(target)  # quantized here
            if child.bias is not None:
                layer.bias = torch.nn.Parameter(
                    torch.zeros(child.out_features, dtype=compute_dtype, device=target), requires_grad=False
                )
            setattr(parent, child_name, layer)
            del weight
    _materialize_rest(model, device)  # embeddings, norms, the LM head, rotary frequencies
    model.is_loaded_in_4bit = True
    return model


def build(
    name: str,
    tokenizer,
    max_memory: dict | None = None,
    four_bit: bool = False,
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
):
    """(model, facts): the published shape with `tokenizer`'s vocabulary, random weights on the GPUs
    (sharded within max_memory, or 4-bit on GPU 0), and how long it took and where it went."""
    start = time.perf_counter()
    cfg = config(name, tokenizer)
    model = meta_model(cfg, dtype)
    params = sum(p.numel() for p in model.parameters())
    if four_bit:
        device_map = {"": 0}
        model = materialize_4bit(model, 0, seed, dtype)
    else:
        device_map = device_map_for(model, max_memory, dtype)
        model = materialize(model, device_map, seed)
    model.eval()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return model, {
        "shape": name,
        "source": PUBLISHED[name]["source"],
        "params_published": PUBLISHED[name]["params"],
        "params_here": params,
        "vocab_size": cfg.vocab_size,
        "dtype": str(dtype).replace("torch.", ""),
        "four_bit": "nf4, double quantization" if four_bit else None,
        "materialize_seconds": round(time.perf_counter() - start, 2),
        "device_map": _summary(device_map),
    }


def _summary(device_map: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for where in device_map.values():
        key = str(_device(where))
        out[key] = out.get(key, 0) + 1
    return out


def save_random(name: str, tokenizer, out, seed: int = 0, dtype: torch.dtype = torch.bfloat16):
    """A random-init checkpoint at the published shape (for `just train`, which loads from disk), initialized
    on the first GPU where there is one (seconds, not the minutes a CPU takes for billions of weights)."""
    from pathlib import Path

    from medbench.models.shapes import RANDOM_MARKER

    out = Path(out)
    if (out / RANDOM_MARKER).exists() and (out / "config.json").exists():
        return out
    cfg = config(name, tokenizer)
    model = materialize(meta_model(cfg, dtype), {"": 0 if torch.cuda.is_available() else "cpu"}, seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the caller's later runs need the GPU
    tokenizer.save_pretrained(out)
    (out / RANDOM_MARKER).write_text(
        f"random-init weights at the published shape of {name} "
        f"({PUBLISHED[name]['source']}) with Gemma 3's vocabulary; seed {seed}, "
        f"{str(dtype).replace('torch.', '')}\n"
    )
    return out
