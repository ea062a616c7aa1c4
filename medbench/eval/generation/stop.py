"""The stop test of fast generation: lm-eval's stop strings and the model's EOS ids, per generated token."""

from __future__ import annotations


class StopChecker:
    """lm-eval's MultiTokenEOSCriteria test per generated token, plus EOS ids, without decoding every window.

    A stop string can only appear in a decoded window if some token of the window contributes its
    first character; `_maybe_tokens` lists those tokens (conservatively: any token whose piece or
    decoding has that character, decodes to nothing, or holds an incomplete byte). Windows without
    one are skipped; every other window is decoded exactly as lm-eval decodes it.
    """

    def __init__(self, tokenizer, stops: list[str], eos_ids: set[int]):
        self.tokenizer = tokenizer
        self.eos_ids = set(eos_ids)
        # (stop, window length) exactly as MultiTokenEOSCriteria: len(tokenizer.encode(stop)) + 2
        self.stops = [(s, len(tokenizer.encode(s, add_special_tokens=False)) + 2) for s in stops]
        firsts = "".join(sorted({s[0] for s in stops if s}))
        self.maybe = _maybe_tokens(tokenizer, firsts) if stops and all(stops) else None  # "" stops at once

    def stop_index(self, generated: list[int], start: int) -> int | None:
        """The first position >= start at which generation stops (the token there is kept), or None."""
        for j in range(start, len(generated)):
            if generated[j] in self.eos_ids:
                return j
            for stop, width in self.stops:
                window = generated[max(0, j + 1 - width) : j + 1]
                if self.maybe is not None and not any(self.maybe[t] for t in window):
                    continue
                if stop in self.tokenizer.batch_decode([window])[0]:
                    return j
        return None


class _MaybeTokens(dict):
    """token id -> whether it may contribute one of `chars` to a decoded window, decided on first sight.

    Conservative: the token's decoding or its vocabulary piece has one of the characters, or it decodes
    to nothing, holds an incomplete byte, or is a special token. Generations meet a few thousand
    distinct tokens, so this costs a few milliseconds where deciding the whole vocabulary costs seconds.
    """

    def __init__(self, tokenizer, chars: str):
        super().__init__()
        self.tokenizer, self.chars = tokenizer, chars
        self.special = set(tokenizer.all_special_ids)

    def __missing__(self, token: int) -> bool:
        tok = self.tokenizer
        text = tok.decode([token], skip_special_tokens=False)
        piece = tok.convert_ids_to_tokens(token) if 0 <= token < len(tok) else None
        piece = (piece or "").replace("\u2581", " ").replace("\u0120", " ").replace("\u010a", "\n")
        value = (
            piece == ""
            or not text
            or "\ufffd" in text
            or token in self.special
            or any(c in text or c in piece for c in self.chars)
        )
        self[token] = value
        return value


def _maybe_tokens(tokenizer, chars: str) -> _MaybeTokens:
    """One memo per tokenizer and set of first characters, kept on the tokenizer for the process."""
    memo = tokenizer.__dict__.setdefault("_medbench_stop_tokens", {})
    if chars not in memo:
        memo[chars] = _MaybeTokens(tokenizer, chars)
    return memo[chars]


def eos_token_ids(model, tokenizer) -> set[int]:
    """The ids `generate` stops on: the generation config's EOS (an int or a list), else the tokenizer's."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}
