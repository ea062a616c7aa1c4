"""`just train --profile fast`: packed batches keep their examples apart, and the study's recipe is unchanged.

The packed batch is the one TRL's SFTTrainer really builds under the fast profile (best-fit-decreasing
packing, padding-free collator: one row, position ids restarting at 0 per example, no attention mask),
scored by the trainer's own fused LM head. Each example's loss in it must equal the loss of the same
example alone, on sdpa and on eager attention. The tiny Gemma 3's sliding window (16 tokens) is shorter
than the examples, so the sliding-window layers' masks are tested too.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from medbench import paths
from medbench.data.loader import load_rows
from trainers import profile, sft, sft_data
from trainers.arguments import parse_args
from trainers.config import TrainError
from trainers.profile import load_profile

ROWS = 4


@pytest.fixture
def few_examples(tiny_gemma_dir, monkeypatch, tmp_path):
    from datasets.utils._dill import Pickler

    # As in test_trainers.py: hashing Gemma's tokenizer for datasets' fingerprints takes seconds a map.
    tokenizer_type = type(AutoTokenizer.from_pretrained(tiny_gemma_dir))
    monkeypatch.setitem(
        Pickler.dispatch,
        tokenizer_type,
        lambda pickler, obj: pickler.save_reduce(str, (f"tokenizer {obj.name_or_path}",), obj=obj),
    )
    rows = sorted(load_rows("kormedmcqa", "pharm", "train"), key=lambda r: len(r["question"]))[:ROWS]
    ds = sft_data.build_examples([(rows, sft_data.KOREAN_TASKS["pharm"])], cot=False, limit=None, seed=0)
    monkeypatch.setattr(sft_data, "train_dataset", lambda *a, **k: (ds, [{"dataset": "kormedmcqa"}]))
    monkeypatch.setattr(sft_data, "eval_dataset", lambda limit=None, seed=0: (ds.select([]), []))
    monkeypatch.setenv("MEDBENCH_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return ds


def _plan(model_dir, *extra):
    return sft.preflight(parse_args([str(model_dir), "full", "--mix", "korean", *extra]))


def _per_example_losses(model, input_ids, labels, bounds, **model_kwargs) -> list[float]:
    """Mean negative log-likelihood of each example's answer tokens; `bounds` are the examples' [start, end)."""
    with torch.no_grad():
        out = model(input_ids=input_ids, labels=labels, fused_lm_head=True, use_cache=False, **model_kwargs)
    shifted = labels[0, 1:] != -100  # log_probs[j] scores token j + 1
    return [float(-out.log_probs[0, s : e - 1].sum() / shifted[s : e - 1].sum()) for s, e in bounds]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_examples_score_as_if_alone(tiny_gemma_dir, few_examples, attention):
    torch.set_num_threads(1)
    args = parse_args(
        [
            str(tiny_gemma_dir),
            "full",
            "--mix",
            "korean",
            "--profile",
            "fast",
            "--set",
            "per_device_train_batch_size=1",
            "--eval-limit",
            "0",
        ]
    )
    plan = sft.preflight(args)
    data = sft.prepare_data(args, plan)
    trainer, *_ = sft.build_trainer(plan, data, ())
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    ids, labels, positions = batch["input_ids"], batch["labels"], batch["position_ids"]
    assert int((positions[0] == 0).sum()) == ROWS  # every example in one packed row
    model = trainer.model.eval()
    model.set_attn_implementation(attention)

    starts = (positions[0] == 0).nonzero().flatten().tolist()
    bounds = list(zip(starts, [*starts[1:], ids.shape[1]]))
    packed = _per_example_losses(model, ids, labels, bounds, position_ids=positions)
    alone = []
    for s, e in bounds:
        assert e - s > 16  # longer than the sliding window
        alone += _per_example_losses(model, ids[:, s:e], labels[:, s:e], [(0, e - s)])
    assert packed == pytest.approx(alone, abs=1e-5)

    # The controls: one long sequence (positions not restarting), or an all-ones attention mask (which
    # turns the packed-sequence detection off), let later examples see earlier ones.
    run_on = _per_example_losses(model, ids, labels, bounds, position_ids=torch.arange(ids.shape[1])[None])
    masked = _per_example_losses(
        model, ids, labels, bounds, position_ids=positions, attention_mask=torch.ones_like(ids)
    )
    assert run_on[0] == pytest.approx(alone[0], abs=1e-5)  # the first example has nothing before it
    for wrong in (run_on, masked):
        assert max(abs(a - b) for a, b in zip(wrong[1:], alone[1:])) > 1e-3


def test_fast_profile_arguments_and_the_study_left_alone(tiny_gemma_dir, few_examples):
    study = _plan(tiny_gemma_dir)
    assert study.ds_path.name == "zero2.json" and "packing" not in study.training
    assert study.training["gradient_checkpointing"] is True and study.training["per_device_train_batch_size"] == 8
    assert not any("profile" in n for n in study.notes)

    fast = _plan(tiny_gemma_dir, "--profile", "fast")
    t = fast.training
    assert (t["packing"], t["packing_strategy"], t["eval_packing"], t["gradient_checkpointing"]) == (
        True,
        "bfd",
        False,
        False,
    )
    assert t["learning_rate"] == study.training["learning_rate"] and t["num_train_epochs"] == 3
    assert fast.ds_path is None and fast.notes[0].startswith("profile fast:")
    assert fast.output_dir.name == study.output_dir.name + "-fast"  # beside the study's checkpoint
    # An explicit choice wins over the profile's; --set wins over the profile's arguments.
    assert _plan(tiny_gemma_dir, "--profile", "fast", "--deepspeed", "zero2").ds_path.name == "zero2.json"
    assert (
        _plan(tiny_gemma_dir, "--profile", "fast", "--set", "gradient_checkpointing=true").training[
            "gradient_checkpointing"
        ]
        is True
    )


def test_packing_refused_on_attention_that_would_mix_examples(tiny_gemma_dir, few_examples, monkeypatch):
    monkeypatch.setattr(profile, "pick_attention", lambda setting, device: "paged|sdpa")
    with pytest.raises(TrainError, match="keeps the packed examples apart"):
        _plan(tiny_gemma_dir, "--profile", "fast")
    with pytest.raises(TrainError, match="unknown profile"):
        load_profile("fastest")


def test_a_fast_profile_run_trains_and_records_it(tiny_gemma_dir, few_examples, tmp_path):
    torch.set_num_threads(1)
    record = sft.train(
        parse_args(
            [
                str(tiny_gemma_dir),
                "full",
                "--mix",
                "korean",
                "--profile",
                "fast",
                "--max-steps",
                "3",
                "--set",
                "per_device_train_batch_size=1",
                "--set",
                "logging_steps=1",
                "--set",
                "learning_rate=1e-3",
                "--output-dir",
                str(tmp_path / "out"),
            ]
        )
    )
    assert record["steps"] == 3 and record["training_arguments"]["packing"] is True and record["profile"] == "fast"
    assert record["notes"][0].startswith("profile fast:") and record["deepspeed"] is None
    # One packed row of all four examples a step, no padding: each step trains every token of the four.
    per_step = record["tokens_trained"] / 3
    assert per_step == pytest.approx(ROWS * record["data"]["train_lengths"]["mean_tokens"], abs=1)
    assert 0 < record["final_train_loss"] < 20
    # The published record follows --output-dir: never over the study's record or the default fast run's.
    published = paths.results_dir() / "train" / "out.json"
    assert published.exists() and (tmp_path / "out" / "train_record.json").exists()
    assert not published.with_name(f"{record['model']}-full.json").exists()
    assert not published.with_name(f"{record['model']}-full-fast.json").exists()
