"""Evaluation settings: the reference study's values are the defaults; every one is recorded.

A key that is not a field here is an error, never ignored: the reference study lost its
repetition_penalty to a misspelt key.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Literal

from medbench.options import arg
from medbench.overrides import SettingsError, parse_assignments, typed_overrides

__all__ = ["EvalSettings", "SettingsError", "parse_assignments"]

DTYPES = ("auto", "float32", "bfloat16", "float16")
ATTN_IMPLEMENTATIONS = ("auto", "eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


# The permute setting's schemes (medbench/eval/permute.py expands a run's tasks by them).
PERMUTE_SCHEMES = ("none", "cyclic")
# The one seed of the harness: lm-eval's seeds, seeded samples, bootstrap resampling, training.
DEFAULT_SEED = 1234


@dataclass
class EvalSettings:
    do_sample: bool = arg(False, help="greedy decoding (the study's)")
    repetition_penalty: float = arg(1.5, help="applied to every generation (the study's)")
    prompt_max_tokens: int = arg(
        3500,
        help="the study's tokenizer max_length: longer prompts are cut from the left "
        "(the question and options at the end survive) and counted as "
        "`truncated_prompts`",
    )
    max_gen_toks: int | None = arg(
        None, help="new-token budget; none: each task's own (32 direct, 512 chain of thought)"
    )
    attn_implementation: str = arg(
        "auto",
        help="`flash_attention_2` where installed and on a GPU, else `sdpa`; "
        "`eager` for fp32 on a GPU (sdpa gave wrong fp32 scores there); "
        "or name one",
    )
    dtype: str = arg("auto", help="bf16 on GPU, fp32 on CPU (the GGUF computes in fp32 in any case)")
    batch_size: int | Literal["auto"] = arg(
        "auto",
        help="`mc`: questions per forward pass (at least; see batch_tokens); `gen`: the decode step's slots. `auto`: "
        "8 for `mc`; for `gen` as many slots as half the GPU memory free after the load holds (at most 256), 8 on a CPU",
    )
    batch_tokens: int = arg(
        16384,
        help="`mc`: a batch of short prompts takes more rows than batch_size, up to this many padded "
        "tokens (the prompts are sorted by length; 0: batch_size rows always)",
    )
    device: str = arg("auto", help="`cuda` where visible, else `cpu`")
    seed: int = arg(DEFAULT_SEED, help="lm-eval's seeds (sampling, few-shot order)")
    fast_mc: bool = arg(True, help="one forward pass per question for one-token answers (medbench/eval/lm.py)")
    fast_gen: bool = arg(
        True,
        help="greedy generation through medbench's engine (medbench/eval/generation/): continuous batching over "
        "KV-cache slots, each answer stopped at its own stop string, the repetition penalty on the device; the same "
        "tokens as batch-1 `generate`. false: stock lm-eval",
    )
    gen_engine: Literal["auto", "graphs", "eager"] = arg(
        "auto",
        help="the engine's decode step: `graphs` captures it once as a CUDA graph and replays it, `eager` launches "
        "it from Python; `auto`: graphs on one GPU (eager where capture fails, and the record says why)",
    )
    prefix_sharing: bool = arg(
        True,
        help="`gen`: a task's prompts' common prefix (the few-shot exemplars) prefilled once and its keys and values "
        "reused by every question; the same tokens as without",
    )
    permute: str = arg(
        "none",
        help="`cyclic`: every question also asked with its options rotated by each cyclic "
        "shift; the record adds position-debiased and circular accuracy (k x the cost)",
    )
    canary: int = arg(
        4,
        help="questions of each task also scored alone and compared with their batched scores; a "
        "mismatch stops the run (0: off)",
    )
    chat: Literal["auto", "on", "off"] = arg(
        "auto",
        help="chat template: `auto` applies the model's own for registry chat models in `gen` "
        "(zeroshot gen, fewshot, cot) and keeps `mc` a plain completion; `on` also for "
        "`mc`; `off` never (medbench/prompts/chat.py)",
    )
    system_instruction: str | None = arg(None, help="a system turn for chat runs (prepended as plain text otherwise)")
    fewshot_as_multiturn: bool = arg(True, help="chat runs send each shot as its own user/assistant turn pair")
    thinking: bool = arg(
        False,
        help="models with a thinking switch (Qwen3): let them think; the `<think>` block is "
        "stripped before answer extraction. Needs chat and `gen`",
    )

    fixed_shapes: Literal["auto", "true", "false"] = arg(
        "auto",
        help="`mc`: fill every batch with throw-away rows to its row count, so that a question's scores do not "
        "depend on the other questions (bit for bit under --limit or --gpus N); `auto`: on CUDA only",
    )
    parallelize: Literal["auto", "true", "false"] = arg(
        "auto",
        help="shard the model's layers across the visible GPUs (accelerate device_map): `auto` when its "
        "estimated weights do not fit one GPU's free memory, `true` always, `false` never "
        "(medbench/models/placement.py)",
    )

    def __post_init__(self):
        """Every value in its domain, before anything loads (the machine is checked by models.loading)."""
        for name, low in (
            ("batch_size", 1) if self.batch_size != "auto" else ("batch_tokens", 0),
            ("batch_tokens", 0),
            ("prompt_max_tokens", 1),
            ("max_gen_toks", 1),
            ("seed", 0),
        ):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise SettingsError(f"setting {name} must be a whole number >= {low}, got {value!r}")
        if self.seed >= 2**32:
            raise SettingsError(f"setting seed must be below 2**32 (numpy's seeds), got {self.seed}")
        if not self.repetition_penalty > 0:
            raise SettingsError(f"setting repetition_penalty must be > 0 (1.0: none), got {self.repetition_penalty!r}")
        for name, allowed in (("dtype", DTYPES), ("attn_implementation", ATTN_IMPLEMENTATIONS)):
            if getattr(self, name) not in allowed:
                raise SettingsError(f"setting {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise SettingsError(f"setting device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.permute not in PERMUTE_SCHEMES:
            raise SettingsError(f"setting permute expects one of {', '.join(PERMUTE_SCHEMES)}, got {self.permute!r}")
        if self.canary < 0:
            raise SettingsError(f"setting canary must be a whole number >= 0, got {self.canary!r}")

    @classmethod
    def from_overrides(cls, overrides: dict[str, str | object]) -> EvalSettings:
        return cls(**typed_overrides(cls, {k.replace("-", "_"): v for k, v in overrides.items()}))

    def generation_kwargs(self) -> dict:
        out = {"do_sample": self.do_sample, "repetition_penalty": self.repetition_penalty}
        if self.max_gen_toks is not None:
            out["max_gen_toks"] = self.max_gen_toks
        return out

    def as_dict(self) -> dict:
        return asdict(self)
