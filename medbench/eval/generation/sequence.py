"""One request's state in the engine (nano-vllm calls it a sequence): its prompt, budget and stop test, the tokens
generated so far, the slot it holds, and the engine's counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from medbench.eval.generation.stop import StopChecker


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate: prompt token ids, a new-token budget, the stop strings and the group whose prompts may share
    a prefix (a task: its few-shot exemplars are the same for every question)."""

    prompt: list[int]
    budget: int
    stops: tuple[str, ...] = ()
    group: str = ""


@dataclass
class Sequence:
    index: int  # position in the caller's list: answers come back in that order
    prompt: list[int]
    budget: int  # new tokens allowed
    checker: StopChecker
    group: str = ""
    generated: list[int] = field(default_factory=list)
    done: bool = False
    slot: int | None = None

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.generated)

    @property
    def room(self) -> int:
        """New tokens it may still take."""
        return self.budget - len(self.generated)

    def take(self, tokens: list[int]) -> bool:
        """Append decoded tokens, cut at the stop or the budget; True when the sequence is finished. Tokens decoded
        past a stop (the engine checks every few steps) are dropped, as stock lm-eval drops its batch's."""
        before = len(self.generated)
        self.generated.extend(tokens[: self.budget - before])
        cut = self.checker.stop_index(self.generated, before)
        if cut is not None:
            del self.generated[cut + 1 :]
        if cut is not None or len(self.generated) >= self.budget:
            self.done = True
        return self.done


@dataclass
class GenerationStats:
    slots: int = 0  # rows of the decode step (fixed for a run)
    cache_len: int = 0  # columns of every slot's KV cache
    graphs: bool = False  # decode steps replayed as a captured CUDA graph
    graphs_reason: str = ""
    admissions: int = 0  # times waiting sequences were prefilled into free slots
    prefill_tokens: int = 0  # tokens prefilled (a shared prefix counts once per group)
    shared_prefix_tokens: int = 0  # prompt tokens not prefilled again because their group's prefix was shared
    decode_steps: int = 0
    row_steps: int = 0  # sequence-steps of live sequences, tokens decoded past a stop included
    generated_tokens: int = 0  # kept tokens (up to and including each sequence's stop)
    seconds: float = 0.0
    setup_seconds: float = 0.0  # cache allocation and graph capture, once per call
    prefill_seconds: float = 0.0
    host_seconds: float = 0.0  # stop checks and bookkeeping on the host, after each device-to-host copy

    def as_dict(self) -> dict:
        out = {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}
        decode = self.seconds - self.setup_seconds - self.prefill_seconds - self.host_seconds
        out["decode_step_seconds"] = round(decode / self.decode_steps, 5) if self.decode_steps else None
        out["mean_rows_per_step"] = round(self.row_steps / self.decode_steps, 1) if self.decode_steps else None
        out["occupancy"] = round(self.row_steps / (self.decode_steps * self.slots), 3) if self.decode_steps else None
        return out
