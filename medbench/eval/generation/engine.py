"""Greedy generation with continuous batching: `generate(model, tokenizer, requests)` -> each request's new tokens.

The loop: admit waiting sequences into free slots (a prefill), decode every slot a step at a time, and read the new
tokens back to the host only at checks (after 1, 2, 4, ... and then every `check_every` steps, and whenever a
sequence's budget would run out), where each sequence is cut at its own stop string or EOS (lm-eval's stop test,
medbench/eval/generation/stop.py) and finished sequences give their slot to the next waiting one. Tokens decoded past
a stop between two checks are dropped, as stock lm-eval drops its batch's.

In fp32 the tokens are those of batch-1 `model.generate` with the same repetition penalty, greedy, stopped by lm-eval's
criteria (tests/eval/test_generation.py); in bf16 a batch's kernels can round differently from batch 1, which can flip
a near-tie of the two best logits (the eval bench counts those). Only greedy decoding with at most a repetition
penalty is taken here; medbench/eval/generation/lm.py sends anything else to stock lm-eval.
"""

from __future__ import annotations

import time

import torch

from medbench.eval.generation.runner import ModelRunner, sync
from medbench.eval.generation.scheduler import Scheduler
from medbench.eval.generation.sequence import GenerationRequest, GenerationStats, Sequence
from medbench.eval.generation.stop import StopChecker, eos_token_ids

GRAPHS = ("auto", "on", "off")


def graphs_refusal(model, device: torch.device) -> str | None:
    """Why decode steps run eagerly on this model, or None where a CUDA graph may be captured."""
    if device.type != "cuda":
        return "not on CUDA"
    if len(set((getattr(model, "hf_device_map", None) or {}).values())) > 1:
        return "a model sharded across devices"
    return None


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    requests: list[GenerationRequest],
    *,
    repetition_penalty: float = 1.0,
    slots: int = 8,
    check_every: int = 8,
    refill_fraction: float = 0.125,
    prefill_tokens: int = 32768,
    prefix_min: int = 64,
    graphs: str = "auto",
    pad_token_id: int | None = None,
    autocast_dtype: torch.dtype | None = None,
    ignore_eos: bool = False,
    on_finish=None,
) -> tuple[list[list[int]], GenerationStats]:
    """Greedy continuations of `requests`, each cut after its stop (EOS id or stop string) or budget.

    `on_finish(index, tokens)` is called as each request finishes (the caller keeps answers as they are computed).
    `graphs`: `auto` captures the decode step as a CUDA graph where it can (graphs_refusal), `on` requires it, `off`
    runs it eagerly. `ignore_eos`: only stop strings and budgets end a sequence (fixed-length benchmarks).
    """
    if graphs not in GRAPHS:
        raise ValueError(f"graphs={graphs!r}: choose from {', '.join(GRAPHS)}")
    start = time.perf_counter()
    stats = GenerationStats()
    eos = set() if ignore_eos else eos_token_ids(model, tokenizer)
    checkers: dict[tuple[str, ...], StopChecker] = {}
    seqs = []
    for i, r in enumerate(requests):
        if r.stops not in checkers:
            checkers[r.stops] = StopChecker(tokenizer, list(r.stops), eos)
        seqs.append(Sequence(i, list(r.prompt), r.budget, checkers[r.stops], r.group, done=r.budget <= 0))
    live = [s for s in seqs if not s.done]
    for s in seqs:
        if s.done and on_finish is not None:
            on_finish(s.index, s.generated)
    if not live:
        return [s.generated for s in seqs], stats
    pad = pad_token_id if pad_token_id is not None else (tokenizer.pad_token_id or 0)
    stats.slots = min(slots, len(live))
    stats.cache_len = max(s.length + s.budget for s in live)
    scheduler = Scheduler(live, stats.slots, refill_fraction, prefix_min)
    runner = ModelRunner(
        model, stats.slots, stats.cache_len, repetition_penalty, pad, prefill_tokens, stats, autocast_dtype
    )
    refusal = graphs_refusal(model, runner.device) if graphs != "off" else "graphs=off"
    if refusal is None:
        try:
            runner.capture()
            stats.graphs = True
        except Exception as e:  # a model whose forward cannot be captured decodes eagerly, and the record says why
            if graphs == "on":
                raise
            refusal = f"capture failed: {type(e).__name__}: {str(e)[:200]}"
    stats.graphs_reason = refusal or "captured"
    sync(runner.device)
    stats.setup_seconds = time.perf_counter() - start

    def finish(seq: Sequence) -> None:
        scheduler.finish(seq)
        if on_finish is not None:
            on_finish(seq.index, seq.generated)

    history: list[torch.Tensor] = []
    interval = 1
    while scheduler.busy:
        # Only right after a check: the tokens decoded since the last one are read per slot, and a slot changing
        # hands in between would give its new sequence the old one's tokens.
        if not history and scheduler.should_admit():
            joining = scheduler.admit()
            stats.admissions += 1
            for group in dict.fromkeys(s.group for s in joining):
                members = [s for s in joining if s.group == group]
                firsts = runner.prefill(members, scheduler.prefixes.get(group))
                for seq, token in zip(members, firsts):
                    if seq.take([token]):
                        finish(seq)
            interval = 1
            if not scheduler.running:
                continue
        room = min(s.room for s in scheduler.running.values())
        history.append(runner.decode())
        stats.decode_steps += 1
        stats.row_steps += len(scheduler.running)
        if len(history) < min(interval, room):
            continue
        new = torch.stack(history, dim=1).tolist()  # the one device-to-host copy per check
        host = time.perf_counter()
        history = []
        interval = min(2 * interval, check_every)
        for slot, seq in list(scheduler.running.items()):
            if seq.take(new[slot]):
                finish(seq)
        stats.host_seconds += time.perf_counter() - host
    stats.generated_tokens = sum(len(s.generated) for s in seqs)
    sync(runner.device)
    stats.seconds = time.perf_counter() - start
    return [s.generated for s in seqs], stats
