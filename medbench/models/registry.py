"""Model aliases -> weights. The only code that reads medbench/models/models.yaml."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

import yaml

from medbench.errors import MedbenchError

REGISTRY_PATH = Path(__file__).with_name("models.yaml")


class RegistryError(MedbenchError):
    pass


@dataclass(frozen=True)
class ModelSpec:
    alias: str
    hub_id: str | None = None
    embedded: dict | None = None
    params_b: float | None = None
    family: str | None = None
    family_default: bool = False
    chat: bool = False
    chat_template_kwargs: dict | None = None  # passed to the tokenizer's chat template (Qwen3: enable_thinking)
    awq: dict | None = None
    trust_remote_code: bool = False
    sanity_max_perplexity: float | None = None
    sanity_bos: bool = True  # the tokenizer starts a text with BOS (the load-time check expects it, or its absence)
    verified: bool = False
    shape: dict | None = None
    architecture_checked: str | None = None  # date a tiny version of this architecture passed the CPU suite
    path: str | None = None  # a local directory given instead of an alias


_KNOWN = {f.name for f in fields(ModelSpec)} - {"alias", "path"}


@cache
def load_registry(path: Path = REGISTRY_PATH) -> dict[str, ModelSpec]:
    raw = yaml.safe_load(path.read_text()) or {}
    out = {}
    for alias, entry in raw.items():
        unknown = set(entry) - _KNOWN
        if unknown:
            raise RegistryError(
                f"{path}: model {alias!r} has unknown key(s) {sorted(unknown)}; known: {sorted(_KNOWN)}"
            )
        if not entry.get("hub_id") and not entry.get("embedded"):
            raise RegistryError(f"{path}: model {alias!r} needs hub_id or embedded")
        out[alias] = ModelSpec(alias=alias, **entry)
    return out


def family_defaults(registry: dict[str, ModelSpec]) -> dict[str, str]:
    return {spec.family: alias for alias, spec in registry.items() if spec.family_default}


def resolve(name: str) -> ModelSpec:
    """An alias, a family alias (`qwen3`), a local directory, or a hub id (`org/name`)."""
    registry = load_registry()
    if name in registry:
        return registry[name]
    families = family_defaults(registry)
    if name in families:
        return registry[families[name]]
    if _is_path(name):
        path = Path(name).expanduser()
        check_model_dir(path, name)
        return ModelSpec(alias=path.resolve().name, path=str(path.resolve()))
    if "/" in name:
        return ModelSpec(alias=name.replace("/", "--"), hub_id=name)
    raise RegistryError(
        f"unknown model {name!r}. Known aliases: {', '.join(registry)}; families: {', '.join(families)}. "
        f"Or pass a local model directory or a hub id (org/name)."
    )


# A model directory must hold one of these to give its tokenizer (the base model's, for variants).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "tokenizer.tiktoken")


def _is_path(name: str) -> bool:
    """A local path rather than an alias or hub id (`org/name`): anything that exists, or that looks like a path."""
    return (
        Path(name).expanduser().exists()
        or name.startswith(("/", "./", "../", "~"))
        or name in (".", "..")
        or name.count("/") > 1
        or "\\" in name
    )


def check_model_dir(path: Path, name: str) -> None:
    """A local model directory that can load: it exists, and holds config.json and tokenizer files."""
    if not path.exists():
        raise RegistryError(f"model directory {name} does not exist")
    if not path.is_dir():
        raise RegistryError(
            f"{name} is a file, not a model directory (one holding config.json, the weights and the tokenizer)"
        )
    files = {p.name for p in path.iterdir()}
    if not files:
        raise RegistryError(
            f"model directory {name} is empty: a model directory holds config.json, the weights and the tokenizer"
        )
    if "config.json" not in files:
        hint = (
            " (a PEFT adapter: evaluate it as a variant, e.g. `just eval MODEL lora`)"
            if "adapter_config.json" in files
            else ""
        )
        raise RegistryError(f"model directory {name} has no config.json{hint}")
    if not files & set(TOKENIZER_FILES):
        raise RegistryError(
            f"model directory {name} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}): "
            f"save the tokenizer beside the weights (tokenizer.save_pretrained(DIR))"
        )


def require_local_hub_weights(hub_id: str) -> None:
    """Offline, a hub id must already be in the local HF cache: say so before any load starts."""
    if os.environ.get("HF_HUB_OFFLINE", "0") in {"0", "", "false", "False"}:
        return
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(hub_id, "config.json"), str):
        raise RegistryError(
            f"{hub_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set. "
            f"Download it where you have network (`hf download {hub_id}`), copy the cache, "
            f"or pass a local directory instead of the alias."
        )
