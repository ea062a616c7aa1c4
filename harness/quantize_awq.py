"""Make an AWQ W4A16 checkpoint (compressed-tensors format) with llmcompressor.

For models with no official AWQ upload (the embedded Gemma 3 270M; Gemma 3, whose QAT checkpoints
are quantized this way) this writes checkpoints/<alias>-awq/, which the `awq` variant loads
through transformers' compressed-tensors integration.

llmcompressor 0.14.0.1 pins transformers<=5.17 and torch<=2.14.0, which clash with medbench's
transformers 5.24, so this script runs in its own environment:
    pip install llmcompressor==0.14.0.1   # in a separate venv, with a CUDA torch
    python -m harness.quantize_awq gemma3-270m --source ~/.cache/medbench/gemma3-270m
Calibration uses training rows only (KorMedMCQA train, MedQA dev), never a test split.
"""

from __future__ import annotations

import argparse
import json
import random

from harness.data import KORMEDMCQA_EXAMS, load_rows
from harness.variants import checkpoint_path


def calibration_texts(n: int, seed: int) -> list[str]:
    rows = [r for exam in KORMEDMCQA_EXAMS for r in load_rows("kormedmcqa", exam, "train")]
    rows += load_rows("medqa", None, "dev")
    rows = random.Random(seed).sample(rows, min(n, len(rows)))
    letters = "ABCDE"
    return [r["question"] + "\n" + "\n".join(f"{letters[i]}. {o}" for i, o in enumerate(r["options"]))
            + f"\n정답： {r['answer']}" for r in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="registry alias (names the output checkpoints/<alias>-awq)")
    parser.add_argument("--source", required=True, help="bf16/fp32 weights to quantize (local dir or hub id)")
    parser.add_argument("--out", help="output directory (default checkpoints/<alias>-awq)")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--max-seq-length", type=int, default=512)
    # Symmetric 4-bit, group 128. The asymmetric W4A16_ASYM packs its zero points, and transformers
    # 5.24 with compressed-tensors 0.19 then refuses the checkpoint (zero-point shape mismatch, seen on GPU).
    parser.add_argument("--scheme", default="W4A16", help="compressed-tensors preset scheme")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = args.out or str(checkpoint_path(args.model, "awq"))
    tokenizer = AutoTokenizer.from_pretrained(args.source)
    model = AutoModelForCausalLM.from_pretrained(args.source, dtype=torch.bfloat16)
    texts = calibration_texts(args.samples, args.seed)
    ds = Dataset.from_dict({"text": texts}).map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_seq_length), batched=True,
        remove_columns=["text"])
    recipe = [AWQModifier(duo_scaling="both"),
              QuantizationModifier(ignore=["lm_head"], scheme=args.scheme, targets=["Linear"])]
    oneshot(model=model, dataset=ds, recipe=recipe, max_seq_length=args.max_seq_length,
            num_calibration_samples=len(texts))
    model.save_pretrained(out, save_compressed=True)
    tokenizer.save_pretrained(out)
    with open(f"{out}/medbench_awq.json", "w") as f:
        json.dump({"source": args.source, "scheme": args.scheme, "calibration_samples": len(texts),
                   "calibration_data": "KorMedMCQA train + MedQA dev", "max_seq_length": args.max_seq_length,
                   "tool": "llmcompressor AWQModifier + QuantizationModifier"}, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
