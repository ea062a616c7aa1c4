"""Beyond one machine, for real: a SLURM cluster on this machine (scripts/cluster/local_slurm.py: munge,
slurmctld and two slurmd nodes, each node a network namespace of its own, the two joined by a veth pair).

- `just suite` as an `sbatch --array` of `just suite --shard I/N`, each task its own results folder, then
  `just merge` and `just report`: the same answers as a one-process `just suite`, question by question,
  and a finished array submitted again computes nothing.
- `just eval … --num-machines 2` on the two hosts (gloo on CPU): the same answers as one process; a
  machine that never comes, dies or stops answering stops the other with a clear error within the timeout.
- `scripts/slurm/train.sbatch` over both nodes: each node's launch has its own machine rank, one
  training of two processes, one record.

Where namespaces cannot be made the two hosts are the loopback (a warning says so). The SLURM tests are
skipped, with the reason, where SLURM cannot start: not root, or slurm-wlm and munge not installed
(scripts/setup.sh installs them as root). MEDBENCH_SKIP_CLUSTER=1 skips them all.
"""

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import psutil
import pytest

from medbench.cli.suite import Job, shard_of
from medbench.eval.runner import RunRequest, run
from medbench.records.compare import compare_answers
from medbench.settings import EvalSettings

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.cluster, pytest.mark.slow]

_spec = importlib.util.spec_from_file_location("local_slurm", REPO / "scripts" / "cluster" / "local_slurm.py")
local_slurm = sys.modules["local_slurm"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(local_slurm)

SUITE = ["--tasks", "kormedmcqa_doctor,medqa_usmle", "--limit", "2", "--quiet"]
EVAL = ["--tasks", "medqa_usmle", "--limit", "3", "--set", "fixed_shapes=true", "--quiet"]
TRAIN = ["--mix", "korean", "--limit", "4", "--max-steps", "2", "--eval-limit", "0"]
TRAIN += ["--set", "per_device_train_batch_size=1", "--set", "gradient_checkpointing=false"]
JOB_TIMEOUT = 600


def _env(results: Path, **extra: str) -> dict[str, str]:
    """The environment of every command started here: this tree's code, offline, its own results folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "SLURM_CONF", "MASTER_PORT")}
    env = {k: v for k, v in env.items() if not k.startswith(("MEDBENCH_", "GLOO_", "SLURM_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env.update(PYTHON=sys.executable, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", MEDBENCH_RESULTS=str(results))
    if os.environ.get("MEDBENCH_CACHE"):
        env["MEDBENCH_CACHE"] = os.environ["MEDBENCH_CACHE"]
    return {**env, **extra}


def _just(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    out = subprocess.run(["just", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT)
    assert out.returncode == 0, f"just {' '.join(args)}:\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def hosts():
    if os.environ.get("MEDBENCH_SKIP_CLUSTER") == "1":
        pytest.skip("MEDBENCH_SKIP_CLUSTER=1")
    two = local_slurm.TwoHosts().up()
    if not two.namespaces:
        warnings.warn(f"the two-machine tests ran on {two.topology}", stacklevel=1)
    yield two
    two.down()


@pytest.fixture(scope="module")
def cluster(hosts):
    cluster = local_slurm.LocalCluster(hosts=hosts)
    try:
        cluster.start()
    except local_slurm.ClusterUnavailable as e:
        pytest.skip(f"no local SLURM: {e}")
    yield cluster
    cluster.stop()


def _submit(cluster, args: list[str], env: dict[str, str]) -> str:
    """Submits from node n0; returns the job's id."""
    out = cluster.client(["sbatch", "--parsable", *args], cwd=REPO, env=cluster.env(env), timeout=60)
    assert out.returncode == 0, f"sbatch {' '.join(args)}: {out.stdout}{out.stderr}"
    return out.stdout.strip().split(";")[0]


def _wait(cluster, job: str, logs: list[Path]) -> None:
    """Until the job (every task of an array) has ended, each task with exit code 0 (else the end of its
    `logs`). Polled here rather than with `sbatch --wait`, whose polling interval grows to tens of seconds."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while cluster.client(["squeue", "--noheader", "--jobs", job], timeout=30).stdout.strip():
        assert time.monotonic() < deadline, f"job {job} still queued or running after {JOB_TIMEOUT} s"
        time.sleep(0.5)
    tasks = cluster.client(["scontrol", "--oneliner", "show", "job", job], timeout=30).stdout.splitlines()
    states = [re.search(r"JobState=(\S+) .*ExitCode=(\S+)", t).groups() for t in tasks]
    tails = "\n".join(f"{log}: {log.read_text()[-2000:] if log.exists() else '(none)'}" for log in logs)
    assert states and all(s == ("COMPLETED", "0:0") for s in states), f"{states}\n{tails}"


def _nodes_of(cluster, job: str) -> list[str]:
    out = cluster.client(["scontrol", "--oneliner", "show", "job", job], timeout=30).stdout
    return sorted(re.findall(r" NodeList=(\S+)", out))


# --- `just suite` as a job array ----------------------------------------------------------------------


def _tiny_in_the_other_shard(tiny_gemma_dir: Path, folder: Path) -> str:
    """The tiny model under a name whose job lands in the other shard than the 270M's: a job's shard is
    its key's hash, and the key holds the model's path, so each of the two array tasks gets one job."""
    other = 1 - shard_of(Job("gemma3-270m", "base", "zeroshot"), 2)
    for k in range(64):
        path = folder / f"tiny-{k}"
        if shard_of(Job(str(path), "base", "zeroshot"), 2) == other:
            shutil.copytree(tiny_gemma_dir, path)
            return str(path)
    raise AssertionError("no name in 64 lands in the other shard")


def test_suite_as_a_job_array_merges_into_what_one_process_computes(cluster, tiny_gemma_dir, embedded_dir, tmp_path):
    tiny = _tiny_in_the_other_shard(tiny_gemma_dir, tmp_path / "models")
    args = ["--models", f"{tiny},gemma3-270m", *SUITE]
    one, gathered, merged = tmp_path / "one", tmp_path / "gathered", tmp_path / "merged"
    # Each task on a node of its own (--exclusive), writing its own folder as on node-local disks; the
    # one-process suite runs beside it (most of a job's time is single-threaded start-up).
    array = ["--array=0-1", "--exclusive", "--gpus-per-node=0", f"--output={tmp_path}/suite-%a.out"]
    array += ["scripts/slurm/suite-array.sbatch", *args]
    job = _submit(cluster, array, _env(gathered, MEDBENCH_SHARD_RESULTS="1"))
    with open(tmp_path / "one.err", "w") as err:
        one_process = subprocess.Popen(["just", "suite", *args], cwd=REPO, env=_env(one), stdout=err, stderr=err)
    logs = [tmp_path / f"suite-{i}.out" for i in (0, 1)]
    _wait(cluster, job, logs)
    assert one_process.wait(timeout=JOB_TIMEOUT) == 0, (tmp_path / "one.err").read_text()[-3000:]
    assert _nodes_of(cluster, job) == ["n0", "n1"]
    for i in (0, 1):
        (run_dir,) = (gathered / f"shard-{i}-of-2" / "runs").iterdir()
        model = json.loads((run_dir / "record.json").read_text())["model"]
        assert shard_of(Job(model, "base", "zeroshot"), 2) == i

    _just("merge", str(gathered), "--into", str(merged), env=_env(merged))
    report = _just("report", "--results", str(merged), "--resamples", "100", env=_env(merged))
    # Both runs are read: with full provenance from a clean clone, as legacy where the tree has uncommitted sources.
    counts = re.search(r"(\d+) run\(s\) with full provenance, (\d+) legacy", report.stdout)
    assert counts and sum(map(int, counts.groups())) == 2 and (merged / "summary.csv").exists(), report.stdout
    runs = sorted(p.name for p in (one / "runs").iterdir())
    assert len(runs) == 2 and sorted(p.name for p in (merged / "runs").iterdir()) == runs
    for run_id in runs:
        same = compare_answers(one / "runs" / run_id, merged / "runs" / run_id)
        assert same["questions"] == 4 and same["same_answer"] == 4 and same["same_correct"] == 4, same
        assert same["order_identical"] and same["max_abs_score_difference"] == 0.0, same
        a, b = (json.loads((d / "runs" / run_id / "record.json").read_text()) for d in (one, merged))
        assert [(t["task"], t["n"], t["correct"]) for t in a["tasks"]] == [
            (t["task"], t["n"], t["correct"]) for t in b["tasks"]
        ]

    # The finished array again: every job answers from its cache and leaves its run as it was, so merging
    # again finds the same runs.
    files = {p: p.read_bytes() for p in gathered.rglob("*") if p.is_file() and p.parent.name != "cache"}
    _wait(cluster, _submit(cluster, array, _env(gathered, MEDBENCH_SHARD_RESULTS="1")), logs)
    for i in (0, 1):
        assert "answers computed 0" in " ".join((tmp_path / f"suite-{i}.out").read_text().split())
    assert {p: p.read_bytes() for p in gathered.rglob("*") if p.is_file() and p.parent.name != "cache"} == files
    again = _just("merge", str(gathered), "--into", str(merged), env=_env(merged))
    assert "0 run(s) and 0 file(s) to copy; 2 already here (identical)" in again.stdout


# --- `just eval` over two machines -----------------------------------------------------------------------


def _start_machines(hosts, model: str, results: Path, run_id: str, ranks, port: int, timeout: int) -> dict:
    """`medbench eval … --num-machines 2` on each host in `ranks` (host i is machine rank i); output to files,
    so that no machine waits on a full pipe."""
    cmd = [sys.executable, "-m", "medbench.cli", "eval", model, *EVAL, "--run-id", run_id, "--num-machines", "2"]
    cmd += ["--main-process-ip", hosts.hosts[0].address, "--main-process-port", str(port)]
    cmd += ["--peer-timeout", str(timeout)]
    procs = {}
    for rank in ranks:
        log = results.parent / f"{run_id}-rank{rank}"
        with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
            command = hosts.on(rank, [*cmd, "--machine-rank", str(rank)])
            procs[rank] = subprocess.Popen(command, env=_env(results), cwd=REPO, stdout=out, stderr=err)
        procs[rank].log, procs[rank].started = log, time.monotonic()
    return procs


def _finish(proc, since: float | None = None) -> tuple[int, str, str, float]:
    """A machine's exit code, stdout, stderr and the seconds from its start (or `since`) to its end."""
    proc.wait(timeout=JOB_TIMEOUT)
    seconds = time.monotonic() - (proc.started if since is None else since)
    return (proc.returncode, *(Path(f"{proc.log}.{ext}").read_text() for ext in ("out", "err")), seconds)


def _port() -> int:
    return local_slurm._free_ports(1)[0]


def test_eval_on_two_machines_answers_as_one_process(hosts, tiny_gemma_dir, results_dir):
    settings = EvalSettings(fixed_shapes="true")  # filler rows: a question scores the same in any process
    run(RunRequest(model=str(tiny_gemma_dir), tasks=["medqa_usmle"], limit=3, run_id="one", settings=settings))
    procs = _start_machines(hosts, str(tiny_gemma_dir), results_dir, "two", (1, 0), _port(), timeout=300)
    done = {rank: _finish(proc) for rank, proc in procs.items()}
    for rank, (code, _, stderr, _) in done.items():
        assert code == 0, f"machine rank {rank}:\n{stderr[-3000:]}"
    assert done[0][1].count("record:") == 1 and "record:" not in done[1][1]  # machine rank 0 writes it
    two = json.loads((results_dir / "runs" / "two" / "record.json").read_text())
    assert two["parallel"]["processes"] == 2 and two["parallel"]["mode"] == "data_parallel"
    same = compare_answers(results_dir / "runs" / "one", results_dir / "runs" / "two")
    assert same["questions"] == 3 and same["same_answer"] == 3 and same["order_identical"], same
    assert same["max_abs_score_difference"] == 0.0, same


def _stop_machine_1_once_joined(procs: dict, run_dir: Path, sig: int) -> list:
    """Sends `sig` to every process of machine rank 1 (launcher, accelerate, the evaluation process) once
    both machines have joined: machine rank 0 claims the run folder only then."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while not run_dir.exists():
        assert time.monotonic() < deadline and procs[0].poll() is None, Path(f"{procs[0].log}.err").read_text()
        time.sleep(0.2)
    machine1 = psutil.Process(procs[1].pid)
    machine1 = [machine1, *machine1.children(recursive=True)]
    _signal(machine1, sig)
    return machine1


def test_a_machine_that_never_comes_or_dies_stops_the_other_with_a_clear_error(hosts, tiny_gemma_dir, results_dir):
    # At once: machine rank 0 without rank 1, rank 1 without rank 0 (each at a port of its own, 10 s), and a
    # pair whose rank 1 is killed mid-run (a long timeout: a killed machine's connections close at once).
    model = str(tiny_gemma_dir)
    alone = _start_machines(hosts, model, results_dir, "alone0", (0,), _port(), timeout=10)
    alone.update(_start_machines(hosts, model, results_dir, "alone1", (1,), _port(), timeout=10))
    pair = _start_machines(hosts, model, results_dir, "killed", (0, 1), _port(), timeout=300)
    killed = _stop_machine_1_once_joined(pair, results_dir / "runs" / "killed", signal.SIGKILL)
    since = time.monotonic()
    done = {rank: _finish(p) for rank, p in alone.items()}
    code, _, stderr, seconds = _finish(pair[0], since)
    _signal(killed, signal.SIGKILL)
    pair[1].wait(timeout=60)

    assert done[0][0] == 2 and "machine rank 0 waited 10 s at" in done[0][2], done[0][2][-2000:]
    assert "and 1 of 2 machines joined: start the same command on every other machine" in done[0][2]
    assert done[1][0] == 2 and "machine rank 1 found no main machine at" in done[1][2], done[1][2][-2000:]
    # Start-up (imports, checks) on 2 busy cores, then the wait; the client side retries up to twice as long.
    assert all(d[3] < 90 for d in done.values()), {rank: d[3] for rank, d in done.items()}
    assert not (results_dir / "runs" / "alone0").exists()  # nothing was claimed
    assert code == 2 and "another machine of the run stopped, or stopped answering" in stderr, stderr[-3000:]
    assert seconds < 60, seconds  # from the kill: what rank 0 still had to do (load, its share), then at once


def test_a_machine_that_stops_answering_stops_the_other_after_the_timeout(hosts, tiny_gemma_dir, results_dir):
    procs = _start_machines(hosts, str(tiny_gemma_dir), results_dir, "frozen", (0, 1), _port(), timeout=20)
    frozen = _stop_machine_1_once_joined(procs, results_dir / "runs" / "frozen", signal.SIGSTOP)
    since = time.monotonic()
    try:
        code, _, stderr, seconds = _finish(procs[0], since)
    finally:
        _signal(frozen, signal.SIGKILL)
        procs[1].wait(timeout=60)
    assert code == 2 and "another machine of the run stopped, or stopped answering for 20 s" in stderr, stderr[-3000:]
    assert seconds < 20 + 60, seconds  # from the freeze: rank 0's own work, then the timeout


# --- `scripts/slurm/train.sbatch` over both nodes ---------------------------------------------------------


def test_train_sbatch_trains_once_over_both_nodes_each_with_its_rank(cluster, tiny_gemma_dir, tmp_path):
    out_dir, results, log = tmp_path / "checkpoint", tmp_path / "results", tmp_path / "train.out"
    args = ["--nodes=2", "--gpus-per-node=0", f"--output={log}", "scripts/slurm/train.sbatch", str(tiny_gemma_dir)]
    args += ["lora", *TRAIN, "--output-dir", str(out_dir)]
    job = _submit(cluster, args, _env(results, MASTER_PORT=str(_port())))
    _wait(cluster, job, [log])
    assert _nodes_of(cluster, job) == ["n[0-1]"]
    text = log.read_text()
    launches = re.findall(r"medbench train: \S+ -m accelerate\.commands\.launch (.*?) -m trainers\.sft", text)
    options = [dict(zip(line.split()[::2], line.split()[1::2])) for line in launches]
    assert sorted(o["--machine_rank"] for o in options) == ["0", "1"], text[-3000:]
    for o in options:
        assert (o["--num_processes"], o["--num_machines"]) == ("2", "2")
        assert o["--main_process_ip"] == cluster.hosts.hosts[0].address  # n0's NodeAddr
    record = json.loads((out_dir / "train_record.json").read_text())
    assert record["gpus"] == 2 and record["steps"] == 2  # one training of two processes, not two of one
    (published,) = (results / "train").glob("*.json")
    assert json.loads(published.read_text()) == record and text.count("; wrote ") == 1  # rank 0 alone writes


def _signal(processes: list, sig: int) -> None:
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)
