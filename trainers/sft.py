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
from transformers import TrainerCallback

from medbench.data.checksums import verify_splits
from medbench.errors import MedbenchError
from medbench.models.loading import base_weights
from medbench.models.registry import resolve
from medbench.models.shapes import RANDOM_MARKER
from medbench.paths import checkpoints_dir
from medbench.records.io import RecordError, claim_dir, config_changes, read_json
from medbench.settings import DEFAULT_SEED
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
    """One training run; returns its train record (the existing one for a finished run of the same arguments)."""
    started = time.perf_counter()
    plan = preflight(args)
    finished = finished_record(args, plan)
    if finished is not None:
        return finished
    config = {**plan.run_config, **data_config(args)}
    # The data verified against SHA256SUMS before the run claims its folder or loads a model.
    data_files = verify_splits(sft_data.splits_read(args.mix, args.positive_control))
    if is_rank0():
        claim_dir(
            plan.output_dir,
            config,
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
    # Every process leaves together: the others wait here until rank 0 has written the record, so no group is torn
    # down while a peer still works (a gloo group destroyed early has left a rank hanging at exit).
    trainer.accelerator.wait_for_everyone()
    if hasattr(trainer, "end"):  # transformers >= 5.18: finish trackers, destroy the process group
        trainer.end()
    return record


def finished_record(args: TrainArguments, plan: Plan) -> dict | None:
    """The record of a finished run of these very arguments in the plan's output folder, or None (nothing finished
    there, or --force). A finished run of other arguments is refused with the remedy: it is never taken for this
    one, and never trained over without --force."""
    record_path = plan.output_dir / TRAIN_RECORD
    if args.force or not record_path.exists():
        return None
    config_path = plan.output_dir / TRAIN_CONFIG
    try:
        previous = read_json(config_path) if config_path.exists() else {}
        record = read_json(record_path)
    except RecordError as e:
        raise TrainError(f"{e}; --force trains it again") from None
    config = {**plan.run_config, **data_config(args)}
    changed = config_changes(
        previous if isinstance(previous, dict) else {}, json.loads(json.dumps(config, default=str))
    )
    if changed:
        raise TrainError(
            f"{plan.output_dir} already holds a finished training run with other {', '.join(changed)}; "
            f"--force trains it again with these arguments, or --output-dir keeps both"
        )
    print(f"medbench train: {plan.output_dir.name} is already trained ({record_path}); --force trains it again")
    return record


def data_config(args: TrainArguments) -> dict:
    """What the examples are, as train_config.json records it (a finished run is only reused for the same)."""
    return {
        "mix": args.mix,
        "cot": args.cot,
        "limit": args.limit,
        "eval_limit": args.eval_limit,
        "positive_control": args.positive_control,
    }


def checkpoint_name(args: TrainArguments, alias: str, method: str) -> str:
    """<alias>-<method>[-<profile>][-positive-<dataset>][-s<seed>]: where the weights and the record go by default."""
    name = f"{alias}-{method}{suffix(args.profile)}"
    if args.positive_control:
        name += f"-positive-{args.positive_control}"
    return name + (f"-s{args.seed}" if args.seed is not None else "")


def check_arguments(args: TrainArguments) -> None:
    """Numbers that would train nothing, or something else than asked, refused before anything loads."""
    if args.epochs is not None and not args.epochs > 0:
        raise TrainError(f"--epochs {args.epochs}: a number of epochs > 0 (leave it out for the method's)")
    if args.max_steps is not None and args.max_steps < 1:
        raise TrainError(f"--max-steps {args.max_steps}: a number of steps >= 1 (leave it out to train by epochs)")
    for name in ("limit", "eval_limit"):
        value = getattr(args, name)
        low = 0 if name == "eval_limit" else 1
        if value is not None and value < low:
            raise TrainError(f"--{name.replace('_', '-')} {value}: a whole number >= {low}")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        raise TrainError(f"--seed {args.seed}: a whole number from 0 to 2**32 - 1")


def preflight(args: TrainArguments, launching: bool = False) -> Plan:
    """Every refusal (unknown model or method, no CUDA for QLoRA, a contradicting DeepSpeed config).

    `launching`: checked by `medbench train` before it starts the training processes, for the world size they will
    have (--gpus x --num-machines), saying nothing that the processes will say again."""
    check_arguments(args)
    spec = resolve(args.model)
    method = load_method(args.method, spec.alias)
    cuda = torch.cuda.is_available()
    if method.requires_cuda and not cuda:
        raise TrainError(
            f"method {method.name!r} ({method.description}) needs a CUDA GPU, and none is visible; "
            f"run it on a GPU machine, or use `lora` here"
        )
    world_size = args.gpus * args.num_machines if launching else int(os.environ.get("WORLD_SIZE", "1"))
    if args.gpus > 1 and world_size == 1:
        raise TrainError(
            f"--gpus {args.gpus} needs one process per GPU: run `just train {args.model} {args.method} "
            f"--gpus {args.gpus} ...`, which starts them"
        )
    training = training_arguments(method, args)
    if args.seed is not None:
        training["seed"] = args.seed
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
        if not launching:
            print(f"medbench train: {notes[-1]}", file=sys.stderr)
    # A profile's, seed's or positive control's checkpoint sits beside the study's, never over it.
    output_dir = (
        Path(args.output_dir) if args.output_dir else checkpoints_dir() / checkpoint_name(args, spec.alias, method.name)
    )
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
    loss_floor: dict | None = None  # the letter prior's held-out loss (sft_data.loss_floor)
    contaminated: dict | None = None  # a positive control's test questions


def prepare_data(args: TrainArguments, plan: Plan) -> Data:
    """The eval tasks' prompts (rendered by lm-eval), tokenized lengths, too-long examples dropped."""
    from transformers import AutoTokenizer

    seed = plan.training.get("seed", DEFAULT_SEED)
    if args.positive_control:
        train_ds, sources = sft_data.positive_control_dataset(args.positive_control, args.limit, seed)
    else:
        train_ds, sources = sft_data.train_dataset(args.mix, args.cot, args.limit, seed)
    eval_ds, eval_sources = sft_data.eval_dataset(args.eval_limit, seed)
    base = base_weights(plan.spec)
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=plan.spec.trust_remote_code)
    tokenizer = sft_data.without_build_copies(tokenizer)
    max_length = plan.training.get("max_length", 1024)
    train_ds, train_lengths = sft_data.drop_too_long(train_ds, tokenizer, max_length)
    eval_ds, eval_lengths = sft_data.drop_too_long(eval_ds, tokenizer, max_length)
    data = Data(train_ds, eval_ds, sources, eval_sources, train_lengths, eval_lengths, tokenizer, base)
    data.loss_floor = sft_data.loss_floor(eval_ds, tokenizer)
    if args.positive_control:
        data.contaminated = {"dataset": args.positive_control, "split": "test", "ids": sorted(train_ds["id"])}
    return data


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
    if data.loss_floor:
        callbacks = (*callbacks, FloorBesideLoss(data.loss_floor["per_token"]))
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


class FloorBesideLoss(TrainerCallback):
    """Prints every held-out loss beside the letter prior's (what a model that knows nothing reaches)."""

    def __init__(self, floor: float):
        self.floor = floor

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_loss" in metrics and state.is_world_process_zero:
            print(
                f"medbench train: step {state.global_step}: held-out loss {metrics['eval_loss']:.4f} "
                f"(letter-prior floor {self.floor:.4f})",
                file=sys.stderr,
            )


def is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


if __name__ == "__main__":
    sys.exit(main())
