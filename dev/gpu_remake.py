"""The committed results, made again on one GPU with today's code: every job a `medbench` command, run side by side.

    python dev/gpu_remake.py --part records --deadline 540 --out $OUT     # trainings, then every evaluation
    python dev/gpu_remake.py --part benches --deadline 540 --out $OUT     # bench eval (warm, end to end), decode
    python dev/gpu_remake.py --part records --tiny DIR --deadline 900     # the same plan at toy size, on a CPU

The 270M's five variants against base (bnb, AWQ made here with llmcompressor, and full/LoRA/QLoRA fine-tuned
under the protocol profile with three seeds each), each evaluated zero-shot `mc` with every option rotation; the
base also in fp32 and as cloze; a positive control; SmolLM2-135M-Instruct `mc` (rotations) and zero-shot `gen`
through its chat template. Small models leave a GPU mostly idle, so the jobs run side by side (the GPU's memory
sets how many), each a process with its own log; a job waits for the jobs it needs (an evaluation of fine-tuned
weights for their training). A job that finished is not run again when the part is run again on the same machine
(its marker under --work), so a part cut short by its deadline continues in the next call. At the end, or at the
deadline (running jobs are stopped and say so), the records are packed into $OUT (at most 8 files of 15 MB: what a
device call brings back): runs without their response caches, training and bench records, every job's log, and
status.json (each job's command, exit status and seconds).

Environment: MEDBENCH_CACHE, MEDBENCH_RESULTS and MEDBENCH_CHECKPOINTS under --work; MEDBENCH_GIT_SHA and
MEDBENCH_SOURCE_FINGERPRINT as given (the records say whether the code that ran has that commit's fingerprint).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (1, 2, 3)
METHODS = ("full", "lora", "qlora")
PACK_BYTES = 15 * 2**20
PACKS = 7  # and status.json: 8 files


@dataclass
class Job:
    name: str
    args: list[str]  # a medbench command (python -m medbench.cli ARGS), or a python module with "-m"
    needs: tuple[str, ...] = ()
    env: dict = field(default_factory=dict)
    module: str = "medbench.cli"


def model_jobs(model: str, tiny: bool) -> list[Job]:
    """The `records` part: trainings, evaluations, AWQ. `tiny` shrinks every size for a CPU rehearsal."""
    limit = ["--limit", "2"] if tiny else []
    perm = ["--set", "permute=cyclic", *limit]
    steps = ["--max-steps", "2", "--limit", "8", "--eval-limit", "4", "--set", "eval_steps=1", "--set", "save_steps=1"]
    steps = steps if tiny else []
    jobs = []
    for method in METHODS:
        if tiny and method == "qlora":
            continue  # bitsandbytes needs CUDA
        for seed in SEEDS[:1] if tiny else SEEDS:
            name = f"{method}-s{seed}"
            checkpoint = f"{Path(model).name}-{method}-protocol-s{seed}"
            jobs.append(
                Job(f"train-{name}", ["train", model, method, "--profile", "protocol", "--seed", str(seed), *steps])
            )
            jobs.append(
                Job(
                    f"eval-{name}",
                    [
                        "eval",
                        model,
                        method,
                        "--checkpoint",
                        checkpoint,
                        "--run-id",
                        f"gemma3-270m-{name}-mc-perm",
                        *perm,
                    ],
                    (f"train-{name}",),
                )
            )
            jobs.append(
                Job(
                    f"cloze-{name}",
                    ["eval", model, method, "--checkpoint", checkpoint, "--mode", "cloze", *limit]
                    + ["--run-id", f"gemma3-270m-{name}-cloze"],
                    (f"train-{name}",),
                )
            )
    positive = f"{Path(model).name}-lora-protocol-positive-medqa-s1"
    jobs += [
        Job(
            "train-positive",
            ["train", model, "lora", "--profile", "protocol", "--positive-control", "medqa", "--seed", "1", *steps],
        ),
        Job(
            "eval-positive",
            [
                "eval",
                model,
                "lora",
                "--checkpoint",
                positive,
                "--tasks",
                "medqa",
                "--run-id",
                "gemma3-270m-positive-control-medqa-mc-perm",
                *perm,
            ],
            ("train-positive",),
        ),
        Job("eval-base", ["eval", model, "base", "--run-id", "gemma3-270m-base-mc-perm", *perm]),
        Job(
            "eval-base-fp32",
            ["eval", model, "base", "--set", "dtype=float32", "--run-id", "gemma3-270m-base-mc-fp32", *limit],
        ),
        Job("cloze-base", ["eval", model, "base", "--mode", "cloze", "--run-id", "gemma3-270m-base-cloze", *limit]),
    ]
    if not tiny:
        jobs += [
            Job("eval-bnb", ["eval", model, "bnb", "--run-id", "gemma3-270m-bnb-mc-perm", *perm]),
            Job("eval-smollm2", ["eval", "smollm2-135m", "base", "--run-id", "smollm2-135m-base-mc-perm", *perm]),
            Job(
                "gen-smollm2",
                [
                    "eval",
                    "smollm2-135m",
                    "base",
                    "--mode",
                    "gen",
                    "--batch-size",
                    "256",
                    "--run-id",
                    "smollm2-135m-base-gen-chat",
                ],
            ),
            # AWQ with llmcompressor, in the image's own transformers (llmcompressor pins an older one): its
            # environment drops the carried packages that newer transformers needs.
            Job("quantize-awq", ["quantize-awq", model, "--source", "BASE"], env={"MEDBENCH_AWQ_ENV": "1"}),
            Job("eval-awq", ["eval", model, "awq", "--run-id", "gemma3-270m-awq-mc-perm", *perm], ("quantize-awq",)),
        ]
    return jobs


def bench_jobs(model: str, tiny: bool) -> list[Job]:
    if tiny:
        return [
            Job(
                "bench-eval",
                [
                    "bench",
                    "eval",
                    "--model",
                    model,
                    "--modes",
                    "mc,gen",
                    "--limit",
                    "1",
                    "--study-limit",
                    "1",
                    "--end-to-end",
                ],
            )
        ]
    # The user's path first (every question, end to end, beside lm-eval's CLI on the first 16 per task), then the
    # 8B-shape decode, then the warm figures with the engine's ablations on the first 40 questions per task.
    return [
        Job(
            "bench-e2e",
            ["bench", "eval", "--modes", "mc,gen,cot", "--limit", "1", "--study-limit", "0", "--baseline-limit", "0"]
            + ["--flip-sample", "0", "--end-to-end", "--stock-limit", "16"],
        ),
        Job("bench-decode-8b", ["bench", "eval", "--decode-shape", "qwen3-8b", "--decode-batches", "64,128,256"]),
        Job(
            "bench-warm",
            ["bench", "eval", "--modes", "mc,gen,cot", "--ablations", "--study-limit", "1", "--baseline-limit", "8"]
            + ["--limit", "40"],
        ),
        Job("bench-decode-270m", ["bench", "eval", "--decode-shape", "gemma3-270m", "--decode-batches", "64,128,256"]),
    ]


class Runner:
    def __init__(self, jobs: list[Job], work: Path, slots: int, deadline: float, base: str):
        """`deadline`: the time.monotonic() at which running jobs are stopped."""
        self.jobs = {j.name: j for j in jobs}
        self.work, self.slots, self.deadline, self.base = work, slots, deadline, base
        (work / "done").mkdir(parents=True, exist_ok=True)
        (work / "logs").mkdir(parents=True, exist_ok=True)
        self.status: dict[str, dict] = {}

    def done(self, name: str) -> bool:
        return (self.work / "done" / name).exists()

    def command(self, job: Job) -> tuple[list[str], dict]:
        args = [self.base if a == "BASE" else a for a in job.args]
        env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false"}
        if job.env.get("MEDBENCH_AWQ_ENV"):
            # The image's transformers for llmcompressor: the carried site of newer packages left off the path.
            env["PYTHONPATH"] = os.pathsep.join([os.environ.get("MEDBENCH_AWQ_SITE", ""), str(ROOT)])
        return [sys.executable, "-m", job.module, *args], env

    def run(self) -> None:
        running: dict[str, tuple[subprocess.Popen, float]] = {}
        pending = [n for n in self.jobs if not self.done(n)]
        failed: set[str] = set()
        while pending or running:
            for name, (proc, start) in list(running.items()):
                if proc.poll() is not None:
                    ok = proc.returncode == 0
                    self.status[name]["returncode"] = proc.returncode
                    self.status[name]["seconds"] = round(time.monotonic() - start, 1)
                    if ok:
                        (self.work / "done" / name).touch()
                    else:
                        failed.add(name)
                    del running[name]
                    print(
                        f"[remake] {name}: {'done' if ok else f'FAILED ({proc.returncode})'} in {self.status[name]['seconds']} s",
                        flush=True,
                    )
            if time.monotonic() > self.deadline:
                for name, (proc, start) in running.items():
                    proc.terminate()
                    self.status[name].update(
                        returncode=None, seconds=round(time.monotonic() - start, 1), stopped="deadline"
                    )
                for proc, _ in running.values():
                    try:
                        proc.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                for name in pending:
                    self.status.setdefault(name, {"not_started": "deadline"})
                print(f"[remake] deadline: stopped {sorted(running)}, not started {pending}", flush=True)
                return
            for name in list(pending):
                job = self.jobs[name]
                if any(
                    n in failed or (n in self.jobs and not self.done(n) and n not in pending and n not in running)
                    for n in job.needs
                ):
                    pending.remove(name)
                    self.status[name] = {"skipped": f"needs {', '.join(job.needs)}"}
                    failed.add(name)
                    continue
                if len(running) >= self.slots or not all(self.done(n) for n in job.needs):
                    continue
                cmd, env = self.command(job)
                with open(self.work / "logs" / f"{name}.log", "w") as log:  # the child keeps its own handle
                    log.write(f"$ {shlex.join(cmd)}\n")
                    log.flush()
                    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                running[name] = (proc, time.monotonic())
                self.status[name] = {"command": shlex.join(cmd[2:])}
                pending.remove(name)
                print(f"[remake] {name}: started ({len(running)} running, {len(pending)} waiting)", flush=True)
            time.sleep(1)


def pack(results: Path, work: Path, out: Path, part: str, status: dict) -> None:
    """Runs (without response caches), training and bench records and the jobs' logs, in archives of at most
    PACK_BYTES each, and status.json: only what changed since an earlier call packed it (work/packed.json), since
    that call's archives came back already."""
    out.mkdir(parents=True, exist_ok=True)
    ledger = work / "packed.json"
    packed = json.loads(ledger.read_text()) if ledger.exists() else {}
    items = []
    for path in sorted(results.rglob("*")):
        if path.is_file() and "cache" not in path.relative_to(results).parts:
            items.append((path, Path("results") / path.relative_to(results)))
    for path in sorted((work / "logs").glob("*.log")):
        items.append((path, Path("logs") / path.name))
    stamp = {str(name): [path.stat().st_size, path.stat().st_mtime_ns] for path, name in items}
    items = [(path, name) for path, name in items if packed.get(str(name)) != stamp[str(name)]]
    chunks: list[list[tuple[Path, Path]]] = []
    size = 0
    for path, name in items:
        bytes_ = path.stat().st_size
        if not chunks or size + bytes_ > PACK_BYTES:
            if len(chunks) == PACKS:
                status.setdefault("_left_out", []).append(str(name))
                continue
            chunks.append([])
            size = 0
        chunks[-1].append((path, name))
        size += bytes_
    for k, chunk in enumerate(chunks):
        with tarfile.open(out / f"{part}-{k}.tar", "w") as archive:
            for path, name in chunk:
                archive.add(path, arcname=str(name))
                packed[str(name)] = stamp[str(name)]
    ledger.write_text(json.dumps(packed))
    (out / f"{part}-status.json").write_text(json.dumps(status, indent=1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("records", "benches"), required=True)
    p.add_argument("--deadline", type=float, default=540, help="seconds after which running jobs are stopped")
    p.add_argument("--work", default="/tmp/remake", help="results, checkpoints, caches, logs, job markers")
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp/remake-out"))
    p.add_argument("--slots", type=int, default=0, help="jobs side by side (default: by GPU memory; 2 on a CPU)")
    p.add_argument("--tiny", default=None, help="a tiny model directory: the plan at toy size, on a CPU")
    args = p.parse_args(argv)
    deadline = time.monotonic() + args.deadline  # conversions and setup below count against it too
    work = Path(args.work)
    os.environ.setdefault("MEDBENCH_RESULTS", str(work / "results"))
    os.environ.setdefault("MEDBENCH_CHECKPOINTS", str(work / "checkpoints"))
    os.environ.setdefault("MEDBENCH_CACHE", str(work / "cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (os.environ.get("PYTHONPATH"), str(ROOT)) if x)
    sys.path.insert(0, str(ROOT))
    from medbench.launch import MULTICAST_OFF

    os.environ.update(MULTICAST_OFF)
    model = args.tiny or "gemma3-270m"
    slots = args.slots
    if not slots:
        import torch

        gib = torch.cuda.get_device_properties(0).total_memory / 2**30 if torch.cuda.is_available() else 0
        slots = 14 if gib > 100 else 8 if gib else 2
        if args.part == "benches":
            slots = 1  # timings side by side with other work would measure the sharing
    base = model
    if not args.tiny:
        from medbench.models.loading import base_weights
        from medbench.models.registry import resolve

        base = base_weights(resolve(model))  # converted once, before the jobs that load it start side by side
        base_weights(resolve("smollm2-135m")) if args.part == "records" else None
    jobs = model_jobs(model, bool(args.tiny)) if args.part == "records" else bench_jobs(model, bool(args.tiny))
    # Trainings first (evaluations wait on them), then the letter evaluations the comparisons need, cloze last.
    jobs.sort(key=lambda j: (not j.name.startswith("train"), j.name.startswith("cloze-") and j.name != "cloze-base"))
    runner = Runner(jobs, work, slots, deadline, base)
    print(f"[remake] {args.part}: {len(jobs)} jobs, {slots} side by side, deadline {args.deadline} s", flush=True)
    runner.run()
    pack(Path(os.environ["MEDBENCH_RESULTS"]), work, Path(args.out), args.part, runner.status)
    failed = [n for n, s in runner.status.items() if s.get("returncode") not in (0, None) or "skipped" in s]
    print(f"[remake] packed into {args.out}; failed or skipped: {failed or 'none'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
