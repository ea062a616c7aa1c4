"""Every registry entry at its published shape with random weights: parameters, load time, memory, questions/s.

For each entry (medbench/models/models.yaml): the published config (medbench/models/configs/, or the embedded
270M's own), random bf16 weights built directly on the GPU (nothing is written to disk: an 8B shape would take
minutes to save and load), then
  bf16  the fast `mc` scorer (medbench/eval/lm.py) on a fixed handful of questions;
  bnb   the same weights quantized in memory, Linear by Linear, with bitsandbytes' Linear4bit at the `bnb`
        variant's settings (medbench/models/variants.yaml: NF4, double quantization, bf16 compute; the output
        head stays bf16, as transformers leaves it), then the same questions.
One JSON row per entry and variant goes to results/bench/registry-<gpu>.json (`weights: random`: the scores
are meaningless, the speed and memory are the architecture's).

The tokenizer is the embedded 270M's (the only one at hand offline). Its ids are folded into each model's
published vocabulary (id mod vocab_size) so that a 102k-vocabulary EXAONE embeds them: prompt lengths are the
real questions' lengths under Gemma's tokenizer, token identities do not matter for random weights.

    python dev/gpu_registry_rows.py                 # on one GPU, every entry (minutes on an H100)
    python dev/gpu_registry_rows.py --tiny          # CPU: each architecture scaled down (the test path)
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TASKS = ("medbench_medqa_usmle", "medbench_kormedmcqa_doctor")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="each architecture scaled down, on CPU (fp32; bnb skipped)")
    p.add_argument("--aliases", default="", help="comma-separated registry aliases (default: every entry)")
    p.add_argument("--questions", type=int, default=16, help="questions per task (two tasks: MedQA, KorMedMCQA doctor)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--variants", default="bf16,bnb")
    p.add_argument("--out", default=None, help="default: results/bench/registry-<gpu>.json (registry-tiny-cpu.json)")
    return p.parse_args(argv)


def raw_config(alias: str, tiny: bool, tokenizer_len: int) -> dict:
    from medbench.models.loading import base_weights
    from medbench.models.registry import resolve
    from medbench.models.shapes import shape_dict, tiny_dict

    spec = resolve(alias)
    if not spec.shape:  # the embedded model: its own config
        if tiny:
            raise SystemExit(f"{alias} has no shape to scale down")
        return json.loads((Path(base_weights(spec)) / "config.json").read_text())
    return tiny_dict(alias, tokenizer_len) if tiny else shape_dict(alias)[0]


def build(raw: dict, device: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    from medbench.models.shapes import config_from_dict

    config = config_from_dict(raw)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def quantize_bnb(model, quantization: dict):
    """Every nn.Linear but the output head -> bitsandbytes Linear4bit, quantized on the GPU from its own weights."""
    import bitsandbytes as bnb

    compute = getattr(torch, quantization["bnb_4bit_compute_dtype"])
    head = model.get_output_embeddings()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear) or child is head:
                continue
            q = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=compute,
                compress_statistics=quantization["bnb_4bit_use_double_quant"],
                quant_type=quantization["bnb_4bit_quant_type"],
                device="meta",
            )
            q.weight = bnb.nn.Params4bit(
                child.weight.data,
                requires_grad=False,
                compress_statistics=quantization["bnb_4bit_use_double_quant"],
                quant_type=quantization["bnb_4bit_quant_type"],
            ).to(child.weight.device)
            if child.bias is not None:
                q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, name, q)
    return model


def question_requests(tokenizer_dir: str, n: int):
    """(context, continuation) pairs of the first n questions of each task, as lm-eval builds them."""
    from lm_eval.tasks import TaskManager

    from medbench.paths import tasks_dir

    tasks = TaskManager(include_path=str(tasks_dir()), include_defaults=False).load(list(TASKS))["tasks"]
    pairs, questions = [], 0
    for name in TASKS:
        task = tasks[name]
        task.build_all_requests(limit=n, rank=0, world_size=1)
        pairs += [inst.args for inst in task.instances]
        questions += len({inst.doc_id for inst in task.instances})
    return pairs, questions


def score(model, tokenizer, pairs, vocab_size: int, batch_size: int, device: str) -> float:
    """Seconds for the fast mc scorer over every pair (ids folded into the model's vocabulary)."""
    from medbench.eval.lm import MedbenchLM

    lm = MedbenchLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    requests = []
    for context, continuation in pairs:
        ctx, cont = lm._encode_pair(context, continuation)
        requests.append(((context, continuation), [t % vocab_size for t in ctx], [t % vocab_size for t in cont]))
    lm._last_token_scores(requests[: 2 * batch_size], disable_tqdm=True)  # warm-up (kernels, allocator)
    sync(device)
    start = time.perf_counter()
    results = lm._loglikelihood_tokens(requests, disable_tqdm=True)
    sync(device)
    assert len(results) == len(requests)
    return time.perf_counter() - start


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_gib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if device.startswith("cuda") else None


def row_for(alias: str, variant: str, args, tokenizer, tokenizer_dir, pairs, questions, device, gpu) -> dict:
    from medbench.models.registry import resolve
    from medbench.models.shapes import text_part
    from medbench.models.variants import load_variants

    spec = resolve(alias)
    raw = raw_config(alias, args.tiny, len(tokenizer))
    vocab = int(text_part(raw)["vocab_size"])
    row = {
        "alias": alias,
        "hub_id": spec.hub_id,
        "weights": "random",
        "variant": variant,
        "shape": "tiny" if args.tiny else "published",
        "model_type": raw["model_type"],
        "params_b_registry": spec.params_b,
        "vocab_size": vocab,
        "device": gpu,
        "tokenizer": "gemma3-270m, ids folded modulo vocab_size",
    }
    if variant == "bnb" and not device.startswith("cuda"):
        return {**row, "skipped": "bnb needs CUDA"}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    start = time.perf_counter()
    model = build(raw, device, dtype)
    sync(device)
    row["build_seconds"] = round(time.perf_counter() - start, 2)
    row["model_class"] = type(model).__name__
    row["params"] = sum(p.numel() for p in model.parameters())
    if variant == "bnb":
        start = time.perf_counter()
        model = quantize_bnb(model, load_variants()["bnb"].quantization)
        gc.collect()
        torch.cuda.empty_cache()
        sync(device)
        row["quantize_seconds"] = round(time.perf_counter() - start, 2)
    row["load_seconds"] = round(row["build_seconds"] + row.get("quantize_seconds", 0.0), 2)
    row["footprint_gib"] = round(model.get_memory_footprint() / 2**30, 3)
    row["dtype"] = str(dtype).replace("torch.", "")
    with torch.no_grad():
        seconds = score(model, tokenizer, pairs, vocab, args.batch_size, device)
    row.update(
        questions=questions,
        scored_continuations=len(pairs),
        score_seconds=round(seconds, 3),
        questions_per_second=round(questions / seconds, 2),
        peak_gpu_gib=peak_gib(device),
    )
    del model
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return row


def main(argv=None) -> Path:
    from transformers import AutoTokenizer

    from medbench.models.loading import base_weights
    from medbench.models.registry import load_registry, resolve
    from medbench.models.shapes import TOKENIZER_ALIAS
    from medbench.paths import results_dir
    from medbench.records import provenance
    from medbench.records.io import write_json

    args = parse_args(argv)
    device = "cpu" if args.tiny else "cuda"
    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("needs a GPU (or --tiny for the CPU path)")
    gpu = "cpu" if args.tiny else torch.cuda.get_device_name(0)
    registry = load_registry()
    aliases = [a for a in args.aliases.split(",") if a] or [a for a, s in registry.items() if s.shape or not args.tiny]
    tokenizer_dir = base_weights(resolve(TOKENIZER_ALIAS))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    pairs, questions = question_requests(tokenizer_dir, args.questions)
    out = (
        Path(args.out)
        if args.out
        else (results_dir() / "bench" / f"registry-{'tiny-cpu' if args.tiny else gpu.replace(' ', '-')}.json")
    )
    rows, started = [], time.perf_counter()
    for alias in aliases:
        for variant in args.variants.split(","):
            try:
                row = row_for(alias, variant, args, tokenizer, tokenizer_dir, pairs, questions, device, gpu)
            except Exception as e:  # one entry failing is a finding, not the end of the table
                row = {"alias": alias, "variant": variant, "weights": "random", "error": f"{type(e).__name__}: {e}"}
                gc.collect()
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
            rows.append(row)
            print(json.dumps(row), flush=True)
    prov = provenance.provenance()
    Path(out).parent.mkdir(parents=True, exist_ok=True)  # a fresh results folder has no bench/ yet
    write_json(
        out,
        {
            "device": gpu,
            "weights": "random",
            "tasks": list(TASKS),
            "questions_per_task": args.questions,
            "batch_size": args.batch_size,
            "wall_seconds": round(time.perf_counter() - started, 1),
            **prov,
            "rows": rows,
        },
    )
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
