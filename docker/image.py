"""Builds the image and proves that it runs: `just docker-build` and `just docker-smoke` call this.

  build  starts the Docker daemon if it is not running (as root), makes the Debian base with
         docker/base.sh if it is missing, and builds `bench` with BuildKit; writes build/docker/build.json
         (seconds, the steps that came from the layer cache, the image id, the hashes of its inputs).
  smoke  rebuilds after a one-line code change, runs the commands of issue 28 in the image and the GPU
         packages' checks (docker/gpu-check.py); writes results/bench/docker-smoke.json, then the
         numbers in docs/container.md and README.md (the `docker-smoke` blocks).
  docs   only that last step, from the record.

Standard library only: it runs with the host's Python, before anything is installed. It calls only
`medbench` and `just` commands in the image, never module paths.
Environment: DOCKER (the client), MEDBENCH_BASE_IMAGE (a base to use instead of docker/base.sh's),
MEDBENCH_CA_BUNDLE (the CA bundle passed as the build secret `ca`; empty: none).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = "bench"
BASE = "medbench-base:bookworm"
STATE = ROOT / "build" / "docker"
BUILD_RECORD = STATE / "build.json"
RECORD = ROOT / "results" / "bench" / "docker-smoke.json"
# What an image is built from; the record keeps their hashes and a test compares them with the files.
INPUTS = ("Dockerfile", "constraints.txt", "docker/constraints-gpu.txt")
DOCS = {"docs/container.md": "docs", "README.md": "readme"}
BEGIN, END = "<!-- docker-smoke:start -->", "<!-- docker-smoke:end -->"
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")
SMOKE_CACHE_VOLUME = "medbench-smoke-cache"
BUILD_KEYS = ("command", "seconds", "steps", "cached_steps", "base_seconds", "ca_bundle_secret")
DOCKERD_LOG = Path(os.environ.get("TMPDIR", "/tmp")) / "dockerd.log"


class Failure(Exception):
    """One line for the user: what is wrong and the command that fixes it."""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inputs_sha256() -> dict[str, str]:
    return {name: sha256(ROOT / name) for name in INPUTS}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def quiet(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)


# --- the client and the daemon -----------------------------------------------------------------------------


def docker_client() -> tuple[str, dict[str, str]]:
    """A docker client that builds with BuildKit (RUN --mount needs it), and the environment it needs.

    A client with the buildx plugin builds with BuildKit itself; Debian's docker.io (20.10) does when
    DOCKER_BUILDKIT=1; a newer client without buildx refuses BuildKit, so /usr/bin/docker is tried too.
    """
    if os.environ.get("DOCKER"):
        candidates = [os.environ["DOCKER"]]
    else:
        candidates = list(dict.fromkeys(c for c in (shutil.which("docker"), "/usr/bin/docker") if c))
    candidates = [c for c in candidates if shutil.which(c)]
    if not candidates:
        raise Failure(
            "docker is not installed: as root, `apt-get install -y docker.io` (Debian) or see docs/container.md"
        )
    for client in candidates:
        if quiet([client, "buildx", "version"]).returncode == 0:
            return client, {}
        version = quiet([client, "version", "--format", "{{.Client.Version}}"]).stdout.strip()
        major = re.match(r"(\d+)\.", version)
        if major and int(major[1]) < 23:
            return client, {"DOCKER_BUILDKIT": "1"}
    raise Failure(
        f"no docker client here builds with BuildKit ({', '.join(candidates)}): install the buildx plugin,"
        " or Debian's docker.io (`apt-get install -y docker.io`) and set DOCKER=/usr/bin/docker"
    )


def ensure_daemon(client: str) -> None:
    """Starts dockerd when it is not running and this is root; otherwise says how to."""
    info = quiet([client, "info", "--format", "{{.ServerVersion}}"])
    if info.returncode == 0:
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        last = (info.stderr.strip().splitlines() or [""])[-1]
        raise Failure(
            f"the Docker daemon is not reachable ({last}): as root, `dockerd > /tmp/dockerd.log 2>&1 &`"
            " (or `systemctl start docker`); as a user, join the `docker` group"
        )
    print(f"docker: starting dockerd (log: {DOCKERD_LOG})", flush=True)
    with DOCKERD_LOG.open("ab") as log:
        subprocess.Popen([dockerd], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    for _ in range(60):
        time.sleep(1)
        if quiet([client, "info", "--format", "{{.ServerVersion}}"]).returncode == 0:
            return
    raise Failure(f"dockerd did not come up within 60 s: see {DOCKERD_LOG}")


def docker_versions(client: str) -> dict[str, str]:
    out = quiet([client, "version", "--format", "{{.Client.Version}} {{.Server.Version}}"]).stdout.split()
    return {"client": out[0] if out else "", "server": out[1] if len(out) > 1 else ""}


def ca_bundle() -> str | None:
    """The CA bundle for networks that intercept TLS: MEDBENCH_CA_BUNDLE, else this machine's own."""
    if "MEDBENCH_CA_BUNDLE" in os.environ:
        return os.environ["MEDBENCH_CA_BUNDLE"] or None
    for path in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), *CA_BUNDLES):
        if path and Path(path).is_file():
            return path
    return None


def image_id(client: str, ref: str) -> str | None:
    out = quiet([client, "image", "inspect", "--format", "{{.Id}}", ref])
    return out.stdout.strip() if out.returncode == 0 else None


# --- building --------------------------------------------------------------------------------------------------


def stream(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> tuple[int, float, str]:
    """Runs a command with its output shown as it comes; returns the exit status, seconds and output."""
    start = time.monotonic()
    chunks = []
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    ) as proc:
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            chunks.append(chunk)
    output = b"".join(chunks).decode(errors="replace")
    if log:
        log.write_text(output)
    return proc.returncode, round(time.monotonic() - start, 1), output


def build_steps(log: str) -> dict[str, int]:
    """The Dockerfile steps of a BuildKit plain log, and how many came from the layer cache (FROM aside)."""
    steps = {m[1]: m[3] for m in re.finditer(r"^#(\d+) \[\s*(\d+)/\d+\] (\w+)", log, re.MULTILINE)}
    cached = set(re.findall(r"^#(\d+) CACHED$", log, re.MULTILINE))
    counted = {n for n, instruction in steps.items() if instruction != "FROM"}
    return {"steps": len(counted), "cached_steps": len(counted & cached)}


def build_command(client: str, tag: str, base: str | None, args: list[str], iidfile: Path) -> list[str]:
    git = quiet(["git", "-C", str(ROOT), "rev-parse", "HEAD"]).stdout.strip()
    cmd = [client, "build", "--progress=plain", "--iidfile", str(iidfile), "-t", tag]
    if base:
        cmd += ["--build-arg", f"BASE_IMAGE={base}"]
    cmd += ["--build-arg", f"MEDBENCH_GIT_SHA={git}"]
    bundle = ca_bundle()
    if bundle:
        cmd += ["--secret", f"id=ca,src={bundle}"]
    return [*cmd, *args, str(ROOT)]


def shown(cmd: list[str]) -> str:
    """A command as the record shows it: the client by name, the context and files relative to the clone."""
    words = [Path(cmd[0]).name, *cmd[1:]]
    return " ".join(w.replace(str(ROOT) + "/", "").replace(str(ROOT), ".") for w in words)


def build(args: list[str]) -> dict:
    client, env = docker_client()
    ensure_daemon(client)
    STATE.mkdir(parents=True, exist_ok=True)
    base_seconds = None
    if any(a.startswith("BASE_IMAGE=") for a in args):
        base = None  # the caller's own --build-arg BASE_IMAGE=…
    elif os.environ.get("MEDBENCH_BASE_IMAGE"):
        base = os.environ["MEDBENCH_BASE_IMAGE"]
    else:
        base = BASE
    if base == BASE and image_id(client, base) is None:
        start = time.monotonic()
        made = subprocess.run(["bash", str(ROOT / "docker" / "base.sh"), base], env={**os.environ, "DOCKER": client})
        if made.returncode != 0:
            raise Failure(f"the base image {base} could not be made (above); `sudo bash docker/base.sh` makes it")
        base_seconds = round(time.monotonic() - start, 1)
    iidfile = STATE / "bench.iid"
    iidfile.unlink(missing_ok=True)
    cmd = build_command(client, TAG, base, args, iidfile)
    print("docker-build:", shown(cmd), flush=True)
    rc, seconds, log = stream(cmd, env, STATE / "build.log")
    if rc != 0:
        raise Failure(f"docker build failed (exit {rc}); the log is in {STATE / 'build.log'}")
    record = {
        "date": now(),
        "command": shown(cmd),
        "args": args,
        "image_id": iidfile.read_text().strip(),
        "base_image": base,
        "base_image_id": image_id(client, base) if base else None,
        "base_seconds": base_seconds,
        "seconds": seconds,
        **build_steps(log),
        "ca_bundle_secret": ca_bundle() is not None,
        "inputs_sha256": inputs_sha256(),
        "docker": docker_versions(client),
    }
    BUILD_RECORD.write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"docker-build: {TAG} {record['image_id'][:19]} in {seconds} s ({record['cached_steps']} of "
        f"{record['steps']} steps from the layer cache); {BUILD_RECORD.relative_to(ROOT)}"
    )
    return record


# --- the smoke -------------------------------------------------------------------------------------------------


def tail(output: str, lines: int = 20) -> list[str]:
    """The last lines of a command's output, progress bars (carriage returns) reduced to their last state."""
    out = [line.rsplit("\r", 1)[-1].rstrip() for line in output.replace("\r\n", "\n").split("\n")]
    return [line for line in out if line.strip()][-lines:]


def probe_file() -> Path:
    """The file of the one-line change: the package's __init__, wherever the package's modules move."""
    init = ROOT / "medbench" / "__init__.py"
    return init if init.exists() else sorted((ROOT / "medbench").rglob("*.py"))[0]


def rebuild_after_one_line_change(client: str, env: dict[str, str], built: dict) -> dict:
    probe = probe_file()
    original = probe.read_bytes()
    line = f"# docker-smoke: a one-line change for the rebuild time ({now()})\n"
    args = [a for a in built["args"] if a != "--no-cache"]  # the rebuild is the layer cache's measure
    iidfile = STATE / "rebuild.iid"
    cmd = build_command(client, f"{TAG}:smoke-rebuild", built["base_image"], args, iidfile)
    try:
        probe.write_bytes(original + line.encode())
        print("docker-smoke: rebuild after appending one line to", probe.relative_to(ROOT), flush=True)
        rc, seconds, log = stream(cmd, env, STATE / "rebuild.log")
    finally:
        probe.write_bytes(original)
    assert sha256(probe) == hashlib.sha256(original).hexdigest()
    quiet([client, "rmi", f"{TAG}:smoke-rebuild"])
    return {
        "change": f"one comment line appended to {probe.relative_to(ROOT)}",
        "command": shown(cmd),
        "rc": rc,
        "seconds": seconds,
        **build_steps(log),
    }


def run_command(name: str, cmd: list[str]) -> tuple[dict, str]:
    print(f"\ndocker-smoke: {name}: {shown(cmd)}", flush=True)
    rc, seconds, output = stream(cmd)
    return {"name": name, "command": shown(cmd), "rc": rc, "seconds": seconds, "tail": tail(output)}, output


def scratch_results(client: str, uid: int) -> Path:
    """An empty results/ for the eval to write into, writable by the image's user and no one else's results."""
    results = STATE / "smoke" / "results"
    if results.exists():
        # Written by the image's user in an earlier smoke: removed as root in a container, from the host.
        as_root = [client, "run", "--rm", "--network", "none", "--user", "0"]
        quiet([*as_root, "-v", f"{results.parent}:/smoke", TAG, "rm", "-rf", "/smoke/results"])
        shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(results, uid, uid)
    elif os.getuid() != uid:
        results.chmod(0o777)  # a host user whose uid differs from the image's (see MEDBENCH_UID)
    return results


def check_eval_record(results: Path, uid: int, git_sha: str) -> dict:
    records = sorted(results.rglob("record.json"))
    if not records:
        return {"ok": False, "error": f"no record.json under the mounted {results.relative_to(ROOT)}"}
    record = json.loads(records[0].read_text())
    owners = sorted({p.stat().st_uid for p in results.rglob("*")})
    out = {
        "path": str(records[0].relative_to(results)),
        "owners_uid": owners,
        "git_sha": record.get("git_sha"),
        "versions": {k: record.get("versions", {}).get(k) for k in ("medbench", "torch", "transformers")},
    }
    out["ok"] = owners == [uid]
    if "git_sha" in record and record["git_sha"] != git_sha:
        out["ok"] = False
        out["error"] = f"the record's git_sha is not the image's MEDBENCH_GIT_SHA {git_sha}"
    return out


def check_secret(client: str, bundle: str | None) -> dict:
    """The CA bundle was a build secret: not a file, an environment variable or a history line of the image."""
    config = json.loads(quiet([client, "image", "inspect", TAG]).stdout)[0]["Config"]
    history = quiet([client, "history", "--no-trunc", "--format", "{{.CreatedBy}}", TAG]).stdout
    absent = quiet([client, "run", "--rm", "--network", "none", TAG, "test", "!", "-e", "/run/secrets/ca.crt"])
    env_names = [e.split("=", 1)[0] for e in config.get("Env") or []]
    out = {
        "passed_at_build": bundle is not None,
        "file_absent": absent.returncode == 0,
        "env_absent": not {"PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"} & set(env_names),
        "not_in_history": "BEGIN CERTIFICATE" not in history,
    }
    out["ok"] = out["file_absent"] and out["env_absent"] and out["not_in_history"]
    return out


def smoke() -> int:
    client, env = docker_client()
    ensure_daemon(client)
    if not BUILD_RECORD.exists():
        raise Failure("no build record: run `just docker-build` first")
    built = json.loads(BUILD_RECORD.read_text())
    if image_id(client, TAG) != built["image_id"]:
        raise Failure(f"`{TAG}` is not the image `just docker-build` last built: run `just docker-build`")
    if built["inputs_sha256"] != inputs_sha256():
        raise Failure("the Dockerfile or constraints changed since `just docker-build`: run it again")
    image = json.loads(quiet([client, "image", "inspect", TAG]).stdout)[0]
    git_sha = next((e.split("=", 1)[1] for e in image["Config"]["Env"] if e.startswith("MEDBENCH_GIT_SHA=")), "")

    rebuild = rebuild_after_one_line_change(client, env, built)

    uid = int(quiet([client, "run", "--rm", "--network", "none", TAG, "id", "-u"]).stdout.strip() or -1)
    results = scratch_results(client, uid)
    quiet([client, "volume", "rm", "-f", SMOKE_CACHE_VOLUME])
    # Offline (no network, HF_HUB_OFFLINE) as on these machines; the converted model in a volume, so
    # the demo converts the GGUF as on first use and the eval reuses it.
    run = [client, "run", "--rm", "--network", "none", "-e", "HF_HUB_OFFLINE=1"]
    cache = ["-v", f"{SMOKE_CACHE_VOLUME}:/cache/medbench"]
    results_mount = ["-v", f"{results}:/opt/medbench/results"]
    commands = []
    for name, cmd in [
        ("help", [client, "run", "--rm", TAG, *shlex.split("medbench --help")]),
        ("demo", [*run, *cache, TAG, *shlex.split("just demo --sample 5")]),
        ("eval", [*run, *cache, *results_mount, TAG, *shlex.split("just eval gemma3-270m --limit 3")]),
    ]:
        commands.append(run_command(name, cmd)[0])
    # No GPU to ask: DeepSpeed is told its accelerator, the extension builder the GPUs' architecture (H100).
    gpu_env = ["-e", "DS_ACCELERATOR=cuda", "-e", "TORCH_CUDA_ARCH_LIST=9.0"]
    gpu_cmd = [*run, *gpu_env, TAG, "python3", "docker/gpu-check.py"]
    gpu_result, output = run_command("gpu-check", gpu_cmd)
    gpu_result["tail"] = []  # its report is below
    commands.append(gpu_result)
    try:
        gpu = json.loads(tail(output, 1)[0])
    except (IndexError, json.JSONDecodeError):
        gpu = {"ok": False, "error": "no JSON report on the last line"}
    quiet([client, "volume", "rm", "-f", SMOKE_CACHE_VOLUME])

    eval_record = check_eval_record(results, uid, git_sha)
    # Back to the host's user, who can then remove it.
    as_root = [client, "run", "--rm", "--network", "none", "--user", "0"]
    quiet([*as_root, "-v", f"{results}:/r", TAG, "chown", "-R", f"{os.getuid()}:{os.getgid()}", "/r"])
    secret = check_secret(client, ca_bundle())
    record = {
        "passed": False,
        "date": now(),
        "git_sha": git_sha,
        "host": {
            "cpus": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "kernel": platform.release(),
            "gpus": len(quiet(["nvidia-smi", "-L"]).stdout.splitlines()) if shutil.which("nvidia-smi") else 0,
            "docker": built["docker"],
        },
        "inputs_sha256": built["inputs_sha256"],
        "image": {
            "tag": TAG,
            "id": built["image_id"],
            "size_bytes": image["Size"],
            "user_uid": uid,
            "base_image": built["base_image"],
            "base_image_id": built["base_image_id"],
        },
        "build": {k: built[k] for k in BUILD_KEYS},
        "rebuild": rebuild,
        "commands": commands,
        "eval_record": eval_record,
        "gpu_check": gpu,
        "ca_bundle_secret": secret,
    }
    record["passed"] = bool(
        rebuild["rc"] == 0
        and rebuild["cached_steps"] > 0
        and all(c["rc"] == 0 for c in commands)
        and uid not in (0, -1)
        and eval_record["ok"]
        and gpu.get("ok")
        and secret["ok"]
    )
    RECORD.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    write_docs(record)
    print(f"\ndocker-smoke: {'passed' if record['passed'] else 'FAILED'}; {RECORD.relative_to(ROOT)}")
    for line in summary(record):
        print("  " + line)
    return 0 if record["passed"] else 1


# --- the numbers in the docs -----------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def size(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def build_phrase(build: dict) -> str:
    if build["cached_steps"] == 0:
        return f"a build with no layer cache took **{duration(build['seconds'])}**"
    return (
        f"the last build took **{duration(build['seconds'])}** with {build['cached_steps']} of"
        f" {build['steps']} steps from the layer cache"
    )


def summary(record: dict) -> list[str]:
    c = {command["name"]: command for command in record["commands"]}
    jit = record["gpu_check"].get("packages", {}).get("deepspeed", {}).get("fused_adam_jit_seconds")
    return [
        f"image {size(record['image']['size_bytes'])}; {build_phrase(record['build'])}; a rebuild after a"
        f" one-line code change took **{duration(record['rebuild']['seconds'])}**".replace("**", ""),
        *(f"{name}: exit {cmd['rc']} in {duration(cmd['seconds'])}" for name, cmd in c.items()),
        f"DeepSpeed FusedAdam JIT-compiled in {duration(jit)}" if jit is not None else "DeepSpeed FusedAdam: none",
    ]


def render(record: dict) -> dict[str, str]:
    """The generated text of each file's docker-smoke block."""
    host, build, rebuild = record["host"], record["build"], record["rebuild"]
    c = {command["name"]: command for command in record["commands"]}
    jit = record["gpu_check"]["packages"]["deepspeed"].get("fused_adam_jit_seconds")
    where = f"{host['cpus']} CPU cores, {'no GPU' if not host['gpus'] else str(host['gpus']) + ' GPUs'}"
    date = record["date"][:10]
    made = build.get("base_seconds")
    base = f", after {duration(made)} making the Debian base" if made else " (the Debian base already made)"
    docs = (
        f"Measured by `just docker-build && just docker-smoke` ({where}, {date};"
        f" [results/bench/docker-smoke.json](../results/bench/docker-smoke.json),"
        f" {'passed' if record['passed'] else 'FAILED'}): the image is **{size(record['image']['size_bytes'])}**;"
        f" {build_phrase(build)}{base}; a rebuild after a one-line code change took"
        f" **{duration(rebuild['seconds'])}** ({rebuild['steps'] - rebuild['cached_steps']} of {rebuild['steps']}"
        f" steps rerun). In the image, without a network: `medbench --help` {duration(c['help']['seconds'])},"
        f" `just demo --sample 5` {duration(c['demo']['seconds'])} (converting the GGUF, as on first use),"
        f" `just eval gemma3-270m --limit 3` {duration(c['eval']['seconds'])}, and the GPU packages' checks"
        f" {duration(c['gpu-check']['seconds'])}"
        + (f", of which DeepSpeed's FusedAdam JIT compile {duration(jit)}." if jit is not None else ".")
    )
    readme = (
        f"The GPU image, as `just docker-build && just docker-smoke` measured it ({where}):"
        f" {size(record['image']['size_bytes'])}; {build_phrase(build).replace('**', '')}; a rebuild after a"
        f" one-line code change {duration(rebuild['seconds'])} ([docs/container.md](docs/container.md))."
    )
    return {"docs": docs, "readme": readme}


def replace_block(text: str, body: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + body + "\n" + text[end:]


def block(text: str) -> str:
    return text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip("\n")


def write_docs(record: dict) -> None:
    rendered = render(record)
    for name, key in DOCS.items():
        path = ROOT / name
        text = path.read_text()
        if BEGIN not in text:
            print(f"docker-smoke: no docker-smoke block in {name}; its numbers are not written")
            continue
        path.write_text(replace_block(text, rendered[key]))


def main() -> int:
    action, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if action not in ("build", "smoke", "docs") or (args and action != "build"):
        print(__doc__)
        return 2
    try:
        if action == "build":
            build(args)
            return 0
        if action == "smoke":
            return smoke()
        write_docs(json.loads(RECORD.read_text()))
        return 0
    except Failure as err:
        print(f"docker-{action}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
