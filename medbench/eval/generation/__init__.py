"""The generation engine behind lm-eval's `generate_until`: greedy decoding with the study's repetition penalty, each
answer stopped at its own stop string, continuous batching over fixed KV-cache slots (one queue for every task of a
run), a task's shared few-shot prefix prefilled once, the decode step replayed as a CUDA graph; token for token what
batch-1 `generate` gives in fp32. nano-vllm's engine has the same parts: sequence, scheduler, model runner, engine."""

from medbench.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "GenerationRequest": "sequence",
        "GenerationStats": "sequence",
        "generate": "engine",
        "FastGenerationMixin": "lm",
        "resolve_engine": "lm",
        "StopChecker": "stop",
    },
)
