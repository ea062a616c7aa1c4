"""Several GPUs on CPU: data-parallel evaluation (gloo processes), the sharding decision, published shapes,
and the plumbing of dev/gpu_scale.py that runs without a GPU."""

import gzip
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

GIB = 2**30
SCRIPTS = Path(__file__).resolve().parent


# --- launching ----------------------------------------------------------------------------------------


@pytest.fixture
def gpu_scale(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the script forces multicast off in its environment
    monkeypatch.setenv("MEDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(SCRIPTS))
    for name in ("gpu_scale", "gpu_scale_lib", "gpu_scale_eval", "gpu_scale_train"):
        sys.modules.pop(name, None)
    import gpu_scale

    assert os.environ["NCCL_NVLS_ENABLE"] == "0"
    yield gpu_scale
    for name in ("gpu_scale", "gpu_scale_lib", "gpu_scale_eval", "gpu_scale_train"):
        sys.modules.pop(name, None)


def test_gpu_scale_budget_and_resumable_records(gpu_scale, tmp_path):
    lib = gpu_scale.lib
    now = [0]  # an injected clock: seconds since the start, whatever the machine's uptime
    budget = lib.Budget(420, 480, clock=lambda: now[0])
    assert budget.allows("x1", "dp") and budget.child_timeout() == 540
    now[0] += 400  # inside the budget, but the unit would end after the hard limit
    assert not budget.allows("full@4", "8b-full") and budget.allows("x2", "1b")
    now[0] += 30  # past the budget: nothing more starts, and a child gets at least 30 s
    assert not budget.allows("x4", "dp") and budget.left_over == ["full@4", "x4"] and budget.child_timeout() == 110

    facts = {"gpu": "NVIDIA H100 80GB HBM3", "gpu_count": 4, "git_sha": "abc", "versions": {"torch": "2"}}
    path = lib.record_path(tmp_path, "dp", facts)
    assert path.name == "scale-dp-NVIDIA-H100-80GB-HBM3-x4.json"
    rec = lib.open_record(path, "dp", facts, fresh=False, same={"weights": "random"})
    rec["units"]["x1"] = {"questions_per_second": 100.0}
    lib.save(path, rec)
    assert lib.open_record(path, "dp", facts, False, {"weights": "random"})["units"] == {"x1": rec["units"]["x1"]}
    assert lib.open_record(path, "dp", facts, False, {"weights": "real"})["units"] == {}  # another model
    assert lib.open_record(path, "dp", {**facts, "git_sha": "def"}, False, {"weights": "random"})["units"] == {}
    assert lib.open_record(path, "dp", facts, True, {"weights": "random"})["units"] == {}  # --fresh

    assert gpu_scale.main(["--part", "dp"]) == 2  # no CUDA here
    with pytest.raises(SystemExit):
        gpu_scale.parse_args(["--part", "dp,nonsense"])
    with pytest.raises(SystemExit):
        gpu_scale.parse_args(["--part", "train", "--steps", "2", "--warmup", "2"])
    assert gpu_scale.parse_args(["--part", "dp, train"]).parts == ["dp", "train"]


def test_gpu_scale_batch_search_ratios_and_configurations(gpu_scale, monkeypatch, tmp_path):
    train = gpu_scale.gpu_scale_train

    def search(largest_that_fits):
        tries = {}
        while True:
            batch, largest = train.next_batch(tries)
            if batch is None:
                return largest, sorted(int(b) for b in tries)
            tries[str(batch)] = {} if batch <= largest_that_fits else {"error": "out of memory"}

    assert search(40) == (32, [8, 16, 32, 64])
    assert search(8) == (8, [8, 16])
    assert search(5) == (4, [4, 8])
    assert search(0) == (0, [1, 2, 4, 8])
    assert search(10_000) == (256, [8, 16, 32, 64, 128, 256])

    units = {
        "lora@1": {"tokens_per_second": 1000.0, "peak_gpu_gib_rank0": 20.0},
        "lora@2": {"tokens_per_second": 1900.0, "peak_gpu_gib_rank0": 20.0},
        "full-zero3@1": {"error": "skipped"},
        "full-zero3@2": {"tokens_per_second": 500.0, "peak_gpu_gib_rank0": 70.0},
        "full-zero3@4": {"tokens_per_second": 900.0, "peak_gpu_gib_rank0": 40.0},
    }
    scaling = train.train_scaling(units)
    assert scaling["lora@2"] == {
        "tokens_per_second_over_lora@1": 1.9,
        "efficiency_per_gpu": 0.95,
        "peak_gpu_gib_rank0_over_base": 1.0,
    }
    assert scaling["full-zero3@4"]["tokens_per_second_over_full-zero3@2"] == 1.8  # over the fewest GPUs that ran
    assert set(scaling) == {"lora@2", "full-zero3@4"}

    h100 = 80 * GIB
    assert "does not fit" in train.full_fits(9_093_559_296, 1, h100)  # 135 GiB of fp32 state on one GPU
    assert train.full_fits(9_093_559_296, 2, h100) is None  # 68 GiB a GPU: tried, and recorded if it fails
    assert [train.expected_kind(n, "8b") for n in ("lora", "full-zero3", "qlora", "lora-fast", "full-plain")] == [
        "8b-lora",
        "8b-full",
        "8b-qlora",
        "8b-lora-fast",
        "8b-full",
    ]
    assert train.configs()["lora-fast"] == ("lora", ["--profile", "fast"])

    # lora-fast needs trainers/profiles/fast.yaml (another branch): without it, skipped with a note, at no cost.
    monkeypatch.setattr(train, "FAST_PROFILE", tmp_path / "profiles" / "fast.yaml")
    assert "no fast training profile" in train.skip_reason("lora-fast") and train.skip_reason("lora") is None
    args = gpu_scale.parse_args(["--part", "train", "--configs", "lora-fast@1,lora@8", "--out", str(tmp_path)])
    facts = {"gpu": "H100", "gpu_count": 4, "git_sha": None, "versions": {}}
    rec = train.part_train(args, facts, gpu_scale.lib.Budget(420, 480), "8b")
    assert rec["units"] == {"lora-fast@1": {"error": "skipped", "reason": train.skip_reason("lora-fast")}}
    assert (rec["steps"], rec["warmup_steps"], rec["examples"]) == (6, 2, 256)
    assert not (gpu_scale.lib.scratch() / "qwen3-8b-random").exists()  # nothing to train: no 8B checkpoint


def test_gpu_scale_dp_runs_a_random_270m_from_a_packed_tokenizer(gpu_scale, embedded_dir, tmp_path, monkeypatch):
    """--dp-model random-270m with --tokenizer: the published config, random weights, no GGUF package needed;
    the evaluation itself is stood in for (the real one runs 4,282 questions on GPUs)."""
    lib, ev = gpu_scale.lib, gpu_scale.gpu_scale_eval
    packed = tmp_path / "tok"
    packed.mkdir()
    with open(embedded_dir / "tokenizer.json", "rb") as src, gzip.open(packed / "tokenizer.json.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copy(embedded_dir / "tokenizer_config.json", packed)
    calls = []

    def fake_eval_run(model, run_id, extra, runs, budget):
        calls.append((run_id, extra))
        run_dir = runs / "runs" / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        return {"questions_per_second": 10.0 * (1 + len(calls)), "wall_seconds": 60.0, "run_dir": str(run_dir)}

    monkeypatch.setattr(ev, "eval_run", fake_eval_run)
    argv = ["--part", "dp", "--dp-model", "random-270m", "--tokenizer", str(packed), "--out", str(tmp_path / "o")]
    args = gpu_scale.parse_args([*argv, "--dp-limit", "2"])
    facts = {"gpu": "H100", "gpu_count": 2, "git_sha": None, "versions": {}}
    rec = ev.part_dp(args, facts, lib.Budget(420, 480))
    model_dir = lib.scratch() / "gemma3-270m-random"
    assert rec["weights"] == "random" and "gemma3-270m.json" in (model_dir / "medbench_random.txt").read_text()
    assert json.loads((model_dir / "config.json").read_text())["num_hidden_layers"] == 18
    assert calls == [("dp-x1", ["--limit", "2"]), ("dp-x2", ["--limit", "2", "--gpus", "2"])]
    assert rec["scaling"]["x2"]["questions_per_second_over_x1"] == 1.5
    again = ev.part_dp(args, facts, lib.Budget(420, 480))  # resumed: everything measured, nothing runs
    assert len(calls) == 2 and set(again["units"]) == {"x1", "x2"}


def test_gpu_scale_scores_a_model_it_built_itself(gpu_scale, tiny_gemma_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_gemma_dir)
    scored = gpu_scale.gpu_scale_eval.score(model, tok, limit=1, batch_size=4)
    assert scored["questions"] == 5 and len(scored["accuracy"]) == 5 and scored["questions_per_second"] > 0
    assert scored["canary"] and all(r["passed"] for r in scored["canary"])
