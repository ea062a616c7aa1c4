"""Spec + variant + settings -> a loaded (model, tokenizer) and the facts the record needs."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from medbench.models import awq_convert, embedded, placement
from medbench.models.registry import ModelSpec, require_local_hub_weights
from medbench.models.variants import LoadPlan, plan
from medbench.paths import cache_dir
from medbench.settings import EvalSettings, SettingsError


@dataclass
class Loaded:
    model: object
    tokenizer: object
    source: str  # the weights actually loaded (path or hub id)
    adapter: str | None
    device: str
    dtype: str
    attn_implementation: str
    quantization: dict | None  # the quantization config the loaded model reports
    load_seconds: float
    footprint_bytes: int
    sanity_perplexity: float | None
    awq_route: str | None = None  # how an official AWQ checkpoint was made loadable (medbench/models/awq_convert.py)
    placement: dict | None = None  # one device or sharded across GPUs, and why (medbench/models/placement.py)
    training_record: dict | None = None  # the train_record.json of fine-tuned weights (its sha256 and what it says)


def pick_device(setting: str) -> str:
    if setting != "auto":
        return setting
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_machine(settings: EvalSettings) -> None:
    """Refuse, before anything loads, settings this machine cannot honour (values were checked by EvalSettings)."""
    device = settings.device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise SettingsError(f"setting device={device}, but {why}; use device=cpu (or auto)")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise SettingsError(
                f"setting device={device}, but only {torch.cuda.device_count()} CUDA GPU(s) are "
                f"visible (cuda:0 to cuda:{torch.cuda.device_count() - 1})"
            )
    if device == "mps" and not torch.backends.mps.is_available():
        raise SettingsError("setting device=mps, but no Apple GPU is available; use device=cpu (or auto)")
    attn = settings.attn_implementation
    if attn.startswith("flash_attention"):
        if not pick_device(device).startswith("cuda"):
            raise SettingsError(
                f"setting attn_implementation={attn} needs a CUDA GPU, and this run is on "
                f"{pick_device(device)}; use sdpa or eager (or auto)"
            )
        package = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}[attn]
        if importlib.util.find_spec(package) is None:
            raise SettingsError(
                f"setting attn_implementation={attn} needs the {package} package, which is not "
                f"installed; use sdpa (or auto)"
            )


def weight_sources(spec: ModelSpec, variant: str, device: str, checkpoint: str | None = None) -> dict[str, str]:
    """What a load of this variant reads, by role, decided without loading: `model` (the weights), `tokenizer`
    (the base model, when the weights are another checkpoint) and `adapter` (a PEFT adapter directory)."""
    load_plan = plan(spec, variant, cuda_available=device.startswith("cuda"), checkpoint=checkpoint)
    base = base_weights(spec)
    out = {"model": base if load_plan.weights == "base" else load_plan.weights}
    if out["model"] != base:
        out["tokenizer"] = base
    if load_plan.adapter:
        out["adapter"] = load_plan.adapter
    return out


def pick_dtype(setting: str, device: str) -> torch.dtype:
    if setting != "auto":
        return getattr(torch, setting)
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def pick_attention(setting: str, device: str, dtype: torch.dtype | None = None) -> str:
    if setting != "auto":
        return setting
    if device.startswith("cuda") and dtype == torch.float32:
        # Measured on an H200 (torch 2.11): fp32 sdpa over left-padded batches with an explicit mask
        # returned scores that did not depend on the question at some padded widths; the canary
        # stopped such runs (|batched - alone| up to 12.4 in MedQA), while eager passed 64-question
        # canaries on all 4,282 questions. flash-attention does not take fp32 either.
        return "eager"
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def avoid_faulty_sdpa_kernel() -> None:
    """Take PyTorch's memory-efficient SDPA kernel out of evaluation (it is chosen only among the others).

    Measured on an H200 (torch 2.11; dev/sdpa_width_check.py, results/bench/sdpa-width-check-NVIDIA-H200.json):
    with left padding and an explicit mask it returns wrong scores whenever the key length is 1 mod 32
    (65, 97, ..., 417), by up to 8.7 in fp32 and 8.6 in bf16, as pytorch/pytorch#191937 reports; the math
    and cuDNN kernels and eager attention are right at every width. It was the kernel behind the fp32 fault
    (fp32 had no other fused kernel); bf16 took cuDNN on that GPU, but may take it on another."""
    torch.backends.cuda.enable_mem_efficient_sdp(False)


def base_weights(spec: ModelSpec) -> str:
    if spec.path:
        return spec.path
    if spec.embedded:
        return str(embedded.materialize(spec.alias, spec.embedded))
    require_local_hub_weights(spec.hub_id)
    return spec.hub_id


def quantization_config(quantization: dict | None):
    if not quantization:
        return None
    from transformers import BitsAndBytesConfig

    q = dict(quantization)
    method = q.pop("quant_method")
    if method != "bitsandbytes":
        raise ValueError(f"unsupported load-time quantization {method!r}")
    q["bnb_4bit_compute_dtype"] = getattr(torch, q["bnb_4bit_compute_dtype"])
    return BitsAndBytesConfig(**q)


def from_pretrained_kwargs(spec: ModelSpec, load_plan: LoadPlan, settings: EvalSettings, device: str) -> dict:
    dtype = pick_dtype(settings.dtype, device)
    kwargs = {
        "dtype": dtype,
        "attn_implementation": pick_attention(settings.attn_implementation, device, dtype),
        "trust_remote_code": spec.trust_remote_code,
    }
    qconfig = quantization_config(load_plan.quantization)
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
        kwargs["device_map"] = {"": cuda_index(device)}  # bitsandbytes places weights as it quantizes them
    return kwargs


def cuda_index(device: str) -> int:
    """The GPU index of "cuda:N", or the current GPU for a bare "cuda" (each data-parallel process has its own)."""
    if ":" in device:
        return int(device.split(":", 1)[1])
    return torch.cuda.current_device() if torch.cuda.is_available() else 0


def place(
    spec: ModelSpec,
    source: str,
    kwargs: dict,
    settings: EvalSettings,
    device: str,
    processes: int = 1,
) -> placement.Placement:
    """One GPU or sharded across the visible GPUs (settings.parallelize); a sharded load gets a device_map.

    Only this process's GPU is asked for its free memory unless the model may be sharded (asking a GPU
    starts a CUDA context on it, which a data-parallel process should not do on its neighbours' GPUs)."""
    if not device.startswith("cuda") or settings.parallelize == "false":
        return placement.decide(settings.parallelize, None, [], processes)
    mine = cuda_index(device)
    estimated = None
    if settings.parallelize == "auto":
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(source, trust_remote_code=spec.trust_remote_code)
        four_bit = (
            "bitsandbytes"
            if "quantization_config" in kwargs
            else "awq"
            if getattr(config, "quantization_config", None)
            else None
        )
        estimated = placement.estimate_from_config(config, kwargs["dtype"].itemsize, four_bit, spec.trust_remote_code)
    free_here = placement.gpu_free_bytes([mine])
    fits = estimated is not None and estimated * placement.HEADROOM <= free_here[0]
    if processes > 1 or fits:
        chosen = placement.decide(settings.parallelize, estimated, free_here, processes)
    else:
        chosen = placement.decide(settings.parallelize, estimated, placement.gpu_free_bytes(), processes, mine)
    if chosen.sharded:
        if settings.parallelize == "true" and "quantization_config" not in kwargs:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(source, trust_remote_code=spec.trust_remote_code)
            meta = placement.meta_model(config, spec.trust_remote_code, kwargs["dtype"])
            chosen.max_memory = placement.even_split(meta, chosen.max_memory, kwargs["dtype"])
        kwargs["device_map"] = "auto"
        kwargs["max_memory"] = chosen.max_memory
    return chosen


def convert_once(spec: ModelSpec, variant: str, settings: EvalSettings, checkpoint: str | None = None) -> None:
    """What load() converts once and caches (the embedded GGUF, an official AWQ checkpoint), without loading:
    a data-parallel run's main process does it before the other processes load, so that they do not convert
    the same files at the same time."""
    load_plan = plan(
        spec, variant, cuda_available=pick_device(settings.device).startswith("cuda"), checkpoint=checkpoint
    )
    base = base_weights(spec)
    source = base if load_plan.weights == "base" else load_plan.weights
    if source != base:
        if not Path(source).is_dir():
            require_local_hub_weights(source)
        awq_convert.prepare(source, cache_dir())


def load(
    spec: ModelSpec,
    variant: str,
    settings: EvalSettings,
    device: str | None = None,
    processes: int = 1,
    checkpoint: str | None = None,
) -> Loaded:
    """`device`: this process's device in a data-parallel run (cuda:LOCAL_RANK); None: settings.device.
    `checkpoint`: another fine-tuned folder under checkpoints/ for a fine-tuned variant (medbench/models/variants.py)."""
    device = device or pick_device(settings.device)
    load_plan = plan(spec, variant, cuda_available=device.startswith("cuda"), checkpoint=checkpoint)  # refusals first
    if device.startswith("cuda"):
        avoid_faulty_sdpa_kernel()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    base = base_weights(spec)
    source = base if load_plan.weights == "base" else load_plan.weights
    if source != base and not Path(source).is_dir():  # an AWQ repo on the hub; checkpoints are local dirs
        require_local_hub_weights(source)
    awq_route = None
    if source != base:  # an official `quant_method: awq` checkpoint is converted once, then loaded
        source, awq_route = awq_convert.prepare(source, cache_dir())
    kwargs = from_pretrained_kwargs(spec, load_plan, settings, device) | awq_convert.load_kwargs(awq_route)
    if awq_route and settings.dtype == "auto":
        # AWQ's own kernels compute in fp16 on its fp16 scales; bf16 would round every weight again.
        kwargs["dtype"] = torch.float16
    placed = place(spec, source, kwargs, settings, device, processes)
    # The tokenizer always comes from the base model: fine-tunes and AWQ checkpoints keep its vocabulary.
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=spec.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if "device_map" not in kwargs:
        model = model.to(device)
    if load_plan.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, load_plan.adapter)
    model.eval()
    ppl = None
    if (
        spec.sanity_max_perplexity is not None
        and load_plan.weights == "base"
        and not load_plan.quantization
        and not load_plan.adapter
    ):
        # Only the unmodified weights have a known-good perplexity to hold them to.
        ppl = embedded.sanity_check(model, tokenizer, spec.sanity_max_perplexity, spec.sanity_bos)
    qc = getattr(model.config, "quantization_config", None)
    return Loaded(
        model=model,
        tokenizer=tokenizer,
        source=source,
        adapter=load_plan.adapter,
        device=device,
        dtype=str(kwargs["dtype"]).replace("torch.", ""),
        attn_implementation=model.config._attn_implementation,
        quantization=qc.to_dict() if hasattr(qc, "to_dict") else qc,
        load_seconds=time.perf_counter() - start,
        footprint_bytes=model.get_memory_footprint(),
        sanity_perplexity=ppl,
        awq_route=awq_route,
        placement=placement.placed_record(placed, model),
        training_record=training_record(load_plan.adapter or (source if source != base else None)),
    )


def training_record(weights_dir: str | None) -> dict | None:
    """The training run a fine-tuned folder came from: its train_record.json, named and hashed (None for weights
    that were not trained here)."""
    import hashlib
    import json

    path = Path(weights_dir) / "train_record.json" if weights_dir else None
    if path is None or not path.is_file():
        return None
    text = path.read_bytes()
    record = json.loads(text)
    return {
        "sha256": hashlib.sha256(text).hexdigest(),
        "published_as": record.get("published_as"),
        "method": record.get("method"),
        "profile": record.get("profile"),
        "seed": (record.get("training_arguments") or {}).get("seed"),
        "steps": record.get("steps"),
        "best_checkpoint": record.get("best_checkpoint"),
        "created": record.get("created"),
        "contaminated": record.get("contaminated"),  # a positive control's test questions
    }
