"""What weights a run measured, cheaply enough to check before every run (8B checkpoints included).

A local directory (a model, a fine-tuned checkpoint, an adapter, the embedded model's conversion):
every weight file and every config/tokenizer file at its top level, each as `SIZE METHOD:SHA256`.
Files up to 64 MiB are hashed whole (configs, tokenizers, adapters, tiny models). Larger weight
files are hashed over their safetensors header (the JSON at the start that gives every tensor's
name, dtype, shape and byte offsets) and eight 1 MiB blocks: the first, the last and six evenly
spaced between. That is enough to tell checkpoints apart: another architecture, dtype or sharding
changes the header or the sizes, and any training (the case that reuses a directory: `just train
... --force`) rewrites every tensor, so every sampled block changes. What it cannot see is an edit
of a few bytes between the blocks that keeps sizes and header, which no training run makes; the
data, which decides what a score means, is hashed whole (medbench/data/checksums.verify_splits).
Reading 8 MiB a file costs milliseconds where hashing a 16 GB checkpoint would cost a minute.

A hub id: the commit of the snapshot that loads (hub repositories are content-addressed by
commit), resolved from the local cache, or from the hub when online (config.json only).
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

from medbench.errors import MedbenchError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
CONFIG_FILES = (
    "config.json",
    "generation_config.json",
    "adapter_config.json",
    "quantize_config.json",
    "quant_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
)
WHOLE_BELOW = 64 * 2**20
BLOCK = 2**20
BLOCKS = 8
MAX_HEADER = 100 * 2**20  # safetensors' own limit


class FingerprintError(MedbenchError):
    pass


def fingerprint(source: str) -> dict:
    """{"files": {name: "SIZE METHOD:SHA256"}} for a directory, {"hub_id", "commit"} for a hub id."""
    if Path(source).is_dir():
        return {"files": directory_files(Path(source))}
    return {"hub_id": source, "commit": hub_commit(source)}


def directory_files(directory: Path) -> dict[str, str]:
    out = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file():
            continue
        if path.name.endswith(WEIGHT_SUFFIXES) or path.name.endswith(".index.json") or path.name in CONFIG_FILES:
            out[path.name] = file_fingerprint(path)
    if not out:
        raise FingerprintError(f"{directory} holds no weights or config files")
    return out


def file_fingerprint(path: Path) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= WHOLE_BELOW:
            while chunk := f.read(BLOCK):
                digest.update(chunk)
            return f"{size} sha256:{digest.hexdigest()}"
        if path.suffix == ".safetensors":
            (n,) = struct.unpack("<Q", f.read(8))
            if n > min(MAX_HEADER, size - 8):
                raise FingerprintError(f"{path}: not a safetensors file (header of {n} bytes)")
            digest.update(f.read(n))
        for i in range(BLOCKS):
            f.seek((size - BLOCK) * i // (BLOCKS - 1))
            digest.update(f.read(BLOCK))
    return f"{size} sampled:{digest.hexdigest()}"


def hub_commit(hub_id: str) -> str:
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in {"0", "", "false", "False"}
    if not offline:
        try:
            return Path(snapshot_download(hub_id, allow_patterns=["config.json"])).name
        except Exception:  # no network or no hub: the load falls back to the local cache, and so does this
            pass
    try:
        return Path(snapshot_download(hub_id, local_files_only=True, allow_patterns=["config.json"])).name
    except Exception:
        raise FingerprintError(
            f"{hub_id} is neither in the local Hugging Face cache nor reachable on the hub: "
            f"download it (`hf download {hub_id}`) or pass a local directory"
        ) from None


def changed_files(previous: dict, current: dict) -> list[str]:
    """Names whose fingerprints differ (added, removed or changed), or the commit change of a hub id."""
    if "files" in previous and "files" in current:
        a, b = previous["files"], current["files"]
        return sorted(name for name in set(a) | set(b) if a.get(name) != b.get(name))
    if previous != current:
        return [
            f"{previous.get('hub_id') or 'a directory'}@{previous.get('commit')} -> "
            f"{current.get('hub_id') or 'a directory'}@{current.get('commit')}"
        ]
    return []
