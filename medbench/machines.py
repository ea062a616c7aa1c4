"""Several machines in one data-parallel evaluation: `just eval … --num-machines M --machine-rank R
--main-process-ip A --main-process-port P` on every machine (docs/multinode.md).

Each machine runs `accelerate launch --num_machines M --machine_rank R` for its own processes; the
machines meet at A:P (the main machine, rank 0, holds the rendezvous store there). On one machine the
launcher watches every process and stops them all when one fails; across machines no one does, so a
machine that never comes, or one that stops mid-run, would leave the others waiting. Here every wait
is bounded by the peer timeout: the launchers' rendezvous (accelerate's `--rdzv_conf timeout=`) and
every exchange between the evaluation processes (the process group's timeout, which
medbench/eval/parallel.py reads from MEDBENCH_PEER_TIMEOUT). When the launch fails, `launch` reads
what torch printed and says which of those happened and what to do.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections import deque
from dataclasses import dataclass

from medbench.errors import MedbenchError

DEFAULT_PEER_TIMEOUT = 1800.0
PEER_TIMEOUT_ENV = "MEDBENCH_PEER_TIMEOUT"
# torch's messages for each way a peer can be missing (torch 2.13; `explain` falls back to the exit code).
NOT_ALL_JOINED = re.compile(r"waiting for clients\. (\d+)/(\d+) clients joined")
MAIN_UNREACHABLE = re.compile(r"timed out after \d+ms while trying to connect to")
PEER_LOST = re.compile(
    r"Connection closed by peer|Connection reset by peer|Timed out waiting \d+ms for (?:send|recv) operation"
)
PEERS_UNCONNECTED = re.compile(r"Gloo connectFullMesh failed")


class MachinesError(MedbenchError):
    pass


@dataclass(frozen=True)
class Machines:
    """This machine's place in a run over `count` machines (one machine: the defaults)."""

    count: int = 1
    rank: int = 0
    main_ip: str | None = None
    main_port: int | None = None
    peer_timeout: float | None = None

    @property
    def timeout(self) -> float:
        return DEFAULT_PEER_TIMEOUT if self.peer_timeout is None else self.peer_timeout

    @property
    def main(self) -> str:
        return f"{self.main_ip}:{self.main_port}"

    def check(self) -> None:
        if self.count < 1:
            raise MachinesError(f"--num-machines {self.count}: one or more machines")
        if self.peer_timeout is not None and self.peer_timeout <= 0:
            raise MachinesError(f"--peer-timeout {self.peer_timeout}: a number of seconds above 0")
        if self.count == 1:
            return
        if not self.main_ip or not self.main_port:
            raise MachinesError(
                "a run over several machines (--num-machines > 1) needs --main-process-ip and --main-process-port: "
                "the main machine's (rank 0's) address and a free port there, the same on every machine"
            )
        if not 0 <= self.rank < self.count:
            raise MachinesError(
                f"--machine-rank {self.rank} is outside 0..{self.count - 1}: give each machine its own rank"
            )

    def accelerate_arguments(self) -> list[str]:
        """`accelerate launch` options for this machine (after --num_processes, which counts every machine's)."""
        out = ["--num_machines", str(self.count)]
        if self.count > 1:
            out += ["--machine_rank", str(self.rank), "--main_process_ip", str(self.main_ip)]
            out += ["--main_process_port", str(self.main_port), "--rdzv_conf", f"timeout={math.ceil(self.timeout)}"]
        return out

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        """`env` for the launcher: the peer timeout for the evaluation processes (on one machine only when
        given), gloo on the interface that reaches the main machine."""
        if self.count == 1:
            return dict(env) if self.peer_timeout is None else {**env, PEER_TIMEOUT_ENV: str(self.timeout)}
        return {**gloo_environment(env, str(self.main_ip)), PEER_TIMEOUT_ENV: str(self.timeout)}

    def explain(self, output: str) -> str | None:
        """What a failed launch's output says happened between the machines; None if it names no such cause."""
        joined = NOT_ALL_JOINED.search(output)
        if joined:
            others = "1" if self.count == 2 else f"1 to {self.count - 1}"
            return (
                f"machine rank 0 waited {self.timeout:g} s at {self.main} and {joined.group(1)} of "
                f"{joined.group(2)} machines joined: start the same command on every other machine with its own "
                f"--machine-rank ({others}) and the same --num-machines, --main-process-ip and --main-process-port, "
                f"or give them more time with --peer-timeout"
            )
        if MAIN_UNREACHABLE.search(output):
            return (
                f"machine rank {self.rank} found no main machine at {self.main} within {self.timeout:g} s: start "
                f"the same command there with --machine-rank 0, check that this machine reaches that address and "
                f"port, or give it more time with --peer-timeout"
            )
        if PEERS_UNCONNECTED.search(output):
            return (
                f"the machines met at {self.main} but their processes could not connect to each other: each "
                f"process offers the address of the interface named by GLOO_SOCKET_IFNAME (on GPUs "
                f"NCCL_SOCKET_IFNAME); set it, on every machine, to an interface the others reach"
            )
        if PEER_LOST.search(output):
            return (
                f"another machine of the run stopped, or stopped answering for {self.timeout:g} s (--peer-timeout), "
                f"while this one waited for it (machine rank {self.rank}): its own log says why; the answers computed "
                f"so far stay in the run's cache, and the same command on every machine resumes the run"
            )
        return None


def gloo_environment(env: dict[str, str], main_ip: str) -> dict[str, str]:
    """`env` with GLOO_SOCKET_IFNAME set (unless it is) to the interface that reaches the main machine,
    when `main_ip` is an address (a host name is not looked up here).

    gloo (the CPU backend, and the CPU side of GPU runs) offers the other processes the address that the
    host name resolves to, which on many hosts (Debian's default /etc/hosts among them) is a loopback
    address no other machine reaches. NCCL picks its own interface.
    """
    out = dict(env)
    if "GLOO_SOCKET_IFNAME" not in out:
        interface = route_interface(main_ip)
        if interface:
            out["GLOO_SOCKET_IFNAME"] = interface
    return out


def route_interface(address: str) -> str | None:
    """The name of the local interface the kernel would send from to reach the IP address `address` (None
    for a host name, or where unknown)."""
    import socket

    import psutil

    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(
            address, None, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST
        )[0]
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((sockaddr[0], 9))  # a UDP connect sends nothing: it only asks the routing table
            local = s.getsockname()[0]
    except OSError:
        return None
    for name, addresses in psutil.net_if_addrs().items():
        if any(a.address.split("%")[0] == local for a in addresses):
            return name
    return None


def launch(cmd: list[str], env: dict[str, str], machines: Machines) -> int:
    """Runs the launcher `cmd`, its error output passed through as it comes; a failure that the output
    explains (`Machines.explain`) is raised as MachinesError, any other returns its exit code."""
    tail: deque[bytes] = deque(maxlen=256)  # the last chunks: torch's error comes at the end
    with subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE) as proc:
        out = getattr(sys.stderr, "buffer", None)
        for chunk in iter(lambda: proc.stderr.read1(65536), b""):
            tail.append(chunk)
            if out is not None:
                out.write(chunk)
                out.flush()
            else:
                sys.stderr.write(chunk.decode(errors="replace"))
        code = proc.wait()
    if code != 0:
        why = machines.explain(b"".join(tail).decode(errors="replace"))
        if why:
            raise MachinesError(why)
    return code
