"""Make an AWQ W4A16 checkpoint (compressed-tensors format) with llmcompressor.

For models with no official AWQ upload (the embedded Gemma 3 270M; Gemma 3, whose QAT checkpoints
are quantized this way) this writes checkpoints/<alias>-awq/, which the `awq` variant loads
through transformers' compressed-tensors integration.

llmcompressor 0.14.0.1 pins transformers<=5.17 and torch<=2.14.0, which clash with medbench's
transformers 5.24, so this script runs in its own environment:
    pip install llmcompressor==0.14.0.1   # in a separate venv, with a CUDA torch
    python -m medbench.cli quantize-awq gemma3-270m --source ~/.cache/medbench/gemma3-270m
Calibration uses training rows only (KorMedMCQA train, MedQA dev), never a test split.
"""

from __future__ import annotations

import json
import random

from medbench.data.loader import KORMEDMCQA_EXAMS, load_rows
from medbench.models.variants import checkpoint_path


def calibration_texts(n: int, seed: int) -> list[str]:
    rows = [r for exam in KORMEDMCQA_EXAMS for r in load_rows("kormedmcqa", exam, "train")]
    rows += load_rows("medqa", None, "dev")
    rows = random.Random(seed).sample(rows, min(n, len(rows)))
    letters = "ABCDE"
    return [
        r["question"]
        + "\n"
        + "\n".join(f"{letters[i]}. {o}" for i, o in enumerate(r["options"]))
        + f"\n정답： {r['answer']}"
        for r in rows
    ]


def quantize(
    model: str,
    source: str,
    out: str | None = None,
    samples: int = 256,
    max_seq_length: int = 512,
    scheme: str = "W4A16",
    seed: int = 0,
) -> str:
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = out or str(checkpoint_path(model, "awq"))
    tokenizer = AutoTokenizer.from_pretrained(source)
    hf_model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16)
    texts = calibration_texts(samples, seed)
    ds = Dataset.from_dict({"text": texts}).map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=max_seq_length),
        batched=True,
        remove_columns=["text"],
    )
    recipe = [
        AWQModifier(duo_scaling="both"),
        QuantizationModifier(ignore=["lm_head"], scheme=scheme, targets=["Linear"]),
    ]
    oneshot(
        model=hf_model, dataset=ds, recipe=recipe, max_seq_length=max_seq_length, num_calibration_samples=len(texts)
    )
    hf_model.save_pretrained(out, save_compressed=True)
    tokenizer.save_pretrained(out)
    with open(f"{out}/medbench_awq.json", "w") as f:
        json.dump(
            {
                "source": source,
                "scheme": scheme,
                "calibration_samples": len(texts),
                "calibration_data": "KorMedMCQA train + MedQA dev",
                "max_seq_length": max_seq_length,
                "tool": "llmcompressor AWQModifier + QuantizationModifier",
            },
            f,
            indent=2,
        )
    return out
