"""Spec + variant + settings -> a loaded (model, tokenizer) and the facts the record needs."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass

import torch

from harness import embedded
from harness.registry import ModelSpec, require_local_hub_weights
from harness.settings import EvalSettings

VARIANTS = ("base",)


class VariantError(ValueError):
    pass


@dataclass
class Loaded:
    model: object
    tokenizer: object
    source: str  # the path or hub id actually loaded
    device: str
    dtype: str
    attn_implementation: str
    load_seconds: float
    footprint_bytes: int
    sanity_perplexity: float | None


def pick_device(setting: str) -> str:
    if setting != "auto":
        return setting
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(setting: str, device: str) -> torch.dtype:
    if setting != "auto":
        return getattr(torch, setting)
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def pick_attention(setting: str, device: str) -> str:
    if setting != "auto":
        return setting
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def weights_source(spec: ModelSpec) -> str:
    if spec.path:
        return spec.path
    if spec.embedded:
        return str(embedded.materialize(spec.alias, spec.embedded["package"], spec.embedded["gguf_file"]))
    require_local_hub_weights(spec.hub_id)
    return spec.hub_id


def load(spec: ModelSpec, variant: str, settings: EvalSettings) -> Loaded:
    if variant not in VARIANTS:
        raise VariantError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = pick_device(settings.device)
    dtype = pick_dtype(settings.dtype, device)
    attn = pick_attention(settings.attn_implementation, device)
    start = time.perf_counter()
    source = weights_source(spec)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=spec.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=dtype, attn_implementation=attn, trust_remote_code=spec.trust_remote_code
    ).to(device)
    model.eval()
    ppl = None
    if spec.sanity_max_perplexity is not None:
        ppl = embedded.sanity_check(model, tokenizer, spec.sanity_max_perplexity)
    return Loaded(
        model=model,
        tokenizer=tokenizer,
        source=source,
        device=device,
        dtype=str(dtype).replace("torch.", ""),
        attn_implementation=model.config._attn_implementation,
        load_seconds=time.perf_counter() - start,
        footprint_bytes=model.get_memory_footprint(),
        sanity_perplexity=ppl,
    )
