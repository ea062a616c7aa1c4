"""dev/gpu_registry_rows.py on its CPU path (--tiny): the rows the GPU run writes, for two architectures."""

from __future__ import annotations

import importlib.util
import json

import pytest

from medbench.paths import REPO_ROOT

pytestmark = pytest.mark.model


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_registry_rows", REPO_ROOT / "dev" / "gpu_registry_rows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_rows(tmp_path, embedded_dir):
    out = load_script().main(
        [
            "--tiny",
            "--aliases",
            "exaone3.5-2.4b,gemma3-4b",
            "--questions",
            "2",
            "--batch-size",
            "2",
            "--out",
            str(tmp_path / "rows.json"),
        ]
    )
    table = json.loads(out.read_text())
    assert table["weights"] == "random" and table["device"] == "cpu"
    rows = {(r["alias"], r["variant"]): r for r in table["rows"]}
    assert set(rows) == {(a, v) for a in ("exaone3.5-2.4b", "gemma3-4b") for v in ("bf16", "bnb")}
    for alias, cls in (("exaone3.5-2.4b", "LlamaForCausalLM"), ("gemma3-4b", "Gemma3ForConditionalGeneration")):
        row = rows[(alias, "bf16")]
        assert "error" not in row, row
        assert row["model_class"] == cls and row["shape"] == "tiny" and row["questions"] == 4
        assert row["params"] > 0 and row["questions_per_second"] > 0 and row["load_seconds"] >= 0
        assert rows[(alias, "bnb")]["skipped"] == "bnb needs CUDA"
    # The published vocabulary is kept where it holds the borrowed tokenizer's ids; EXAONE's 102,400 grows.
    assert rows[("gemma3-4b", "bf16")]["vocab_size"] == 262208
    assert rows[("exaone3.5-2.4b", "bf16")]["vocab_size"] >= 262144
