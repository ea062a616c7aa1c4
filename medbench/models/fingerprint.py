"""What weights a run measured: every byte that decides a score.

A local directory (a model, a fine-tuned checkpoint, an adapter, the embedded model's conversion): every weight file
and every config, tokenizer and quantization file at its top level, each as `SIZE sha256:HEX` of the whole file,
streamed. Hashes are remembered by each file's size, mtime, ctime and inode (medbench/hashing.py), so the check
before every run costs a stat per file once a checkpoint has been hashed; retraining into the same folder rewrites
the files and so changes their stamps. A change to one value of one tensor changes its file's hash.

A hub id: the commit of the snapshot that loads (hub repositories are content-addressed by commit), resolved from
the local cache, or from the hub when online (config.json only).
"""

from __future__ import annotations

import os
from pathlib import Path

from medbench.errors import MedbenchError
from medbench.hashing import HashCache

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
    "medbench_awq.json",
    "recipe.yaml",
)


class FingerprintError(MedbenchError):
    pass


def fingerprint(source: str) -> dict:
    """{"files": {name: "SIZE METHOD:SHA256"}} for a directory, {"hub_id", "commit"} for a hub id."""
    if Path(source).is_dir():
        return {"files": directory_files(Path(source))}
    return {"hub_id": source, "commit": hub_commit(source)}


def directory_files(directory: Path) -> dict[str, str]:
    out = {}
    cache = HashCache()
    for path in sorted(directory.iterdir()):
        if not path.is_file():
            continue
        if path.name.endswith(WEIGHT_SUFFIXES) or path.name.endswith(".index.json") or path.name in CONFIG_FILES:
            out[path.name] = f"{path.stat().st_size} sha256:{cache.sha256(path)}"
    cache.save()
    if not out:
        raise FingerprintError(f"{directory} holds no weights or config files")
    return out


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
