"""`medbench quantize-awq MODEL --source DIR`: an AWQ W4A16 checkpoint made with llmcompressor.

llmcompressor pins an older transformers, so run this command with the Python of its own
environment: `.venv-awq/bin/python -m medbench.cli quantize-awq …` (see docs/quantization.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from medbench.options import add_arguments, arg, from_args, positive_int, seed_number

HELP = "make checkpoints/MODEL-awq with llmcompressor AWQ (run in its own environment)"


@dataclass
class QuantizeAwqArguments:
    model: str = arg(positional=True, help="registry alias (names the output checkpoints/<alias>-awq)")
    source: str = arg(help="bf16/fp32 weights to quantize (local dir or hub id)")
    out: str | None = arg(None, help="output directory (default checkpoints/<alias>-awq)")
    samples: int = arg(256, type=positive_int, help="calibration questions (training rows only)")
    max_seq_length: int = arg(512, type=positive_int, help="calibration sequence length")
    # Symmetric 4-bit, group 128. The asymmetric W4A16_ASYM packs its zero points, and transformers
    # 5.24 with compressed-tensors 0.19 then refuses the checkpoint (zero-point shape mismatch, seen on GPU).
    scheme: str = arg("W4A16", help="compressed-tensors preset scheme (default W4A16, symmetric)")
    seed: int = arg(0, type=seed_number, help="calibration sample seed")


def make_parser(sub) -> None:
    p = sub.add_parser("quantize-awq", help=HELP, description=__doc__)
    add_arguments(p, QuantizeAwqArguments)


def run(args) -> int:
    from medbench.models.quantize_awq import quantize

    opts = from_args(QuantizeAwqArguments, args)
    print(
        f"wrote {quantize(opts.model, opts.source, opts.out, opts.samples, opts.max_seq_length, opts.scheme, opts.seed)}"
    )
    return 0
