"""The committed record of `just docker-build && just docker-smoke` (results/bench/docker-smoke.json).

No Docker here: these read the record. It must have passed, be of the Dockerfile and constraints files as
they are now (a change to them means running the smoke again), and be what the docs' numbers say.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest
from packaging.version import Version

# The clone: the first folder above with pyproject.toml, wherever tests/ puts this file.
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
RECORD = ROOT / "results" / "bench" / "docker-smoke.json"


def load_image_py():
    spec = importlib.util.spec_from_file_location("docker_image", ROOT / "docker" / "image.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def image():
    return load_image_py()


@pytest.fixture(scope="module")
def record():
    assert RECORD.exists(), "no smoke record: run `just docker-build && just docker-smoke` and commit it"
    return json.loads(RECORD.read_text())


def test_the_smoke_passed(record):
    assert record["passed"] is True


def test_the_record_is_of_the_current_dockerfile_and_constraints(record, image):
    current = {name: hashlib.sha256((ROOT / name).read_bytes()).hexdigest() for name in image.INPUTS}
    changed = [name for name in current if record["inputs_sha256"].get(name) != current[name]]
    assert not changed, f"{changed} changed since the smoke: run `just docker-build && just docker-smoke` again"
    assert set(image.INPUTS) >= {"Dockerfile", "constraints.txt", "docker/constraints-gpu.txt"}


def test_the_record_has_what_issue_28_asks(record):
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", record["image"]["id"])
    assert record["image"]["size_bytes"] > 0
    assert record["build"]["seconds"] > 0 and record["rebuild"]["seconds"] > 0
    # The rebuild after a one-line change reused the dependency layers.
    assert record["rebuild"]["rc"] == 0 and 0 < record["rebuild"]["cached_steps"] < record["rebuild"]["steps"]
    commands = {c["name"]: c for c in record["commands"]}
    assert list(commands) == ["help", "demo", "eval", "gpu-check"]
    assert all(c["rc"] == 0 and c["seconds"] > 0 for c in commands.values())
    assert commands["help"]["command"].endswith("bench medbench --help")
    assert commands["demo"]["command"].endswith("bench just demo --sample 5")
    assert "/opt/medbench/results" in commands["eval"]["command"]
    assert commands["eval"]["command"].endswith("bench just eval gemma3-270m --limit 3")
    # The eval's record landed in the mounted results/, written by the image's non-root user.
    uid = record["image"]["user_uid"]
    assert uid != 0 and record["eval_record"]["ok"] and record["eval_record"]["owners_uid"] == [uid]
    assert record["ca_bundle_secret"]["ok"]


def test_the_gpu_packages_were_checked_and_say_what_was_not(record):
    gpu = record["gpu_check"]
    assert gpu["ok"] and gpu["uid"] != 0
    packages = gpu["packages"]
    assert set(packages) == {"torch", "bitsandbytes", "deepspeed", "compressed-tensors", "gptqmodel", "flash-attn"}
    assert all(p["ok"] and p["checked"] for p in packages.values())
    assert all(p.get("not_checked") for name, p in packages.items() if name != "flash-attn")
    assert packages["deepspeed"]["ops_prebuilt"] == []  # installed with DS_BUILD_OPS=0
    assert packages["torch"]["cuda"] == packages["torch"]["nvcc"]
    flash = packages["flash-attn"]  # installed, or the build's FLASH_ATTN policy said why not
    assert flash["installed"] or any("WARNING" in line or "skipped" in line for line in flash["build_log"])
    assert gpu["stack_differs_from_constraints"] == {} and "No broken requirements" in gpu["pip_check"]


def test_the_image_stack_is_the_image_constraints(record):
    """The installed versions the smoke saw are the merged constraints' pins (as the image resolves them)."""
    merged = subprocess.run(
        ["bash", str(ROOT / "docker" / "merge-constraints.sh"), "constraints.txt", "docker/constraints-gpu.txt"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pins = {}
    for line in merged.splitlines():
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.split("#", 1)[0].strip())
        if m:
            pins[re.sub(r"[-_.]+", "-", m[1]).lower()] = m[2]
    stack = record["gpu_check"]["stack"]
    assert {"torch", "cuda-toolkit", "nvidia-cuda-nvcc", "deepspeed", "bitsandbytes"} <= stack.keys()
    for name, version in stack.items():
        assert name in pins, f"{name} {version} is in the image but pinned nowhere"
        assert Version(Version(version).public) == Version(pins[name]), f"{name}: {version}, pinned {pins[name]}"


def test_the_docs_give_the_records_numbers(record, image):
    """README.md and docs/container.md carry the record's numbers, generated (`python docker/image.py docs`)."""
    rendered = image.render(record)
    for name, key in image.DOCS.items():
        text = (ROOT / name).read_text()
        assert image.BEGIN in text and image.END in text, f"{name}: no docker-smoke block"
        assert image.block(text) == rendered[key], f"{name}: run `python docker/image.py docs`"
