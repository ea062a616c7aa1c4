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
answered by stock lm-eval (`FastGenerationMixin.generate_until` in medbench/eval/fastgen_lm.py decides;
the stop test is medbench/eval/fastgen_stop.py). In fp32 the tokens
equal batch-1 `model.generate` exactly (tests/test_fastgen.py); in bf16 a batch's kernels may
round differently from batch 1, which can flip a near-tie of the two best logits (the eval bench
counts those).
"""

from __future__ import annotations

import time
from bisect import insort
from dataclasses import dataclass, field

import torch

from medbench.eval.fastgen_stop import StopChecker, eos_token_ids


@dataclass
class Row:
    index: int
    prompt: list[int]
    budget: int  # new tokens allowed
    generated: list[int] = field(default_factory=list)
    done: bool = False

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.generated)


@dataclass
class GenerationStats:
    rounds: int = 0  # batches prefilled from scratch
    joins: int = 0  # times queued rows joined a running batch
    prefill_tokens: int = 0  # prompt tokens prefilled (survivors count again in each later round)
    decode_steps: int = 0
    row_steps: int = 0  # sequence-steps decoded, including tokens dropped after a stop
    generated_tokens: int = 0  # kept tokens (up to and including each sequence's stop)
    seconds: float = 0.0
    prefill_seconds: float = 0.0  # prefill forward passes (synchronised)
    host_seconds: float = 0.0  # stop-string checks and bookkeeping on the host, after each device-to-host copy

    def as_dict(self) -> dict:
        out = {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}
        # seconds a decode step took, prefill and host checks left out; sequences decoded a step on average
        decode = self.seconds - self.prefill_seconds - self.host_seconds
        out["decode_step_seconds"] = round(decode / self.decode_steps, 5) if self.decode_steps else None
        out["mean_rows_per_step"] = round(self.row_steps / self.decode_steps, 1) if self.decode_steps else None
        return out


def _cache_of(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _concat_caches(caches: list) -> object:
    """Several prefill caches of the same width, one after another in the batch dimension."""
    first = caches[0]
    if len(caches) == 1:
        return first
    for i, layer in enumerate(first.layers):
        layer.keys = torch.cat([c.layers[i].keys for c in caches], dim=0)
        layer.values = torch.cat([c.layers[i].values for c in caches], dim=0)
    return first


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _penalize(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    if penalty == 1.0:
        return scores
    return torch.where(seen, torch.where(scores < 0, scores * penalty, scores / penalty), scores)


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
    checker = StopChecker(tokenizer, stops, eos_token_ids(model, tokenizer))
    pad = pad_token_id if pad_token_id is not None else (tokenizer.pad_token_id or 0)
    rows, pending = queue(prompts, max_new_tokens)
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
    _sync(device)
    stats.seconds = time.perf_counter() - start
    return [r.generated for r in rows], stats


def queue(prompts: list[list[int]], max_new_tokens: int) -> tuple[list[Row], list[Row]]:
    """Every prompt's row (in order), and those with a budget longest first, as lm-eval orders them: memory
    errors surface at once and padding stays small."""
    rows = [Row(i, list(p), max_new_tokens) for i, p in enumerate(prompts)]
    for r in rows:
        r.done = r.budget <= 0
    return rows, sorted((r for r in rows if not r.done), key=lambda r: (-r.length, r.index))


def left_padded(seqs: list[list[int]], width: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids left-padded to `width` and their attention mask (on the host)."""
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, seq in enumerate(seqs):
        ids[i, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[i, width - len(seq) :] = 1
    return ids, mask


def _prefill(model, rows: list[Row], width: int, stats: GenerationStats, prefill_tokens: int, pad: int, device):
    """Rows (prompt + tokens so far) left-padded to `width`: their cache, 2D mask, last positions, seen ids, scores."""
    n = len(rows)
    ids, mask = left_padded([r.prompt + r.generated for r in rows], width, pad)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    stats.prefill_tokens += int(mask.sum())
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
    chunk = max(1, prefill_tokens // width)
    _sync(device)
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
        caches.append(_cache_of(out))
        logits.append(out.logits[:, -1, :].to(dtype=torch.float32))
    cache = _concat_caches(caches)
    scores = torch.cat(logits)
    vocab = scores.shape[-1]
    # Every token id in the prompt and the generation so far (pads excluded), as the penalty sees them.
    seen = torch.zeros((n, vocab + 1), dtype=torch.bool, device=device)
    seen.scatter_(1, torch.where(mask.bool(), ids.clamp(max=vocab), vocab), True)
    _sync(device)
    stats.prefill_seconds += time.perf_counter() - start
    return cache, mask, positions[:, -1], seen[:, :vocab], scores


def _layer_kinds(cache) -> list[str] | None:
    """ "full" or "sliding" per layer of a DynamicCache whose rows can be trimmed and joined; None otherwise."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    if type(cache).__name__ != "DynamicCache":
        return None
    kinds = []
    for layer in getattr(cache, "layers", None) or [None]:
        if type(layer) is DynamicSlidingWindowLayer and not layer.record_past:
            kinds.append("sliding")
        elif type(layer) is DynamicLayer:
            kinds.append("full")
        else:
            return None
    return kinds


def _trim_front(cache, kinds: list[str], k: int) -> None:
    """Drop the first k columns, padding in every row: full layers lose them, sliding layers count k fewer."""
    for layer, kind in zip(cache.layers, kinds):
        if kind == "full":
            layer.keys, layer.values = layer.keys[:, :, k:], layer.values[:, :, k:]
        else:
            layer.cumulative_length -= k
            if layer.keys.shape[-2] > layer.cumulative_length:
                layer.keys = layer.keys[:, :, -layer.cumulative_length :]
                layer.values = layer.values[:, :, -layer.cumulative_length :]


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
        next_tokens = torch.argmax(_penalize(scores, seen, penalty), dim=-1)
        pending_tokens.append(next_tokens)
        seen[torch.arange(len(alive), device=device), next_tokens] = True
        stats.decode_steps += 1
        stats.row_steps += len(alive)
        if len(pending_tokens) >= min(interval, room):
            new = torch.stack(pending_tokens, dim=1).tolist()  # the one host sync per check
            host_start = time.perf_counter()
            pending_tokens = []
            interval = min(2 * interval, check_every)
            keep = [i for i, (row, toks) in enumerate(zip(alive, new)) if not _take(row, toks, checker, progress)]
            stats.host_seconds += time.perf_counter() - host_start
            if not keep:
                return []  # the next round (if any) starts afresh
            if pending and len(keep) < refill_at:
                kinds = _layer_kinds(cache)
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
        cache = _cache_of(out)
        scores = out.logits[:, -1, :].to(dtype=torch.float32)


def _fits(pending: list[Row], n: int, attn: torch.Tensor, keep: list[int]) -> bool:
    """Whether the next n queued rows fit the running batch's columns (they do when the queue is longest first)."""
    return all(r.length <= attn.shape[1] for r in pending[:n])


def _pop(pending: list[Row], n: int) -> list[Row]:
    taken = pending[:n]
    del pending[:n]
    return taken


def _take(row: Row, tokens: list[int], checker: StopChecker, progress) -> bool:
    """Append decoded tokens to a row, cut at its stop or budget; True when the row is finished."""
    before = len(row.generated)
    row.generated.extend(tokens[: row.budget - before])
    cut = checker.stop_index(row.generated, before)
    if cut is not None:
        del row.generated[cut + 1 :]
    if cut is not None or len(row.generated) >= row.budget:
        row.done = True
        if progress is not None:
            progress(1)
    return row.done


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
            _trim_front(cache, kinds, lead)
            attn = attn[:, lead:]
    width = attn.shape[1]
    # Each fits (_fits): it is no longer than the rows taken before it, the queue being longest first.
    joining = _pop(pending, batch_size - len(alive))
    stats.joins += 1
    new_cache, new_attn, new_pos, new_seen, new_scores = _prefill(
        model, joining, width, stats, prefill_tokens, pad, device
    )
    first = torch.argmax(_penalize(new_scores, new_seen, penalty), dim=-1)
    new_seen[torch.arange(len(joining), device=device), first] = True
    stay = [i for i, (row, tok) in enumerate(zip(joining, first.tolist())) if not _take(row, [tok], checker, progress)]
    if len(stay) < len(joining):
        index = torch.tensor(stay, dtype=torch.long)
        new_cache.batch_select_indices(index)
        new_attn, new_pos, new_seen, first = new_attn[index], new_pos[index], new_seen[index], first[index]
        joining = [joining[i] for i in stay]
    if not joining:
        return cache, attn, pos, seen, next_tokens, alive
    cache = _concat_caches([cache, new_cache])
    return (
        cache,
        torch.cat([attn, new_attn]),
        torch.cat([pos, new_pos]),
        torch.cat([seen, new_seen]),
        torch.cat([next_tokens, first]),
        alive + joining,
    )
