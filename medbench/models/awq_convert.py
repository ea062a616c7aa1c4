"""Official AWQ checkpoints (`quant_method: awq`, GEMM packing) -> checkpoints the pinned stack loads.

transformers 5.24 hands `quant_method: awq` to gptqmodel, which needs torch >= 2.14.1. This module
reads the AWQ tensors itself and writes, once, under MEDBENCH_CACHE:

- route `dequantized` (the default): a plain float16 checkpoint, W = (q - z) * s exactly as AutoAWQ's
  GEMM kernel reconstructs it. Accuracy-only: the model then occupies dense fp16 memory, not 4-bit.
- route `compressed-tensors`: the same integers and scales repacked as compressed-tensors
  `pack-quantized` W4A16 (asymmetric, zero points), loaded with `CompressedTensorsConfig(dequantize=True)`.
  compressed-tensors 0.19.0 cannot load an asymmetric pack-quantized checkpoint compressed: it builds
  the empty model on the meta device, and its meta-device `compress` (pack_quantized/base.py) shapes
  `weight_packed` but leaves `weight_zero_point` unpacked, [out, groups] int8, so the checkpoint's packed
  [out/8, groups] int32 zero points do not fit (the same zero-point shape mismatch our asymmetric
  llmcompressor checkpoint hit). Even where that load works (symmetric), compressed-tensors decompresses
  every layer on the first forward pass, so neither route keeps 4-bit weights in memory under transformers.
`dequantized` is the default for that reason: it computes the same weights and needs no compressed-tensors,
which only the GPU image installs. MEDBENCH_AWQ_ROUTE picks the other.

The AWQ GEMM layout (AutoAWQ `WQLinear_GEMM.from_linear`, `awq/utils/packing_utils.py`):
    qweight int32 [in_features, out_features / 8]
    qzeros  int32 [in_features / group, out_features / 8]
    scales  fp16  [in_features / group, out_features]
Each int32 holds 8 four-bit values of consecutive output columns col*8 .. col*8+7; nibble slot i
(bits 4i .. 4i+3) holds column col*8 + AWQ_ORDER[i].
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
# Its inverse: output column j of a group of 8 sits in nibble slot AWQ_REVERSE_ORDER[j].
AWQ_REVERSE_ORDER = tuple(AWQ_ORDER.index(j) for j in range(8))
ROUTES = ("dequantized", "compressed-tensors")
DEFAULT_ROUTE = "dequantized"
# Bumped whenever the output of a route changes, so that older cached conversions are redone.
CONVERTER_VERSION = 1
MARKER = "medbench_awq.json"
_SHARD_BYTES = 4 * 2**30
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class AwqFormatError(ValueError):
    pass


def unpack_int32_awq(packed: torch.Tensor) -> torch.Tensor:
    """int32 [rows, cols/8] in AWQ nibble order -> uint8 [rows, cols] in column order, values 0..15."""
    if packed.dtype != torch.int32 or packed.dim() != 2:
        raise AwqFormatError(f"expected a 2-D int32 tensor, got {packed.dtype} {tuple(packed.shape)}")
    shifts = torch.arange(0, 32, 4, dtype=torch.int32, device=packed.device)
    # & 0xF after the shift: int32 shifts are arithmetic, and the top nibble carries the sign bit.
    slots = (packed.unsqueeze(-1) >> shifts) & 0xF
    return slots[:, :, list(AWQ_REVERSE_ORDER)].reshape(packed.shape[0], -1).to(torch.uint8)


def unpack_awq_gemm(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor, group_size: int = 128):
    """AWQ GEMM tensors -> (q uint8 [out, in] 0..15, z uint8 [out, in/group] 0..15, s [out, in/group]).

    Everything comes back in nn.Linear orientation: W[o, i] = (q[o, i] - z[o, i // group]) * s[o, i // group].
    """
    in_features = qweight.shape[0]
    out_features = qweight.shape[1] * 8
    if group_size in (-1, 0, None):
        group_size = in_features
    groups, rem = divmod(in_features, group_size)
    if rem or tuple(qzeros.shape) != (groups, out_features // 8) or tuple(scales.shape) != (groups, out_features):
        raise AwqFormatError(
            f"inconsistent AWQ GEMM shapes for group size {group_size}: qweight {tuple(qweight.shape)}, "
            f"qzeros {tuple(qzeros.shape)}, scales {tuple(scales.shape)}"
        )
    q = unpack_int32_awq(qweight).t().contiguous()
    z = unpack_int32_awq(qzeros).t().contiguous()
    return q, z, scales.t().contiguous()


def dequantize_awq_gemm(qweight, qzeros, scales, group_size: int = 128) -> torch.Tensor:
    """W [out, in] in the scales' dtype, as AutoAWQ's dequantize_gemm computes it: (q - z) * s, one rounding."""
    q, z, s = unpack_awq_gemm(qweight, qzeros, scales, group_size)
    group = q.shape[1] // s.shape[1]
    diff = q.to(torch.int16) - z.to(torch.int16).repeat_interleave(group, dim=1)
    # An integer in -15..15 is exact in fp16, and fp16 * fp16 is exact in fp32: one rounding, in every dtype.
    return (diff.to(torch.float32) * s.to(torch.float32).repeat_interleave(group, dim=1)).to(s.dtype)


def awq_settings(config: dict) -> dict:
    """The checkpoint's quantization_config, refused unless it is the 4-bit GEMM layout read here."""
    qc = config.get("quantization_config") or {}
    if str(qc.get("quant_method", "")).lower() != "awq":
        raise AwqFormatError(f"not an AWQ checkpoint: quant_method {qc.get('quant_method')!r}")
    version = str(qc.get("version", "gemm")).lower()
    bits = qc.get("bits", qc.get("w_bit", 4))
    if version != "gemm" or bits != 4 or qc.get("zero_point", True) is not True:
        raise AwqFormatError(
            f"only 4-bit AWQ GEMM with zero points is supported; this checkpoint has version "
            f"{version!r}, bits {bits}, zero_point {qc.get('zero_point')}"
        )
    return {"group_size": int(qc.get("group_size", qc.get("q_group_size", 128))), "bits": 4, "version": "gemm"}


def is_awq_checkpoint(path: str | Path) -> bool:
    config = Path(path) / "config.json"
    if not config.exists():
        return False
    qc = json.loads(config.read_text()).get("quantization_config") or {}
    return str(qc.get("quant_method", "")).lower() == "awq"


def _weight_files(src: Path) -> list[Path]:
    files = sorted(src.glob("*.safetensors"))
    if not files:
        raise AwqFormatError(f"{src} has no *.safetensors files (AWQ .bin checkpoints are not read here)")
    return files


def _quantized_modules(keys: set[str]) -> list[str]:
    modules = sorted(k[: -len(".qweight")] for k in keys if k.endswith(".qweight"))
    for m in modules:
        missing = [f"{m}.{part}" for part in ("qzeros", "scales") if f"{m}.{part}" not in keys]
        if missing:
            raise AwqFormatError(f"{m}.qweight without {', '.join(missing)}")
    if not modules:
        raise AwqFormatError("no *.qweight tensors: the weights are not AWQ-packed")
    return modules


def _converted_tensors(src: Path, route: str, group_size: int):
    """Yield (name, tensor) of the converted checkpoint, one AWQ module at a time (bounded memory)."""
    from safetensors import safe_open

    handles = [safe_open(str(f), framework="pt") for f in _weight_files(src)]
    where = {k: h for h in handles for k in h.keys()}  # noqa: SIM118 (safe_open handles are not iterable)
    modules = _quantized_modules(set(where))
    packed_parts = {f"{m}.{p}" for m in modules for p in ("qweight", "qzeros", "scales")}
    for name in sorted(where):
        if name not in packed_parts:
            yield name, where[name].get_tensor(name)
    for m in modules:
        qweight, qzeros, scales = (where[f"{m}.{p}"].get_tensor(f"{m}.{p}") for p in ("qweight", "qzeros", "scales"))
        if route == "dequantized":
            yield f"{m}.weight", dequantize_awq_gemm(qweight, qzeros, scales, group_size)
        else:
            yield from _compressed_tensors_module(m, qweight, qzeros, scales, group_size)


def _compressed_tensors_module(m, qweight, qzeros, scales, group_size):
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32

    q, z, s = unpack_awq_gemm(qweight, qzeros, scales, group_size)
    # compressed-tensors keeps 4-bit values signed (-8..7) and dequantizes (q - zp) * s: shifting both q
    # and z by 8 leaves every difference, and so every weight, as AWQ had it.
    yield f"{m}.weight_packed", pack_to_int32((q.to(torch.int16) - 8).to(torch.int8), 4)
    yield f"{m}.weight_scale", s
    yield f"{m}.weight_zero_point", pack_to_int32((z.to(torch.int16) - 8).to(torch.int8), 4, packed_dim=0)
    yield f"{m}.weight_shape", torch.tensor(q.shape, dtype=torch.int64)


def compressed_tensors_config(modules: list[str], group_size: int) -> dict:
    """W4A16 asymmetric group quantization over exactly the modules AWQ quantized (names, not classes:
    AWQ leaves lm_head and any modules_to_not_convert dense)."""
    return {
        "quant_method": "compressed-tensors",
        "format": "pack-quantized",
        "quantization_status": "compressed",
        "config_groups": {
            "group_0": {
                "targets": modules,
                "weights": {
                    "num_bits": 4,
                    "type": "int",
                    "symmetric": False,
                    "strategy": "group",
                    "group_size": group_size,
                    "dynamic": False,
                    "actorder": None,
                    "observer": "minmax",
                },
                "input_activations": None,
                "output_activations": None,
                "format": "pack-quantized",
            }
        },
        "ignore": [],
        "kv_cache_scheme": None,
        "sparsity_config": {},
    }


def _write_shards(tensors, out: Path) -> None:
    from safetensors.torch import save_file

    shards, current, size = [], {}, 0
    for name, tensor in tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > _SHARD_BYTES:
            shards.append(current)
            current, size = {}, 0
        current[name] = tensor.contiguous()
        size += nbytes
    shards.append(current)
    if len(shards) == 1:
        save_file(shards[0], str(out / "model.safetensors"), metadata={"format": "pt"})
        return
    names, total = {}, 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / fname), metadata={"format": "pt"})
        for name, t in shard.items():
            names[name] = fname
            total += t.numel() * t.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(names.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def fingerprint(src: Path) -> str:
    """Identity of an AWQ checkpoint's contents, cheap to compute: config plus weight file names and sizes."""
    h = hashlib.sha256((src / "config.json").read_bytes())
    for f in _weight_files(src):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


def convert(src: str | Path, out: str | Path, route: str = DEFAULT_ROUTE) -> Path:
    """Write the converted checkpoint of the AWQ directory `src` to `out` (replaced if present)."""
    if route not in ROUTES:
        raise ValueError(f"unknown AWQ route {route!r}; choose from {', '.join(ROUTES)}")
    src, out = Path(src), Path(out)
    config = json.loads((src / "config.json").read_text())
    settings = awq_settings(config)
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _write_shards(_converted_tensors(src, route, settings["group_size"]), work)
    awq_qc = config.pop("quantization_config")
    if route == "compressed-tensors":
        modules = sorted(k[: -len(".weight_packed")] for k in _all_keys(work) if k.endswith(".weight_packed"))
        config["quantization_config"] = compressed_tensors_config(modules, settings["group_size"])
    (work / "config.json").write_text(json.dumps(config, indent=2))
    for f in src.iterdir():  # tokenizer and generation config travel along; weights were rewritten
        if (
            f.is_file()
            and f.name != "config.json"
            and not f.name.endswith(_WEIGHT_SUFFIXES)
            and not f.name.endswith(".index.json")
        ):
            shutil.copy2(f, work / f.name)
    (work / MARKER).write_text(
        json.dumps(
            {
                "awq_route": route,
                "source": str(src),
                "source_fingerprint": fingerprint(src),
                "source_quantization_config": awq_qc,
                "converter_version": CONVERTER_VERSION,
                "note": "accuracy-only: weights are dense in memory"
                if route == "dequantized"
                else "compressed-tensors pack-quantized W4A16 asymmetric; loaded with dequantize=True",
            },
            indent=2,
        )
    )
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
    return out


def _all_keys(path: Path) -> set[str]:
    from safetensors import safe_open

    keys = set()
    for f in path.glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as h:
            keys |= set(h.keys())
    return keys


def chosen_route() -> str:
    route = os.environ.get("MEDBENCH_AWQ_ROUTE", DEFAULT_ROUTE)
    if route not in ROUTES:
        raise ValueError(f"MEDBENCH_AWQ_ROUTE={route!r}; choose from {', '.join(ROUTES)}")
    return route


def local_dir(source: str) -> Path | None:
    """A local directory, or the cached snapshot of a hub id (downloaded unless HF_HUB_OFFLINE); None if neither."""
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(source, local_files_only=True))
    except LocalEntryNotFoundError:
        if os.environ.get("HF_HUB_OFFLINE", "0") not in {"0", "", "false", "False"}:
            return None
        return Path(snapshot_download(source))


def cached_conversion(src: Path, route: str, cache: Path) -> Path:
    """The conversion of `src` by `route` under `cache`, made on first use and reused while the source is unchanged."""
    digest = hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:10]
    out = cache / "awq" / f"{src.name}-{digest}-{route}"
    marker = out / MARKER
    if marker.exists():
        recorded = json.loads(marker.read_text())
        if (
            recorded.get("source_fingerprint") == fingerprint(src)
            and recorded.get("converter_version") == CONVERTER_VERSION
        ):
            return out
    return convert(src, out, route)


def prepare(source: str, cache: Path, route: str | None = None) -> tuple[str, str | None]:
    """(weights to load, AWQ route): an official AWQ checkpoint becomes its cached conversion; others pass as is."""
    src = local_dir(source)
    if src is None or not is_awq_checkpoint(src):
        return source, None
    route = route or chosen_route()
    return str(cached_conversion(src, route, cache)), route


def load_kwargs(route: str | None) -> dict:
    """from_pretrained arguments the route needs."""
    if route != "compressed-tensors":
        return {}
    from transformers import CompressedTensorsConfig

    # dequantize=True: compressed-tensors 0.19 cannot load asymmetric pack-quantized layers compressed (above).
    return {"quantization_config": CompressedTensorsConfig(dequantize=True)}
