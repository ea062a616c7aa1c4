"""Fast greedy generation with the study's settings, token for token what batch-1 `generate` gives.

lm-eval's stock `generate_until` runs `model.generate` on a padded batch: every sequence keeps
decoding until the *batch's* longest has met its stop string, the stop strings are checked by
decoding every sequence's last tokens on the host after every token, and the batch is only as
wide as the `batch_size` setting. Here (the `fast_gen` setting):

* each sequence stops at its own stop string or EOS (the same test as lm-eval's
  `MultiTokenEOSCriteria`: the stop string inside the decoded last len(stop tokens)+2 generated
  tokens, or an EOS token id), checked with one device-to-host copy after 1, 2, 4, ... and then
  every `check_every` tokens; the tokens decoded past a stop in between are dropped, as stock
  lm-eval drops its batch's;
* finished sequences leave the batch at once (their rows of the KV cache are dropped), and when
  fewer than `refill_below` of the batch are left, queued prompts join it: the columns that are
  padding in every row are dropped, the new prompts are prefilled at the batch's width (left-padded
  like the rest) and their cache rows appended. Where the cache is not a DynamicCache of full and
  sliding-window layers, the survivors go back to the queue with what they generated and are
  prefilled again in a later round;
* the repetition penalty is HF's `RepetitionPenaltyLogitsProcessor` arithmetic (divide a positive
  logit, multiply a negative one, once per token id seen in the prompt or the generation), applied
  on the device from a seen-token mask instead of a gather over the whole sequence every step;
* batches are left-padded with explicit position ids (each sequence at the positions it has
  alone), and the prefill is split by rows so no forward pass holds more than `prefill_tokens`.

transformers' own continuous batching (`generate_batch`, paged attention) is not used: in 5.24 it
drops `RepetitionPenaltyLogitsProcessor` (`supports_continuous_batching = False`), so it cannot
reproduce the study's repetition_penalty 1.5, and it has no stop strings.

Only greedy decoding with at most a repetition penalty is taken here; any other generation
setting (sampling, beams, another logits processor from the model's generation config) is
answered by stock lm-eval (`FastGenerationMixin.generate_until` in medbench/eval/generation/lm.py decides;
the stop test is medbench/eval/generation/stop.py). In fp32 the tokens
equal batch-1 `model.generate` exactly (tests/test_fastgen.py); in bf16 a batch's kernels may
round differently from batch 1, which can flip a near-tie of the two best logits (the eval bench
counts those).
"""

from __future__ import annotations

import time
from bisect import insort

import torch

from medbench.eval.generation.cache import cache_of, concat_caches, layer_kinds, trim_front
from medbench.eval.generation.rows import GenerationStats, Row, left_padded, penalize, prepare, sync, take
from medbench.eval.generation.stop import StopChecker


@torch.inference_mode()
def generate_greedy(
    model,
    tokenizer,
    prompts: list[list[int]],
    max_new_tokens: int,
    stops: list[str],
    *,
    repetition_penalty: float = 1.0,
    batch_size: int = 8,
    check_every: int = 8,
    refill_below: float = 0.5,
    prefill_tokens: int = 32768,
    pad_token_id: int | None = None,
    autocast_dtype: torch.dtype | None = None,
    progress=None,
) -> tuple[list[list[int]], GenerationStats]:
    """Greedy continuations of `prompts` (token ids), each cut after its stop (EOS id or stop string) or budget."""
    start = time.perf_counter()
    stats = GenerationStats()
    checker, pad, rows, pending = prepare(model, tokenizer, prompts, max_new_tokens, stops, pad_token_id)
    device = next(model.parameters()).device
    autocast = torch.autocast(device_type=device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    with autocast:
        while pending:
            batch = pending[:batch_size]
            del pending[:batch_size]
            survivors = _round(
                model,
                batch,
                pending,
                checker,
                stats,
                repetition_penalty,
                check_every,
                refill_below * batch_size,
                batch_size,
                prefill_tokens,
                pad,
                device,
                progress,
            )
            for r in survivors:  # back into the queue, longest first (only where the cache cannot take new rows)
                insort(pending, r, key=lambda r: (-r.length, r.index))
    stats.generated_tokens = sum(len(r.generated) for r in rows)
    sync(device)
    stats.seconds = time.perf_counter() - start
    return [r.generated for r in rows], stats


def _prefill(model, rows: list[Row], width: int, stats: GenerationStats, prefill_tokens: int, pad: int, device):
    """Rows (prompt + tokens so far) left-padded to `width`: their cache, 2D mask, last positions, seen ids, scores."""
    n = len(rows)
    ids, mask = left_padded([r.prompt + r.generated for r in rows], width, pad)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    stats.prefill_tokens += int(mask.sum())
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
    chunk = max(1, prefill_tokens // width)
    sync(device)
    start = time.perf_counter()
    caches, logits = [], []
    for lo in range(0, n, chunk):
        out = model(
            input_ids=ids[lo : lo + chunk],
            attention_mask=mask[lo : lo + chunk],
            position_ids=positions[lo : lo + chunk],
            use_cache=True,
            logits_to_keep=1,
        )
        caches.append(cache_of(out))
        logits.append(out.logits[:, -1, :].to(dtype=torch.float32))
    cache = concat_caches(caches)
    scores = torch.cat(logits)
    vocab = scores.shape[-1]
    # Every token id in the prompt and the generation so far (pads excluded), as the penalty sees them.
    seen = torch.zeros((n, vocab + 1), dtype=torch.bool, device=device)
    seen.scatter_(1, torch.where(mask.bool(), ids.clamp(max=vocab), vocab), True)
    sync(device)
    stats.prefill_seconds += time.perf_counter() - start
    return cache, mask, positions[:, -1], seen[:, :vocab], scores


def _round(
    model,
    batch: list[Row],
    pending: list[Row],
    checker: StopChecker,
    stats: GenerationStats,
    penalty: float,
    check_every: int,
    refill_at: float,
    batch_size: int,
    prefill_tokens: int,
    pad: int,
    device,
    progress,
) -> list[Row]:
    """Prefill `batch`, decode; when fewer than `refill_at` rows are left, join rows from `pending` to the batch.

    Joining (a DynamicCache of full and sliding-window layers): the columns that are padding in every row
    are dropped, the new rows are prefilled at the batch's width, left-padded like the others, and their
    cache rows appended. Other caches cannot be joined: the survivors are returned, to be prefilled again
    with what they generated in a later round.
    """
    stats.rounds += 1
    cache, attn, pos, seen, scores = _prefill(
        model, batch, max(r.length for r in batch), stats, prefill_tokens, pad, device
    )
    alive = list(batch)
    pending_tokens: list[torch.Tensor] = []
    room = min(r.budget - len(r.generated) for r in alive)  # steps until the first row runs out of budget
    # Checks after 1, 2, 4, ... tokens, then every `check_every`: short answers (a letter and a blank line)
    # leave after a step or two, long ones cost one host sync per check_every tokens.
    interval = 1
    while True:
        next_tokens = torch.argmax(penalize(scores, seen, penalty), dim=-1)
        pending_tokens.append(next_tokens)
        seen[torch.arange(len(alive), device=device), next_tokens] = True
        stats.decode_steps += 1
        stats.row_steps += len(alive)
        if len(pending_tokens) >= min(interval, room):
            new = torch.stack(pending_tokens, dim=1).tolist()  # the one host sync per check
            host_start = time.perf_counter()
            pending_tokens = []
            interval = min(2 * interval, check_every)
            keep = [i for i, (row, toks) in enumerate(zip(alive, new)) if not take(row, toks, checker, progress)]
            stats.host_seconds += time.perf_counter() - host_start
            if not keep:
                return []  # the next round (if any) starts afresh
            if pending and len(keep) < refill_at:
                kinds = layer_kinds(cache)
                if kinds is None or not _fits(pending, batch_size - len(keep), attn, keep):
                    return [alive[i] for i in keep]
                index = torch.tensor(keep, dtype=torch.long)  # host index: a sharded cache spans GPUs
                cache.batch_select_indices(index)
                attn, pos, seen, next_tokens = attn[index], pos[index], seen[index], next_tokens[index]
                alive = [alive[i] for i in keep]
                cache, attn, pos, seen, next_tokens, alive = _join(
                    model,
                    cache,
                    kinds,
                    attn,
                    pos,
                    seen,
                    next_tokens,
                    alive,
                    pending,
                    batch_size,
                    checker,
                    stats,
                    penalty,
                    prefill_tokens,
                    pad,
                    device,
                    progress,
                )
                interval = 1
            elif len(keep) < len(alive):
                index = torch.tensor(keep, dtype=torch.long)  # host index: a sharded cache spans GPUs
                cache.batch_select_indices(index)
                attn, pos, seen, next_tokens = attn[index], pos[index], seen[index], next_tokens[index]
                alive = [alive[i] for i in keep]
            room = min(r.budget - len(r.generated) for r in alive)
        attn = torch.cat([attn, attn.new_ones((len(alive), 1))], dim=1)
        pos = pos + 1
        out = model(
            input_ids=next_tokens[:, None],
            attention_mask=attn,
            position_ids=pos[:, None],
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = cache_of(out)
        scores = out.logits[:, -1, :].to(dtype=torch.float32)


def _fits(pending: list[Row], n: int, attn: torch.Tensor, keep: list[int]) -> bool:
    """Whether the next n queued rows fit the running batch's columns (they do when the queue is longest first)."""
    return all(r.length <= attn.shape[1] for r in pending[:n])


def _pop(pending: list[Row], n: int) -> list[Row]:
    taken = pending[:n]
    del pending[:n]
    return taken


def _join(
    model,
    cache,
    kinds,
    attn,
    pos,
    seen,
    next_tokens,
    alive,
    pending,
    batch_size,
    checker,
    stats,
    penalty,
    prefill_tokens,
    pad,
    device,
    progress,
):
    """Rows from `pending` into the running batch (see _round); returns the batch's new state."""
    if alive:
        lead = int((attn.shape[1] - attn.sum(dim=1)).min())  # columns that are padding in every row
        if lead:
            trim_front(cache, kinds, lead)
            attn = attn[:, lead:]
    width = attn.shape[1]
    # Each fits (_fits): it is no longer than the rows taken before it, the queue being longest first.
    joining = _pop(pending, batch_size - len(alive))
    stats.joins += 1
    new_cache, new_attn, new_pos, new_seen, new_scores = _prefill(
        model, joining, width, stats, prefill_tokens, pad, device
    )
    first = torch.argmax(penalize(new_scores, new_seen, penalty), dim=-1)
    new_seen[torch.arange(len(joining), device=device), first] = True
    stay = [i for i, (row, tok) in enumerate(zip(joining, first.tolist())) if not take(row, [tok], checker, progress)]
    if len(stay) < len(joining):
        index = torch.tensor(stay, dtype=torch.long)
        new_cache.batch_select_indices(index)
        new_attn, new_pos, new_seen, first = new_attn[index], new_pos[index], new_seen[index], first[index]
        joining = [joining[i] for i in stay]
    if not joining:
        return cache, attn, pos, seen, next_tokens, alive
    cache = concat_caches([cache, new_cache])
    return (
        cache,
        torch.cat([attn, new_attn]),
        torch.cat([pos, new_pos]),
        torch.cat([seen, new_seen]),
        torch.cat([next_tokens, first]),
        alive + joining,
    )
