"""Training methods (trainers/methods/*.yaml) and DeepSpeed configs (trainers/deepspeed/*.json) as data.

Both are checked when read, before any model or data loads: an unknown key in a method file is an
error naming the file and the key, and a DeepSpeed config whose explicit (non-"auto") values
contradict the training arguments is an error naming each mismatch. Nothing here imports DeepSpeed.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, fields
from functools import cache
from pathlib import Path

import yaml

from medbench.errors import MedbenchError
from medbench.models.variants import load_variants

TRAINERS_DIR = Path(__file__).resolve().parent
METHODS_DIR = TRAINERS_DIR / "methods"
DEEPSPEED_DIR = TRAINERS_DIR / "deepspeed"
DEEPSPEED_CHOICES = ("zero2", "zero3", "none")

METHOD_KEYS = {"extends", "description", "model_dtype", "peft", "quantization_from_variant", "training", "overrides"}
OVERRIDE_KEYS = {"model_dtype", "peft", "training"}  # what a per-model override may change
MODEL_DTYPES = ("float32", "bfloat16")
# Set by trainers/sft.py from its own arguments; a method file that sets them is refused.
RESERVED_TRAINING_KEYS = {
    "output_dir",
    "deepspeed",
    "resume_from_checkpoint",
    "completion_only_loss",
    "include_num_input_tokens_seen",
    "dataset_text_field",
}


class TrainError(MedbenchError):
    """A training request that cannot run; the message says why and what to do."""


@dataclass(frozen=True)
class Method:
    name: str
    path: str  # the method file (after `extends`, the chain of files it was merged from)
    description: str
    model_dtype: str  # on CUDA; a CPU run always loads float32
    peft: dict | None  # peft.LoraConfig arguments; None = full fine-tuning
    quantization: dict | None  # a transformers quantization config as data (from medbench/models/variants.yaml)
    quantization_from_variant: str | None
    requires_cuda: bool
    training: dict  # SFTConfig arguments
    override: str | None = None  # the model alias whose `overrides` entry was applied

    def as_dict(self) -> dict:
        return asdict(self)


@cache
def sft_config_fields() -> frozenset[str]:
    from trl import SFTConfig

    return frozenset(f.name for f in fields(SFTConfig) if f.init)


@cache
def lora_config_fields() -> frozenset[str]:
    from peft import LoraConfig

    return frozenset(f.name for f in fields(LoraConfig) if f.init)


def method_names(methods_dir: Path = METHODS_DIR) -> list[str]:
    return sorted(p.stem for p in methods_dir.glob("*.yaml") if not p.stem.startswith("_"))


def load_method(name: str, alias: str | None = None, methods_dir: Path = METHODS_DIR) -> Method:
    """The method `name`, its `extends` chain merged, and `alias`'s override applied if it has one."""
    names = method_names(methods_dir)
    if name not in names:
        raise TrainError(f"unknown method {name!r}; choose from {', '.join(names)}")
    raw, chain = _merged(name, methods_dir, ())
    overrides = raw.pop("overrides", None) or {}
    applied = None
    if alias is not None and alias in overrides:
        raw = _deep_merge(raw, overrides[alias])
        applied = alias
    if not raw.get("description"):
        raise TrainError(f"{methods_dir / (name + '.yaml')}: method {name!r} needs a description")
    model_dtype = raw.get("model_dtype", "float32")
    quantization = None
    requires_cuda = False
    if raw.get("quantization_from_variant"):
        variant = load_variants()[raw["quantization_from_variant"]]
        quantization = copy.deepcopy(variant.quantization)
        requires_cuda = variant.requires_cuda
    peft = raw.get("peft") or None
    return Method(
        name=name,
        path=" <- ".join(chain),
        description=raw["description"],
        model_dtype=model_dtype,
        peft=peft,
        quantization=quantization,
        quantization_from_variant=raw.get("quantization_from_variant"),
        requires_cuda=requires_cuda,
        training=dict(raw.get("training") or {}),
        override=applied,
    )


def _shown(path: Path) -> str:
    """A method file as the record shows it: relative to the repository when inside it (runs move machines)."""
    try:
        return str(path.resolve().relative_to(TRAINERS_DIR.parent))
    except ValueError:
        return str(path)


def _merged(name: str, methods_dir: Path, seen: tuple[str, ...]) -> tuple[dict, list[str]]:
    path = methods_dir / f"{name}.yaml"
    if name in seen:
        raise TrainError(f"{path}: `extends` loops back to {name!r} ({' -> '.join(seen + (name,))})")
    if not path.exists():
        raise TrainError(f"{methods_dir / (seen[-1] + '.yaml')}: extends {name!r}, but {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    validate_method_file(path, raw)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw, [_shown(path)]
    base, chain = _merged(parent, methods_dir, seen + (name,))
    return _deep_merge(base, raw), [_shown(path), *chain]


def validate_method_file(path: Path, raw: dict) -> None:
    if not isinstance(raw, dict):
        raise TrainError(f"{path}: expected a mapping of method keys, got {type(raw).__name__}")
    known_keys(path, "method", raw, METHOD_KEYS)
    validate_body(path, raw)
    overrides = raw.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise TrainError(f"{path}: overrides must map model aliases to changes")
    for alias, body in overrides.items():
        if not isinstance(body, dict):
            raise TrainError(f"{path}: overrides.{alias} must be a mapping")
        known_keys(path, f"overrides.{alias}", body, OVERRIDE_KEYS)
        validate_body(path, body, where=f"overrides.{alias}.")


def validate_body(path: Path, raw: dict, where: str = "") -> None:
    if "model_dtype" in raw and raw["model_dtype"] not in MODEL_DTYPES:
        raise TrainError(f"{path}: {where}model_dtype {raw['model_dtype']!r} is not one of {', '.join(MODEL_DTYPES)}")
    training = raw.get("training") or {}
    if not isinstance(training, dict):
        raise TrainError(f"{path}: {where}training must be a mapping of SFTConfig arguments")
    known_keys(path, f"{where}training", training, sft_config_fields(), kind="SFTConfig argument")
    reserved = sorted(set(training) & RESERVED_TRAINING_KEYS)
    if reserved:
        raise TrainError(
            f"{path}: {where}training sets {', '.join(reserved)}, which trainers/sft.py sets itself "
            f"(use its command-line arguments)"
        )
    peft = raw.get("peft")
    if peft is not None:
        if not isinstance(peft, dict):
            raise TrainError(f"{path}: {where}peft must be a mapping of peft.LoraConfig arguments")
        known_keys(path, f"{where}peft", peft, lora_config_fields(), kind="peft.LoraConfig argument")
    variant = raw.get("quantization_from_variant")
    if variant is not None:
        variants = load_variants()
        quantized = [n for n, v in variants.items() if v.quantization]
        if variant not in quantized:
            raise TrainError(
                f"{path}: quantization_from_variant {variant!r} is not a variant with a quantization "
                f"block in medbench/models/variants.yaml; choose from {', '.join(quantized)}"
            )


def known_keys(path: Path, where: str, raw: dict, known, kind: str = "key") -> None:
    unknown = sorted(set(raw) - set(known))
    if unknown:
        hint = f"; known: {', '.join(sorted(known))}" if len(known) < 20 else ""
        raise TrainError(f"{path}: unknown {kind}(s) in {where}: {', '.join(unknown)}{hint}")


def _deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --- DeepSpeed -------------------------------------------------------------------------------------


def deepspeed_path(choice: str) -> Path | None:
    """`zero2`, `zero3` (trainers/deepspeed/), `none`, or a path to a DeepSpeed JSON config."""
    if choice == "none":
        return None
    if choice in DEEPSPEED_CHOICES:
        return DEEPSPEED_DIR / f"{choice}.json"
    path = Path(choice)
    if path.suffix == ".json" and path.is_file():
        return path
    raise TrainError(f"unknown --deepspeed {choice!r}; choose from {', '.join(DEEPSPEED_CHOICES)} or a .json file")


def load_deepspeed(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise TrainError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(config, dict):
        raise TrainError(f"{path}: a DeepSpeed config is a JSON object")
    return config


def effective_training(training: dict) -> dict:
    """SFTConfig's defaults under the given arguments: what the trainer will run with (no SFTConfig built)."""
    from trl import SFTConfig

    out = {f.name: f.default for f in fields(SFTConfig) if f.init and not callable(f.default_factory)}
    out.update(training)
    if out.get("bf16") is None:  # SFTConfig: bf16 unless fp16
        out["bf16"] = not out.get("fp16")
    return out


def deepspeed_mismatches(ds: dict, training: dict, world_size: int) -> list[str]:
    """Explicit DeepSpeed values that contradict the training arguments ("auto" always agrees).

    The same pairs transformers' HfTrainerDeepSpeedConfig checks once DeepSpeed is initialised, checked
    here before anything loads (and where DeepSpeed is not installed).
    """
    t = effective_training(training)
    batch = world_size * t["per_device_train_batch_size"] * t["gradient_accumulation_steps"]
    pairs = [
        ("train_micro_batch_size_per_gpu", t["per_device_train_batch_size"], "per_device_train_batch_size"),
        ("gradient_accumulation_steps", t["gradient_accumulation_steps"], "gradient_accumulation_steps"),
        ("train_batch_size", batch, f"{world_size} GPU(s) x per_device_train_batch_size x gradient_accumulation_steps"),
        ("gradient_clipping", t["max_grad_norm"], "max_grad_norm"),
        ("bf16.enabled", bool(t["bf16"]), "bf16"),
        ("fp16.enabled", bool(t["fp16"]), "fp16"),
        ("optimizer.params.lr", t["learning_rate"], "learning_rate"),
        ("optimizer.params.weight_decay", t["weight_decay"], "weight_decay"),
        ("optimizer.params.eps", t["adam_epsilon"], "adam_epsilon"),
        ("optimizer.params.betas", [t["adam_beta1"], t["adam_beta2"]], "adam_beta1, adam_beta2"),
        ("scheduler.params.warmup_max_lr", t["learning_rate"], "learning_rate"),
    ]
    out = []
    for ds_key, value, name in pairs:
        node = ds
        for part in ds_key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None or node == "auto":
            continue
        if node != value:
            out.append(f"{ds_key}={node!r} but {name}={value!r}")
    return out


def check_deepspeed(path: Path, ds: dict, training: dict, world_size: int) -> None:
    mismatches = deepspeed_mismatches(ds, training, world_size)
    if mismatches:
        raise TrainError(
            f"{path} contradicts the training arguments: {'; '.join(mismatches)}. "
            f'Set these to "auto" in the DeepSpeed config, or change the training arguments.'
        )
