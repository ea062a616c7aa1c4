"""Per-step training time and tokens, without evaluation or saving, and the steady-state throughput."""

from __future__ import annotations

import os
import time

import torch
from transformers import TrainerCallback

# Steps left out of the steady-state throughput (at most a quarter of the run). MEDBENCH_STEADY_SKIP=N sets it
# for a short benchmark run (dev/gpu_scale.py: 6 steps, 2 left out), keeping one timed step at least.
STEADY_SKIP_STEPS = 5


class StepTimer(TrainerCallback):
    """Seconds and tokens of each optimizer step (forward, backward, update), without evaluation or saving."""

    def __init__(self):
        self.steps: list[tuple[float, int]] = []
        self._start = None
        self._tokens = 0

    @property
    def seconds(self) -> float:
        return sum(s for s, _ in self.steps)

    def on_step_begin(self, args, state, control, **kwargs):
        _sync()
        self._start = time.perf_counter()
        self._tokens = state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        _sync()
        if self._start is not None:
            self.steps.append((time.perf_counter() - self._start, state.num_input_tokens_seen - self._tokens))
        self._start = None

    def steady_state(self) -> dict | None:
        """Throughput without the first steps (allocator warm-up, kernel selection, DeepSpeed's first buckets)."""
        wanted = os.environ.get("MEDBENCH_STEADY_SKIP", "")
        if wanted.isdigit():
            skip = min(int(wanted), max(len(self.steps) - 1, 0))
        else:
            skip = min(STEADY_SKIP_STEPS, len(self.steps) // 4)
        rest = self.steps[skip:]
        seconds = sum(s for s, _ in rest)
        if not rest or not seconds:
            return None
        durations = sorted(s for s, _ in rest)
        return {
            "skipped_first_steps": skip,
            "steps": len(rest),
            "tokens_per_second": round(sum(t for _, t in rest) / seconds, 1),
            "median_step_seconds": round(durations[len(durations) // 2], 4),
            "mean_tokens_per_step": round(sum(t for _, t in rest) / len(rest), 1),
        }


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
