"""Several GPUs on CPU: data-parallel evaluation (gloo processes), the sharding decision, published shapes,
and the plumbing of dev/gpu_scale.py that runs without a GPU."""

import gzip
import json
import os
import subprocess
import sys

import pytest

from medbench.cli import build_parser
from medbench.cli.eval import EvalTarget, LaunchOptions, RunOptions
from medbench.eval import parallel, response_cache
from medbench.eval.request import RunRequest
from medbench.eval.runner import run
from medbench.launch import MULTICAST_OFF, accelerate_command, child_environment, process_environment
from medbench.models import placement
from medbench.models.placement import decide
from medbench.options import from_args, to_argv
from medbench.records.compare import compare_answers
from medbench.settings import EvalSettings

GIB = 2**30


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
    assert out.stdout.count("record: ") == 1  # rank 0 alone reports (a marker that no table width can fold)
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
    assert all(len(s["filtered_resps"]) == 4 for s in samples)  # one score per option: padding answers removed

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
