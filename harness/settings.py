"""Evaluation settings: the reference study's values are the defaults; every one is recorded.

A key that is not a field here is an error, never ignored: the reference study lost its
repetition_penalty to a misspelt key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


class SettingsError(ValueError):
    pass


@dataclass
class EvalSettings:
    # The study's generation settings.
    do_sample: bool = False
    repetition_penalty: float = 1.5
    prompt_max_tokens: int = 3500  # the study's tokenizer max_length; prompts are cut from the left
    max_gen_toks: int | None = None  # None: each task's own budget (32 direct, 512 chain of thought)
    # flash_attention_2 where installed and on a GPU, else sdpa; or name one.
    attn_implementation: str = "auto"
    dtype: str = "auto"  # bf16 on GPU, fp32 on CPU (the GGUF computes in fp32 in any case)
    batch_size: int = 8
    device: str = "auto"
    seed: int = 1234
    fast_mc: bool = True  # one forward per question for one-token answers (harness/fastlm.py)

    @classmethod
    def from_overrides(cls, overrides: dict[str, str | object]) -> EvalSettings:
        by_name = {f.name: f for f in fields(cls)}
        values = {}
        for key, raw in overrides.items():
            name = key.replace("-", "_")
            if name not in by_name:
                raise SettingsError(f"unknown setting {key!r}; known settings: {', '.join(by_name)}")
            values[name] = _coerce(name, by_name[name].type, raw)
        return cls(**values)

    def generation_kwargs(self) -> dict:
        out = {"do_sample": self.do_sample, "repetition_penalty": self.repetition_penalty}
        if self.max_gen_toks is not None:
            out["max_gen_toks"] = self.max_gen_toks
        return out

    def as_dict(self) -> dict:
        return asdict(self)


def parse_assignments(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SettingsError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _coerce(name: str, type_name: str, raw):
    if not isinstance(raw, str):
        return raw
    try:
        if type_name == "bool":
            if raw.lower() in {"1", "true", "yes"}:
                return True
            if raw.lower() in {"0", "false", "no"}:
                return False
            raise ValueError(raw)
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name == "int | None":
            return None if raw.lower() in {"none", ""} else int(raw)
    except ValueError:
        raise SettingsError(f"setting {name} expects {type_name}, got {raw!r}") from None
    return raw
