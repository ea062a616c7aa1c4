"""`just train --profile`: a recipe laid over the method's (trainers/profiles/*.yaml).

`study` (the default) is the method file as it is: the reference study's recipe, unchanged. Any other
profile is a YAML file whose `training` keys (TRL SFTConfig fields) are merged over the method's
(`--set` still wins), with the DeepSpeed config to use on one GPU and on several (an explicit
`--deepspeed` wins). A profile's checkpoint and published record sit beside the study's
(`<alias>-<method>-<profile>`), never over them. Packed batches are refused on an attention
implementation that would let the packed examples see each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from medbench.models.loading import pick_attention
from medbench.overrides import typed_overrides
from trainers.arguments import TrainArguments
from trainers.config import (
    DEEPSPEED_CHOICES,
    RESERVED_TRAINING_KEYS,
    TRAINERS_DIR,
    Method,
    TrainError,
    known_keys,
    sft_config_fields,
    validate_body,
)

PROFILES_DIR = TRAINERS_DIR / "profiles"
STUDY = "study"
PROFILE_KEYS = {"description", "deepspeed_one_gpu", "deepspeed_several_gpus", "training"}
STUDY_DEEPSPEED = "zero2"
# Attention implementations that keep packed sequences apart: flash-attention through TRL's cu_seq_lens,
# the others through the block-diagonal mask transformers 5.24 builds from restarting position ids.
PACKING_ATTENTION = ("flash_attention_2", "flash_attention_3", "sdpa", "eager", "flex_attention")


def suffix(name: str) -> str:
    """What a profile adds to `<alias>-<method>` in checkpoint and record names (nothing for the study's)."""
    return "" if name == STUDY else f"-{name}"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    training: dict  # SFTConfig arguments merged over the method's
    deepspeed_one_gpu: str = STUDY_DEEPSPEED
    deepspeed_several_gpus: str = STUDY_DEEPSPEED

    def deepspeed(self, explicit: str | None, world_size: int) -> str:
        """An explicit --deepspeed, else this profile's choice for one process or several."""
        return explicit or (self.deepspeed_one_gpu if world_size == 1 else self.deepspeed_several_gpus)

    def notes(self, training: dict, cuda: bool) -> list[str]:
        """The record's notes about the profile; packed batches on attention that mixes examples are refused."""
        if training.get("packing") or training.get("padding_free"):
            attention = pick_attention("auto", "cuda" if cuda else "cpu")  # as trainers/model.py loads the model
            if attention not in PACKING_ATTENTION:
                raise TrainError(
                    f"packed batches need attention that keeps the packed examples apart "
                    f"({', '.join(PACKING_ATTENTION)}); this run would use {attention}"
                )
        if self.name == STUDY:
            return []
        return [f"profile {self.name}: {self.description} (trainers/profiles/{self.name}.yaml)"]


def load_profile(name: str, profiles_dir: Path = PROFILES_DIR) -> Profile:
    """`study` (the method files as they are) or a file in trainers/profiles/."""
    if name == STUDY:
        return Profile(STUDY, "the reference study's recipe (the method file as it is)", {})
    path = profiles_dir / f"{name}.yaml"
    if not path.exists():
        known = [STUDY, *sorted(p.stem for p in profiles_dir.glob("*.yaml"))]
        raise TrainError(f"unknown profile {name!r}; choose from {', '.join(known)}")
    raw = yaml.safe_load(path.read_text()) or {}
    known_keys(path, "profile", raw, PROFILE_KEYS)
    validate_body(path, {"training": raw.get("training") or {}})
    for key in ("deepspeed_one_gpu", "deepspeed_several_gpus"):
        if raw.get(key, STUDY_DEEPSPEED) not in DEEPSPEED_CHOICES:
            raise TrainError(f"{path}: {key} must be one of {', '.join(DEEPSPEED_CHOICES)}")
    return Profile(
        name,
        raw.get("description", ""),
        dict(raw.get("training") or {}),
        raw.get("deepspeed_one_gpu", STUDY_DEEPSPEED),
        raw.get("deepspeed_several_gpus", STUDY_DEEPSPEED),
    )


def _sft_config_class():
    from trl import SFTConfig

    return SFTConfig


def training_arguments(method: Method, args: TrainArguments) -> dict:
    """The method's SFTConfig arguments, the profile's over them, then --set, --epochs, --max-steps (as on a GPU)."""
    training = {**method.training, **load_profile(args.profile).training}
    allowed = sft_config_fields() - RESERVED_TRAINING_KEYS
    for item in args.set:
        if "=" not in item:
            raise TrainError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = (s.strip() for s in item.split("=", 1))
        if key not in allowed:
            reserved = " (set by trainers/sft.py itself)" if key in RESERVED_TRAINING_KEYS else ""
            raise TrainError(f"--set {key}: not a training argument{reserved}; any TRL SFTConfig field is")
        training.update(typed_overrides(_sft_config_class(), {key: value}))
    if args.epochs is not None:
        training["num_train_epochs"] = args.epochs
    if args.max_steps is not None:
        training["max_steps"] = args.max_steps
    return training
