"""Where a model's weights go: one GPU per process, or sharded across the visible GPUs.

A model larger than one GPU is split by layers with accelerate's device_map: transformers'
`from_pretrained(device_map="auto", max_memory=…)` puts whole decoder layers on each GPU and runs them
one after another (the layers wait for each other: placement, not tensor parallelism), the same as
lm-eval's `parallelize=True`. The `parallelize` setting chooses: `auto` (the default) shards only when
the model's estimated size does not fit the GPU's free memory, `true` always shards across the visible
GPUs, `false` never does. The estimate needs no weights: the model is built on the meta device from its
config and its parameters counted at the dtype they load in, 4-bit linear layers at their packed size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from medbench.errors import MedbenchError

SETTINGS = ("auto", "true", "false")
# The weights times this must fit a GPU's free memory: activations, a generation's KV cache, CUDA workspaces.
HEADROOM = 1.2
# A sharded model's weights take at most this share of each GPU's free memory; the rest is for the same
# (sharded scoring keeps one layer's activations at a time, so less headroom than HEADROOM will do).
SHARD_FILL = 0.9
# Bits per weight of a 4-bit linear layer, block statistics included: NF4 with double quantization
# (4 + 8/64 + 32/(64*256)), as the `bnb` variant and qlora load; AWQ GEMM (4 + 16/128 scales + 4/128 zeros).
FOUR_BIT_BITS = {"bitsandbytes": 4 + 8 / 64 + 32 / (64 * 256), "awq": 4 + 16 / 128 + 4 / 128}
GIB = 2**30


class PlacementError(MedbenchError):
    pass


@dataclass
class Placement:
    mode: str  # "single": the whole model on one device | "sharded": layers across the GPUs
    reason: str
    estimated_bytes: int | None = None
    gpu_free_bytes: list[int] = field(default_factory=list)
    max_memory: dict | None = None  # per-GPU budget handed to from_pretrained when sharded

    @property
    def sharded(self) -> bool:
        return self.mode == "sharded"

    def as_record(self) -> dict:
        out = asdict(self)
        out["estimated_gib"] = _gib(out.pop("estimated_bytes"))
        out["gpu_free_gib"] = [_gib(b) for b in out.pop("gpu_free_bytes")]
        out["max_memory_gib"] = {str(k): _gib(v) for k, v in (out.pop("max_memory") or {}).items()} or None
        return out


def _gib(n: int | None) -> float | None:
    return None if n is None else round(n / GIB, 2)


def meta_model(config, trust_remote_code: bool = False, dtype=None):
    """The model of `config` with every parameter on the meta device (no memory, no weights), tied weights
    tied (accelerate's init_empty_weights leaves them apart, which would count them twice)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code, dtype=dtype)
    model.tie_weights()
    return model


def estimate_bytes(
    model, dtype_bytes: int = 2, four_bit: str | None = None, keep_full: tuple[str, ...] = ("lm_head",)
) -> int:
    """Bytes of `model`'s parameters (a meta model will do): `dtype_bytes` each, or for `four_bit`
    ("bitsandbytes" | "awq") every linear layer but `keep_full` at its packed size. Tied weights count once."""
    import torch

    seen: set[int] = set()
    total = 0.0
    for name, module in model.named_modules():
        packed = (
            four_bit is not None
            and isinstance(module, torch.nn.Linear)
            and not any(name == k or name.endswith(f".{k}") for k in keep_full)
        )
        for pname, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if packed and pname == "weight":
                total += param.numel() * FOUR_BIT_BITS[four_bit] / 8
            else:
                total += param.numel() * dtype_bytes
    return int(total)


def estimate_from_config(
    config, dtype_bytes: int = 2, four_bit: str | None = None, trust_remote_code: bool = False
) -> int:
    config = _without_quantization(config)
    return estimate_bytes(meta_model(config, trust_remote_code), dtype_bytes, four_bit)


def _without_quantization(config):
    import copy

    if getattr(config, "quantization_config", None) is None:
        return config
    config = copy.deepcopy(config)
    del config.quantization_config
    return config


def gpu_free_bytes(indices: list[int] | None = None) -> list[int]:
    """Free memory of the given GPUs (default: every visible one; empty without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.mem_get_info(i)[0] for i in (range(torch.cuda.device_count()) if indices is None else indices)]


def decide(setting: str, estimated: int | None, free: list[int], processes: int = 1, local_rank: int = 0) -> Placement:
    """Single device or sharded, from the setting, the estimate and each visible GPU's free memory."""
    if setting not in SETTINGS:
        raise PlacementError(f"parallelize={setting!r}: choose from {', '.join(SETTINGS)}")
    base = {"estimated_bytes": estimated, "gpu_free_bytes": list(free)}
    if setting == "false":
        return Placement("single", "parallelize=false", **base)
    if not free:
        return Placement("single", "no CUDA GPU visible", **base)
    if setting == "true":
        if processes > 1:
            raise PlacementError(
                "parallelize=true shards one model across all visible GPUs, which a data-parallel "
                f"run (--gpus {processes}) has given one process each: use one or the other"
            )
        if len(free) == 1:
            return Placement("single", "parallelize=true, but one GPU is visible", **base)
        return _sharded("parallelize=true", free, base)
    if estimated is None:
        return Placement("single", "parallelize=auto: size unknown, one GPU", **base)
    mine = free[local_rank] if local_rank < len(free) else free[0]
    if estimated * HEADROOM <= mine:
        return Placement(
            "single", f"parallelize=auto: {_gib(estimated)} GiB of weights fit one GPU ({_gib(mine)} GiB free)", **base
        )
    too_big = f"{_gib(estimated)} GiB of weights (x{HEADROOM} headroom) do not fit one GPU ({_gib(mine)} GiB free)"
    if processes > 1:
        raise PlacementError(
            f"{too_big}: run it without --gpus, as one process that shards it across the "
            "visible GPUs, or take a 4-bit variant (bnb, awq)"
        )
    if len(free) == 1:
        if estimated <= mine:
            return Placement("single", f"parallelize=auto: {too_big}, but one GPU is visible: trying it", **base)
        raise PlacementError(
            f"{too_big}, and no other GPU is visible to shard it across; take a 4-bit variant "
            "(bnb, awq) or a machine with more GPUs"
        )
    if estimated > sum(f * SHARD_FILL for f in free):
        raise PlacementError(
            f"{too_big}, nor the {len(free)} visible GPUs together ({_gib(sum(free))} GiB free, "
            f"{int(SHARD_FILL * 100)}% of it for weights); take a 4-bit variant (bnb, awq)"
        )
    return _sharded(f"parallelize=auto: {too_big}", free, base)


def _sharded(reason: str, free: list[int], base: dict) -> Placement:
    budget = {i: int(f * SHARD_FILL) for i, f in enumerate(free)}
    return Placement("sharded", f"{reason}: layers across {len(free)} GPUs", max_memory=budget, **base)


def even_split(model, budget: dict[int, int], dtype) -> dict[int, int]:
    """Per-GPU budgets (never above `budget`'s) that share `model` (a meta model will do) among the GPUs:
    its size over their number, or its largest unsplittable piece where that is more, plus a margin (10% of
    an even share, at most half of what lies outside the largest piece, so that something is left to share).

    `parallelize=true` asks for a split, but with whole-GPU budgets accelerate's balanced plan keeps a
    model smaller than one GPU's share on GPU 0, and nothing is sharded."""
    from accelerate.utils import compute_module_sizes

    sizes = compute_module_sizes(model, dtype=dtype)
    no_split = set(model._no_split_modules or [])
    pieces = [
        sizes[name]
        for name, module in model.named_modules()
        if name and (type(module).__name__ in no_split or next(module.children(), None) is None)
    ]
    total, largest = sizes[""], max(pieces, default=0)
    even = total / len(budget)
    share = int(max(even, largest) + min(0.1 * even, (total - largest) / 2))
    return {gpu: min(free, share) for gpu, free in budget.items()}


def placed_record(chosen: Placement, model) -> dict:
    """The placement as it came out: a sharded load that accelerate's balanced plan left on one GPU (a
    model smaller than one GPU's share, with the embedding as its buffer) is recorded as single."""
    out = {**chosen.as_record(), "device_map": device_map_summary(model)}
    if chosen.sharded and out["device_map"] is None:
        out["mode"] = "single"
        out["reason"] += (
            "; accelerate's balanced device map put every module on one GPU (the model fits one GPU's share), "
            "so nothing was sharded"
        )
    return out


def device_map_summary(model) -> dict[str, int] | None:
    """Modules per device of a model loaded with a device_map (None for a model on one device)."""
    device_map = getattr(model, "hf_device_map", None)
    if not device_map or len(set(device_map.values())) < 2:
        return None
    out: dict[str, int] = {}
    for device in device_map.values():
        key = f"cuda:{device}" if isinstance(device, int) else str(device)
        out[key] = out.get(key, 0) + 1
    return out
