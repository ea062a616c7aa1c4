"""Which sequence runs in which slot, and when waiting sequences join (continuous batching).

The decode step has a fixed number of slots. A finished sequence frees its slot; once enough slots are free (or none
is running), the longest waiting sequences are prefilled into them, so the decode step stays full until the queue
drains. Every request of a call shares one queue, whatever task it came from.

A group's common prefix (a task's prompts all begin with the same few-shot exemplars) is found here, on the token
ids themselves: the runner prefills it once and every sequence of the group starts from its KV.
"""

from __future__ import annotations

from medbench.eval.generation.sequence import Sequence


def common_prefix(prompts: list[list[int]]) -> int:
    """Length of the longest token prefix every prompt starts with, leaving each at least one token of its own (the
    last prompt token must be prefilled to give the first generated token's logits)."""
    if not prompts:
        return 0
    first, n = prompts[0], min(len(p) for p in prompts) - 1
    for p in prompts[1:]:
        k = 0
        while k < n and p[k] == first[k]:
            k += 1
        n = k
    return max(n, 0)


class Scheduler:
    def __init__(self, sequences: list[Sequence], slots: int, refill_fraction: float, prefix_min: int):
        # Longest first, as lm-eval orders generation: memory errors surface at once and prefills pad least.
        self.waiting = sorted((s for s in sequences if not s.done), key=lambda s: (-s.length, s.index))
        self.free = list(range(slots))
        self.running: dict[int, Sequence] = {}
        self.refill_at = max(1, int(refill_fraction * slots))
        groups: dict[str, list[list[int]]] = {}
        for s in self.waiting:
            groups.setdefault(s.group, []).append(s.prompt)
        self.prefixes = {}
        for group, prompts in groups.items():
            k = common_prefix(prompts) if len(prompts) > 1 else 0
            if k >= prefix_min:
                self.prefixes[group] = prompts[0][:k]

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running)

    def should_admit(self) -> bool:
        """Refill when enough slots are free that one prefill pays for itself, or when nothing runs."""
        return bool(self.waiting) and bool(self.free) and (not self.running or len(self.free) >= self.refill_at)

    def admit(self) -> list[Sequence]:
        """The next waiting sequences, each given a free slot."""
        joining = self.waiting[: len(self.free)]
        del self.waiting[: len(joining)]
        for seq in joining:
            seq.slot = self.free.pop(0)
            self.running[seq.slot] = seq
        return joining

    def finish(self, seq: Sequence) -> None:
        del self.running[seq.slot]
        self.free.append(seq.slot)
        self.free.sort()
        seq.slot = None
