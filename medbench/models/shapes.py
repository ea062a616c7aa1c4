"""Random-init models at a registry model's real shape.

Speed and memory do not depend on the weights' values, so a model with the real architecture and
random weights gives honest throughput and memory figures where the real weights cannot be had
(no hub here). Every record made this way says `weights: random`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from medbench.models.registry import RegistryError, resolve

# Written beside the weights of every random-init model; records made with such a model say so.
RANDOM_MARKER = "medbench_random.txt"


def config_at_shape(alias: str):
    from transformers import AutoConfig

    from medbench.models.loading import base_weights

    spec = resolve(alias)
    if not spec.shape:
        raise RegistryError(f"{alias} has no `shape` in medbench/models/models.yaml")
    overrides = dict(spec.shape)
    like = resolve(overrides.pop("like"))
    config = AutoConfig.from_pretrained(base_weights(like))
    config.update(overrides)
    if hasattr(config, "layer_types") and getattr(config, "_sliding_window_pattern", None):
        # Gemma 3: every sixth layer attends globally; the rest use the sliding window.
        pattern = config._sliding_window_pattern
        config.layer_types = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
                              for i in range(config.num_hidden_layers)]
    return config, like


def save_shape(alias: str, out: Path) -> Path:
    """config.json and the `like` model's tokenizer at alias's shape, no weights (kilobytes to carry)."""
    from transformers import AutoTokenizer

    from medbench.models.loading import base_weights

    config, like = config_at_shape(alias)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_weights(like)).save_pretrained(out)
    (out / RANDOM_MARKER).write_text(f"random-init weights at the shape of {alias}\n")
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
