"""Supervised fine-tuning with TRL's SFTTrainer: `just train MODEL METHOD [ARGS]`.

    just train gemma3-1b lora                      # LoRA r=32/alpha=64, KorMedMCQA + MedQA, DeepSpeed ZeRO-2
    just train gemma3-1b full --gpus 4 --deepspeed zero3
    just train gemma3-1b qlora --mix korean --max-steps 200
    just train gemma3-1b full --profile fast       # packed batches, no checkpointing (trainers/profile.py)

MODEL is a registry alias, a local model directory (alias = its name) or a hub id; METHOD is a file in
trainers/methods/. The examples are the zero-shot evaluation prompts with the answer letter as the
completion (trainers/sft_data.py), the loss on the completion only. On CUDA the run uses the DeepSpeed
config (trainers/deepspeed/); on CPU it trains without DeepSpeed, in fp32, and says so in the record.
One process per GPU: trainers/launch.py starts them (`--gpus N`). Everything that can be refused
(unknown model or method, QLoRA without CUDA, a DeepSpeed config that contradicts the training
arguments) is refused before any weights or data load.

Writes checkpoints/<alias>-<method>/ (MEDBENCH_CHECKPOINTS): the model (full) or adapter (lora, qlora)
at the top level, the tokenizer, trainer_state.json, train_config.json, train_record.json,
loss_curve.png, and checkpoint-N/ every save_steps. Re-running resumes from the last checkpoint-N; a
finished run (train_record.json present) is left alone unless --force.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from medbench.data.checksums import verify_splits
from medbench.errors import MedbenchError
from medbench.models.loading import base_weights
from medbench.models.registry import resolve
from medbench.models.shapes import RANDOM_MARKER
from medbench.models.variants import checkpoint_path
from medbench.records.io import claim_dir
from trainers import record as rec
from trainers import sft_data
from trainers.arguments import TrainArguments, parse_args
from trainers.config import (
    Method,
    TrainError,
    check_deepspeed,
    deepspeed_path,
    load_deepspeed,
    load_method,
)
from trainers.model import load_model, single_process_distributed_env
from trainers.profile import load_profile, suffix, training_arguments
from trainers.record import TRAIN_RECORD
from trainers.timing import StepTimer

TRAIN_CONFIG = "train_config.json"
# May change between a run and its resumption; anything else in train_config.json may not.
RESUMABLE_CHANGES = {"max_steps", "num_train_epochs"}


def main(argv: list[str] | None = None) -> int:
    """The entry point of each training process (trainers/launch.py starts one per GPU)."""
    args = parse_args(argv)
    try:
        train(args)
    except MedbenchError as e:
        print(f"medbench train: error: {e}", file=sys.stderr)
        return 2
    return 0


@dataclass
class Plan:
    """Everything decided before any weights or data load."""

    spec: object
    method: Method
    training: dict
    ds_path: Path | None
    ds_config: dict | None
    use_deepspeed: bool
    cuda: bool
    output_dir: Path
    notes: list[str]
    model_info: dict = field(default_factory=dict)

    @property
    def run_config(self) -> dict:
        return {
            "model": self.spec.alias,
            "method": self.method.as_dict(),
            "training": self.training,
            "deepspeed": self.ds_path.name if self.use_deepspeed else None,
        }


def train(args: TrainArguments, callbacks: tuple = ()) -> dict:
    """One training run; returns its train record (the existing one for a finished run)."""
    started = time.perf_counter()
    plan = preflight(args)
    record_path = plan.output_dir / TRAIN_RECORD
    if record_path.exists() and not args.force:
        print(
            f"medbench train: {plan.spec.alias} {plan.method.name} is already trained ({record_path}); "
            f"--force trains it again"
        )
        return json.loads(record_path.read_text())
    # The data verified against SHA256SUMS before the run claims its folder or loads a model.
    data_files = verify_splits(sft_data.splits_read(args.mix))
    if is_rank0():
        claim_dir(
            plan.output_dir,
            {**plan.run_config, "mix": args.mix, "cot": args.cot, "limit": args.limit, "eval_limit": args.eval_limit},
            config_name=TRAIN_CONFIG,
            markers=(TRAIN_RECORD,),
            force=args.force,
            what="training run",
            allowed_changes=frozenset(f"training.{k}" for k in RESUMABLE_CHANGES),
        )
    data = prepare_data(args, plan)
    data.files = data_files
    trainer, timer, resume, tokens_before = build_trainer(plan, data, callbacks)
    train_output = trainer.train(resume_from_checkpoint=resume)
    eval_metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
    trainer.save_model(str(plan.output_dir))  # the model (full) or adapter (PEFT) and tokenizer, at the top level
    trainer.save_state()
    record = None
    if trainer.is_world_process_zero():
        record = rec.build_record(
            args,
            plan,
            data,
            trainer,
            timer,
            train_output,
            eval_metrics,
            resume,
            tokens_before,
            wall_seconds=time.perf_counter() - started,
        )
        rec.publish(record, plan.output_dir)
    if hasattr(trainer, "end"):  # transformers >= 5.18: finish trackers, destroy the process group
        trainer.end()
    return record


def preflight(args: TrainArguments) -> Plan:
    """Every refusal (unknown model or method, no CUDA for QLoRA, a contradicting DeepSpeed config)."""
    spec = resolve(args.model)
    method = load_method(args.method, spec.alias)
    cuda = torch.cuda.is_available()
    if method.requires_cuda and not cuda:
        raise TrainError(
            f"method {method.name!r} ({method.description}) needs a CUDA GPU, and none is visible; "
            f"run it on a GPU machine, or use `lora` here"
        )
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if args.gpus > 1 and world_size == 1:
        raise TrainError(
            f"--gpus {args.gpus} needs one process per GPU: run `just train {args.model} {args.method} "
            f"--gpus {args.gpus} ...`, which starts them"
        )
    training = training_arguments(method, args)
    profile = load_profile(args.profile)
    ds_path = deepspeed_path(profile.deepspeed(args.deepspeed, world_size))
    ds_config = None
    if ds_path is not None:  # checked on CPU too, against the arguments a GPU run would use
        ds_config = load_deepspeed(ds_path)
        check_deepspeed(ds_path, ds_config, training, world_size)
    notes = profile.notes(training, cuda)  # packed batches refused on attention that would mix their examples
    if spec.path and (Path(spec.path) / RANDOM_MARKER).exists():
        notes.append(f"random-init weights ({RANDOM_MARKER}): the run measures speed and memory, not learning")
    if not cuda:
        # use_cpu: without it accelerate forms no process group on CPU, and each of several processes
        # (machines, under `accelerate launch`) would train alone as rank 0.
        training.update(bf16=False, fp16=False, use_cpu=True)
        notes.append(
            "no CUDA: trained on CPU in fp32 (bf16 off)"
            + (f", without DeepSpeed ({ds_path.name} was checked, not used)" if ds_path else "")
        )
        print(f"medbench train: {notes[-1]}", file=sys.stderr)
    name = method.name + suffix(profile.name)  # a profile's checkpoint sits beside the study's, never over it
    output_dir = Path(args.output_dir) if args.output_dir else checkpoint_path(spec.alias, name)
    return Plan(
        spec=spec,
        method=method,
        training=training,
        ds_path=ds_path,
        ds_config=ds_config,
        use_deepspeed=ds_path is not None and cuda,
        cuda=cuda,
        output_dir=output_dir,
        notes=notes,
    )


@dataclass
class Data:
    train: object
    eval: object
    sources: list
    eval_sources: list
    train_lengths: dict
    eval_lengths: dict
    tokenizer: object
    base: str
    files: dict = field(default_factory=dict)  # {file under data/: sha256}, verified


def prepare_data(args: TrainArguments, plan: Plan) -> Data:
    """The eval tasks' prompts (rendered by lm-eval), tokenized lengths, too-long examples dropped."""
    from transformers import AutoTokenizer

    seed = plan.training.get("seed", 1234)
    train_ds, sources = sft_data.train_dataset(args.mix, args.cot, args.limit, seed)
    eval_ds, eval_sources = sft_data.eval_dataset(args.eval_limit, seed)
    base = base_weights(plan.spec)
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=plan.spec.trust_remote_code)
    tokenizer = sft_data.without_build_copies(tokenizer)
    max_length = plan.training.get("max_length", 1024)
    train_ds, train_lengths = sft_data.drop_too_long(train_ds, tokenizer, max_length)
    eval_ds, eval_lengths = sft_data.drop_too_long(eval_ds, tokenizer, max_length)
    return Data(train_ds, eval_ds, sources, eval_sources, train_lengths, eval_lengths, tokenizer, base)


def build_trainer(plan: Plan, data: Data, callbacks: tuple):
    """SFTTrainer over the model; returns (trainer, step timer, checkpoint to resume or None, tokens before it)."""
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    # The training arguments before the model: under ZeRO-3 they make from_pretrained load it partitioned.
    if plan.use_deepspeed:
        single_process_distributed_env()
    plan.training["eval_strategy"] = plan.training.get("eval_strategy", "steps") if len(data.eval) else "no"
    sft_config = SFTConfig(
        output_dir=str(plan.output_dir),
        deepspeed=str(plan.ds_path) if plan.use_deepspeed else None,
        completion_only_loss=True,
        include_num_input_tokens_seen="non_padding",
        **plan.training,
    )
    zero3 = plan.use_deepspeed and plan.ds_config.get("zero_optimization", {}).get("stage") == 3
    model, plan.model_info = load_model(data.base, plan.spec, plan.method, plan.cuda, zero3)
    peft_config = None
    if plan.method.peft:
        from peft import LoraConfig

        peft_config = LoraConfig(**plan.method.peft)
    timer = StepTimer()
    trainer = SFTTrainer(
        model=model,
        args=sft_config,
        train_dataset=data.train,
        eval_dataset=data.eval if len(data.eval) else None,
        processing_class=data.tokenizer,
        peft_config=peft_config,
        callbacks=[timer, *callbacks],
    )
    resume = get_last_checkpoint(str(plan.output_dir)) if plan.output_dir.is_dir() else None
    tokens_before = 0
    if resume:
        tokens_before = json.loads((Path(resume) / "trainer_state.json").read_text()).get("num_input_tokens_seen", 0)
        print(f"medbench train: resuming from {resume}", file=sys.stderr)
    return trainer, timer, resume, tokens_before


def is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


if __name__ == "__main__":
    sys.exit(main())
