"""Answer extraction for generated answers.

The cascade is the KorMedMCQA paper's Appendix B (the one lm-eval's built-in `kormedmcqa` task
ships): try each pattern in order and take the last match of the first pattern that matches.
Documented differences from that cascade, each covered by tests:
- bare letters must be upper case (the built-in's IGNORECASE reads the article "a" as option A);
- the full-width colon "정답：" (our prompts end with it) and a parenthesised letter "(C)" count;
- an English "answer is C" / "Answer: C" pattern, for MedQA, markdown bold included ("answer is **C**":
  otherwise an option list in the reasoning, "… not B. Ciprofloxacin", would be read instead);
- Korean answers often come as digits ("정답: 3", "③"): 1–5 and ①–⑤ map to A–E, tried last;
- only letters of the question's own options count (an "E" on a 4-option MedQA item is invalid).
- a thinking block (`<think>…</think>`, Qwen3 with thinking on) is removed first: only the answer after it
  counts, and an unclosed block (the budget ran out mid-thought) leaves nothing to read.
An empty string means no parsable answer: scored wrong and counted as invalid.
"""

from __future__ import annotations

import re

LETTERS = "ABCDE"
CIRCLED = "①②③④⑤"


def _cascade(letters: str) -> list[re.Pattern]:
    L = f"[{letters}]"
    return [
        re.compile(rf"정답[:：\s]*\(?({L})(?![A-Za-z])"),
        re.compile(rf"정답은\s*\(?({L})\)?\s*입니다"),
        re.compile(rf"[Aa]nswer(?:\s+is)?[:：\s*]*\(?({L})(?![A-Za-z])"),
        re.compile(rf"\b({L})\."),
        re.compile(rf"\b({L})\b"),
    ]


def _digit_patterns(n: int) -> list[re.Pattern]:
    digits, circled = "12345"[:n], CIRCLED[:n]
    return [
        re.compile(rf"정답(?:은|는)?[:：\s]*\(?([{digits}{circled}])(?![0-9])"),
        re.compile(rf"([{circled}])"),
        re.compile(rf"^\s*\(?([{digits}])(?:\)|번|\.|\s|$)"),
    ]


_CACHE: dict[int, tuple[list[re.Pattern], list[re.Pattern]]] = {}
THINK_END = "</think>"
_UNCLOSED_THINK = re.compile(r"<think>.*", re.S)


def strip_thinking(text: str) -> str:
    """The text after the last `</think>`; a `<think>` never closed takes the rest of the text with it."""
    if THINK_END in text:
        return text.rsplit(THINK_END, 1)[1]
    return _UNCLOSED_THINK.sub("", text)


def extract_answer(text: str, n_options: int = 5) -> str:
    """The chosen option letter, or "" when nothing parsable is found."""
    text = strip_thinking(text)
    if n_options not in _CACHE:
        _CACHE[n_options] = (_cascade(LETTERS[:n_options]), _digit_patterns(n_options))
    letter_patterns, digit_patterns = _CACHE[n_options]
    for pattern in letter_patterns:
        found = pattern.findall(text)
        if found:
            return found[-1]
    for pattern in digit_patterns:
        found = pattern.findall(text)
        if found:
            d = found[-1]
            return LETTERS[CIRCLED.index(d)] if d in CIRCLED else LETTERS[int(d) - 1]
    return ""
