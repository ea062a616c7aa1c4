"""Trainers (trainers/): SFT data, methods as data, DeepSpeed configs, launch, and short CPU training runs.

The training runs use the tiny random Gemma 3 (real tokenizer, 262k vocabulary) on the shortest
KorMedMCQA questions, rendered by the real data path, so that a step takes about a second on 2 cores.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from trainers import profile
from trainers.arguments import parse_args
from trainers.config import (
    TrainError,
    load_method,
    method_names,
)

# The shortest KorMedMCQA questions (about 40 tokens as prompts): fast steps on a 262k vocabulary.
SHORT_TRAIN_IDS = {"pharm-2019-2-52", "pharm-2020-1-27"}
SHORT_VALID_IDS = {"nurse-2021-2-30", "pharm-2021-2-58"}
PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


# --- SFT data ---------------------------------------------------------------------------------------


def test_bench_configurations_are_checked_before_anything_runs():
    from medbench.bench import train as bench

    assert bench.parse_config("full") == ("full", 1) and bench.parse_config("lora@4") == ("lora", 4)
    for bad, message in (
        ("ful", "unknown bench configuration 'ful'"),
        ("full@x", "GPU count"),
        ("reference@2", "reference loop runs on one GPU"),
    ):
        with pytest.raises(TrainError, match=re.escape(message)):
            bench.parse_config(bad)
    for method, extra in bench.CONFIGS.values():  # every configuration is a valid `just train` command
        assert method in method_names()
        args = parse_args(["m", method, *extra])
        profile.training_arguments(load_method(method), args)


def test_bench_continues_only_a_record_of_the_same_run(tmp_path):
    from medbench.bench import train as bench

    run = {"model": "/m", "weights": "random", "steps": 30, "gpu": "H100", "git_sha": "abc", "versions": {"trl": "1"}}
    path = tmp_path / "train.json"
    assert bench._resumable(path, run) is None
    path.write_text(json.dumps({**run, "configs": {"full@1": {"tokens_per_second": 1}}}))
    assert bench._resumable(path, run)["configs"] == {"full@1": {"tokens_per_second": 1}}
    for key, other in (("steps", 40), ("git_sha", "def"), ("versions", {"trl": "2"}), ("gpu", "H200")):
        assert bench._resumable(path, {**run, key: other}) is None, key


def test_bench_ratios_and_table():
    from medbench.bench import train as bench

    def row(tps, gib):
        return {
            "tokens_per_second": tps,
            "peak_gpu_gib": gib,
            "mean_tokens_per_step": 1000,
            "median_step_seconds": 0.5,
            "mfu": 0.01,
        }

    result = {
        "configs": {
            "reference@1": row(20000, 40.0),
            "full@1": row(4000, 10.0),
            "lora@1": row(5000, 5.0),
            "full@2": row(7000, 9.0),
            "qlora@1": {"error": "exit 1"},
        }
    }
    result["ratios"] = bench.ratios({k: v for k, v in result["configs"].items() if "error" not in v})
    assert result["ratios"]["lora@1"] == {
        "tokens_per_second_over_full": 1.25,
        "peak_gpu_gib_over_full": 0.5,
        "tokens_per_second_over_reference": 0.25,
        "peak_gpu_gib_over_reference": 0.125,
    }
    assert result["ratios"]["full@2"]["tokens_per_second_over_full"] == 1.75
    assert "tokens_per_second_over_full" not in result["ratios"]["full@1"]
    lines = bench.table(result).splitlines()
    assert lines[2].split() == ["full@1", "4000", "1000", "0.500", "1.00", "10.00", "-", "0.2"]
    assert lines[-1].split() == ["qlora@1", "exit", "1"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--configs", "full,ful"], "unknown bench configuration 'ful'"),
        (["train", "--model", "/no/such/model"], "not a model directory"),
        (["train"], "needs a CUDA GPU"),
    ],
)
def test_bench_train_refuses_before_building_anything(monkeypatch, capsys, argv, message):
    from medbench.cli import main
    from medbench.models import shapes

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(shapes, "save_random_model", lambda *a, **k: pytest.fail("built a model"))
    assert main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err
