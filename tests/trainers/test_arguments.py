"""`medbench train` arguments checked before anything loads or any process starts, driven through the CLI
(`medbench.cli.main`, the same parsing, checks and error printing as `python -m medbench.cli train`): numbers that
would train nothing, --gpus beyond the visible devices, and a trained folder asked to train with other arguments.
Nothing here loads weights or data, and no training process starts (each test makes either fail loudly)."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch

from medbench.cli import main
from trainers import sft, sft_data
from trainers.arguments import parse_args
from trainers.record import TRAIN_RECORD


@pytest.fixture
def nothing_starts(monkeypatch, tmp_path):
    """No CUDA, checkpoints under tmp_path, and any weight load, data read or training process fails the test."""

    def refused(*args, **kwargs):
        raise AssertionError("a refusal came after weights, data or a training process were asked for")

    monkeypatch.setattr(sft, "base_weights", refused)
    monkeypatch.setattr(sft_data, "train_dataset", refused)
    monkeypatch.setattr(sft, "verify_splits", refused)
    monkeypatch.setattr(subprocess, "call", refused)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setenv("MEDBENCH_CHECKPOINTS", str(tmp_path / "checkpoints"))
    return tmp_path / "checkpoints"


def train(capsys, *args: str) -> tuple[int, str, str]:
    """`medbench train ARGS`: (exit status, stdout, the one line on stderr)."""
    capsys.readouterr()
    try:
        code = main(["train", *args])
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) <= 1 and "Traceback" not in err, err  # one line, never a traceback
    return code, out, lines[0] if lines else ""


NUMBERS = [
    # Before: --epochs 0 "trained" 0 steps with rc 0, --max-steps 0 trained one step and -1 every epoch.
    (["--epochs", "0"], "argument --epochs: must be a number > 0, got 0; leave it out for the method's"),
    (["--epochs", "-1.5"], "argument --epochs: must be a number > 0, got -1.5; leave it out for the method's"),
    (["--epochs", "nan"], "argument --epochs: must be a number > 0, got nan; leave it out for the method's"),
    (["--max-steps", "0"], "argument --max-steps: must be a whole number >= 1, got 0; leave it out to train by epochs"),
    (
        ["--max-steps", "-1"],
        "argument --max-steps: must be a whole number >= 1, got -1; leave it out to train by epochs",
    ),
    (
        ["--max-steps", "2.5"],
        "argument --max-steps: expected a whole number >= 1, got '2.5'; leave it out to train by epochs",
    ),
    (["--limit", "0"], "argument --limit: must be a whole number >= 1, got 0"),
    (["--eval-limit", "-1"], "argument --eval-limit: must be a whole number >= 0, got -1"),
    (["--seed", "-1"], "argument --seed: must be a whole number from 0 to 4294967295, got -1"),
    (["--gpus", "0"], "argument --gpus: must be a whole number >= 1, got 0"),
    (["--num-machines", "0"], "argument --num-machines: must be a whole number >= 1, got 0"),
    (["--main-process-port", "0"], "argument --main-process-port: must be a whole number from 1 to 65535, got 0"),
]


@pytest.mark.parametrize("argv, message", NUMBERS, ids=[" ".join(a) for a, _ in NUMBERS])
def test_numbers_that_would_train_nothing_are_refused_as_they_are_parsed(nothing_starts, capsys, argv, message):
    code, _, line = train(capsys, "gemma3-270m", "lora", *argv)
    assert code == 2 and line == f"medbench train: error: {message} (--help lists the options)"
    assert not nothing_starts.exists()


def test_the_training_process_checks_the_same_numbers(nothing_starts):
    """trainers/sft.py, started once per GPU, parses with the same types; arguments built in code are checked too."""
    with pytest.raises(SystemExit) as e:
        parse_args(["gemma3-270m", "lora", "--epochs", "0"])
    assert e.value.code == 2
    for name, value, message in (
        ("epochs", 0.0, r"--epochs 0.0: a number of epochs > 0 \(leave it out for the method's\)"),
        ("max_steps", -1, r"--max-steps -1: a number of steps >= 1 \(leave it out to train by epochs\)"),
    ):
        args = parse_args(["gemma3-270m", "lora"])
        setattr(args, name, value)
        with pytest.raises(sft.TrainError, match=message):
            sft.train(args)


def test_more_gpus_than_visible_are_refused_in_one_line(nothing_starts, capsys):
    code, _, line = train(capsys, "gemma3-270m", "lora", "--gpus", "2")
    assert code == 2
    assert line == (
        "medbench train: error: --gpus 2: no CUDA GPU is visible here; leave --gpus out to train in one process "
        "(on CPU), or run on a machine with 2 GPUs"
    )


def test_the_record_follows_the_output_dir_and_a_trained_folder_refuses_other_arguments(
    nothing_starts, capsys, tmp_path
):
    """A finished run in --output-dir: the same arguments answer "already trained" (rc 0, nothing starts); other
    arguments are refused with the remedy, before any process starts (before, they were ignored with rc 0)."""
    out = tmp_path / "my-run"
    base = ["gemma3-270m", "lora", "--output-dir", str(out), "--max-steps", "3"]
    plan = sft.preflight(parse_args(base))
    assert plan.output_dir == out  # where the weights go, and the name the published record takes
    config = {**plan.run_config, **sft.data_config(parse_args(base))}
    out.mkdir()
    (out / sft.TRAIN_CONFIG).write_text(json.dumps(config, default=str))
    (out / TRAIN_RECORD).write_text(json.dumps({"model": "gemma3-270m", "method": "lora", "steps": 3}))

    code, stdout, line = train(capsys, *base)
    assert code == 0 and line == ""
    assert (
        stdout.strip() == f"medbench train: my-run is already trained ({out / TRAIN_RECORD}); --force trains it again"
    )

    for extra, changed in (
        (["--set", "learning_rate=1e-3"], "training.learning_rate"),
        (["--epochs", "2"], "training.num_train_epochs"),
        (["--mix", "korean"], "mix"),
    ):
        code, _, line = train(capsys, *base, *extra)
        assert code == 2, extra
        assert line == (
            f"medbench train: error: {out} already holds a finished training run with other {changed}; --force "
            f"trains it again with these arguments, or --output-dir keeps both"
        )
    assert sorted(p.name for p in out.iterdir()) == [sft.TRAIN_CONFIG, TRAIN_RECORD]  # left as it was
    assert not nothing_starts.exists()  # the default checkpoint folder was never claimed


def test_the_published_record_is_named_after_the_output_dir(tmp_path, monkeypatch):
    """The copy in results/train/ takes the checkpoint folder's name: --output-dir never overwrites the default
    run's record (before, every run wrote results/train/<alias>-<method>.json)."""
    from trainers import record as rec

    results = tmp_path / "results"
    monkeypatch.setenv("MEDBENCH_RESULTS", str(results))
    out = tmp_path / "elsewhere" / "my-run"
    out.mkdir(parents=True)
    record = {"model": "gemma3-270m", "method": "lora", "steps": 3, "final_train_loss": 1.0, "final_eval_loss": None}
    rec.publish(record, out)
    assert json.loads((out / TRAIN_RECORD).read_text()) == record
    assert sorted(p.name for p in (results / "train").iterdir()) == ["my-run.json"]
