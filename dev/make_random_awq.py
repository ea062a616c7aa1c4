"""GPU proof of the official-AWQ loading route on a real-shape model with random weights.

Builds a random Qwen3-0.6B-shaped model, quantizes every decoder Linear to 4 bits (asymmetric, group 128,
round-to-nearest: the AWQ search only changes which scales are chosen, not the format), packs them exactly
as AutoAWQ's GEMM layout (qweight/qzeros/scales, AWQ nibble order) with `quant_method: awq` in config.json,
then loads that checkpoint through medbench.models.loading.load's `awq` variant, for each route, and checks that
the loaded weights equal the dequantized reference and that the logits of a few prompts match a
reference model built from those weights. Random weights: the scores prove the route, not a model.

    PYTHONPATH=. python dev/make_random_awq.py --out /tmp/random-awq
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import torch

# Qwen/Qwen3-0.6B's config.json (the architecture only).
QWEN3_0_6B = {
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
    "attention_bias": False,
}
GROUP = 128
# AutoAWQ WQLinear_GEMM.from_linear: bits 4i..4i+3 of word col hold output column col*8 + PACK_ORDER[i].
PACK_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
ALIAS = "random-qwen3-0.6b"


def pack_awq(ints: torch.Tensor) -> torch.Tensor:
    """[rows, cols] of 0..15 -> int32 [rows, cols/8] in the AWQ GEMM nibble order."""
    rows, cols = ints.shape
    grouped = ints.to(torch.int64).reshape(rows, cols // 8, 8)[:, :, PACK_ORDER]
    shifts = torch.arange(0, 32, 4, dtype=torch.int64, device=ints.device)
    words = (grouped << shifts).sum(dim=-1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def quantize_rtn(w: torch.Tensor):
    """Asymmetric 4-bit group quantization of an nn.Linear weight [out, in] -> q, z, s ([out, in/group])."""
    out_f, in_f = w.shape
    g = w.float().reshape(out_f, in_f // GROUP, GROUP)
    lo, hi = g.amin(-1).clamp(max=0), g.amax(-1).clamp(min=0)
    s = ((hi - lo).clamp(min=1e-5) / 15).half()
    z = torch.round(-lo / s.float()).clamp(0, 15)
    q = (torch.round(g / s.float().unsqueeze(-1)) + z.unsqueeze(-1)).clamp(0, 15).reshape(out_f, in_f)
    return q.to(torch.int32), z.to(torch.int32), s


def dequantize_reference(q, z, s) -> torch.Tensor:
    zz, ss = z.repeat_interleave(GROUP, dim=1), s.float().repeat_interleave(GROUP, dim=1)
    return ((q - zz).float() * ss).half()


def build(out: Path, layers: int, seed: int, device: str):
    """The AWQ checkpoint (out/awq), a tokenizer-only base (out/base), and the reference state dict."""
    from safetensors.torch import save_file
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**(QWEN3_0_6B | {"num_hidden_layers": layers}))
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3ForCausalLM(config).half()
    awq_dir, tensors, reference = out / "awq", {}, {}
    for name, p in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        if ".layers." in name and name.endswith("_proj.weight"):
            module = name[: -len(".weight")]
            q, z, s = quantize_rtn(p)
            tensors[f"{module}.qweight"] = pack_awq(q.t()).cpu()
            tensors[f"{module}.qzeros"] = pack_awq(z.t()).cpu()
            tensors[f"{module}.scales"] = s.t().contiguous().cpu()
            reference[name] = dequantize_reference(q, z, s)
        else:
            tensors[name] = p.detach().clone().cpu()
            reference[name] = p.detach().clone()
    del model
    shutil.rmtree(awq_dir, ignore_errors=True)
    awq_dir.mkdir(parents=True)
    save_file(tensors, str(awq_dir / "model.safetensors"), metadata={"format": "pt"})
    cfg = config.to_dict() | {
        "torch_dtype": "float16",
        "quantization_config": {
            "bits": 4,
            "group_size": GROUP,
            "modules_to_not_convert": None,
            "quant_method": "awq",
            "version": "gemm",
            "zero_point": True,
        },
    }
    (awq_dir / "config.json").write_text(json.dumps(cfg, indent=2))
    make_tokenizer(out / "base", config.vocab_size)
    return config, reference


def make_tokenizer(path: Path, vocab_size: int) -> None:
    """A word-level tokenizer over the model's whole vocabulary ("w0".."wN"): the loader takes the base's tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    ).save_pretrained(path)


@torch.no_grad()
def score(model, tokenizer, device: str, seed: int) -> list[dict]:
    """Five 4-option 'questions' of random words: the option with the highest summed log-probability wins."""
    gen = torch.Generator().manual_seed(seed)

    def words(n: int) -> str:
        return " ".join(f"w{int(i)}" for i in torch.randint(3, 5000, (n,), generator=gen))

    out = []
    for _ in range(5):
        prompt, options = words(48), [words(4) for _ in range(4)]
        lps = []
        for opt in options:
            ids = tokenizer(prompt + " " + opt, return_tensors="pt").input_ids.to(device)
            n_opt = len(tokenizer(opt).input_ids)
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            lps.append(float(logp[-n_opt:].gather(-1, ids[0, -n_opt:, None]).sum()))
        out.append({"logprobs": [round(x, 4) for x in lps], "choice": "ABCD"[max(range(4), key=lps.__getitem__)]})
    return out


def prove(out: Path, layers: int, routes: list[str], seed: int, device: str = "cuda") -> dict:
    from transformers import AutoTokenizer, Qwen3ForCausalLM

    from medbench.models.loading import load
    from medbench.models.registry import ModelSpec
    from medbench.settings import EvalSettings

    t0 = time.perf_counter()
    config, reference = build(out, layers, seed, device)
    summary = {
        "shape": f"Qwen3-0.6B, {layers} of {QWEN3_0_6B['num_hidden_layers']} layers",
        "build_seconds": round(time.perf_counter() - t0, 1),
        "device": torch.cuda.get_device_name() if device == "cuda" else device,
        "routes": {},
    }
    with torch.device(device):
        ref = Qwen3ForCausalLM(config).half().eval()
    missing, unexpected = ref.load_state_dict(reference, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    ref_choices = [s["choice"] for s in score(ref, AutoTokenizer.from_pretrained(out / "base"), device, seed)]

    # The awq variant's plan takes checkpoints/<alias>-awq first: point it at the AWQ checkpoint.
    (out / "checkpoints").mkdir(exist_ok=True)
    link = out / "checkpoints" / f"{ALIAS}-awq"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to((out / "awq").resolve())
    os.environ["MEDBENCH_CHECKPOINTS"] = str(out / "checkpoints")
    os.environ["MEDBENCH_CACHE"] = str(out / "cache")
    spec = ModelSpec(alias=ALIAS, path=str(out / "base"))
    for route in routes:
        os.environ["MEDBENCH_AWQ_ROUTE"] = route
        shutil.rmtree(out / "cache", ignore_errors=True)
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        loaded = load(spec, "awq", EvalSettings(device=device))
        convert_and_load = time.perf_counter() - t
        state = loaded.model.state_dict()
        mismatched = [k for k, v in reference.items() if not torch.equal(state[k].to(v.dtype), v)]
        ids = loaded.tokenizer("w11 w500 w4321 w77 w9 w1234 w42 w3000", return_tensors="pt").input_ids.to(device)
        with torch.no_grad():
            diff = float((loaded.model(input_ids=ids).logits.float() - ref(input_ids=ids).logits.float()).abs().max())
        scores = score(loaded.model, loaded.tokenizer, device, seed)
        summary["routes"][route] = {
            "awq_route": loaded.awq_route,
            "source": loaded.source,
            "dtype": loaded.dtype,
            "attn_implementation": loaded.attn_implementation,
            "quantization": (loaded.quantization or {}).get("quant_method"),
            "convert_and_load_seconds": round(convert_and_load, 1),
            "footprint_gib_at_load": round(loaded.footprint_bytes / 2**30, 3),
            "footprint_gib_after_forward": round(loaded.model.get_memory_footprint() / 2**30, 3),
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if device == "cuda" else None,
            "weights_equal_reference": not mismatched,
            "mismatched": mismatched[:5],
            # Equal weights, but kernels (and flash-attention where installed) differ: logits agree to fp16 rounding.
            "max_abs_logit_diff_vs_reference": diff,
            "scores": scores,
            "same_choices_as_reference": [s["choice"] for s in scores] == ref_choices,
        }
        del loaded, state
    summary["ok"] = all(
        r["weights_equal_reference"] and r["awq_route"] == name and r["same_choices_as_reference"]
        for name, r in summary["routes"].items()
    )
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/random-awq")
    parser.add_argument("--layers", type=int, default=QWEN3_0_6B["num_hidden_layers"])
    parser.add_argument(
        "--routes",
        nargs="+",
        choices=["dequantized", "compressed-tensors"],
        help="default: dequantized, and compressed-tensors where it is installed",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--try-native",
        action="store_true",
        help="also try transformers' own quant_method awq load (gptqmodel) and report what happens",
    )
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU: the awq variant refuses to load without one")
    routes = args.routes or ["dequantized"] + (
        ["compressed-tensors"] if importlib.util.find_spec("compressed_tensors") else []
    )
    out = Path(args.out)
    summary = prove(out, args.layers, routes, args.seed)
    if args.try_native:
        from transformers import AutoModelForCausalLM

        try:
            AutoModelForCausalLM.from_pretrained(out / "awq", dtype=torch.float16, device_map={"": 0})
            summary["native_awq_load"] = "loaded"
        except Exception as e:  # noqa: BLE001 (what the native route raises is the report)
            summary["native_awq_load"] = f"{type(e).__name__}: {str(e)[:500]}"
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    if not summary["ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
