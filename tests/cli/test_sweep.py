"""Sweeps across machines: the suite's shards (a stable partition of its jobs) and merging results folders."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from medbench.cli import build_parser, main
from medbench.cli import suite as suite_cli
from medbench.cli.suite import Job, SuiteOptions, all_jobs, parse_shard, shard_jobs, shard_of
from medbench.errors import MedbenchError
from medbench.records.merge import MergeError, merge, plan_merge
from medbench.records.reader import load_runs

MODELS = "gemma3-270m,gemma3-1b,gemma3-4b,qwen3-0.6b,qwen3-1.7b,qwen3-4b,qwen3-8b,exaone3.5"
SWEEP = SuiteOptions(models=MODELS, variants="base,bnb,awq,full,lora,qlora", prompts="zeroshot,fewshot,cot")


# --- shards --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 7, 16])
def test_shards_cover_every_job_exactly_once(count):
    jobs = all_jobs(SWEEP, env={})
    assert len(jobs) == 8 * 6 * 3 and len(set(jobs)) == len(jobs)
    shards = [shard_jobs(jobs, i, count) for i in range(count)]
    assert sorted((j for s in shards for j in s), key=lambda j: j.key) == sorted(jobs, key=lambda j: j.key)
    if count <= 7:
        assert all(shards)  # 144 jobs: no shard of a few is empty


def test_a_jobs_shard_depends_on_the_job_alone():
    # Pinned values: the partition must not change between versions, machines or Python runs.
    assert [shard_of(Job("gemma3-270m", "base", "zeroshot"), n) for n in (2, 3, 4, 8)] == [
        int(h, 16) % n for h, n in [(_sha("gemma3-270m base zeroshot"), n) for n in (2, 3, 4, 8)]
    ]
    before = all_jobs(SWEEP, env={})
    grown = all_jobs(SuiteOptions(models=MODELS + ",phi4-mini", variants=SWEEP.variants, prompts=SWEEP.prompts), env={})
    for count in (2, 5):
        for i in range(count):
            old, new = shard_jobs(before, i, count), shard_jobs(grown, i, count)
            assert [j for j in new if j.model != "phi4-mini"] == old  # a new model moves no other job


def _sha(text):
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def test_default_jobs_and_shard_arguments():
    assert all_jobs(SuiteOptions(), env={"MEDBENCH_SUITE": "qwen3  gemma3-270m"}) == [
        Job("gemma3-270m", "base", "zeroshot"),
        Job("smollm2-135m", "base", "zeroshot"),
        Job("qwen3", "base", "zeroshot"),
    ]
    assert parse_shard(None) == (0, 1) and parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(MedbenchError, match="expected I/N"):
            parse_shard(bad)


def test_suite_runs_its_shard_and_fails_after_the_rest_when_a_job_fails(monkeypatch, capsys):
    calls = []

    def fake_call(cmd):
        calls.append(cmd[4:])
        return 1 if cmd[4] == "broken" else 0

    monkeypatch.setattr(suite_cli.subprocess, "call", fake_call)
    monkeypatch.setenv("MEDBENCH_SUITE", "broken qwen3")
    assert main(["suite", "--prompts", "zeroshot,cot", "--limit", "2", "--batch-size", "2"]) == 1
    assert calls == [
        [m, "base", p, "--limit", "2", "--batch-size", "2"]
        for m in ("gemma3-270m", "smollm2-135m", "broken", "qwen3")
        for p in ("zeroshot", "cot")
    ]
    assert "suite: failed: broken base zeroshot, broken base cot" in capsys.readouterr().err

    calls.clear()
    jobs = all_jobs(SuiteOptions(prompts="zeroshot,cot"), env={"MEDBENCH_SUITE": "broken qwen3"})
    for i in range(3):
        main(["suite", "--prompts", "zeroshot,cot", "--shard", f"{i}/3"])
    assert sorted(tuple(c[:3]) for c in calls) == sorted((j.model, j.variant, j.prompt) for j in jobs)
    assert "--run-id" not in {a.dest for a in build_parser()._subparsers._group_actions[0].choices["suite"]._actions}


# --- merging results folders --------------------------------------------------------------------------


def _run(results, run_id, score=1, created="2026-01-01"):
    import gzip

    d = results / "runs" / run_id
    d.mkdir(parents=True)
    sample = {
        "doc_id": 0,
        "doc": {"id": f"{run_id}-q0", "dataset": "medqa", "exam": "usmle"},
        "acc": score,
        "filtered_resps": [[-1.0, False], [-2.0, False]],
    }
    with gzip.open(d / "samples_medbench_medqa_usmle.jsonl.gz", "wt") as f:
        f.write(json.dumps(sample) + "\n")
    task = {
        "task": "medbench_medqa_usmle",
        "dataset": "medqa",
        "exam": "usmle",
        "metric": "acc",
        "n": 1,
        "correct": score,
        "accuracy": float(score),
        "stderr": None,
        "invalid": 0,
        "invalid_rate": 0.0,
        "truncated_prompts": 0,
    }
    record = {
        "run_id": run_id,
        "created": created,
        "model": "m",
        "params_b": 1.0,
        "weights": "real",
        "variant": "base",
        "prompt": "zeroshot",
        "mode": "mc",
        "device": "cuda",
        "tasks": [task],
        "timing": {"questions_per_second": 1.0},
        "memory": {"peak_gib": 1.0},
        "hardware": {},
        "git_sha": None,
    }
    (d / "record.json").write_text(json.dumps(record))
    (d / "run_config.json").write_text("{}")
    (d / "cache").mkdir()
    (d / "cache" / "responses_rank0.db").write_bytes(b"machine-specific")
    return d


def test_merge_copies_new_runs_and_counts_identical_ones_once(tmp_path):
    here, a, b = tmp_path / "results", tmp_path / "node0" / "results", tmp_path / "node1" / "results"
    _run(here, "local")
    _run(a, "job-a")
    _run(b, "job-b")
    shutil.copytree(a / "runs" / "job-a", b / "runs" / "job-a")  # the same run gathered twice
    (b / "cache_only").mkdir()
    (b / "runs" / "unfinished").mkdir()  # no record.json: still running or stopped
    (b / "train").mkdir()
    (b / "train" / "m-lora.json").write_text("{}")

    plan = merge([tmp_path / "node0", b], here)  # a folder of results folders, or one
    assert sorted(d.name for _, d in plan.copy_runs) == ["job-a", "job-b"]
    assert plan.identical == ["job-a"] and plan.unfinished == [str(b / "runs" / "unfinished")]
    assert [r.run_id for r in load_runs(here)] == ["job-a", "job-b", "local"]  # the report reads each once
    assert not (here / "runs" / "job-b" / "cache").exists()  # a merged run is a record, its cache stays behind
    assert (here / "train" / "m-lora.json").exists() and not (here / ".merging").exists()

    again = merge([a, b], here)  # merging twice changes nothing
    assert (
        again.copy_runs == []
        and again.copy_files == []
        and sorted(again.identical) == ["job-a", "job-a", "job-b", "train/m-lora.json"]
    )


def test_merge_refuses_one_run_id_with_two_contents_and_copies_nothing(tmp_path):
    here, a, b = tmp_path / "results", tmp_path / "a", tmp_path / "b"
    _run(here, "shared", score=1)
    _run(a, "new")
    _run(b, "shared", score=0, created="2026-02-02")  # the same id, another run
    _run(a, "clash", score=1)
    _run(b, "clash", score=0)
    assert sorted(c.split(":")[0] for c in plan_merge([a, b], here).conflicts) == ["run clash", "run shared"]
    with pytest.raises(MergeError, match="(?s)nothing merged.*run clash.*run shared"):
        merge([a, b], here)
    assert sorted(p.name for p in (here / "runs").iterdir()) == ["shared"]  # "new" was not copied either
    with pytest.raises(MergeError, match="not a results folder"):
        merge([tmp_path / "a" / "runs" / "new"], here)


def test_report_merges_before_it_reads(tmp_path, monkeypatch):
    import medbench.report.build as build

    here, other = tmp_path / "results", tmp_path / "other"
    _run(here, "local")
    _run(other, "remote")
    seen = {}

    def fake_build(results, seed, resamples, readme, also=(), measurements="", docs=None, **options):
        seen["runs"] = [r.run_id for r in load_runs(results)]
        return {"written": [], "runs": [], "legacy": [], "rows": [], "comparisons": [], "most_significant": None}

    monkeypatch.setattr(build, "build_report", fake_build)
    monkeypatch.setenv("MEDBENCH_RESULTS", str(here))  # where `just merge` writes
    assert main(["report", "--results", str(here), "--merge", str(other), "--readme", str(tmp_path / "none.md")]) == 2
    (tmp_path / "README.md").write_text("")
    assert main(["report", "--results", str(here), "--merge", str(other), "--readme", str(tmp_path / "README.md")]) == 0
    assert seen["runs"] == ["local", "remote"]


# --- SLURM: the commands each node runs (stubs for srun, scontrol, just and docker; nothing is launched) ----

SLURM = Path(__file__).resolve().parents[2] / "scripts" / "slurm"


def _stubs(tmp_path, nodes=2):
    log = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {
        "scontrol": 'printf "gpu-node-a\\ngpu-node-b\\n"\n',
        # srun: drop its own options, run the command once per node with that node's SLURM_NODEID.
        "srun": f'while [[ "$1" == --* ]]; do shift; done\nfor i in $(seq 0 {nodes - 1}); do SLURM_NODEID=$i "$@"; done\n',
        "just": f'printf "%s\\n" "just $*" >> {log}\n',
        "docker": f'printf "%s\\n" "docker $*" >> {log}\n',
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\nset -e\n" + body)
        (bin_dir / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "gpu-node-[a-b]",
        "SLURM_NNODES": str(nodes),
        "GPUS_PER_NODE": "4",
    }
    for key in ("MEDBENCH_IMAGE", "MASTER_PORT", "NCCL_NVLS_ENABLE", "MEDBENCH_RESULTS"):
        env.pop(key, None)
    return log, env


def test_slurm_training_starts_accelerate_on_every_node_with_its_rank(tmp_path):
    from trainers import launch
    from trainers.arguments import parse_args

    log, env = _stubs(tmp_path)
    run = subprocess.run(
        ["bash", str(SLURM / "train.sbatch"), "gemma3-1b", "full", "--deepspeed", "zero3", "--max-steps", "20"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 2 and all(c.startswith("just train gemma3-1b full ") for c in calls)
    for rank, call in enumerate(calls):
        args = parse_args(call.split()[2:])
        assert (args.gpus, args.num_machines, args.machine_rank) == (4, 2, rank)
        assert (args.main_process_ip, args.main_process_port, args.deepspeed) == ("gpu-node-a", 29500, "zero3")
        # What `medbench train` on that node then runs: accelerate with 8 processes in all, this node's rank.
        cmd = launch.command(args, ["gemma3-1b", "full"])
        opts = dict(zip(cmd[3:-1:2], cmd[4::2]))
        assert opts["--num_processes"] == "8" and opts["--num_machines"] == "2" and opts["--machine_rank"] == str(rank)
        assert opts["--main_process_ip"] == "gpu-node-a" and launch.environment(args, {})["NCCL_NVLS_ENABLE"] == "0"

    log.unlink()
    run = subprocess.run(
        ["bash", str(SLURM / "train.sbatch"), "gemma3-1b", "lora"],
        capture_output=True,
        text=True,
        env={**env, "MEDBENCH_IMAGE": "bench", "MASTER_PORT": "6000"},
        check=False,
    )
    assert run.returncode == 0, run.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 2 and all(c.startswith("docker run --rm --gpus all --network host") for c in calls)
    assert all("-e NCCL_NVLS_ENABLE" in c and " bench just train gemma3-1b lora " in c for c in calls)
    assert calls[1].endswith("--machine-rank 1 --main-process-ip gpu-node-a --main-process-port 6000")


def test_slurm_job_array_runs_one_shard_per_task(tmp_path):
    log, env = _stubs(tmp_path)
    for task in range(3):
        run = subprocess.run(
            ["bash", str(SLURM / "suite-array.sbatch"), "--prompts", "zeroshot,cot"],
            capture_output=True,
            text=True,
            check=False,
            env={**env, "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": "3"},
        )
        assert run.returncode == 0, run.stderr
    assert log.read_text().splitlines() == [f"just suite --shard {i}/3 --prompts zeroshot,cot" for i in range(3)]
    log.unlink()
    subprocess.run(
        ["bash", str(SLURM / "suite-array.sbatch")],
        check=True,
        cwd=tmp_path,
        env={
            **env,
            "SLURM_ARRAY_TASK_ID": "1",
            "SLURM_ARRAY_TASK_COUNT": "2",
            "MEDBENCH_IMAGE": "bench",
            "MEDBENCH_SHARD_RESULTS": "1",
        },
    )
    (call,) = log.read_text().splitlines()
    assert f"-v {tmp_path}/results/shard-1-of-2:/opt/medbench/results" in call
    assert call.endswith("bench just suite --shard 1/2")


def test_slurm_scripts_pass_shellcheck():
    from tests.test_container import tool

    run = subprocess.run(
        [tool("shellcheck"), *map(str, sorted(SLURM.glob("*.sbatch")))], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout
