"""The generation engine behind lm-eval's `generate_until`: greedy decoding with the study's repetition penalty,
each answer stopped at its own stop string, token for token what batch-1 `generate` gives in fp32."""

from medbench.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "FastGenerationMixin": "lm",
        "resolve_engine": "lm",
        "generate_greedy": "dynamic",
        "generate_greedy_static": "static",
        "StopChecker": "stop",
    },
)
