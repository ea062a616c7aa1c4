"""lm-eval's `generate_until` through fast greedy generation (medbench/eval/generation/dynamic.py): MedbenchLM's mixin."""

from __future__ import annotations

import sys
import time

from medbench.eval.generation.dynamic import generate_greedy
from medbench.eval.generation.static import generate_greedy_static

ENGINES = ("dynamic", "static")

SUPPORTED_GEN_KWARGS = {"do_sample", "repetition_penalty", "temperature"}


def unsupported_processors(model, repetition_penalty: float) -> list[str]:
    """Logits processors `generate` would add for greedy decoding here, other than the repetition penalty."""
    from transformers import GenerationConfig

    config = GenerationConfig.from_dict(
        {
            **_base_generation_config(model),
            "do_sample": False,
            "num_beams": 1,
            "repetition_penalty": repetition_penalty,
            "temperature": None,
            "top_k": None,
            "top_p": None,
        }
    )
    processors = model._get_logits_processor(generation_config=config, input_ids_seq_length=1, device="cpu")
    return [type(p).__name__ for p in processors if type(p).__name__ != "RepetitionPenaltyLogitsProcessor"]


def static_engine_refusal(model, device) -> str | None:
    """Why `gen_engine=auto` keeps the dynamic engine for this model, or None. The static engine's gain is its
    compiled, graphed decode step, which transformers' generate grants only a compileable model on a GPU."""
    if not str(device).startswith("cuda"):
        return "not on CUDA (generate compiles the decode step on a GPU only)"
    if hasattr(model, "get_base_model"):
        return "a PEFT adapter on the model"
    if getattr(model, "hf_quantizer", None) is not None or getattr(model, "is_loaded_in_4bit", False):
        return "a quantized model"
    if not getattr(model, "_can_compile_fullgraph", False):
        return f"{type(model).__name__} is not marked compileable by transformers"
    if len(set((getattr(model, "hf_device_map", None) or {}).values())) > 1:
        return "a model sharded across devices"
    return None


def resolve_engine(setting: str, model, device) -> tuple[str, str]:
    """(engine, why) for the gen_engine setting on this model and device."""
    if setting in ENGINES:
        return setting, "the gen_engine setting"
    if setting != "auto":
        raise ValueError(f"gen_engine {setting!r}: choose from auto, {', '.join(ENGINES)}")
    refusal = static_engine_refusal(model, device)
    return ("dynamic", f"auto: {refusal}") if refusal else ("static", "auto: compileable, one GPU")


def _base_generation_config(model) -> dict:
    config = getattr(model, "generation_config", None)
    return config.to_diff_dict() if config is not None else {}


class FastGenerationMixin:
    """`generate_until` through `generate_greedy` for lm-eval's HF model (MedbenchLM mixes it in before HFLM).

    Requests are grouped by task, as MedbenchLM batches its scoring (a task's numbers do not depend
    on what ran beside it), and within a task by their generation arguments, as stock lm-eval groups
    them; a group that asks for anything but greedy decoding with a repetition penalty goes to stock
    lm-eval, and so does everything when `fast_gen` is off. Prompts are encoded, truncated and the
    answers decoded and cut at the stop strings exactly as stock `generate_until` does, and each
    answer is reported to the cache hook as stock reports it (the response cache stores it as it is
    computed: medbench/eval/response_cache.py).
    """

    fast_gen_check_every = 8
    fast_gen_refill_below = 0.5
    fast_gen_prefill_tokens = 32768

    def __init__(self, *args, fast_gen: bool = True, gen_engine: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.fast_gen = fast_gen
        # "dynamic" (fastgen.py: rows leave and join, eager forward), "static" (fastgen_static.py: fixed-shape,
        # compiled decode steps) or "auto" (static where generate compiles it: static_engine_refusal). On an H200
        # the static engine ran 5-task cot 13.65x faster than the dynamic one (1.9x with its compilation), with
        # the same tokens in fp32 (results/bench/eval-gemma3-270m-cot-*.json).
        self.fast_gen_engine = gen_engine
        self.gen_engine_used: dict[str, str] = {}  # engine -> why it was chosen, for the record
        self.fast_gen_stats: list[dict] = []  # one entry per group generated here
        self.fast_gen_fallbacks: list[str] = []  # why a group went to stock lm-eval
        self.last_generated_ids: dict[int, list[int]] = {}  # request index -> kept token ids (the bench compares)

    def generate_until(self, requests, disable_tqdm: bool = False):
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
        from tqdm import tqdm

        if not self.fast_gen or self.backend != "causal" or self.think_end_token is not None:
            return super().generate_until(requests, disable_tqdm)
        self.last_generated_ids = {}
        groups: dict[tuple[str, str], list[int]] = {}
        for i, req in enumerate(requests):
            key = (str(getattr(req, "task_name", "")), repr(sorted(req.args[1].items())))
            groups.setdefault(key, []).append(i)
        results: list = [None] * len(requests)
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        quiet = disable_tqdm or not getattr(self, "progress", True) or self.rank != 0
        pbar = tqdm(total=len(requests), disable=quiet, desc="Generating (fast_gen)")
        for _, indices in sorted(groups.items()):
            gen_kwargs = requests[indices[0]].args[1]
            kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_gen_toks = kwargs.pop("max_gen_toks")
            penalty = float(kwargs.get("repetition_penalty", 1.0))
            reason = self._fast_gen_refusal(kwargs, penalty)
            if reason:
                self.fast_gen_fallbacks.append(reason)
                print(f"medbench: fast_gen: {reason}: {len(indices)} requests go to stock lm-eval", file=sys.stderr)
                for i, text in zip(indices, super().generate_until([requests[i] for i in indices], disable_tqdm)):
                    results[i] = text
                    pbar.update(1)
                continue
            contexts = [requests[i].args[0] for i in indices]
            prompts = self._fast_gen_encode(contexts, max_gen_toks)
            start = time.perf_counter()
            engine = self._engine()
            tokens, stats = self._fast_gen_run(prompts, max_gen_toks, until, penalty, pbar.update, engine)
            if hasattr(self, "generate_seconds"):  # MedbenchLM's counters for the record
                self.generate_seconds += time.perf_counter() - start
                self.generated_tokens += stats.generated_tokens
            entry = {"requests": len(indices), "max_gen_toks": max_gen_toks, "engine": engine, **stats.as_dict()}
            self.fast_gen_stats.append(entry)
            for i, context, toks in zip(indices, contexts, tokens):
                self.last_generated_ids[i] = toks
                text = postprocess_generated_text(self.tok_decode(toks), until, None)
                results[i] = text
                self.cache_hook.add_partial("generate_until", (context, requests[i].args[1]), text)
        pbar.close()
        return results

    def _engine(self) -> str:
        """The engine for this model (the gen_engine setting, `auto` resolved), noted with its reason."""
        engine, why = resolve_engine(self.fast_gen_engine, self.model, self.device)
        self.gen_engine_used.setdefault(engine, why)
        return engine

    def _fast_gen_run(
        self, prompts: list[list[int]], max_gen_toks: int, until: list[str], penalty: float, progress, engine: str
    ):
        common = {
            "repetition_penalty": penalty,
            "batch_size": self.batch_size if isinstance(self.batch_size, int) else 8,
            "check_every": self.fast_gen_check_every,
            "pad_token_id": self.tokenizer.pad_token_id,
            "autocast_dtype": self.mixed_precision_dtype,
            "progress": progress,
        }
        if engine == "static":
            return generate_greedy_static(self.model, self.tokenizer, prompts, max_gen_toks, until, **common)
        return generate_greedy(
            self.model,
            self.tokenizer,
            prompts,
            max_gen_toks,
            until,
            refill_below=self.fast_gen_refill_below,
            prefill_tokens=self.fast_gen_prefill_tokens,
            **common,
        )

    def _fast_gen_refusal(self, kwargs: dict, penalty: float) -> str | None:
        """Why stock lm-eval must answer these arguments, or None when generate_greedy reproduces them."""
        extra = sorted(set(kwargs) - SUPPORTED_GEN_KWARGS)
        if extra:
            return f"generation arguments {', '.join(extra)}"
        if kwargs.get("do_sample") or kwargs.get("temperature", 0.0) not in (0.0, None):
            return "sampling"
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        if not type(base).__module__.startswith("transformers."):
            # Remote code may predate `cache`/`logits_to_keep`/explicit position ids, or return a legacy cache.
            return f"a model class from remote code ({type(base).__module__})"
        try:
            others = unsupported_processors(self.model, penalty)
        except Exception as e:  # a model whose generate cannot be inspected: stock is the safe answer
            return f"could not inspect the model's logits processors ({type(e).__name__}: {e})"
        return f"logits processors {', '.join(others)} from the generation config" if others else None

    def _fast_gen_encode(self, contexts: list[str], max_gen_toks: int) -> list[list[int]]:
        """Each context's token ids as stock generate_until encodes it in a batch of its own."""
        from lm_eval.models.utils import has_bos_prefix

        bos = getattr(self.tokenizer, "bos_token", None)
        out: list = [None] * len(contexts)
        by_bos: dict[bool, list[int]] = {}
        for i, c in enumerate(contexts):  # tok_batch_encode decides BOS from the batch's first string
            by_bos.setdefault(bool(has_bos_prefix(c, bos)), []).append(i)
        for indices in by_bos.values():
            for lo in range(0, len(indices), 256):
                part = indices[lo : lo + 256]
                ids, mask = self.tok_batch_encode(
                    [contexts[i] for i in part],
                    left_truncate_len=self.max_length - max_gen_toks,
                    truncation=self.truncation,
                )
                for row, i in enumerate(part):
                    out[i] = ids[row][mask[row].bool()].tolist()
        return out
