"""Chat templates: whether a run applies the model's own, with which arguments, and what stops a turn.

lm-eval renders the prompts (`simple_evaluate(apply_chat_template=…, fewshot_as_multiturn=…,
system_instruction=…)` → `HFLM.apply_chat_template` → `tokenizer.apply_chat_template(…,
**chat_template_args)`); this module only decides and records. `--chat`:

- `auto` (default): on for registry models marked `chat: true` in `gen` (zeroshot gen, fewshot, cot);
  `mc` stays a plain completion scored by answer-letter log-likelihood, as in the reference study.
- `on`: every mode, `mc` included (the letter is scored right after the assistant turn opens).
- `off`: never.

Per-family template arguments are registry data (`chat_template_kwargs`, e.g. Qwen3's
`enable_thinking: false`, Llama 3.2's `date_string` so that the system turn does not carry today's
date). A chat `gen` run stops at the template's end-of-turn token instead of the task's blank line
(chat answers put blank lines between paragraphs; a thinking block always does).

BOS: Gemma's and Llama's templates write the BOS token themselves; lm-eval's `tok_encode` and
`tok_batch_encode` then encode without special tokens (they check for a BOS prefix), so a chat
prompt carries exactly one BOS (tests/test_chat.py checks the ids).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medbench.errors import MedbenchError
from medbench.paths import REPO_ROOT
from medbench.settings import EvalSettings

THINKING_KEY = "enable_thinking"


class ChatError(MedbenchError):
    pass


@dataclass(frozen=True)
class ChatPlan:
    apply: bool
    reason: str
    template_kwargs: dict = field(default_factory=dict)
    system_instruction: str | None = None
    fewshot_as_multiturn: bool = True
    thinking: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def plan_chat(spec, mode: str, settings: EvalSettings) -> ChatPlan:
    """The chat decision for `spec` in `mode`; refusals come before anything loads."""
    if settings.chat == "off":
        apply, reason = False, "--chat off"
    elif settings.chat == "on":
        apply, reason = True, "--chat on"
    elif spec.chat and mode == "gen":
        apply, reason = True, "auto: a chat model in gen"
    elif spec.chat:
        apply, reason = False, "auto: mc stays a plain completion (--chat on to template it)"
    else:
        apply, reason = False, "auto: not a registry chat model"
    kwargs = dict(spec.chat_template_kwargs or {})
    if settings.thinking:
        if not apply or mode != "gen":
            raise ChatError(
                "thinking=true needs a chat run in gen mode (a thinking model's mc score would be "
                "read before it thinks)"
            )
        if THINKING_KEY not in kwargs:
            raise ChatError(
                f"{spec.alias} has no thinking switch (`{THINKING_KEY}` in its registry chat_template_kwargs)"
            )
        kwargs[THINKING_KEY] = True
    if not apply:
        return ChatPlan(
            apply=False, reason=reason, system_instruction=settings.system_instruction, fewshot_as_multiturn=False
        )
    return ChatPlan(
        apply=True,
        reason=reason,
        template_kwargs=kwargs,
        system_instruction=settings.system_instruction,
        fewshot_as_multiturn=settings.fewshot_as_multiturn,
        thinking=settings.thinking,
    )


def require_template(tokenizer, alias: str) -> str:
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()))
    if not template:
        raise ChatError(f"{alias}'s tokenizer has no chat template; use --chat off")
    return template


def end_of_turn(tokenizer, template_kwargs: dict | None = None) -> str | None:
    """The special token that closes an assistant turn in this template (Gemma `<end_of_turn>`, Qwen
    `<|im_end|>`, Llama `<|eot_id|>`, …): what follows the assistant's text when a finished turn is rendered."""
    marker = "MEDBENCHMARKER"
    messages = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": marker}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, **(template_kwargs or {}))
    rest = text[text.rindex(marker) + len(marker) :]
    ids = tokenizer.encode(rest, add_special_tokens=False)
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    for token in ids:
        if token in special:
            return tokenizer.convert_ids_to_tokens(token)
    return None


def generation_kwargs(plan: ChatPlan, tokenizer, mode: str, settings: EvalSettings) -> dict:
    """The run's generation arguments: the settings', and in a chat `gen` run the template's end of turn as the
    only stop (lm-eval adds EOS), not a blank line."""
    kwargs = settings.generation_kwargs()
    if plan.apply and mode == "gen":
        eot = end_of_turn(tokenizer, plan.template_kwargs)
        kwargs["until"] = [eot] if eot else []
    return kwargs


def describe(plan: ChatPlan, tokenizer=None) -> dict:
    """What the record says about the chat template of a run."""
    out = plan.as_dict()
    if plan.apply and tokenizer is not None:
        template = require_template(tokenizer, "model")
        out["template_sha256"] = hashlib.sha256(template.encode()).hexdigest()
        out["end_of_turn"] = end_of_turn(tokenizer, plan.template_kwargs)
    return out


# --- family tokenizers for tests and the rendered prompts in tasks/README.md -----------------------------


def template_fixtures() -> Path:
    """The published chat templates kept as test fixtures (provenance and licences in their README)."""
    return REPO_ROOT / "tests" / "fixtures" / "chat_templates"


def families() -> dict:
    import yaml

    return yaml.safe_load((template_fixtures() / "families.yaml").read_text())


def family_tokenizer(base: str | Path, family: str):
    """The tokenizer in `base` (the embedded 270M's) dressed as `family`'s: its chat template, its special
    tokens as single tokens, its BOS/EOS/PAD, and whether it prepends BOS. Ordinary text keeps the base
    vocabulary's ids."""
    from transformers import AutoTokenizer

    facts = families()[family]
    tok = AutoTokenizer.from_pretrained(base)
    tok.add_special_tokens({"additional_special_tokens": list(facts["special"])})
    if facts.get("added"):
        tok.add_tokens(list(facts["added"]))
    roles = {k: facts[k] for k in ("bos_token", "eos_token", "pad_token") if facts.get(k)}
    tok.add_special_tokens(roles)
    if not facts.get("bos_token"):
        tok.bos_token = None
    tok.add_bos_token = bool(facts["add_bos"])
    tok.chat_template = (template_fixtures() / facts["template"]).read_text()
    return tok
