"""Random-init models at a registry model's real shape.

Speed and memory do not depend on the weights' values, so a model with the real architecture and
random weights gives honest throughput and memory figures where the real weights cannot be had
(no hub here). Every record made this way says `weights: random`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from medbench.models.registry import RegistryError, resolve

# Written beside the weights of every random-init model; records made with such a model say so.
RANDOM_MARKER = "medbench_random.txt"


CONFIGS_DIR = Path(__file__).with_name("configs")
# The one tokenizer at hand offline: every random-shape model borrows it (see models.yaml, `shape`).
TOKENIZER_ALIAS = "gemma3-270m"

# A published architecture scaled down for CPU tests: real model_type, layer names and features (GQA, QK-norm,
# sliding windows, partial rotary, multimodal tower), every size small.
TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
}
TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 28,
    "patch_size": 14,
}


def published_config(name: str) -> dict:
    """A published config.json kept in medbench/models/configs/ (provenance: configs/README.md)."""
    path = CONFIGS_DIR / name
    if not path.is_file():
        raise RegistryError(f"no published config {name} in {CONFIGS_DIR}")
    return json.loads(path.read_text())


def config_from_dict(raw: dict):
    """Through a config.json on disk, as a checkpoint's config loads (auto_map and all, no remote code)."""
    from transformers import AutoConfig

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(raw))
        return AutoConfig.from_pretrained(tmp, trust_remote_code=False)


def shape_dict(alias: str) -> tuple[dict, object]:
    """(config.json contents at alias's shape, the spec whose tokenizer the random model borrows)."""
    from medbench.models.loading import base_weights

    spec = resolve(alias)
    if not spec.shape:
        raise RegistryError(f"{alias} has no `shape` in medbench/models/models.yaml")
    overrides = dict(spec.shape)
    if "config" in overrides:
        raw = published_config(overrides.pop("config"))
        tokenizer_spec = resolve(TOKENIZER_ALIAS)
    else:
        like = resolve(overrides.pop("like"))
        raw = json.loads((Path(base_weights(like)) / "config.json").read_text())
        tokenizer_spec = like
    _update(raw, overrides)
    return raw, tokenizer_spec


def _update(raw: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            _update(raw[key], value)
        else:
            raw[key] = value


def config_at_shape(alias: str):
    """(transformers config at alias's published shape, the spec whose tokenizer the random model borrows)."""
    raw, tokenizer_spec = shape_dict(alias)
    return _with_layer_types(config_from_dict(raw)), tokenizer_spec


def _with_layer_types(config):
    if hasattr(config, "layer_types") and getattr(config, "_sliding_window_pattern", None):
        # Gemma 3: every sixth layer attends globally; the rest use the sliding window.
        pattern = config._sliding_window_pattern
        config.layer_types = [
            "full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(config.num_hidden_layers)
        ]
    return config


def text_part(raw: dict) -> dict:
    """The language model's part of a config.json (a multimodal config's text_config)."""
    return raw.get("text_config", raw)


def tiny_dict(alias: str, vocab_size: int) -> dict:
    """alias's published config scaled down to TINY, with room for `vocab_size` token ids."""
    raw, _ = shape_dict(alias)
    text = text_part(raw)
    layers_key = "num_layers" if "num_layers" in text else "num_hidden_layers"  # EXAONE's own spelling
    text.update({k: v for k, v in TINY.items() if k != "num_hidden_layers"})
    text[layers_key] = TINY["num_hidden_layers"]
    text["vocab_size"] = max(int(text.get("vocab_size") or 0), vocab_size)
    if "query_pre_attn_scalar" in text:
        text["query_pre_attn_scalar"] = TINY["head_dim"]
    if "sliding_window_pattern" in text or text.get("model_type") == "gemma3_text":
        text.update(sliding_window=16, layer_types=["sliding_attention", "full_attention"])
    rope = text.get("rope_scaling")
    if isinstance(rope, dict) and "long_factor" in rope:
        # Phi-3 LongRoPE: one factor per rotary frequency of the (partial) rotary dimension.
        half = int(TINY["head_dim"] * text.get("partial_rotary_factor", 1.0)) // 2
        rope["long_factor"], rope["short_factor"] = rope["long_factor"][:half], rope["short_factor"][:half]
    if "vision_config" in raw:
        raw["vision_config"].update(TINY_VISION)
        raw["mm_tokens_per_image"] = 1
    return raw


def save_tiny(alias: str, out: Path, tokenizer=None, seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """A tiny random model of alias's published architecture with `tokenizer` (default: the embedded 270M's)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medbench.models.loading import base_weights

    tokenizer = tokenizer or AutoTokenizer.from_pretrained(base_weights(resolve(TOKENIZER_ALIAS)))
    config = config_from_dict(tiny_dict(alias, len(tokenizer)))
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    AutoModelForCausalLM.from_config(config, dtype=dtype).save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / RANDOM_MARKER).write_text(f"random-init weights, {alias}'s architecture scaled down (tiny), seed {seed}\n")
    return out


def save_shape(alias: str, out: Path) -> Path:
    """config.json and the borrowed tokenizer at alias's shape, no weights (kilobytes to carry).

    Where the borrowed (Gemma) tokenizer has more ids than the published vocabulary, vocab_size grows to fit it
    and the marker file says so: a model that cannot embed its tokenizer's ids cannot be evaluated.
    """
    from transformers import AutoTokenizer

    from medbench.models.loading import base_weights

    config, tokenizer_spec = config_at_shape(alias)
    tokenizer = AutoTokenizer.from_pretrained(base_weights(tokenizer_spec))
    text = config.get_text_config()
    note = ""
    if len(tokenizer) > text.vocab_size:
        note = f"vocab_size raised from the published {text.vocab_size} to {len(tokenizer)} to fit the borrowed tokenizer\n"
        text.vocab_size = len(tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / RANDOM_MARKER).write_text(f"random-init weights at the shape of {alias}\n{note}")
    return out


def fill_random(out: Path, dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> Path:
    """Random-init weights for the config.json in `out`, saved beside it."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(out), dtype=dtype)
    model.save_pretrained(out)
    with (out / RANDOM_MARKER).open("a") as f:
        f.write(f"seed {seed}, {str(dtype).replace('torch.', '')}\n")
    return out


def save_random_model(alias: str, out: Path, dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> Path:
    """Writes a random-init checkpoint (with the `like` model's tokenizer) at alias's shape."""
    return fill_random(save_shape(alias, out), dtype, seed)


def save_published_random(
    config_name: str, out: Path, tokenizer_dir: Path, dtype: torch.dtype = torch.bfloat16, seed: int = 0
) -> Path:
    """A random-init checkpoint of a published config (configs/) with the tokenizer in `tokenizer_dir` (any folder
    holding tokenizer.json and tokenizer_config.json): needs neither a registry entry nor the embedded model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    raw = published_config(config_name)
    if len(tokenizer) > int(text_part(raw)["vocab_size"]):
        raise RegistryError(
            f"the tokenizer in {tokenizer_dir} has {len(tokenizer)} ids, more than {config_name}'s vocabulary "
            f"({text_part(raw)['vocab_size']}): take the model's own tokenizer"
        )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_with_layer_types(config_from_dict(raw)), dtype=dtype)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / RANDOM_MARKER).write_text(
        f"random-init weights, the published config {config_name}, tokenizer from {tokenizer_dir}; seed {seed}, "
        f"{str(dtype).replace('torch.', '')}\n"
    )
    return out
