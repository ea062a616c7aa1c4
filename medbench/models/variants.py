"""Variant name + model spec -> what to load (a plan), without loading anything.

Kept apart from the loading itself so the plan (and every refusal: no CUDA, missing checkpoint,
no AWQ checkpoint) is decided and tested before a byte of weights moves.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

import yaml

from medbench.errors import MedbenchError
from medbench.models.registry import ModelSpec
from medbench.paths import checkpoints_dir

VARIANTS_PATH = Path(__file__).with_name("variants.yaml")


class VariantError(MedbenchError):
    pass


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    weights: str
    requires_cuda: bool = False
    quantization: dict | None = None
    train_method: str | None = None


@dataclass(frozen=True)
class LoadPlan:
    variant: str
    weights: str  # "base" (the spec's own weights), or a path / hub id to load instead
    adapter: str | None  # a PEFT adapter directory to apply on top
    quantization: dict | None  # transformers quantization config, as data


_WEIGHT_KINDS = {"base", "awq", "checkpoint", "adapter"}


@cache
def load_variants(path: Path = VARIANTS_PATH) -> dict[str, Variant]:
    known = {f.name for f in fields(Variant)} - {"name"}
    out = {}
    for name, entry in (yaml.safe_load(path.read_text()) or {}).items():
        unknown = set(entry) - known
        if unknown:
            raise VariantError(f"{path}: variant {name!r} has unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        if entry.get("weights") not in _WEIGHT_KINDS:
            raise VariantError(f"{path}: variant {name!r} needs weights: one of {sorted(_WEIGHT_KINDS)}")
        out[name] = Variant(name=name, **entry)
    return out


def checkpoint_path(alias: str, method: str) -> Path:
    return checkpoints_dir() / f"{alias}-{method}"


def check_checkpoint_name(name: str) -> str:
    """A checkpoint is named, never given as a path: a folder directly under checkpoints/."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or name != name.strip():
        raise VariantError(f"--checkpoint {name!r}: the name of a folder in checkpoints/ (e.g. gemma3-270m-lora-s2)")
    return name


def plan(spec: ModelSpec, variant_name: str, cuda_available: bool, checkpoint: str | None = None) -> LoadPlan:
    """What to load for a variant. `checkpoint`: a folder name under checkpoints/ holding the fine-tuned weights of a
    `checkpoint` or `adapter` variant (another seed or profile); default <alias>-<method>."""
    variants = load_variants()
    if variant_name not in variants:
        raise VariantError(f"unknown variant {variant_name!r}; choose from {', '.join(variants)}")
    v = variants[variant_name]
    if v.requires_cuda and not cuda_available:
        raise VariantError(
            f"variant {variant_name!r} ({v.description}) needs a CUDA GPU, and none is visible; "
            f"run it on a GPU machine, or use `base` here"
        )
    if v.weights == "base":
        return LoadPlan(variant_name, "base", None, v.quantization)
    if v.weights == "awq":
        local = checkpoint_path(spec.alias, "awq")
        if local.is_dir():
            return LoadPlan(variant_name, str(local), None, None)
        if spec.awq and spec.awq.get("format") == "awq":
            return LoadPlan(variant_name, spec.awq["repo"], None, None)
        hint = f" ({spec.awq['note']})" if spec.awq and spec.awq.get("note") else ""
        raise VariantError(
            f"no AWQ checkpoint for {spec.alias}{hint}: make one with "
            f"`just quantize-awq {spec.alias} --source DIR` (writes {local})"
        )
    if checkpoint is not None and v.weights not in ("checkpoint", "adapter"):
        raise VariantError(f"--checkpoint names fine-tuned weights; variant {variant_name!r} loads {v.weights} weights")
    path = (
        checkpoints_dir() / check_checkpoint_name(checkpoint)
        if checkpoint
        else checkpoint_path(spec.alias, v.train_method)
    )
    marker = "adapter_config.json" if v.weights == "adapter" else "config.json"
    if not (path / marker).exists():
        raise VariantError(f"{path} has no {marker}: make it with `just train {spec.alias} {v.train_method}`")
    if v.weights == "checkpoint":
        return LoadPlan(variant_name, str(path), None, None)
    return LoadPlan(variant_name, "base", str(path), v.quantization)
