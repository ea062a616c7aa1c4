"""Measurements of the harness itself: evaluation paths beside stock lm-eval, bf16 against NF4, training speed per
method, models larger than one GPU, and the beyond-one-GPU tables. Imports anything; imported only by the CLI
(and the GPU drivers in dev/)."""

from medbench.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "bench_eval": "eval",
        "bench_quant": "quant",
        "bench_train": "train",
        "scale_section": "scale",
    },
)
