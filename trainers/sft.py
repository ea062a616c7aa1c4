"""Supervised fine-tuning with TRL's SFTTrainer: `just train MODEL METHOD [ARGS]`.

    just train gemma3-1b lora                      # LoRA r=32/alpha=64, KorMedMCQA + MedQA, DeepSpeed ZeRO-2
    just train gemma3-1b full --gpus 4 --deepspeed zero3
    just train gemma3-1b qlora --mix korean --max-steps 200

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

import argparse
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

from harness import records
from harness.data import DataError
from harness.loading import base_weights, pick_attention, quantization_config
from harness.registry import RegistryError, resolve
from harness.shapes import RANDOM_MARKER
from harness.variants import VariantError, checkpoint_path
from trainers import record as rec
from trainers import sft_data
from trainers.config import (
    DEEPSPEED_CHOICES,
    RESERVED_TRAINING_KEYS,
    Method,
    TrainError,
    check_deepspeed,
    deepspeed_path,
    load_deepspeed,
    load_method,
    sft_config_fields,
)

TRAIN_RECORD = "train_record.json"
TRAIN_CONFIG = "train_config.json"
LOSS_CURVE = "loss_curve.png"
# May change between a run and its resumption; anything else in train_config.json may not.
RESUMABLE_CHANGES = {"max_steps", "num_train_epochs"}
# Steps left out of the steady-state throughput (at most a quarter of the run).
STEADY_SKIP_STEPS = 5


@dataclass
class TrainArguments:
    model: str
    method: str
    mix: str = "both"
    cot: bool = False
    deepspeed: str = "zero2"
    gpus: int = 1
    max_steps: int | None = None
    epochs: float | None = None
    limit: int | None = None
    eval_limit: int | None = None
    output_dir: str | None = None
    force: bool = False
    set: list[str] = field(default_factory=list)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="just train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="registry alias (harness/models.yaml), local model directory, or hub id")
    p.add_argument("method", help="a method in trainers/methods/: full, lora, qlora")
    p.add_argument("--mix", default="both", choices=sft_data.MIXES,
                   help="training data: english (MedQA), korean (KorMedMCQA), both (default)")
    p.add_argument("--cot", action="store_true",
                   help="rows that have a chain of thought (`cot`) train on it instead of the bare letter")
    p.add_argument("--deepspeed", default="zero2",
                   help=f"{', '.join(DEEPSPEED_CHOICES)} (trainers/deepspeed/) or a JSON file; used on CUDA only "
                        f"(default zero2)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs (one process each, started by trainers/launch.py)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (overrides epochs)")
    p.add_argument("--epochs", type=float, help="override the method's num_train_epochs")
    p.add_argument("--limit", type=int, help="train on a seeded sample of N examples (smoke runs)")
    p.add_argument("--eval-limit", type=int,
                   help="evaluate on a seeded sample of N KorMedMCQA valid examples (0: no evaluation)")
    p.add_argument("--output-dir", help="default: checkpoints/<alias>-<method>/ (MEDBENCH_CHECKPOINTS)")
    p.add_argument("--force", action="store_true", help="delete the output directory's run and train again")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training argument (any TRL SFTConfig field), e.g. --set learning_rate=1e-4")
    return p


def parse_args(argv: list[str] | None = None) -> TrainArguments:
    return TrainArguments(**vars(build_parser().parse_args(argv)))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        train(args)
    except (TrainError, DataError, RegistryError, VariantError, FileNotFoundError) as e:
        sys.exit(f"medbench train: error: {e}")


def train(args: TrainArguments, callbacks: tuple = ()) -> dict:
    """One training run; returns its train record (the existing one for a finished run)."""
    started = time.perf_counter()
    # 1. Everything that can be refused, before any weights or data load.
    spec = resolve(args.model)
    method = load_method(args.method, spec.alias)
    cuda = torch.cuda.is_available()
    if method.requires_cuda and not cuda:
        raise TrainError(f"method {method.name!r} ({method.description}) needs a CUDA GPU, and none is visible; "
                         f"run it on a GPU machine, or use `lora` here")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if args.gpus > 1 and world_size == 1:
        raise TrainError(f"--gpus {args.gpus} needs one process per GPU: run `just train {args.model} {args.method} "
                         f"--gpus {args.gpus} ...` (python -m trainers.launch), which starts them")
    training = training_arguments(method, args)
    ds_path = deepspeed_path(args.deepspeed)
    ds_config = None
    if ds_path is not None:  # checked on CPU too, against the arguments a GPU run would use
        ds_config = load_deepspeed(ds_path)
        check_deepspeed(ds_path, ds_config, training, world_size)
    use_deepspeed = ds_path is not None and cuda
    notes = []
    if spec.path and (Path(spec.path) / RANDOM_MARKER).exists():
        notes.append(f"random-init weights ({RANDOM_MARKER}): the run measures speed and memory, not learning")
    if not cuda:
        training.update(bf16=False, fp16=False)
        notes.append("no CUDA: trained on CPU in fp32 (bf16 off)"
                     + (f", without DeepSpeed ({ds_path.name} was checked, not used)" if ds_path else ""))
        print(f"medbench train: {notes[-1]}", file=sys.stderr)

    output_dir = Path(args.output_dir) if args.output_dir else checkpoint_path(spec.alias, method.name)
    record_path = output_dir / TRAIN_RECORD
    if record_path.exists() and not args.force:
        print(f"medbench train: {spec.alias} {method.name} is already trained ({record_path}); --force trains it again")
        return json.loads(record_path.read_text())
    rank0 = int(os.environ.get("RANK", "0")) == 0
    run_config = {"model": spec.alias, "method": method.as_dict(), "mix": args.mix, "cot": args.cot,
                  "limit": args.limit, "eval_limit": args.eval_limit, "training": training,
                  "deepspeed": ds_path.name if use_deepspeed else None}
    if rank0:
        claim_output_dir(output_dir, run_config, args.force)

    # 2. Data: the eval tasks' prompts, rendered by lm-eval (trainers/sft_data.py).
    seed = training.get("seed", 1234)
    train_ds, sources = sft_data.train_dataset(args.mix, args.cot, args.limit, seed)
    eval_ds, eval_sources = sft_data.eval_dataset(args.eval_limit, seed)

    # 3. Tokenizer, and examples too long for max_length dropped (TRL would cut off their answers).
    from transformers import AutoTokenizer
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    base = base_weights(spec)
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=spec.trust_remote_code)
    max_length = training.get("max_length", 1024)
    train_ds, train_lengths = drop_too_long(train_ds, tokenizer, max_length)
    eval_ds, eval_lengths = drop_too_long(eval_ds, tokenizer, max_length)

    # 4. The training arguments before the model: under ZeRO-3 they make from_pretrained load it partitioned.
    if use_deepspeed:
        single_process_distributed_env()
    eval_strategy = training.get("eval_strategy", "steps") if len(eval_ds) else "no"
    sft_config = SFTConfig(output_dir=str(output_dir), deepspeed=str(ds_path) if use_deepspeed else None,
                           completion_only_loss=True, include_num_input_tokens_seen="non_padding",
                           **{**training, "eval_strategy": eval_strategy})
    zero3 = use_deepspeed and ds_config.get("zero_optimization", {}).get("stage") == 3
    model, model_info = load_model(base, spec, method, cuda, zero3)
    peft_config = None
    if method.peft:
        from peft import LoraConfig

        peft_config = LoraConfig(**method.peft)

    timer = StepTimer()
    trainer = SFTTrainer(model=model, args=sft_config, train_dataset=train_ds,
                         eval_dataset=eval_ds if len(eval_ds) else None, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[timer, *callbacks])
    resume = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    tokens_before = 0
    if resume:
        tokens_before = json.loads((Path(resume) / "trainer_state.json").read_text()).get("num_input_tokens_seen", 0)
        print(f"medbench train: resuming from {resume}", file=sys.stderr)
    train_output = trainer.train(resume_from_checkpoint=resume)
    eval_metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
    trainer.save_model(str(output_dir))  # the model (full) or adapter (PEFT) and tokenizer, at the top level
    trainer.save_state()

    record = None
    if trainer.is_world_process_zero():
        state = trainer.state
        tokens_this_run = state.num_input_tokens_seen - tokens_before
        tokens_per_second = tokens_this_run / timer.seconds if timer.seconds else None
        params = rec.count_parameters(trainer.model)
        hardware = records.hardware()
        gpus = trainer.accelerator.num_processes
        curve = rec.loss_curve(state.log_history, output_dir / LOSS_CURVE, f"{spec.alias} {method.name}")
        record = {
            "model": spec.alias, "model_source": base, "params_b": spec.params_b,
            "method": method.name, "method_config": method.as_dict(),
            "training_arguments": {**training, "eval_strategy": eval_strategy},
            "output_dir": str(output_dir), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "data": {
                "mix": args.mix, "cot": args.cot, "sources": sources, "eval_sources": eval_sources,
                "limit": args.limit, "eval_limit": args.eval_limit,
                "format": "prompt = lm-eval task doc_to_text(row) of the zero-shot mc task; completion = "
                          "target_delimiter + answer letter (the continuation the mc task scores) + EOS; "
                          "loss on completion tokens only",
                "train_examples": len(train_ds), "eval_examples": len(eval_ds),
                "train_lengths": train_lengths, "eval_lengths": eval_lengths,
            },
            "examples": len(train_ds),
            "steps": state.global_step, "epochs": state.epoch,
            "tokens_trained": state.num_input_tokens_seen, "tokens_this_run": tokens_this_run,
            "resumed_from": resume, "resumed_from_step": _step_of(resume),
            "wall_seconds": round(time.perf_counter() - started, 2), "train_seconds": round(timer.seconds, 2),
            "train_tokens_per_second": round(tokens_per_second, 1) if tokens_per_second else None,
            "params": params,
            "mfu": rec.mfu(params["total"], tokens_per_second, hardware.get("gpu"), gpus),
            "mfu_formula": rec.MFU_FORMULA, "peak_bf16_flops_per_gpu": rec.peak_flops(hardware.get("gpu")),
            "steady_state": rec.with_mfu(timer.steady_state(), params["total"], hardware.get("gpu"), gpus),
            "memory": rec.memory(),
            # The last logged loss; a run shorter than logging_steps logged none: its mean loss then.
            "final_train_loss": rec.last(state.log_history, "loss") or train_output.training_loss,
            "final_eval_loss": eval_metrics.get("eval_loss"),
            "mean_train_loss_this_run": train_output.training_loss,
            "device": "cuda" if cuda else "cpu", "gpus": gpus,
            "precision": "bf16 mixed" if sft_config.bf16 else "fp32", **model_info,
            "deepspeed": deepspeed_record(trainer, ds_path, ds_config) if use_deepspeed else None,
            "notes": notes,
            "loss_curve": LOSS_CURVE if curve else None,
            "versions": records.package_versions(), "git_sha": records.git_sha(), "hardware": hardware,
        }
        records.write_json(record_path, record)
        loss = f"final train loss {record['final_train_loss']}, eval loss {record['final_eval_loss']}"
        print(f"medbench train: {spec.alias} {method.name}: {state.global_step} steps, {loss}; wrote {output_dir}")
    if hasattr(trainer, "end"):  # transformers >= 5.18: finish trackers, destroy the process group
        trainer.end()
    return record


def training_arguments(method: Method, args: TrainArguments) -> dict:
    """The method's SFTConfig arguments, then --set, --epochs, --max-steps (as a GPU run uses them)."""
    training = dict(method.training)
    allowed = sft_config_fields() - RESERVED_TRAINING_KEYS
    for item in args.set:
        if "=" not in item:
            raise TrainError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = (s.strip() for s in item.split("=", 1))
        if key not in allowed:
            reserved = " (set by trainers/sft.py itself)" if key in RESERVED_TRAINING_KEYS else ""
            raise TrainError(f"--set {key}: not a training argument{reserved}; any TRL SFTConfig field is")
        training[key] = _coerce(value)
    if args.epochs is not None:
        training["num_train_epochs"] = args.epochs
    if args.max_steps is not None:
        training["max_steps"] = args.max_steps
    return training


def _coerce(raw: str):
    low = raw.lower()
    if low in {"true", "false"}:
        return low == "true"
    if low in {"none", "null"}:
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def claim_output_dir(output_dir: Path, run_config: dict, force: bool) -> None:
    """Resuming needs the same run: a changed method, data or argument (but the step budget) is refused."""
    config_path = output_dir / TRAIN_CONFIG
    if force and output_dir.exists():
        ours = config_path.exists() or (output_dir / TRAIN_RECORD).exists() or not any(output_dir.iterdir())
        if not ours:
            raise TrainError(f"--force would delete {output_dir}, which holds no medbench training run; "
                             f"remove it yourself or choose another --output-dir")
        shutil.rmtree(output_dir)
    current = json.loads(json.dumps(run_config, default=str))
    if config_path.exists():
        previous = json.loads(config_path.read_text())
        changed = _changes(previous, current)
        if changed:
            raise TrainError(f"{output_dir} holds a run started with other {', '.join(changed)}; "
                             f"re-run it as it was to resume, or use --force (or another --output-dir) to start again")
    output_dir.mkdir(parents=True, exist_ok=True)
    records.write_json(config_path, current)


def _changes(previous: dict, current: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(previous) | set(current)):
        a, b = previous.get(key), current.get(key)
        if key in RESUMABLE_CHANGES and prefix == "training.":
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changes(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def drop_too_long(ds, tokenizer, max_length: int | None):
    """Examples whose prompt + completion + EOS exceed max_length are dropped and counted, never cut."""
    def lengths(batch):
        texts = [p + c for p, c in zip(batch["prompt"], batch["completion"])]
        return {"n_tokens": [len(ids) + 1 for ids in tokenizer(texts)["input_ids"]]}

    if len(ds) == 0:
        return ds, {"max_length": max_length, "dropped_too_long": 0, "max_tokens": None, "mean_tokens": None}
    # An explicit fingerprint: hashing the tokenizer (datasets' default) takes seconds for a 262k vocabulary.
    fingerprint = hashlib.sha256(f"{ds._fingerprint} {tokenizer.name_or_path} lengths".encode()).hexdigest()[:16]
    ds = ds.map(lengths, batched=True, new_fingerprint=fingerprint)
    n = ds["n_tokens"]
    kept = ds.filter(lambda row: row["n_tokens"] <= max_length) if max_length else ds
    stats = {"max_length": max_length, "dropped_too_long": len(ds) - len(kept), "max_tokens": max(n),
             "mean_tokens": round(sum(n) / len(n), 1)}
    return kept.remove_columns("n_tokens"), stats


def single_process_distributed_env() -> None:
    """DeepSpeed in one process without a launcher needs the distributed variables a launcher would set."""
    if "LOCAL_RANK" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def load_model(base: str, spec, method: Method, cuda: bool, zero3: bool):
    """The base weights, in the method's dtype on CUDA (fp32 on CPU), quantized at load for QLoRA."""
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, method.model_dtype) if cuda else torch.float32
    kwargs = {"dtype": dtype, "attn_implementation": pick_attention("auto", "cuda" if cuda else "cpu"),
              "trust_remote_code": spec.trust_remote_code}
    quantization = method.quantization
    if quantization:
        quantization = dict(quantization)
        if zero3:
            # ZeRO-3 shards parameters by dtype: 4-bit weights stored as bf16 can be sharded with the rest.
            quantization["bnb_4bit_quant_storage"] = "bfloat16"
        kwargs["quantization_config"] = quantization_config(quantization)
        if not zero3:
            from accelerate import PartialState

            kwargs["device_map"] = {"": PartialState().local_process_index}  # bitsandbytes quantizes on the GPU
    model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    info = {"model_dtype": str(dtype).replace("torch.", ""), "attn_implementation": model.config._attn_implementation,
            "quantization": quantization}
    return model, info


def deepspeed_record(trainer, ds_path: Path, ds_config: dict) -> dict:
    """The config file and, once DeepSpeed filled its "auto" values, the config it actually ran."""
    filled = None
    try:
        filled = trainer.accelerator.state.deepspeed_plugin.deepspeed_config
    except AttributeError:
        pass
    return {"file": str(ds_path), "config": ds_config, "resolved": json.loads(json.dumps(filled, default=str))}


def _step_of(checkpoint: str | None) -> int | None:
    return int(Path(checkpoint).name.rsplit("-", 1)[1]) if checkpoint else None


class StepTimer(TrainerCallback):
    """Seconds and tokens of each optimizer step (forward, backward, update), without evaluation or saving."""

    def __init__(self):
        self.steps: list[tuple[float, int]] = []
        self._start = None
        self._tokens = 0

    @property
    def seconds(self) -> float:
        return sum(s for s, _ in self.steps)

    def on_step_begin(self, args, state, control, **kwargs):
        _sync()
        self._start = time.perf_counter()
        self._tokens = state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        _sync()
        if self._start is not None:
            self.steps.append((time.perf_counter() - self._start, state.num_input_tokens_seen - self._tokens))
        self._start = None

    def steady_state(self) -> dict | None:
        """Throughput without the first steps (allocator warm-up, kernel selection, DeepSpeed's first buckets)."""
        skip = min(STEADY_SKIP_STEPS, len(self.steps) // 4)
        rest = self.steps[skip:]
        seconds = sum(s for s, _ in rest)
        if not rest or not seconds:
            return None
        durations = sorted(s for s, _ in rest)
        return {"skipped_first_steps": skip, "steps": len(rest),
                "tokens_per_second": round(sum(t for _, t in rest) / seconds, 1),
                "median_step_seconds": round(durations[len(durations) // 2], 4),
                "mean_tokens_per_step": round(sum(t for _, t in rest) / len(rest), 1)}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
