"""The model a training run starts from, and the process environment DeepSpeed needs."""

from __future__ import annotations

import os
import socket

import torch

from medbench.models.loading import pick_attention, quantization_config
from trainers.config import Method


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
    kwargs = {
        "dtype": dtype,
        "attn_implementation": pick_attention("auto", "cuda" if cuda else "cpu"),
        "trust_remote_code": spec.trust_remote_code,
    }
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
    info = {
        "model_dtype": str(dtype).replace("torch.", ""),
        "attn_implementation": model.config._attn_implementation,
        "quantization": quantization,
    }
    return model, info
