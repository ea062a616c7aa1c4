"""dev/gpu_scale.py's plumbing: the time budget, resumable records, logged child processes, GPU memory.

Imported first by the script: NVLink multicast is forced off here, for this process and every child.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from medbench.launch import MULTICAST_OFF  # noqa: E402

os.environ.update(MULTICAST_OFF)  # forced here, whatever the caller's environment says: every child inherits it
# Children run `python -m medbench.cli` from wherever this was started.
os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH")) if x)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

START = time.monotonic()


def elapsed_since_start() -> float:
    """Seconds since this script started: the clock a Budget reads unless it is given one (tests give one at 0)."""
    return time.monotonic() - START


EMBEDDED = "gemma3-270m"
# Expected seconds per unit on H100s (process start, load, work, save), to leave a unit for the next call
# rather than overrun this one. The train units run 6 steps (2 warm-up) on 256 examples.
EXPECTED = {
    "dp": 110,  # 4,282 questions of the 270M: start, load and one GPU's pass; less on several
    "sharded-270m": 200,  # two evaluations: one GPU, then sharded
    "oversize-bf16": 200,
    "oversize-nf4": 200,
    "8b-checkpoint": 120,  # the random Qwen3-8B-shape checkpoint written (once per machine)
    "8b-lora": 100,
    "8b-lora-fast": 100,
    "8b-full": 170,  # ZeRO-3 start, 6 steps, the checkpoint save
    "8b-qlora": 120,
    "batch-8b": 150,
    "1b": 80,
}


def log(message: str) -> None:
    print(f"[gpu_scale {elapsed_since_start():6.0f}s] {message}", file=sys.stderr, flush=True)


class Budget:
    """No new unit after `budget` seconds, nor one expected to end after `limit` (EXPECTED's estimates).

    `clock` gives the seconds elapsed since the start (0 at the start): by default this script's own, and in a test
    one it sets, so no decision depends on the machine's uptime or on floating-point sums of its monotonic clock."""

    def __init__(self, budget: float, limit: float, clock=elapsed_since_start):
        self.budget, self.limit, self.clock, self.left_over = budget, limit, clock, []

    def allows(self, unit: str, kind: str) -> bool:
        elapsed = self.clock()
        if elapsed > self.budget or elapsed + EXPECTED[kind] > self.limit:
            self.left_over.append(unit)
            return False
        return True

    def child_timeout(self) -> float:
        """Seconds a child process may run: until 60 s past the hard limit, so that the call ends in time."""
        return max(30.0, self.limit + 60 - self.clock())


class GpuMemoryPoller:
    """Peak memory in use on each GPU (nvidia-smi every 0.5 s): every process and its CUDA context counted."""

    def __init__(self):
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout
                for line in out.strip().splitlines():
                    index, used = (int(x) for x in line.split(","))
                    self.peak[index] = max(self.peak.get(index, 0), used)
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
            self._stop.wait(0.5)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def gib(self) -> list[float]:
        return [round(self.peak[i] / 1024, 2) for i in sorted(self.peak)]


def machine() -> dict:
    import torch

    from medbench.records import provenance

    return {
        "gpu": torch.cuda.get_device_name(0),
        "gpu_count": torch.cuda.device_count(),
        "hardware": provenance.hardware(),
        "versions": provenance.package_versions(),
        **provenance.code_state(),
    }


def record_path(out_dir: Path, part: str, facts: dict) -> Path:
    return out_dir / f"scale-{part}-{facts['gpu'].replace(' ', '-')}-x{facts['gpu_count']}.json"


def open_record(path: Path, part: str, facts: dict, fresh: bool, same: dict | None = None) -> dict:
    """The part's record so far (resumed), or a new one: measured on other code, packages or `same` facts
    (the model, the steps) starts over."""
    same = same or {}
    if path.exists() and not fresh:
        previous = json.loads(path.read_text())
        keys = ("gpu", "gpu_count", "git_sha", "versions")
        if all(previous.get(k) == facts[k] for k in keys) and all(previous.get(k) == v for k, v in same.items()):
            log(f"continuing {path} (measured: {', '.join(previous['units']) or 'nothing'})")
            return previous
        log(f"{path} was measured on other code, packages or settings: starting over")
    return {"part": part, **facts, **same, "units": {}}


def save(path: Path, record: dict) -> None:
    from medbench.records.io import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)


def run_logged(cmd: list[str], log_path: Path, env: dict | None = None, timeout: float | None = None) -> int:
    log(" ".join(cmd))
    with open(log_path, "w") as f:
        try:
            return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return 124


def tail(path: Path, n: int = 2500) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def out_of_memory(text: str) -> bool:
    return "out of memory" in text.lower() or "OutOfMemoryError" in text


def scratch() -> Path:
    """Where the evaluation runs, logs and model checkpoints of this script live (not results/: the report
    reads that); it outlives one call on a machine that stays warm."""
    from medbench.paths import cache_dir

    d = cache_dir() / "gpu_scale"
    (d / "logs").mkdir(parents=True, exist_ok=True)
    return d


def embedded_available() -> bool:
    """The real 270M: already converted here, or its PyPI package installed."""
    import importlib.util

    from medbench.models.registry import resolve
    from medbench.paths import cache_dir

    done = cache_dir() / EMBEDDED
    if (done / "config.json").exists() and (done / "medbench_source.json").exists():
        return True
    return importlib.util.find_spec(resolve(EMBEDDED).embedded["package"]) is not None


def tokenizer_dir(given: Path | None) -> Path:
    """A folder with tokenizer.json and tokenizer_config.json: `given` (its tokenizer.json may be gzipped,
    tokenizer.json.gz, to travel small), else the embedded model's."""
    if given is None:
        if not embedded_available():
            raise SystemExit("gpu_scale: the embedded model is not installed here: pass --tokenizer DIR")
        from medbench.models.loading import base_weights
        from medbench.models.registry import resolve

        return Path(base_weights(resolve(EMBEDDED)))
    given = Path(given)
    if (given / "tokenizer.json").exists():
        return given
    packed = given / "tokenizer.json.gz"
    if not packed.exists() or not (given / "tokenizer_config.json").exists():
        raise SystemExit(f"gpu_scale: --tokenizer {given} holds no tokenizer.json(.gz) and tokenizer_config.json")
    out = scratch() / "tokenizer"
    out.mkdir(exist_ok=True)
    with gzip.open(packed, "rb") as src, open(out / "tokenizer.json", "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copy(given / "tokenizer_config.json", out / "tokenizer_config.json")
    return out


def tokenizer(given: Path | None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir(given))
