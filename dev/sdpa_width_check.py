"""Which attention kernel computes wrong fp32 scores for left-padded batches, and at which widths.

    PYTHONPATH=. python dev/sdpa_width_check.py [--widths 60-420] [--out results/bench/...]

Replays the failure the canary caught on an H200 (fp32, sdpa: 72 questions with scores that did not
depend on the question, all in batches whose padded width was 65, 97, ..., 353): a handful of real
MedQA prompts, each left-padded to every width in the range, scored under each SDPA backend forced
in turn (math, efficient, cudnn, flash where they accept the inputs) and under eager, compared with
the same prompt alone. Prints, per dtype and backend, the widths whose scores differ beyond tolerance.
The lead (pytorch/pytorch#191937): the memory-efficient kernel with an explicit mask returns wrong rows
when the key length is 1 mod 32.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {
    "math": SDPBackend.MATH,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
}


def letter_scores(model, rows: list[list[int]], width: int, letters: list[int]) -> torch.Tensor:
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, ctx in enumerate(rows):
        ids[r, width - len(ctx) :] = torch.tensor(ctx)
        mask[r, width - len(ctx) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    dev = next(model.parameters()).device
    with torch.no_grad():
        logits = (
            model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), logits_to_keep=1)
            .logits[:, -1]
            .float()
        )
    return torch.log_softmax(logits, -1)[:, letters].cpu()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", default="60-420")
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medbench.data.loader import load_rows
    from medbench.models.loading import base_weights
    from medbench.models.registry import resolve

    path = base_weights(resolve("gemma3-270m"))
    tok = AutoTokenizer.from_pretrained(path)
    docs = load_rows("medqa", None, "test")[: args.prompts]
    # The last 48 tokens of each prompt: short enough to pad to every width of the range.
    rows = [ids[-48:] for ids in tok([f"Question: {d['question']}\nAnswer:" for d in docs])["input_ids"]]
    letters = [tok.encode(f" {x}", add_special_tokens=False)[0] for x in "ABCD"]
    lo, hi = (int(x) for x in args.widths.split("-"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = {
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "prompt_tokens": [len(r) for r in rows],
    }
    for dtype in (torch.float32, torch.bfloat16):
        for attn in ("sdpa", "eager"):
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn).to(device).eval()
            alone = torch.cat([letter_scores(model, [r], len(r), letters) for r in rows])
            for backend in BACKENDS if attn == "sdpa" else ["-"]:
                bad, refused, worst = [], 0, 0.0
                for width in range(lo, hi + 1):
                    try:
                        if attn == "sdpa":
                            with sdpa_kernel([BACKENDS[backend]]):
                                got = letter_scores(model, rows, width, letters)
                        else:
                            got = letter_scores(model, rows, width, letters)
                    except RuntimeError:  # the backend does not take these inputs
                        refused += 1
                        continue
                    diff = float((got - alone).abs().max())
                    worst = max(worst, diff)
                    if diff > (1e-3 if dtype == torch.float32 else 1.0):  # bf16: beyond rounding wobble
                        bad.append(width)
                key = f"{str(dtype).split('.')[-1]}/{attn}/{backend}"
                out[key] = {
                    "widths_tried": hi - lo + 1 - refused,
                    "refused": refused,
                    "wrong_widths": bad,
                    "wrong_widths_mod_32": sorted({w % 32 for w in bad}),
                    "max_abs_diff": worst,
                }
                print(key, json.dumps(out[key]), flush=True)
            del model
            torch.cuda.empty_cache()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
