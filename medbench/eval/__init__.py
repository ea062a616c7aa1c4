"""One evaluation run: the request checked before anything loads, lm-eval's `simple_evaluate` with our HF model
(letter scoring, the generation engine in `generation/`), data-parallel processes, the response cache, option
permutation, the run's record, and the consistency check against lm-eval's built-in task."""

from medbench.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "RunRequest": "request",
        "RunError": "request",
        "prepare": "request",
        "run": "runner",
        "MedbenchLM": "lm",
        "CanaryError": "lm",
        "check_consistency": "consistency",
    },
)
