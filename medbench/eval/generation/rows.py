"""What both fast_gen engines share: a prompt's row and its stop test, the queue (longest first), left padding,
the repetition penalty on the device, and the run's counters (medbench/eval/generation/dynamic.py, fastgen_static.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from medbench.eval.generation.stop import StopChecker, eos_token_ids


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


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def penalize(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    if penalty == 1.0:
        return scores
    return torch.where(seen, torch.where(scores < 0, scores * penalty, scores / penalty), scores)


def prepare(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, stops: list[str], pad_token_id):
    """What both engines start from: the stop test, the pad id, every prompt's row and the queue."""
    checker = StopChecker(tokenizer, stops, eos_token_ids(model, tokenizer))
    pad = pad_token_id if pad_token_id is not None else (tokenizer.pad_token_id or 0)
    return (checker, pad, *queue(prompts, max_new_tokens))


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


def take(row: Row, tokens: list[int], checker: StopChecker, progress) -> bool:
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
