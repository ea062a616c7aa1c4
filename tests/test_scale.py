"""Several GPUs on CPU: data-parallel evaluation (gloo processes), the sharding decision, published shapes,
and the plumbing of dev/gpu_scale.py that runs without a GPU."""

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medbench.bench import oversize
from medbench.cli import build_parser
from medbench.cli.eval import EvalTarget, LaunchOptions, RunOptions
from medbench.eval import parallel, response_cache
from medbench.eval.request import RunRequest
from medbench.eval.runner import run
from medbench.launch import MULTICAST_OFF, accelerate_command, child_environment, process_environment
from medbench.models import placement
from medbench.models.placement import PlacementError, decide
from medbench.options import from_args, to_argv
from medbench.records.compare import compare_answers
from medbench.settings import EvalSettings

GIB = 2**30
SCRIPTS = Path(__file__).resolve().parents[1] / "dev"


# --- launching ----------------------------------------------------------------------------------------


def test_eval_arguments_survive_the_launch():
    argv = ["eval", "m", "lora", "fewshot", "--mode", "gen", "--tasks", "medqa", "--limit", "3", "--run-id", "r"]
    argv += ["--force", "--set", "max_gen_toks=8", "--set", "seed=1", "--batch-size", "4", "--gpus", "4"]
    args = build_parser().parse_args(argv)
    assert from_args(LaunchOptions, args).gpus == 4
    relaunched = ["eval", *to_argv(from_args(EvalTarget, args), from_args(RunOptions, args))]
    assert "--gpus" not in relaunched  # each process runs one share, never launches again
    again = build_parser().parse_args(relaunched)
    for cls in (EvalTarget, RunOptions):
        assert from_args(cls, again) == from_args(cls, args)
    suite = build_parser().parse_args(["suite", "--gpus", "2", "--dry-run"])
    assert from_args(LaunchOptions, suite).gpus == 2


def test_every_launched_process_has_multicast_off():
    env = child_environment({"RANK": "3", "WORLD_SIZE": "8", "MASTER_PORT": "1", "PATH": "/bin"}, cpu=True)
    assert {k: env[k] for k in MULTICAST_OFF} == {
        "NCCL_NVLS_ENABLE": "0",
        "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
        "NVSHMEM_DISABLE_NVLS": "1",
    }
    assert "RANK" not in env and "WORLD_SIZE" not in env and env["PATH"] == "/bin"
    assert env["ACCELERATE_USE_CPU"] == "true" and "ACCELERATE_USE_CPU" not in child_environment({})
    assert process_environment({"NCCL_NVLS_ENABLE": "1"})["NCCL_NVLS_ENABLE"] == "1"  # the caller's own choice
    cmd = accelerate_command(4, "medbench.cli", ["eval", "m"])
    assert cmd[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]
    assert cmd[cmd.index("--num_processes") + 1] == "4" and cmd[-4:] == ["-m", "medbench.cli", "eval", "m"]


# --- the response caches of several ranks --------------------------------------------------------------


def _store(path, answers: dict) -> None:
    store = response_cache.ResponseStore(path)
    for key, value in answers.items():
        store.put("loglikelihood", [key, " A"], value)
    store.close()


def _keys(path) -> set[str]:
    store = response_cache.ResponseStore(path)
    try:
        return {k for (k,) in store.con.execute("SELECT key FROM responses")}
    finally:
        store.close()


def test_rank_caches_are_merged_for_any_number_of_processes(tmp_path):
    cache = tmp_path / "cache"
    _store(response_cache.rank_file(cache, 0), {"a": (-1.0, True), "c": (-3.0, False)})
    _store(response_cache.rank_file(cache, 1), {"b": (-2.0, False), "c": (-3.0, False)})  # a stopped 2-GPU run
    assert response_cache.count_all(cache) == 4
    everything = _keys(cache / response_cache.FILENAME) | _keys(cache / "responses.rank1.sqlite")

    store = response_cache.ResponseStore(cache / response_cache.FILENAME)
    assert parallel.gather_caches(store) == 1  # b: the only answer rank 0's file lacked
    assert response_cache.rank_files(cache) == [] and store.count() == 3
    parallel.spread_caches(store, world_size=3)  # resumed on three: each rank's file holds everything
    for r in (1, 2):
        assert _keys(response_cache.rank_file(cache, r)) == everything
    assert store.get("loglikelihood", ["b", " A"]) == (-2.0, False)
    parallel.gather_caches(store)  # after the run: one file again
    store.close()
    assert sorted(p.name for p in cache.iterdir() if p.suffix == ".sqlite") == [response_cache.FILENAME]

    (cache / "responses.rank5.sqlite").write_bytes(b"not sqlite at all")  # every file is checked before a run
    with pytest.raises(response_cache.CacheError, match="responses.rank5.sqlite"):
        response_cache.check(cache)


def test_samples_gathered_from_ranks_are_put_back_in_document_order():
    # rank 0's documents, then rank 1's; rank 1 padded with a copy of its last request (an extra response).
    gathered = [{"doc_id": d, "filter": "none", "resps": [[(-1.0, False)]]} for d in (0, 2, 4, 1)]
    gathered.append({"doc_id": 3, "filter": "none", "resps": [[(-1.0, False), (-1.0, False)]]})
    tidy = parallel.tidy_samples(gathered)
    assert [s["doc_id"] for s in tidy] == [0, 1, 2, 3, 4]
    assert all(len(r) == 1 for s in tidy for r in s["resps"])
    two_filters = [{"doc_id": d, "filter": f, "resps": []} for f in ("strict", "flexible") for d in (0, 2, 1)]
    assert [(s["filter"], s["doc_id"]) for s in parallel.tidy_samples(two_filters)] == [
        ("strict", 0),
        ("strict", 1),
        ("strict", 2),
        ("flexible", 0),
        ("flexible", 1),
        ("flexible", 2),
    ]


# --- data-parallel evaluation, two gloo processes --------------------------------------------------------


@pytest.mark.slow
def test_two_processes_answer_every_question_as_one_does(tiny_gemma_dir, results_dir):
    tasks = ["medqa"]
    fixed = EvalSettings(fixed_shapes="true")  # as on CUDA: filler rows, so scores are equal bit for bit
    one = run(RunRequest(model=str(tiny_gemma_dir), tasks=tasks, limit=5, run_id="one", settings=fixed), results_dir)
    argv = [sys.executable, "-m", "medbench.cli", "eval", str(tiny_gemma_dir), "--tasks", ",".join(tasks)]
    argv += ["--limit", "5", "--run-id", "two", "--gpus", "2", "--set", "fixed_shapes=true"]
    env = dict(os.environ, MEDBENCH_RESULTS=str(results_dir))
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "accelerate.commands.launch --multi_gpu --num_processes 2" in out.stderr
    assert out.stdout.count("record.json") == 1  # rank 0 alone reports
    two = json.loads((results_dir / "runs" / "two" / "record.json").read_text())
    assert two["parallel"]["processes"] == 2 and two["parallel"]["mode"] == "data_parallel"
    assert len(two["parallel"]["devices"]) == 2 and one["parallel"]["processes"] == 1
    assert [t["n"] for t in two["tasks"]] == [5] and two["responses"] == one["responses"]
    # The canary ran in both processes, on each one's own questions.
    assert all(n > 0 for n in two["parallel"]["canary_checked_per_process"]) and two["canary"]["passed"]
    assert two["canary"]["checked"] == sum(two["parallel"]["canary_checked_per_process"])
    cache = results_dir / "runs" / "two" / "cache"
    assert response_cache.rank_files(cache) == []  # merged into the one file after the run

    same = compare_answers(results_dir / "runs" / "one", results_dir / "runs" / "two")
    assert same["questions"] == 5 and same["same_answer"] == 5 and same["same_correct"] == 5, same
    assert same["order_identical"] and same["max_abs_score_difference"] == 0.0, same  # bit for bit (fastlm._batches)
    with gzip.open(results_dir / "runs" / "two" / "samples_medbench_medqa_usmle.jsonl.gz", "rt") as f:
        samples = [json.loads(line) for line in f]
    assert [s["doc_id"] for s in samples] == list(range(5))
    assert all(len(r) == 1 for s in samples for r in s["resps"])  # lm-eval's padding answers removed

    # A stopped 2-process run left rank 1's answers in a file of its own: one process resumes from both.
    store = response_cache.ResponseStore(cache / response_cache.FILENAME)
    moved = {k: (a, v) for k, a, v in store.con.execute("SELECT key, attr, value FROM responses LIMIT 7")}
    with store.con:
        store.con.executemany("DELETE FROM responses WHERE key = ?", [(k,) for k in moved])
    store.close()
    rank1 = response_cache.ResponseStore(response_cache.rank_file(cache, 1))
    with rank1.con:
        rank1.con.executemany("INSERT INTO responses VALUES (?, ?, ?)", [(k, a, v) for k, (a, v) in moved.items()])
    rank1.close()
    again = run(RunRequest(model=str(tiny_gemma_dir), tasks=tasks, limit=5, run_id="two", settings=fixed), results_dir)
    assert again["responses"] == {"computed": 0, "from_cache": one["responses"]["computed"]}
    assert response_cache.rank_files(cache) == []


# --- the sharding decision ---------------------------------------------------------------------------


def test_estimate_counts_the_parameters_a_model_loads(tiny_gemma_dir):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(tiny_gemma_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32)
    real = sum(p.numel() for p in model.parameters())  # tied embedding and LM head once
    assert placement.estimate_from_config(config, dtype_bytes=4) == 4 * real
    assert placement.estimate_from_config(config, dtype_bytes=2) == 2 * real
    four_bit = placement.estimate_from_config(config, dtype_bytes=2, four_bit="bitsandbytes")
    linear = sum(
        m.weight.numel() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"
    )
    assert four_bit == int(2 * (real - linear) + linear * placement.FOUR_BIT_BITS["bitsandbytes"] / 8)


def test_published_shapes_and_their_sizes():
    for name, facts in oversize.PUBLISHED.items():
        model = oversize.meta_model(oversize.config(name))
        assert sum(p.numel() for p in model.parameters()) == facts["params"], name
    llama = oversize.meta_model(oversize.config("llama3-70b"))
    assert round(placement.estimate_bytes(llama, 2) / GIB, 1) == 131.4  # bf16: more than any one GPU here
    assert 35 < placement.estimate_bytes(llama, 2, "bitsandbytes") / GIB < 40  # NF4: one H100
    # With Gemma 3's vocabulary (the tokenizer at hand), as the GPU script builds them.
    bigger = oversize.config("qwen3-8b", vocab_size=262144)
    assert round(sum(p.numel() for p in oversize.meta_model(bigger).parameters()) / 1e9, 2) == 9.09
    # Gemma 3 270M's published config (the GPU script's random 270M) builds the embedded model's architecture.
    from medbench.models.shapes import _with_layer_types, config_from_dict, published_config

    gemma = oversize.meta_model(_with_layer_types(config_from_dict(published_config("gemma3-270m.json"))))
    assert sum(p.numel() for p in gemma.parameters()) == 268_098_176


@pytest.mark.parametrize(
    "setting, estimated, free, processes, mode, reason",
    [
        ("auto", 16 * GIB, [80 * GIB] * 4, 1, "single", "fit one GPU"),
        ("auto", 16 * GIB, [80 * GIB] * 4, 4, "single", "fit one GPU"),
        ("auto", 136 * GIB, [79 * GIB] * 2, 1, "sharded", "do not fit one GPU"),
        ("auto", 136 * GIB, [79 * GIB] * 4, 1, "sharded", "layers across 4 GPUs"),
        ("auto", 70 * GIB, [79 * GIB], 1, "single", "one GPU is visible: trying it"),
        ("auto", 136 * GIB, [], 1, "single", "no CUDA"),
        ("auto", None, [79 * GIB] * 2, 1, "single", "size unknown"),
        ("true", 1 * GIB, [79 * GIB] * 2, 1, "sharded", "parallelize=true"),
        ("true", 1 * GIB, [79 * GIB], 1, "single", "one GPU is visible"),
        ("false", 136 * GIB, [79 * GIB] * 2, 1, "single", "parallelize=false"),
    ],
)
def test_sharding_decision(setting, estimated, free, processes, mode, reason):
    chosen = decide(setting, estimated, free, processes)
    assert chosen.mode == mode and reason in chosen.reason
    if chosen.sharded:
        assert chosen.max_memory == {i: int(f * placement.SHARD_FILL) for i, f in enumerate(free)}
    assert chosen.as_record()["gpu_free_gib"] == [round(f / GIB, 2) for f in free]


@pytest.mark.parametrize(
    "setting, estimated, free, processes, message",
    [
        ("auto", 136 * GIB, [79 * GIB] * 2, 2, "without --gpus"),
        ("auto", 136 * GIB, [79 * GIB], 1, "no other GPU"),
        ("auto", 300 * GIB, [79 * GIB] * 2, 1, "nor the 2 visible GPUs together"),
        ("true", 1 * GIB, [79 * GIB] * 2, 2, "use one or the other"),
        ("maybe", 1, [1], 1, "choose from auto, true, false"),
    ],
)
def test_sharding_refusals(setting, estimated, free, processes, message):
    with pytest.raises(PlacementError, match=message):
        decide(setting, estimated, free, processes)


def test_a_meta_model_materializes_with_working_random_weights():
    from transformers import AutoModelForCausalLM

    sizes = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2}
    cfg = oversize.config("llama3-70b", num_hidden_layers=3, vocab_size=300, **sizes)
    meta = oversize.meta_model(cfg, torch.float32)
    device_map = {"model.embed_tokens": "cpu", "model.layers": "cpu", "model.norm": "cpu", "lm_head": "cpu"}
    model = oversize.materialize(meta, device_map)
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))  # the rotary buffers too
    reference = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    reference.load_state_dict(model.state_dict())
    ids = torch.randint(0, 300, (2, 12))
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, reference(input_ids=ids).logits, atol=1e-5)
    weight = model.model.layers[0].mlp.up_proj.weight
    assert abs(weight.std().item() - oversize.RANDOM_STD) < 0.005


def test_a_meta_model_materializes_in_4bit_layer_by_layer():
    pytest.importorskip("bitsandbytes")  # not a dependency here: the GPU image and its wheels carry it
    import bitsandbytes as bnb

    sizes = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2}
    cfg = oversize.config("llama3-70b", num_hidden_layers=2, vocab_size=300, **sizes)
    model = oversize.materialize_4bit(oversize.meta_model(cfg), "cpu")
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in linear) == 7 * 2  # q k v o gate up down, per layer
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit) and model.lm_head.weight.dtype == torch.bfloat16
    with torch.no_grad():
        logits = model(input_ids=torch.randint(0, 300, (1, 8))).logits
    assert logits.shape == (1, 8, 300) and torch.isfinite(logits).all()


def test_placement_at_load_asks_only_its_own_gpu_unless_it_may_shard(tiny_gemma_dir, monkeypatch):
    from transformers import AutoConfig

    from medbench.models import loading
    from medbench.models.registry import resolve
    from medbench.settings import EvalSettings

    asked, free_each = [], [0]

    def free(indices=None):
        asked.append(indices)
        return [free_each[0]] * (3 if indices is None else len(indices))

    monkeypatch.setattr(placement, "gpu_free_bytes", free)
    spec, source = resolve(str(tiny_gemma_dir)), str(tiny_gemma_dir)
    size = placement.estimate_from_config(AutoConfig.from_pretrained(tiny_gemma_dir), 2)

    free_each[0] = 10 * size  # fits: one GPU, and only this process's GPU is asked
    kwargs = {"dtype": torch.bfloat16}
    chosen = loading.place(spec, source, kwargs, EvalSettings(), "cuda:1", processes=2)
    assert chosen.mode == "single" and asked == [[1]] and "device_map" not in kwargs

    asked.clear()
    free_each[0] = size // 2  # too big for one GPU, and 3 GPUs together hold it: sharded from_pretrained arguments
    chosen = loading.place(spec, source, kwargs, EvalSettings(), "cuda:0")
    assert chosen.sharded and asked == [[0], None]
    assert kwargs["device_map"] == "auto" and kwargs["max_memory"] == {i: int(free_each[0] * 0.9) for i in range(3)}
    with pytest.raises(PlacementError, match="without --gpus"):
        loading.place(spec, source, {"dtype": torch.bfloat16}, EvalSettings(), "cuda:1", processes=2)
    settings = EvalSettings(parallelize="false")
    assert loading.place(spec, source, {"dtype": torch.bfloat16}, settings, "cuda:0").reason == "parallelize=false"

    # parallelize=true on a model far smaller than a GPU: budgets that make accelerate's plan really split it.
    free_each[0] = 100 * size
    kwargs = {"dtype": torch.bfloat16}
    chosen = loading.place(spec, source, kwargs, EvalSettings(parallelize="true"), "cuda:0")
    assert chosen.sharded and all(b < free_each[0] for b in kwargs["max_memory"].values())
    from accelerate.utils import infer_auto_device_map

    meta = placement.meta_model(AutoConfig.from_pretrained(tiny_gemma_dir), dtype=torch.bfloat16)
    device_map = infer_auto_device_map(
        meta, max_memory=kwargs["max_memory"], no_split_module_classes=meta._no_split_modules, dtype=torch.bfloat16
    )
    assert len(set(device_map.values())) >= 2, device_map


# --- dev/gpu_scale.py: what can be checked without a GPU -------------------------------------------


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
    now = [lib.START]
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


def test_a_sharded_load_left_on_one_device_is_recorded_as_single():
    """accelerate's balanced plan keeps a model smaller than one GPU's share on GPU 0: the record says so."""
    chosen = decide("true", None, [80 * 2**30, 80 * 2**30])
    assert chosen.sharded

    class Loaded:
        hf_device_map = {"model.embed_tokens": 0, "model.layers.0": 0, "lm_head": 0}

    on_one = placement.placed_record(chosen, Loaded())
    assert on_one["mode"] == "single" and on_one["device_map"] is None
    assert "nothing was sharded" in on_one["reason"]
    Loaded.hf_device_map = {"model.embed_tokens": 0, "model.layers.0": 1, "lm_head": 1}
    split = placement.placed_record(chosen, Loaded())
    assert split["mode"] == "sharded" and split["device_map"] == {"cuda:0": 1, "cuda:1": 2}


def test_scale_records_become_report_tables(tmp_path):
    from medbench.bench.scale import scale_section

    bench = tmp_path / "bench"
    bench.mkdir()
    unit = {"questions": 10, "questions_per_second": 5.0, "eval_seconds": 2.0, "wall_seconds": 4.0}
    dp = {
        "part": "dp",
        "gpu": "NVIDIA H200",
        "gpu_count": 2,
        "units": {"x1": {**unit, "parallel": {"processes": 1}}, "x2": {**unit, "questions_per_second": 8.0}},
        "scaling": {
            "x2": {"questions_per_second_over_x1": 1.6, "identical_to_x1": {"questions": 10, "same_answer": 9}}
        },
    }
    train = {
        "part": "train-8b",
        "gpu": "NVIDIA H200",
        "gpu_count": 2,
        "units": {
            "lora@1": {"tokens_per_second": 100.0, "mean_tokens_per_step": 300.0, "median_step_seconds": 2.0},
            "full-zero3@2": {"error": "OutOfMemoryError: CUDA out of memory"},
        },
    }
    tries = {"16": {"error": "OutOfMemoryError: CUDA out of memory"}, "8": {"peak_gpu_gib_rank0": 60.0}}
    batch = {"part": "batch-8b", "gpu": "NVIDIA H200", "gpu_count": 2}
    batch["units"] = {"lora@1": {"tries": tries, "largest": 8, "done": True}}
    (bench / "scale-dp-NVIDIA-H200-x2.json").write_text(json.dumps(dp))
    (bench / "scale-train-8b-NVIDIA-H200-x2.json").write_text(json.dumps(train))
    (bench / "scale-batch-8b-NVIDIA-H200-x2.json").write_text(json.dumps(batch))
    text = "\n".join(scale_section(tmp_path))
    assert "| lora@1 | 8 | yes | 60.0 |" in text and "| lora@1 | 16 | no |" in text  # tries in batch order
    assert text.index("| lora@1 | 8 | yes") < text.index("| lora@1 | 16 | no") < text.index("largest that fits: 8")
    assert "| 2 | 10 | 8.0 | 2.0 | 4.0 | 1.60 | 9/10 |" in text
    assert "| lora@1 | 100 | 150 |" in text  # the median step: 300 tokens in 2 s
    assert "OutOfMemoryError" in text and "2 x H200" in text
    assert "Models larger than one GPU" not in text  # no oversize record, no table


def test_compare_answers_says_how_near_a_tie_each_flip_was(tmp_path, monkeypatch):
    from medbench.records import compare

    rows = {
        "a": [
            {"id": "q1", "predicted": "A", "correct": True, "scores": {"A": -1.00, "B": -1.02, "C": -3.0}},
            {"id": "q2", "predicted": "A", "correct": False, "scores": {"A": -0.5, "B": -2.0}},
            {"id": "q3", "predicted": "A", "correct": True, "scores": {"A": -1.0, "B": -1.5}},
        ],
        "b": [
            {"id": "q1", "predicted": "B", "correct": False, "scores": {"A": -1.015, "B": -1.01, "C": -3.0}},
            {"id": "q2", "predicted": "A", "correct": False, "scores": {"A": -0.5, "B": -2.0}},
            {"id": "q3", "predicted": "B", "correct": False, "scores": {"A": -1.6, "B": -1.5}},
        ],
    }
    for name in rows:
        (tmp_path / name).mkdir()
        (tmp_path / name / "samples_t.jsonl.gz").write_bytes(b"")
    monkeypatch.setattr(compare, "question_rows", lambda run_dir, task: rows[Path(run_dir).name])
    same = compare_answers(tmp_path / "a", tmp_path / "b")
    assert same["questions"] == 3 and same["same_answer"] == 1 and len(same["differing"]) == 2
    assert same["differing_top2_gaps"] == [0.02, 0.5] and same["differing_top2_gap_max"] == 0.5
    assert same["max_abs_score_difference"] == pytest.approx(0.6)
