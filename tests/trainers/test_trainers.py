"""Trainers (trainers/): SFT data, methods as data, DeepSpeed configs, launch, and short CPU training runs.

The training runs use the tiny random Gemma 3 (real tokenizer, 262k vocabulary) on the shortest
KorMedMCQA questions, rendered by the real data path, so that a step takes about a second on 2 cores.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from medbench.data.loader import DataError, load_rows
from medbench.errors import MedbenchError
from medbench.models.loading import load
from medbench.models.registry import resolve
from medbench.models.variants import load_variants
from medbench.options import to_argv
from medbench.records.io import RecordError, claim_dir
from medbench.settings import EvalSettings
from trainers import launch, sft, sft_data, timing
from trainers.arguments import parse_args
from trainers.config import (
    DEEPSPEED_DIR,
    METHODS_DIR,
    TrainError,
    deepspeed_mismatches,
    load_deepspeed,
    load_method,
    method_names,
)

# The shortest KorMedMCQA questions (about 40 tokens as prompts): fast steps on a 262k vocabulary.
SHORT_TRAIN_IDS = {"pharm-2019-2-52", "pharm-2020-1-27"}
SHORT_VALID_IDS = {"nurse-2021-2-30", "pharm-2021-2-58"}
PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


# --- SFT data ---------------------------------------------------------------------------------------


def test_sft_example_is_the_eval_prompt_plus_the_answer_letter():
    row = next(r for r in load_rows("kormedmcqa", "doctor", "train") if r["id"] == "doctor-2012-1-1")
    example = sft_data.render(row, "medbench_kormedmcqa_doctor")
    # The zero-shot mc template (tasks/kormedmcqa/_mc_template_yaml), written out by hand.
    assert example["prompt"] == (
        "항문압 측정 검사에서 항문 압력이 증가하는 경우는?\n"
        "A. 직장질루(rectovaginal fistula)\nB. 항문열창(anal fissure)\nC. 대변실금(fecal incontinence)\n"
        "D. 대변메막힘(fecal impaction)\nE. 직장탈출증(rectal prolapse)\n정답："
    )
    assert example["completion"] == " B"
    # ... and exactly the context and the scored continuation of lm-eval's own request for this row.
    task = sft_data.eval_tasks()["medbench_kormedmcqa_doctor"]
    requests = task.construct_requests(doc=row, ctx=task.doc_to_text(row), metadata=("x", 0, 1))
    assert requests[row["answer_index"]].arguments == (example["prompt"], example["completion"])


def test_medqa_example_uses_the_medqa_prompt():
    row = load_rows("medqa", None, "dev")[0]
    example = sft_data.render(row, sft_data.ENGLISH_TASK)
    assert example["prompt"].startswith("Question: ") and example["prompt"].endswith("\nD. Trimethoprim\nAnswer:")
    assert example["completion"] == " " + row["answer"]


def test_mix_sources_and_eval_split():
    ds, sources = sft_data.train_dataset("both", limit=6)
    assert len(ds) == 6 and {"prompt", "completion"} <= set(ds.column_names)
    korean = [s for s in sources if s["dataset"] == "kormedmcqa"]
    assert [s["exam"] for s in korean] == ["doctor", "nurse", "pharm", "dentist"]
    assert {s["split"] for s in korean} == {"train"} and sum(s["rows"] for s in korean) == 3401
    (english,) = [s for s in sources if s["dataset"] == "medqa"]
    if sft_data.english_rows()[1].split == "train":  # a hub copy from `just data --from-hub`
        assert "hub copy" in english["note"]
    else:
        assert (english["split"], english["rows"]) == ("dev", 1272) and "trained on MedQA dev" in english["note"]
    assert "test" not in {s["split"] for s in sources}
    assert {s["dataset"] for s in sft_data.train_dataset("english", limit=2)[1]} == {"medqa"}
    assert {s["dataset"] for s in sft_data.train_dataset("korean", limit=2)[1]} == {"kormedmcqa"}
    eval_ds, eval_sources = sft_data.eval_dataset(limit=3)
    assert len(eval_ds) == 3 and {s["split"] for s in eval_sources} == {"valid"}
    assert sum(s["rows"] for s in eval_sources) == 1059
    with pytest.raises(DataError, match="unknown mix 'all'"):
        sft_data.train_dataset("all")


def test_methods_carry_the_reference_arguments():
    assert method_names() == ["full", "lora", "qlora"]
    lrs = {name: load_method(name).training["learning_rate"] for name in method_names()}
    assert lrs == {"full": 1e-5, "lora": 2e-4, "qlora": 2e-4}
    for name in method_names():
        t = load_method(name).training
        assert (t["per_device_train_batch_size"], t["per_device_eval_batch_size"], t["num_train_epochs"]) == (8, 8, 3)
        assert (t["logging_steps"], t["save_steps"], t["eval_steps"], t["save_total_limit"]) == (10, 500, 500, 2)
        assert t["bf16"] is True and t["gradient_checkpointing"] is True and t["seed"] == 1234


def test_lora_targets_every_projection_with_r32_alpha64(tiny_gemma_dir):
    from peft import LoraConfig, get_peft_model

    lora, qlora = load_method("lora"), load_method("qlora")
    assert (lora.peft["r"], lora.peft["lora_alpha"], lora.peft["lora_dropout"]) == (32, 64, 0.05)
    assert qlora.peft == lora.peft and lora.quantization is None and not lora.requires_cuda
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_gemma_dir), LoraConfig(**lora.peft))
    targeted = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if hasattr(m, "lora_A")}
    assert targeted == PROJECTIONS
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    assert layer.r["default"] == 32 and layer.scaling["default"] == 64 / 32


def test_qlora_quantizes_like_the_bnb_and_qlora_variants():
    qlora = load_method("qlora")
    variants = load_variants()
    assert qlora.quantization == variants["bnb"].quantization == variants["qlora"].quantization
    assert qlora.quantization["bnb_4bit_quant_type"] == "nf4" and qlora.requires_cuda


def _methods_dir(tmp_path, files: dict[str, str]):
    d = tmp_path / "methods"
    d.mkdir()
    (d / "_reference.yaml").write_text((METHODS_DIR / "_reference.yaml").read_text())
    for name, text in files.items():
        (d / f"{name}.yaml").write_text(text)
    return d


@pytest.mark.parametrize(
    "text, bad",
    [
        ("extends: _reference\ndescription: x\ntraining: {learnig_rate: 1.0e-4}\n", "learnig_rate"),
        ("extends: _reference\ndescription: x\nepochs: 3\n", "epochs"),
        ("extends: _reference\ndescription: x\npeft: {r: 8, alpha: 16}\n", "alpha"),
        ("extends: _reference\ndescription: x\noverrides: {m: {training: {lr: 1}}}\n", "lr"),
        ("extends: _reference\ndescription: x\noverrides: {m: {description: y}}\n", "description"),
        ("extends: _reference\ndescription: x\ntraining: {output_dir: /tmp}\n", "output_dir"),
    ],
)
def test_unknown_key_anywhere_names_the_file(tmp_path, text, bad):
    d = _methods_dir(tmp_path, {"mine": text})
    with pytest.raises(TrainError, match=rf"{re.escape(str(d / 'mine.yaml'))}.*{bad}"):
        load_method("mine", methods_dir=d)


def test_per_model_override(tmp_path):
    text = (
        "extends: _reference\ndescription: x\ntraining: {learning_rate: 1.0e-4}\n"
        "overrides: {small: {training: {learning_rate: 3.0e-4, num_train_epochs: 1}}}\n"
    )
    d = _methods_dir(tmp_path, {"mine": text})
    assert load_method("mine", "big", methods_dir=d).training["learning_rate"] == 1e-4
    small = load_method("mine", "small", methods_dir=d)
    assert (small.training["learning_rate"], small.training["num_train_epochs"], small.override) == (3e-4, 1, "small")
    assert small.training["per_device_train_batch_size"] == 8  # the rest still comes from _reference


@pytest.mark.parametrize(
    "argv, message",
    [
        (["no-such-model", "lora"], "unknown model 'no-such-model'. Known aliases: gemma3-270m"),
        (["gemma3-270m", "dora"], "unknown method 'dora'; choose from full, lora, qlora"),
        (["gemma3-270m", "qlora"], "method 'qlora' .* needs a CUDA GPU"),
        (["gemma3-270m", "lora", "--gpus", "2"], "--gpus 2 needs one process per GPU"),
        (["gemma3-270m", "lora", "--set", "learnig_rate=1"], "--set learnig_rate: not a training argument"),
    ],
)
def test_refusals_come_before_anything_loads(monkeypatch, argv, message):
    def no_load(*a, **k):
        raise AssertionError("weights were asked for")

    monkeypatch.setattr(sft, "base_weights", no_load)
    monkeypatch.setattr(sft_data, "train_dataset", no_load)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MedbenchError, match=message):
        sft.train(parse_args(argv))


@pytest.mark.parametrize("name", ["zero2", "zero3"])
def test_deepspeed_configs_agree_with_every_method(name):
    ds = load_deepspeed(DEEPSPEED_DIR / f"{name}.json")
    assert ds["zero_optimization"]["stage"] == int(name[-1])
    # Everything transformers can fill from the training arguments is left to it.
    for key in (
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "train_batch_size",
        "gradient_clipping",
    ):
        assert ds[key] == "auto"
    assert ds["bf16"]["enabled"] == "auto" and ds["zero_optimization"]["reduce_bucket_size"] == "auto"
    if name == "zero3":
        assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True  # full weights saved
    for method in method_names():
        for world_size in (1, 8):
            assert deepspeed_mismatches(ds, load_method(method).training, world_size) == []


def test_contradicting_deepspeed_config_is_refused_with_the_mismatch(tmp_path, monkeypatch):
    bad = load_deepspeed(DEEPSPEED_DIR / "zero2.json")
    bad.update(train_micro_batch_size_per_gpu=4, gradient_clipping=0.5, bf16={"enabled": False})
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    monkeypatch.setattr(sft, "base_weights", lambda *a: pytest.fail("weights were asked for"))
    with pytest.raises(TrainError) as e:
        sft.train(parse_args(["gemma3-270m", "lora", "--deepspeed", str(path)]))
    message = str(e.value)
    assert str(path) in message
    assert "train_micro_batch_size_per_gpu=4 but per_device_train_batch_size=8" in message
    assert "gradient_clipping=0.5 but max_grad_norm=1.0" in message
    assert "bf16.enabled=False but bf16=True" in message  # checked against the GPU run's arguments, even here
    # Agreeing explicit values pass, and so does the matching batch for 2 GPUs.
    good = {"train_micro_batch_size_per_gpu": 8, "train_batch_size": 16, "gradient_clipping": 1.0}
    assert deepspeed_mismatches(good, load_method("lora").training, 2) == []
    (mismatch,) = deepspeed_mismatches(good, load_method("lora").training, 1)
    assert mismatch == "train_batch_size=16 but 1 GPU(s) x per_device_train_batch_size x gradient_accumulation_steps=8"


def test_launch_uses_accelerate_for_several_gpus():
    one = parse_args(["m", "lora"])
    assert launch.command(one, ["m", "lora"]) == [sys.executable, "-m", "trainers.sft", "m", "lora"]
    assert launch.environment(one, {})["CUDA_VISIBLE_DEVICES"] == "0"  # one process, one GPU
    assert launch.environment(one, {"CUDA_VISIBLE_DEVICES": "3"})["CUDA_VISIBLE_DEVICES"] == "3"
    for argv in (["m", "full", "--gpus", "4"], ["m", "full", "--gpus=4"]):
        args = parse_args(argv)
        cmd = launch.command(args, to_argv(args))
        assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
        assert cmd[cmd.index("--num_processes") + 1] == "4" and cmd[cmd.index("--num_machines") + 1] == "1"
        assert parse_args(cmd[cmd.index("trainers.sft") + 1 :]) == args  # every process parses the same arguments
        assert "CUDA_VISIBLE_DEVICES" not in launch.environment(args, {})
    zero = parse_args(["m", "lora", "--eval-limit", "0", "--max-steps", "6"])  # 0 is no evaluation, not unset
    argv = to_argv(zero)
    assert argv[argv.index("--eval-limit") + 1] == "0" and argv[argv.index("--max-steps") + 1] == "6"
    assert parse_args(to_argv(zero)) == zero


def test_multinode_launch_passes_accelerates_own_arguments():
    args = parse_args(
        [
            "m",
            "full",
            "--gpus",
            "4",
            "--num-machines",
            "2",
            "--machine-rank",
            "1",
            "--main-process-ip",
            "10.0.0.1",
            "--main-process-port",
            "29500",
            "--deepspeed",
            "zero3",
        ]
    )
    cmd = launch.command(args, to_argv(args))
    opts = dict(zip(cmd[3:-1:2], cmd[4::2]))
    assert opts["--num_processes"] == "8" and opts["--num_machines"] == "2" and opts["--machine_rank"] == "1"
    assert opts["--main_process_ip"] == "10.0.0.1" and opts["--main_process_port"] == "29500"
    assert parse_args(cmd[cmd.index("trainers.sft") + 1 :]) == args


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num-machines", "2"], "needs --main-process-ip and --main-process-port"),
        (
            ["--num-machines", "2", "--main-process-ip", "h", "--main-process-port", "1", "--machine-rank", "2"],
            "--machine-rank 2 is outside 0..1",
        ),
    ],
)
def test_bad_multinode_arguments_are_refused_before_launch(argv, message):
    with pytest.raises(TrainError, match=message):
        launch.command(parse_args(["m", "full", *argv]), [])
    # The command line refuses --gpus 0 as it is parsed (tests/trainers/test_arguments.py); arguments built in code
    # are checked again at launch.
    with pytest.raises(TrainError, match="count from 1"):
        launch.command(dataclasses.replace(parse_args(["m", "full"]), gpus=0), [])


@pytest.fixture
def short_data(monkeypatch, tiny_gemma_dir):
    """Train on the two shortest KorMedMCQA train questions (one repeated batch), evaluate on two valid ones.

    Also makes datasets' fingerprint of the tokenizer cheap: TRL's dataset preparation hashes it for every
    map, which pickles Gemma's 262k vocabulary and 515k merges (seconds each on 2 busy cores). Fingerprints
    of in-memory datasets only name cache files, which these never have.
    """
    from datasets.utils._dill import Pickler

    tokenizer_type = type(AutoTokenizer.from_pretrained(tiny_gemma_dir))
    monkeypatch.setitem(
        Pickler.dispatch,
        tokenizer_type,
        lambda pickler, obj: pickler.save_reduce(str, (f"tokenizer {obj.name_or_path}",), obj=obj),
    )

    def parts(split, ids):
        return [
            ([r for r in load_rows("kormedmcqa", exam, split) if r["id"] in ids], task)
            for exam, task in sft_data.KOREAN_TASKS.items()
        ]

    train_ds = sft_data.build_examples(parts("train", SHORT_TRAIN_IDS), cot=False, limit=None, seed=0)
    eval_ds = sft_data.build_examples(parts("valid", SHORT_VALID_IDS), cot=False, limit=None, seed=0)
    assert len(train_ds) == 2 and len(eval_ds) == 2
    monkeypatch.setattr(sft_data, "train_dataset", lambda *a, **k: (train_ds, [{"dataset": "kormedmcqa"}]))
    monkeypatch.setattr(
        sft_data,
        "eval_dataset",
        lambda limit=None, seed=0: (
            eval_ds.select(range(2 if limit is None else min(limit, 2))),
            [{"dataset": "kormedmcqa"}],
        ),
    )


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    """Runs write under tmp_path, and train on the CPU path even where a GPU is visible."""
    monkeypatch.setenv("MEDBENCH_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return tmp_path / "checkpoints"


def _train(model_dir, method, *extra, callbacks=()):
    argv = [
        str(model_dir),
        method,
        "--mix",
        "korean",
        "--set",
        "logging_steps=1",
        "--set",
        "warmup_steps=0",
        "--set",
        "per_device_train_batch_size=2",
        "--set",
        "per_device_eval_batch_size=2",
        *extra,
    ]
    return sft.train(parse_args(argv), callbacks=callbacks)


def _losses(output_dir) -> list[float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [e["loss"] for e in state["log_history"] if "loss" in e]


def _logits(model, tok):
    ids = tok(["정답： A", "Answer: B"], return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**ids).logits


@pytest.mark.parametrize("method, lr", [("full", "1e-3"), ("lora", "5e-3")])
def test_training_lowers_the_loss_and_saves_what_eval_loads(tiny_gemma_dir, short_data, checkpoints, method, lr):
    record = _train(tiny_gemma_dir, method, "--max-steps", "5", "--set", f"learning_rate={lr}")
    spec = resolve(str(tiny_gemma_dir))
    out = checkpoints / f"{spec.alias}-{method}"
    losses = _losses(out)
    assert len(losses) == 5 and losses[-1] < losses[0] - 0.5, losses

    # The record.
    for key in (
        "examples",
        "tokens_trained",
        "steps",
        "epochs",
        "wall_seconds",
        "train_seconds",
        "train_tokens_per_second",
        "mfu",
        "mfu_formula",
        "memory",
        "final_train_loss",
        "final_eval_loss",
        "data",
        "method_config",
        "deepspeed",
        "versions",
        "git_sha",
        "hardware",
        "params",
        "loss_curve",
    ):
        assert key in record, key
    assert record == json.loads((out / "train_record.json").read_text())
    assert (record["examples"], record["steps"], record["data"]["mix"]) == (2, 5, "korean")
    assert record["tokens_trained"] > 0 and record["train_tokens_per_second"] > 0
    assert record["mfu"] is None and record["memory"]["peak_gpu_gib"] is None  # CPU
    steady = record["steady_state"]
    assert (steady["skipped_first_steps"], steady["steps"]) == (1, 4) and steady["mfu"] is None
    assert steady["tokens_per_second"] > 0 and steady["mean_tokens_per_step"] > 0
    assert record["deepspeed"] is None and "without DeepSpeed (zero2.json was checked, not used)" in record["notes"][0]
    assert record["precision"] == "fp32" and record["method_config"]["name"] == method
    assert record["final_train_loss"] == losses[-1] and record["final_eval_loss"] > 0
    assert record["versions"]["trl"] == "1.16.0"
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    trainable = record["params"]["trainable"]
    assert trainable == record["params"]["total"] if method == "full" else 0 < trainable < record["params"]["total"]

    # What `just eval MODEL full|lora` loads, and it is not the base model.
    marker = "config.json" if method == "full" else "adapter_config.json"
    assert (out / marker).exists() and (out / "tokenizer_config.json").exists()
    if method == "lora":
        adapter = json.loads((out / "adapter_config.json").read_text())
        assert (adapter["r"], adapter["lora_alpha"]) == (32, 64)
    loaded = load(spec, method, EvalSettings())
    base = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tiny_gemma_dir)
    assert not torch.allclose(_logits(loaded.model, loaded.tokenizer), _logits(base, tok), atol=1e-4)


def test_step_timer_leaves_out_the_first_steps(monkeypatch):
    clock = iter([0.0, 10.0] + [x for i in range(1, 12) for x in (float(i * 100), i * 100 + 2.0)])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    timer, state = timing.StepTimer(), type("State", (), {"num_input_tokens_seen": 0})()
    for step in range(12):  # the first step: 10 s for 50 tokens; then 2 s for 100 tokens each
        timer.on_step_begin(None, state, None)
        state.num_input_tokens_seen += 50 if step == 0 else 100
        timer.on_step_end(None, state, None)
    assert timer.seconds == 10 + 11 * 2
    steady = timer.steady_state()
    assert (steady["skipped_first_steps"], steady["steps"]) == (3, 9)  # at most a quarter of the run
    assert (steady["tokens_per_second"], steady["median_step_seconds"], steady["mean_tokens_per_step"]) == (50, 2, 100)
    monkeypatch.setenv("MEDBENCH_STEADY_SKIP", "2")  # a short benchmark run's choice (dev/gpu_scale.py)
    assert (timer.steady_state()["skipped_first_steps"], timer.steady_state()["steps"]) == (2, 10)
    monkeypatch.setenv("MEDBENCH_STEADY_SKIP", "50")  # one timed step is always left
    assert (timer.steady_state()["skipped_first_steps"], timer.steady_state()["steps"]) == (11, 1)


def test_a_random_weights_run_says_so(tmp_path, tiny_gemma_dir, short_data, checkpoints):
    from medbench.models.shapes import RANDOM_MARKER, fill_random

    model_dir = tmp_path / "random-tiny"
    model_dir.mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (model_dir / f).write_bytes((tiny_gemma_dir / f).read_bytes())
    (model_dir / RANDOM_MARKER).write_text("random-init weights at a tiny shape\n")
    fill_random(model_dir, torch.float32, seed=1)
    assert "seed 1, float32" in (model_dir / RANDOM_MARKER).read_text()
    record = _train(model_dir, "lora", "--max-steps", "1", "--eval-limit", "0")
    assert any(n.startswith("random-init weights") for n in record["notes"])


class Interrupted(Exception):
    pass


class InterruptAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == 2:
            raise Interrupted


def test_resume_continues_from_the_last_checkpoint_and_a_finished_run_is_left_alone(
    tiny_gemma_dir, short_data, checkpoints, monkeypatch
):
    args = ("--max-steps", "4", "--set", "save_steps=1", "--set", "learning_rate=5e-3", "--eval-limit", "0")
    with pytest.raises(Interrupted):
        _train(tiny_gemma_dir, "lora", *args, callbacks=(InterruptAfterSave(),))
    out = checkpoints / f"{resolve(str(tiny_gemma_dir)).alias}-lora"
    assert (out / "checkpoint-2").is_dir() and not (out / "train_record.json").exists()

    with pytest.raises(RecordError, match="other training.learning_rate"):  # not a different run's checkpoint
        _train(
            tiny_gemma_dir,
            "lora",
            "--max-steps",
            "4",
            "--set",
            "save_steps=1",
            "--set",
            "learning_rate=1e-3",
            "--eval-limit",
            "0",
        )

    record = _train(tiny_gemma_dir, "lora", *args)
    assert record["resumed_from"] == str(out / "checkpoint-2") and record["resumed_from_step"] == 2
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == record["steps"] == 4
    assert 0 < record["tokens_this_run"] < record["tokens_trained"]
    assert [e["step"] for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in e] == [
        1,
        2,
        3,
        4,
    ]

    # Finished: not trained again (nothing is loaded), the record is returned as it was.
    monkeypatch.setattr(sft, "base_weights", lambda *a: pytest.fail("a finished run was trained again"))
    assert _train(tiny_gemma_dir, "lora", *args) == record


def test_force_deletes_only_a_training_run(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(RecordError, match="holds no medbench training run"):
        claim(foreign, {"model": "m"}, force=True)
    assert (foreign / "notes.txt").exists()
    run = tmp_path / "run"
    claim(run, {"model": "m"}, force=False)
    (run / "checkpoint-1").mkdir()
    claim(run, {"model": "m"}, force=True)
    assert not (run / "checkpoint-1").exists() and (run / "train_config.json").exists()


def claim(directory, config, force):
    return claim_dir(
        directory, config, config_name=sft.TRAIN_CONFIG, markers=(sft.TRAIN_RECORD,), force=force, what="training run"
    )


def test_tokenizer_without_build_copies_encodes_and_saves_the_same(embedded_dir, tmp_path):
    """Dropping the Python copies of the vocabulary and merges (fast dataset fingerprints) changes no token id,
    no decoded text and no saved tokenizer file; the fingerprint still tells two vocabularies apart."""
    from datasets.fingerprint import Hasher

    texts = ["Question: 고혈압의 1차 치료제는?\nA. 이뇨제\nAnswer: A", "  spaces, <eos> and émojis 🙂 "]
    whole = AutoTokenizer.from_pretrained(embedded_dir)
    assert whole._vocab and whole._merges  # transformers 5 keeps them after building the Rust tokenizer
    trimmed = sft_data.without_build_copies(AutoTokenizer.from_pretrained(embedded_dir))
    assert trimmed._vocab == {} and trimmed._merges == []
    assert [trimmed(t)["input_ids"] for t in texts] == [whole(t)["input_ids"] for t in texts]
    ids = whole(texts[0])["input_ids"]
    assert trimmed.decode(ids) == whole.decode(ids) and len(trimmed) == len(whole)
    whole.save_pretrained(tmp_path / "whole")
    trimmed.save_pretrained(tmp_path / "trimmed")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "trimmed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    other = sft_data.without_build_copies(AutoTokenizer.from_pretrained(embedded_dir))
    other.add_tokens(["<medbench-extra>"])
    assert Hasher.hash(other) != Hasher.hash(trimmed)
