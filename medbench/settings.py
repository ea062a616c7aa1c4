"""Evaluation settings: the reference study's values are the defaults; every one is recorded.

A key that is not a field here is an error, never ignored: the reference study lost its
repetition_penalty to a misspelt key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from medbench.options import arg
from medbench.overrides import SettingsError, parse_assignments, typed_overrides

__all__ = ["EvalSettings", "SettingsError", "parse_assignments"]


@dataclass
class EvalSettings:
    do_sample: bool = arg(False, help="greedy decoding (the study's)")
    repetition_penalty: float = arg(1.5, help="applied to every generation (the study's)")
    prompt_max_tokens: int = arg(3500, help="the study's tokenizer max_length: longer prompts are cut from the left "
                                            "(the question and options at the end survive) and counted as "
                                            "`truncated_prompts`")
    max_gen_toks: int | None = arg(None, help="new-token budget; none: each task's own (32 direct, 512 chain of "
                                              "thought)")
    attn_implementation: str = arg("auto", help="`flash_attention_2` where installed and on a GPU, else `sdpa`; or "
                                                "name one")
    dtype: str = arg("auto", help="bf16 on GPU, fp32 on CPU (the GGUF computes in fp32 in any case)")
    batch_size: int = arg(8, help="questions per forward pass")
    device: str = arg("auto", help="`cuda` where visible, else `cpu`")
    seed: int = arg(1234, help="lm-eval's seeds (sampling, few-shot order)")
    fast_mc: bool = arg(True, help="one forward pass per question for one-token answers (medbench/eval/fastlm.py)")
    chat: Literal["auto", "on", "off"] = arg("auto", help="chat template: `auto` applies the model's own for registry chat models in `gen` "
                                 "(zeroshot gen, fewshot, cot) and keeps `mc` a plain completion; `on` also for "
                                 "`mc`; `off` never (medbench/eval/chat.py)")
    system_instruction: str | None = arg(None, help="a system turn for chat runs (prepended as plain text otherwise)")
    fewshot_as_multiturn: bool = arg(True, help="chat runs send each shot as its own user/assistant turn pair")
    thinking: bool = arg(False, help="models with a thinking switch (Qwen3): let them think; the `<think>` block is "
                                     "stripped before answer extraction. Needs chat and `gen`")

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
