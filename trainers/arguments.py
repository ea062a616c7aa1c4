"""`just train` arguments: one dataclass, read by the command line and by trainers/sft.py's processes."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from medbench.options import (
    ArgumentParser,
    add_arguments,
    arg,
    checked_float,
    checked_int,
    from_args,
    non_negative_int,
    port_number,
    positive_int,
    seed_number,
)

MIXES = ("english", "korean", "both")
DEEPSPEED_CHOICES = ("zero2", "zero3", "none")
PROFILES = ("study", "fast", "protocol")
POSITIVE_CONTROLS = ("medqa", "kormedmcqa")


@dataclass
class TrainArguments:
    model: str = arg(
        positional=True, help="registry alias (medbench/models/models.yaml), local model directory, or hub id"
    )
    method: str = arg(positional=True, help="a method in trainers/methods/: full, lora, qlora")
    mix: str = arg("both", choices=MIXES, help="training data: english (MedQA), korean (KorMedMCQA), both (default)")
    cot: bool = arg(False, help="rows that have a chain of thought (`cot`) train on it instead of the bare letter")
    deepspeed: str | None = arg(
        None,
        help=f"{', '.join(DEEPSPEED_CHOICES)} (trainers/deepspeed/) or a JSON file; used on CUDA only (default: the "
        f"profile's; the study's is zero2)",
    )
    profile: str = arg(
        "study",
        choices=PROFILES,
        help="study: the reference study's recipe (default); fast: packed batches, no gradient checkpointing, no "
        "DeepSpeed on one GPU (trainers/profiles/fast.yaml); protocol: the same optimizer steps for every method, "
        "held-out loss every 50 steps, the best checkpoint kept (trainers/profiles/protocol.yaml)",
    )
    gpus: int = arg(
        1, type=positive_int, help="GPUs on this machine (one process each, started through `accelerate launch`)"
    )
    num_machines: int = arg(
        1, type=positive_int, help="machines in a multi-node run (accelerate launch --num_machines)"
    )
    machine_rank: int = arg(
        0, type=non_negative_int, help="this machine's rank in a multi-node run (0 is the main machine)"
    )
    main_process_ip: str | None = arg(None, help="the main machine's address in a multi-node run")
    main_process_port: int | None = arg(None, type=port_number, help="the main machine's port in a multi-node run")
    max_steps: int | None = arg(
        None,
        type=checked_int(1, hint="leave it out to train by epochs"),
        help="stop after this many optimizer steps (overrides epochs; at least 1: leave it out to train by epochs)",
    )
    epochs: float | None = arg(
        None,
        type=checked_float(0.0, hint="leave it out for the method's"),
        help="override the method's num_train_epochs (above 0; a fraction trains part of an epoch)",
    )
    limit: int | None = arg(None, type=positive_int, help="train on a seeded sample of N examples (smoke runs)")
    seed: int | None = arg(
        None,
        type=seed_number,
        help="the training seed (default: the method's); the checkpoint folder and record take an -sSEED suffix",
    )
    positive_control: str | None = arg(
        None,
        choices=POSITIVE_CONTROLS,
        help="a positive control: train on a seeded half of this dataset's TEST questions with their answers, "
        "instead of the mix; the record lists them as contaminated and the report checks both halves (never in "
        "the comparisons between variants)",
    )
    eval_limit: int | None = arg(
        None,
        type=non_negative_int,
        help="evaluate on a seeded sample of N KorMedMCQA valid examples (0: no evaluation)",
    )
    output_dir: str | None = arg(None, help="default: checkpoints/<alias>-<method>/ (MEDBENCH_CHECKPOINTS)")
    force: bool = arg(False, help="delete the output directory's run and train again")
    set: list[str] = arg(
        default_factory=list,
        metavar="KEY=VALUE",
        help="override a training argument (any TRL SFTConfig field), e.g. --set learning_rate=1e-4",
    )


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or ArgumentParser(prog="medbench train")
    add_arguments(parser, TrainArguments)
    return parser


def parse_args(argv: list[str] | None = None) -> TrainArguments:
    return from_args(TrainArguments, build_parser().parse_args(argv))
