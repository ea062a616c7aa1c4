"""Several machines in one evaluation (medbench/machines.py) and the SLURM training script's first lines,
without starting anything: the command each machine runs, its refusals, the environment, and what a
failed launch's output is taken to mean. tests/test_cluster.py runs all of it for real."""

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from medbench.cli import build_parser, main
from medbench.cli.eval import EvalTarget, MachineOptions, RunOptions, to_argv
from medbench.eval import parallel
from medbench.launch import accelerate_command
from medbench.machines import PEER_TIMEOUT_ENV, Machines, MachinesError, gloo_environment, launch, route_interface
from medbench.options import from_args

SLURM = Path(__file__).resolve().parents[1] / "scripts" / "slurm"
TWO = Machines(count=2, rank=1, main_ip="10.233.0.1", main_port=29500, peer_timeout=30)


def test_each_machine_launches_its_share_with_its_rank_and_the_timeout():
    argv = ["eval", "m", "--limit", "3", "--gpus", "2", "--num-machines", "2", "--machine-rank", "1"]
    argv += ["--main-process-ip", "10.233.0.1", "--main-process-port", "29500", "--peer-timeout", "30"]
    args = build_parser().parse_args(argv)
    machines = from_args(MachineOptions, args).machines()
    assert machines == TWO
    relaunch = ["eval", *to_argv(from_args(EvalTarget, args), from_args(RunOptions, args))]
    cmd = accelerate_command(4, "medbench.cli", relaunch, machines)
    assert cmd[3] == "--multi_gpu" and _value(cmd, "--num_processes") == "4" and _value(cmd, "--num_machines") == "2"
    assert [_value(cmd, f"--{k}") for k in ("machine_rank", "main_process_ip", "main_process_port")] == [
        "1",
        "10.233.0.1",
        "29500",
    ]
    assert _value(cmd, "--rdzv_conf") == "timeout=30"  # the launchers' rendezvous waits no longer than the processes
    assert cmd[cmd.index("medbench.cli") + 1 :] == ["eval", "m", "base", "zeroshot", "--limit", "3"]  # its share
    one = accelerate_command(2, "medbench.cli", ["eval", "m"])
    assert _value(one, "--num_machines") == "1" and "--machine_rank" not in one and "--rdzv_conf" not in one


def _value(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


@pytest.mark.parametrize(
    "machines, message",
    [
        (Machines(count=2), "needs --main-process-ip and --main-process-port"),
        (Machines(count=2, rank=2, main_ip="h", main_port=1), "--machine-rank 2 is outside 0..1"),
        (Machines(count=0), "one or more machines"),
        (Machines(count=2, main_ip="h", main_port=1, peer_timeout=0), "a number of seconds above 0"),
    ],
)
def test_bad_machine_arguments_are_refused_before_anything_starts(machines, message, capsys):
    with pytest.raises(MachinesError, match=message):
        machines.check()
    if machines.count == 2 and machines.main_ip is None:
        # From the command line: refused with what to do, before any process starts.
        assert main(["eval", "m", "--num-machines", "2"]) == 2
        assert "needs --main-process-ip" in capsys.readouterr().err


def test_processes_get_the_peer_timeout_and_gloo_the_interface_that_reaches_the_main_machine(monkeypatch):
    env = TWO.environment({"PATH": "/bin"})
    assert env[PEER_TIMEOUT_ENV] == "30" and env["PATH"] == "/bin"
    assert Machines().environment({"PATH": "/bin"}) == {"PATH": "/bin"}  # one machine: unchanged
    assert Machines(peer_timeout=5).environment({}) == {PEER_TIMEOUT_ENV: "5"}  # unless given
    assert str(Machines(count=2, main_ip="h", main_port=1).timeout) == "1800.0"
    assert route_interface("127.0.0.1") == "lo"
    assert route_interface("main-node") is None  # a host name is not looked up (no DNS query from here)
    assert gloo_environment({}, "127.0.0.1") == {"GLOO_SOCKET_IFNAME": "lo"}
    assert gloo_environment({"GLOO_SOCKET_IFNAME": "eth1"}, "127.0.0.1") == {"GLOO_SOCKET_IFNAME": "eth1"}

    monkeypatch.setenv(PEER_TIMEOUT_ENV, "12.5")
    assert parallel.peer_timeout() == timedelta(seconds=12.5)
    monkeypatch.delenv(PEER_TIMEOUT_ENV)
    assert parallel.peer_timeout() == timedelta(weeks=52)  # one machine: the launcher watches every process


# What torch 2.13 printed in each case, run on two network namespaces (tests/test_cluster.py runs them).
OUTPUTS = {
    "rank 0 alone": "torch.distributed.DistStoreError: Timed out after 31 seconds waiting for clients. 1/2 clients joined.",
    "rank 1 alone": "torch.distributed.DistNetworkError: The client socket has timed out after 30000ms while trying "
    "to connect to (10.233.0.1, 29500).",
    "peer killed": "RuntimeError: [gloo/transport/tcp/pair.cc:553] Connection closed by peer [10.233.0.2]:2237.",
    "peer frozen": "RuntimeError: [gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 30000ms for recv operation to complete",
    "wrong interface": "RuntimeError: Gloo connectFullMesh failed with [gloo/transport/tcp/pair.h:311] Connect timeout [none]",
}


def test_a_failed_launch_is_explained_by_what_torch_printed():
    said = {case: TWO.explain("noise\n" + text + "\nChildFailedError") for case, text in OUTPUTS.items()}
    assert "machine rank 0 waited 30 s at 10.233.0.1:29500 and 1 of 2 machines joined" in said["rank 0 alone"]
    assert "--machine-rank (1)" in said["rank 0 alone"]
    assert said["rank 1 alone"].startswith("machine rank 1 found no main machine at 10.233.0.1:29500 within 30 s")
    assert said["peer killed"] == said["peer frozen"]
    assert "another machine of the run stopped, or stopped answering for 30 s" in said["peer killed"]
    assert "GLOO_SOCKET_IFNAME" in said["wrong interface"]
    assert TWO.explain("Traceback …\nValueError: something else") is None  # not a machine's doing: the exit code


def test_the_launcher_passes_its_output_through_and_raises_the_explanation(capfd):
    fail = [sys.executable, "-c", f"import sys; sys.stderr.write({OUTPUTS['rank 1 alone']!r}); sys.exit(1)"]
    with pytest.raises(MachinesError, match="found no main machine"):
        launch(fail, {}, TWO)
    assert "DistNetworkError" in capfd.readouterr().err  # the original lines reach the user too
    assert launch([sys.executable, "-c", "import sys; sys.exit(3)"], {}, TWO) == 3
    assert launch([sys.executable, "-c", "pass"], {}, TWO) == 0


def test_the_slurm_training_script_reads_a_long_node_list_without_sigpipe(tmp_path):
    # `scontrol … | head -n 1` under pipefail failed (exit 141) once scontrol wrote more than head read.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {
        "scontrol": 'if [ "$2" = node ]; then echo "NodeName=$3 NodeAddr=10.1.0.7 NodeHostName=$3"; '
        'else seq -f "node-%g" 0 19999; fi',
        "srun": 'while [[ "$1" == --* ]]; do shift; done; SLURM_NODEID=0 "$@"',
        "just": f'echo "just $*" >> {tmp_path / "calls"}',
        "nvidia-smi": "exit 9",  # a GPU tool that fails must not be reached: GPUS_PER_NODE is given
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_NODELIST": "node-[0-19999]", "SLURM_NNODES": "2"}
    env["GPUS_PER_NODE"] = "1"
    run = subprocess.run(["bash", str(SLURM / "train.sbatch"), "m", "lora"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    call = (tmp_path / "calls").read_text()
    assert "--machine-rank 0 --main-process-ip 10.1.0.7 --main-process-port 29500" in call  # NodeAddr, not the name
