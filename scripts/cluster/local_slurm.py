"""A SLURM cluster on this one machine: munge, slurmctld and two slurmd nodes, each node a network host
of its own (a network namespace; the two joined by a veth pair), for the tests (tests/test_cluster.py)
and for trying scripts/slurm/ by hand. Needs root, slurm-wlm, munge and iproute2 (scripts/setup.sh).

    python scripts/cluster/local_slurm.py up      # prints the folder, SLURM_CONF and how to submit
    python scripts/cluster/local_slurm.py down DIR

Everything lives in one folder: the munge key and socket, slurm.conf, the controller's state, spool
folders, logs, and the pids of the daemons started here; nothing under /etc is read or written, so a
system SLURM or munge is left alone. Node n0 is 10.233.0.1 and also holds the controller; n1 is
10.233.0.2. The namespaces hold nothing but the loopback and their end of the veth pair, so they have
no route anywhere else: whatever runs there can only reach the other one. Clients (sbatch, squeue,
scontrol) reach the controller from n0's namespace (`LocalCluster.client`).

Where namespaces cannot be made (no CAP_NET_ADMIN, no iproute2) both hosts are the loopback, and each
slurmd listens on its own port there: still two SLURM nodes, one network host. `TwoHosts.topology`
says which ran.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

COMMANDS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
SUBNET = "10.233.0"  # private, and only ever inside this cluster's own namespaces
START_TIMEOUT = 60


class ClusterUnavailable(Exception):
    """This machine cannot run the cluster; the message says why (the tests skip with it)."""


@dataclass
class Host:
    name: str
    address: str
    netns: str | None  # None: the loopback, in this process's own network namespace
    interface: str


class TwoHosts:
    """Two network hosts on this machine: namespaces joined by a veth pair, or else the loopback twice."""

    def __init__(self, namespaces: bool = True):
        self.want_namespaces = namespaces
        self.hosts: list[Host] = []
        self.note = ""

    @property
    def namespaces(self) -> bool:
        return bool(self.hosts) and self.hosts[0].netns is not None

    @property
    def topology(self) -> str:
        if self.namespaces:
            return "two network namespaces joined by a veth pair"
        return "one network host, the loopback" + (f" ({self.note})" if self.note else "")

    def on(self, host: int, cmd: list[str]) -> list[str]:
        """`cmd` run on host `host` (in its network namespace; unchanged on the loopback)."""
        netns = self.hosts[host].netns
        # nsenter, not `ip netns exec`: that one also mounts a fresh /sys, hiding the cgroups slurmd reads.
        return ["nsenter", f"--net=/run/netns/{netns}", *cmd] if netns else list(cmd)

    def up(self) -> TwoHosts:
        tag = f"mb{os.getpid() % 100000}"  # per process: two test runs at once do not meet
        if self.want_namespaces and shutil.which("ip") and shutil.which("nsenter"):
            netns, veth = [f"{tag}-n0", f"{tag}-n1"], [f"{tag}n0", f"{tag}n1"]
            self.hosts = [Host(f"n{i}", f"{SUBNET}.{i + 1}", netns[i], veth[i]) for i in (0, 1)]
            steps = [
                ["ip", "netns", "add", netns[0]],
                ["ip", "netns", "add", netns[1]],
                ["ip", "link", "add", veth[0], "type", "veth", "peer", "name", veth[1]],
            ]
            for i in (0, 1):
                steps += [
                    ["ip", "link", "set", veth[i], "netns", netns[i]],
                    ["ip", "-n", netns[i], "addr", "add", f"{SUBNET}.{i + 1}/30", "dev", veth[i]],
                    ["ip", "-n", netns[i], "link", "set", veth[i], "up"],
                    ["ip", "-n", netns[i], "link", "set", "lo", "up"],
                ]
            for step in steps:
                out = _quiet(step)
                if out.returncode != 0:
                    self.note = f"`{' '.join(step)}` failed: {out.stderr.strip() or 'no message'}"
                    self.down()
                    break
            else:
                return self
        elif self.want_namespaces:
            self.note = "no iproute2 or nsenter"
        self.hosts = [Host(f"n{i}", "127.0.0.1", None, "lo") for i in (0, 1)]
        return self

    def set_link(self, host: int, up: bool) -> None:
        """Cuts (or restores) host `host`'s link to the other: a machine that stops answering, without closing."""
        h = self.hosts[host]
        if not h.netns:
            raise ClusterUnavailable("no link to cut on the loopback")
        subprocess.run(["ip", "-n", h.netns, "link", "set", h.interface, "up" if up else "down"], check=True)

    def kill_processes(self) -> None:
        """Ends every process left in the namespaces: only this object's, nothing else runs there."""
        for h in self.hosts:
            if h.netns:
                for pid in _quiet(["ip", "netns", "pids", h.netns]).stdout.split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)

    def down(self) -> None:
        self.kill_processes()
        for h in self.hosts:
            if h.netns:
                _quiet(["ip", "netns", "delete", h.netns])  # removes its veth end, and so the pair


class LocalCluster:
    """SLURM on `hosts` (made here and removed by `stop` when not given)."""

    def __init__(self, workdir: Path | None = None, hosts: TwoHosts | None = None, namespaces: bool = True):
        self.workdir = Path(workdir) if workdir else None
        self._owns_workdir = workdir is None
        self._owns_hosts = hosts is None
        self.hosts = hosts or TwoHosts(namespaces)
        self.pids: dict[str, int] = {}
        self.ports: list[int] = []

    @property
    def conf(self) -> Path:
        return self.workdir / "slurm.conf"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        return {**(os.environ if base is None else base), "SLURM_CONF": str(self.conf)}

    def client(self, cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
        """A SLURM client command (sbatch, squeue, …) run on node n0, where the controller is."""
        kwargs.setdefault("env", self.env())
        return subprocess.run(self.hosts.on(0, cmd), capture_output=True, text=True, check=False, **kwargs)

    # --- start and stop -----------------------------------------------------------------------------

    def start(self) -> LocalCluster:
        check_prerequisites()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="medbench-slurm-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # munged refuses a socket in a folder that others cannot enter
        try:
            if not self.hosts.hosts:
                self.hosts.up()
            self._save_state()  # the namespaces are recorded first, so that `down` removes them whatever fails next
            self._write_conf()
            self._start_munge()
            self._start_slurm()
            self._wait_until_idle()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancels every job, stops the daemons started here, and removes what was made here. Safe to call
        twice, and after a start that failed half-way."""
        if self.workdir is None:
            return
        pids = self._load_state()
        if "slurmctld" in pids:
            self.client(["scancel", "--quiet", "--user", "root"], timeout=30)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self._jobs_left():
                time.sleep(0.5)
        for name in sorted(pids, key=lambda n: n == "munged"):  # munge last: the others ask it to the end
            _terminate(pids[name])
        self.pids = {}
        if self._owns_hosts:
            self.hosts.down()
        else:
            self.hosts.kill_processes()
        (self.workdir / "state.json").unlink(missing_ok=True)
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the pieces ---------------------------------------------------------------------------------

    def _write_conf(self) -> None:
        d = self.workdir
        for sub in ("munge", "state", "spool", "log"):
            (d / sub).mkdir(exist_ok=True)
        (d / "munge").chmod(0o755)
        # In namespaces every daemon has its host's ports to itself; on the loopback each needs its own.
        self.ports = [6817, 6818, 6818] if self.hosts.namespaces else _free_ports(3)
        nodes = "\n".join(
            f"NodeName={h.name} NodeHostname={h.name} NodeAddr={h.address} Port={port} "
            f"CPUs={os.cpu_count() or 1} RealMemory=1000 State=UNKNOWN"
            for h, port in zip(self.hosts.hosts, self.ports[1:])
        )
        self.conf.write_text(
            f"""# Written by scripts/cluster/local_slurm.py: a cluster of this machine alone.
ClusterName=medbench-local
SlurmctldHost={socket.gethostname().split(".")[0]}({self.hosts.hosts[0].address})
SlurmctldPort={self.ports[0]}
AuthType=auth/munge
AuthInfo=socket={d}/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool/%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
KillWait=5
{nodes}
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        )

    def _start_munge(self) -> None:
        m = self.workdir / "munge"
        key = m / "munge.key"
        if not key.exists():
            out = _quiet(["mungekey", "--create", "--keyfile", str(key)])
            if out.returncode != 0:
                raise ClusterUnavailable(f"mungekey failed: {out.stderr.strip()}")
        cmd = ["munged", "--foreground", f"--socket={m}/munge.socket", f"--key-file={key}"]
        cmd += [f"--pid-file={m}/munged.pid", f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed"]
        self._spawn("munged", cmd, m / "munged.log")
        _wait_for(lambda: (m / "munge.socket").exists(), "munged socket", m / "munged.log")

    def _start_slurm(self) -> None:
        log = self.workdir / "log"
        self._spawn("slurmctld", self.hosts.on(0, ["slurmctld", "-D", "-f", str(self.conf)]), log / "slurmctld.log")
        for i, host in enumerate(self.hosts.hosts):
            cmd = self.hosts.on(i, ["slurmd", "-D", "-f", str(self.conf), "-N", host.name])
            self._spawn(f"slurmd-{host.name}", cmd, log / f"slurmd-{host.name}.log")

    def _wait_until_idle(self) -> None:
        def idle() -> bool:
            out = self.client(["sinfo", "--noheader", "--Node", "--format=%N %t"], timeout=20).stdout.split()
            return len(out) == 4 and all(state == "idle" for state in out[1::2])

        _wait_for(idle, "two idle nodes in sinfo", self.workdir / "log" / "slurmctld.log")

    def _spawn(self, name: str, cmd: list[str], log: Path) -> None:
        with open(self.workdir / "log" / f"{name}.out", "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pids[name] = proc.pid
        self._save_state()
        time.sleep(0.3)
        if proc.poll() is not None:
            raise ClusterUnavailable(f"{name} stopped at once (exit {proc.returncode}): {_tail(log)}")

    def _jobs_left(self) -> bool:
        out = self.client(["squeue", "--noheader", "--format=%i"], timeout=20)
        return out.returncode == 0 and bool(out.stdout.strip())

    def _save_state(self) -> None:
        state = {"pids": self.pids, "hosts": [asdict(h) for h in self.hosts.hosts], "owns_hosts": self._owns_hosts}
        (self.workdir / "state.json").write_text(json.dumps(state, indent=1))

    def _load_state(self) -> dict[str, int]:
        path = self.workdir / "state.json"
        if not path.exists():
            return dict(self.pids)
        state = json.loads(path.read_text())
        if not self.hosts.hosts:  # `down` in another process than `up`
            self.hosts.hosts = [Host(**h) for h in state["hosts"]]
            self._owns_hosts = state["owns_hosts"]
        return {**state["pids"], **self.pids}


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise ClusterUnavailable("not root: slurmd and munged run as root here (CI runs as root)")
    missing = [name for name in COMMANDS if shutil.which(name) is None]
    if missing:
        raise ClusterUnavailable(
            f"{', '.join(missing)} not installed: `apt-get install slurm-wlm munge iproute2` "
            "(scripts/setup.sh does, as root)"
        )


def _quiet(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _terminate(pid: int, grace: float = 10.0) -> None:
    """SIGTERM to the daemon's process group (it was started in a session of its own), SIGKILL if it lingers."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _running(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _running(pid)


def _running(pid: int) -> bool:
    """Whether `pid` still runs (reaped here when it is this process's child)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == 0
    except ChildProcessError:  # not our child (`down` from another process than `up`)
        stat = Path(f"/proc/{pid}/stat")
        try:
            return stat.read_text().split()[2] != "Z"
        except OSError:
            return False


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return f"(no {path.name})"


def _wait_for(ready, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.3)
    raise ClusterUnavailable(f"no {what} within {START_TIMEOUT} s; {log.name}: {_tail(log)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cluster (it runs until `down`)")
    up.add_argument("--dir", help="the cluster's folder (default: a new one under /tmp)")
    up.add_argument("--loopback", action="store_true", help="both nodes on the loopback, no namespaces")
    down = sub.add_parser("down", help="stop the cluster whose folder is DIR")
    down.add_argument("dir")
    args = parser.parse_args(argv)
    if args.command == "down":
        LocalCluster(Path(args.dir), hosts=TwoHosts()).stop()
        return 0
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="medbench-slurm-"))
    try:
        cluster = LocalCluster(workdir, namespaces=not args.loopback).start()
    except ClusterUnavailable as e:
        print(f"local_slurm: {e}", file=sys.stderr)
        return 1
    on_n0 = " ".join(cluster.hosts.on(0, []))
    print(f"cluster in {workdir}: {cluster.hosts.topology}")
    print(f"export SLURM_CONF={cluster.conf}")
    print(f"submit on node n0: {on_n0 + ' ' if on_n0 else ''}sbatch …")
    print(f"stop: python {__file__} down {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
