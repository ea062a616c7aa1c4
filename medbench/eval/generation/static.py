"""Fast greedy generation on a static KV cache: fixed-shape decode steps that `generate` compiles and, on
CUDA, replays as CUDA graphs (the `static` engine of fast_gen; the default engine is medbench/eval/generation/dynamic.py).

Why a second engine: the default one grows a DynamicCache by concatenation and runs the eager forward,
so a decode step costs per-step host and kernel-launch work (78-113 ms for the 270M at batch 128 on an
H200, `results/bench/eval-gemma3-270m-cot-*.json`) however small the model. Here the batch has a fixed
number of rows and one StaticCache of fixed length serves every round, so transformers' `generate`
compiles the decode step once (its auto-compile: a compileable cache on CUDA) and the shapes never change.

What stays as in the default engine, so that the tokens are the same: prompts longest first, left-padded
with each row's own positions; HF's repetition-penalty arithmetic over the token ids seen in the prompt
(pads excluded, unlike HF's processor over a padded batch) and the generation; each row stopped at its
own stop string or EOS by the same `StopChecker`, checked on the host after 1, 2, 4, ... and then every
`check_every` tokens, tokens past a stop dropped. What differs: finished rows keep their slot until the
round ends (no refill), so a round lasts as long as its longest answer; a last round with fewer rows is
filled with copies of its last row, whose answers are thrown away.
"""

from __future__ import annotations

import time

import torch
from transformers import LogitsProcessor, StoppingCriteria

from medbench.eval.generation.rows import GenerationStats, Row, left_padded, penalize, prepare, sync, take
from medbench.eval.generation.stop import StopChecker


class SeenTokenPenalty(LogitsProcessor):
    """HF's RepetitionPenaltyLogitsProcessor arithmetic over a device mask of seen token ids (a logits processor)."""

    def __init__(self, seen: torch.Tensor, penalty: float):
        self.seen, self.penalty = seen, penalty
        self.rows = torch.arange(seen.shape[0], device=seen.device)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.seen[self.rows, input_ids[:, -1]] = True  # the token chosen last step (the prompt's last, first time)
        return penalize(scores, self.seen, self.penalty)


class RowStops(StoppingCriteria):
    """A stopping criterion that finishes each row at its own stop (StopChecker), read from the host at intervals."""

    def __init__(self, rows: list[Row | None], width: int, checker: StopChecker, check_every: int, progress):
        self.rows, self.width, self.checker = rows, width, checker
        self.check_every, self.progress = check_every, progress
        self.steps, self.next_check, self.host_seconds = 0, 1, 0.0
        self.done = None

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        self.steps += 1
        if self.done is None or self.steps >= self.next_check:
            self.read(input_ids)
            self.next_check = self.steps + min(max(self.steps, 1), self.check_every)
        return self.done

    def read(self, sequences: torch.Tensor) -> None:
        """Every unfinished row's new tokens, cut at its stop or budget; the rows done, on the device."""
        new = sequences[:, self.width :].tolist()  # the one host sync per check
        start = time.perf_counter()
        for row, tokens in zip(self.rows, new):
            if row is not None and not row.done:
                take(row, tokens[len(row.generated) :], self.checker, self.progress)
        done = [row is None or row.done for row in self.rows]
        self.done = torch.tensor(done, dtype=torch.bool, device=sequences.device)
        self.host_seconds += time.perf_counter() - start


@torch.inference_mode()
def generate_greedy_static(
    model,
    tokenizer,
    prompts: list[list[int]],
    max_new_tokens: int,
    stops: list[str],
    *,
    repetition_penalty: float = 1.0,
    batch_size: int = 8,
    check_every: int = 8,
    pad_token_id: int | None = None,
    compile: bool = True,
    autocast_dtype: torch.dtype | None = None,
    progress=None,
) -> tuple[list[list[int]], GenerationStats]:
    """Greedy continuations of `prompts` (token ids), each cut after its stop (EOS id or stop string) or budget."""
    from transformers import GenerationConfig, LogitsProcessorList, StaticCache, StoppingCriteriaList

    start = time.perf_counter()
    stats = GenerationStats()
    checker, pad, rows, pending = prepare(model, tokenizer, prompts, max_new_tokens, stops, pad_token_id)
    if not pending:
        return [r.generated for r in rows], stats
    device = next(model.parameters()).device
    width_max = pending[0].length
    # One cache for every round (rounds are no longer than the first, longest one): one shape to compile.
    cache = StaticCache(config=model.config, max_cache_len=width_max + max_new_tokens)
    config = GenerationConfig(  # every processor but ours off, whatever the model's generation config says
        do_sample=False,
        num_beams=1,
        temperature=None,
        top_k=None,
        top_p=None,
        repetition_penalty=1.0,
        max_new_tokens=max_new_tokens,
        pad_token_id=pad,
        eos_token_id=sorted(checker.eos_ids) or None,
        disable_compile=not compile,
    )
    vocab = model.get_output_embeddings().weight.shape[0]
    n = min(batch_size, len(pending))
    for lo in range(0, len(pending), n):
        batch: list[Row | None] = list(pending[lo : lo + n])
        batch += [None] * (n - len(batch))  # filler rows: the cache's batch size is fixed
        prompts_here = [(r or batch[0]).prompt for r in batch]
        width = max(len(p) for p in prompts_here)
        ids, mask = (t.to(device) for t in left_padded(prompts_here, width, pad))
        seen = torch.zeros((n, vocab + 1), dtype=torch.bool, device=device)
        seen.scatter_(1, torch.where(mask.bool(), ids.clamp(max=vocab), vocab), True)
        processors = [SeenTokenPenalty(seen[:, :vocab], repetition_penalty)] if repetition_penalty != 1.0 else []
        stopper = RowStops(batch, width, checker, check_every, progress)
        cache.reset()
        with torch.autocast(device_type=device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                generation_config=config,
                cache=cache,
                logits_processor=LogitsProcessorList(processors),
                stopping_criteria=StoppingCriteriaList([stopper]),
            )
        stopper.read(out)  # the tokens after the last check
        stats.rounds += 1
        stats.prefill_tokens += int(mask.sum())
        steps = out.shape[1] - width
        stats.decode_steps += steps
        stats.row_steps += steps * sum(r is not None for r in batch)
        stats.host_seconds += stopper.host_seconds
    stats.generated_tokens = sum(len(r.generated) for r in rows)
    sync(device)
    stats.seconds = time.perf_counter() - start
    return [r.generated for r in rows], stats
