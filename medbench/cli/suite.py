"""`medbench suite`: the benchmark suite's jobs, model x variant x prompt, all of them or one shard.

Models: gemma3-270m plus every registry alias in MEDBENCH_SUITE (space separated), or --models. Each job
is `medbench eval MODEL VARIANT PROMPT` with the suite's evaluation options, in a process of its own and
under its default run id: re-running the suite resumes every job, and a finished job answers from its
cache. One failing job fails the suite after the others have run.

--shard I/N (I from 0 to N-1) runs the jobs whose key "MODEL VARIANT PROMPT" hashes (SHA-256, as an
integer) to I modulo N. A job's shard depends on that job alone: every machine computes the same
partition without talking to the others, the N shards together hold each job exactly once, and adding a
model or a prompt moves no other job. Shards are balanced only on average (a few jobs over many shards
can leave some empty). A SLURM job array runs `just suite --shard $SLURM_ARRAY_TASK_ID/N` (docs/multinode.md);
`just merge` (or `just report --merge DIR`) then gathers the machines' results folders.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass

from medbench.cli.eval import LaunchOptions, RunOptions
from medbench.errors import MedbenchError
from medbench.options import add_arguments, arg, from_args, to_argv

HELP = "the benchmark suite (model x variant x prompt), or one shard of it (--shard I/N)"
DEFAULT_MODELS = ("gemma3-270m", "smollm2-135m")  # the two models whose real weights install from the package index


@dataclass
class SuiteOptions:
    models: str | None = arg(
        None, help="comma-separated models (default: gemma3-270m, smollm2-135m and each alias in MEDBENCH_SUITE)"
    )
    variants: str = arg("base", help="comma-separated variants (default base)")
    prompts: str = arg("zeroshot", help="comma-separated prompts (default zeroshot)")
    shard: str | None = arg(
        None,
        type=lambda text: shard_text(text),
        metavar="I/N",
        help="only the jobs whose key hashes to I modulo N (I from 0 to N-1)",
    )
    dry_run: bool = arg(False, help="print the jobs (of this shard) as commands, run nothing")


@dataclass(frozen=True)
class Job:
    model: str
    variant: str
    prompt: str

    @property
    def key(self) -> str:
        return f"{self.model} {self.variant} {self.prompt}"


def make_parser(sub) -> None:
    p = sub.add_parser("suite", help=HELP, description=__doc__)
    add_arguments(p, SuiteOptions)
    add_arguments(p, RunOptions, skip=("run_id",))  # each job has its own default run id
    add_arguments(p, LaunchOptions)


def parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or int(count) < 1 or int(index) >= int(count):
        raise MedbenchError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4")
    return int(index), int(count)


def shard_text(text: str) -> str:
    """The argument type of --shard: checked as it is parsed, kept as text (parse_shard reads it)."""
    import argparse

    try:
        parse_shard(text)
    except MedbenchError as e:
        raise argparse.ArgumentTypeError(f"{str(e).removeprefix(f'--shard {text!r}: ')}; got {text!r}") from None
    return text


def shard_of(job: Job, count: int) -> int:
    return int(hashlib.sha256(job.key.encode()).hexdigest(), 16) % count


def _split(text: str) -> list[str]:
    return [x for x in (s.strip() for s in text.replace(",", " ").split()) if x]


def all_jobs(opts: SuiteOptions, env: dict[str, str] | None = None) -> list[Job]:
    env = os.environ if env is None else env
    models = _split(opts.models) if opts.models else [*DEFAULT_MODELS, *_split(env.get("MEDBENCH_SUITE", ""))]
    models = list(dict.fromkeys(models))
    return [Job(*combo) for combo in itertools.product(models, _split(opts.variants), _split(opts.prompts))]


def shard_jobs(jobs: list[Job], index: int, count: int) -> list[Job]:
    return [job for job in jobs if shard_of(job, count) == index]


def run(args) -> int:
    opts = from_args(SuiteOptions, args)
    run_opts, launch = from_args(RunOptions, args), from_args(LaunchOptions, args)
    index, count = parse_shard(opts.shard)
    jobs = shard_jobs(all_jobs(opts), index, count)
    shared = to_argv(run_opts, launch)
    print(f"suite: {len(jobs)} job(s){f' in shard {index}/{count}' if count > 1 else ''}", file=sys.stderr)
    failed = []
    for job in jobs:
        cmd = [sys.executable, "-m", "medbench.cli", "eval", job.model, job.variant, job.prompt, *shared]
        print(f"suite: medbench eval {shlex.join(cmd[4:])}", file=sys.stderr, flush=True)
        if not opts.dry_run and subprocess.call(cmd) != 0:
            failed.append(job.key)
    if failed:
        print(f"suite: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
