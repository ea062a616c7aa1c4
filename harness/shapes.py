"""Random-init models at a registry model's real shape.

Speed and memory do not depend on the weights' values, so a model with the real architecture and
random weights gives honest throughput and memory figures where the real weights cannot be had
(no hub here). Every record made this way says `weights: random`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness.registry import RegistryError, resolve


def config_at_shape(alias: str):
    from transformers import AutoConfig

    from harness.loading import base_weights

    spec = resolve(alias)
    if not spec.shape:
        raise RegistryError(f"{alias} has no `shape` in harness/models.yaml")
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


def save_random_model(alias: str, out: Path, dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> Path:
    """Writes a random-init checkpoint (with the `like` model's tokenizer) at alias's shape."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.loading import base_weights

    config, like = config_at_shape(alias)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_weights(like)).save_pretrained(out)
    (out / "medbench_random.txt").write_text(f"random-init weights at the shape of {alias} (seed {seed})\n")
    return out
