"""A tiny random-init model with a real model's architecture and tokenizer, for tests and CI smoke runs.

    python -m medbench.models.tiny OUT_DIR     # a 2-layer Gemma 3 from the embedded model's config

One builder for the test suite (conftest.py) and the CI workflow, so both exercise the same model.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Gemma 3's structure (sliding and global attention layers) kept, every size scaled down.
GEMMA3_TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "sliding_window": 16,
    "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
}


def build_tiny(like: Path, out: Path, overrides: dict | None = None, seed: int = 0) -> Path:
    """Config and tokenizer of the model in `like`, sizes from `overrides`, fp32 random weights, in `out`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(like)
    config.update(GEMMA3_TINY if overrides is None else overrides)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(out)
    AutoTokenizer.from_pretrained(like).save_pretrained(out)
    return Path(out)


def build_tiny_gemma3(out: Path) -> Path:
    from medbench.models.loading import base_weights
    from medbench.models.registry import resolve

    return build_tiny(base_weights(resolve("gemma3-270m")), out)


if __name__ == "__main__":
    print(build_tiny_gemma3(Path(sys.argv[1])))
