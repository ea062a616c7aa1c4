"""lm-eval's `generate_until` through the engine (medbench/eval/generation/engine.py): MedbenchLM's mixin.

Every request a run makes goes into one engine call, whatever task it belongs to: the decode step stays full across
task boundaries, and each answer still lands in its own task's results (lm-eval keeps the request order). Requests
that ask for anything but greedy decoding with a repetition penalty go to stock lm-eval, and so does everything when
`fast_gen` is off. Prompts are encoded and truncated, and answers decoded and cut at their stop strings, exactly as
stock `generate_until` does; each answer reaches the cache hook (the run's response cache,
medbench/eval/response_cache.py) as soon as its sequence finishes, so an interrupted run keeps it.
"""

from __future__ import annotations

import sys
import time

import torch

from medbench.eval.generation.engine import generate, graphs_refusal
from medbench.eval.generation.sequence import GenerationRequest

ENGINES = ("auto", "graphs", "eager")
SUPPORTED_GEN_KWARGS = {"do_sample", "repetition_penalty", "temperature"}
MAX_AUTO_SLOTS = 256  # the most slots `batch_size=auto` takes; an explicit batch size may take more
CPU_SLOTS = 8  # `batch_size=auto` on a CPU, where a wider step costs its width in time
MEMORY_SHARE = 0.5  # of the GPU memory free after the load, what `batch_size=auto` gives the slots


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


def _base_generation_config(model) -> dict:
    config = getattr(model, "generation_config", None)
    return config.to_diff_dict() if config is not None else {}


def resolve_engine(setting: str, model, device) -> tuple[str, str]:
    """(engine, why) for the gen_engine setting on this model and device: `graphs` replays the decode step as a
    CUDA graph, `eager` launches it from Python each step."""
    if setting not in ENGINES:
        raise ValueError(f"gen_engine {setting!r}: choose from {', '.join(ENGINES)}")
    if setting != "auto":
        return setting, "the gen_engine setting"
    refusal = graphs_refusal(model, torch.device(str(device)))
    return ("eager", f"auto: {refusal}") if refusal else ("graphs", "auto: one CUDA device")


def kv_bytes_per_token(model) -> int:
    """Bytes of keys and values one token takes in every layer, from the model's config and dtype."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    dtype = next(model.parameters()).dtype
    size = dtype.itemsize if dtype.is_floating_point else 2
    return 2 * config.num_hidden_layers * heads * head_dim * size


def auto_slots(model, device, requests: list[GenerationRequest]) -> int:
    """`batch_size=auto` for generation: on a GPU, as many slots as half the free memory holds (each a KV cache of
    the run's longest prompt plus budget, and a row of logits), at most MAX_AUTO_SLOTS; on a CPU, CPU_SLOTS."""
    if torch.device(str(device)).type != "cuda":
        return CPU_SLOTS
    free, _ = torch.cuda.mem_get_info(torch.device(str(device)))
    cache_len = max(len(r.prompt) + r.budget for r in requests)
    vocab = model.get_output_embeddings().weight.shape[0]
    per_slot = cache_len * kv_bytes_per_token(model) + 16 * vocab  # fp32 logits, their penalized copy, seen ids
    return max(1, min(MAX_AUTO_SLOTS, int(MEMORY_SHARE * free // per_slot)))


class FastGenerationMixin:
    """`generate_until` through the engine for lm-eval's HF model (MedbenchLM mixes it in before HFLM)."""

    fast_gen_check_every = 8
    fast_gen_refill_fraction = 0.125
    fast_gen_prefill_tokens = 32768

    def __init__(
        self,
        *args,
        fast_gen: bool = True,
        gen_engine: str = "auto",
        prefix_sharing: bool = True,
        gen_slots: int | str | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.fast_gen = fast_gen
        # The decode step's slots: the batch size, or `auto` (auto_slots); None: lm-eval's batch size.
        self.gen_slots = gen_slots
        self.fast_gen_engine = gen_engine
        self.prefix_sharing = prefix_sharing
        self.gen_engine_used: dict[str, str] = {}  # engine -> why it was chosen, for the record
        self.fast_gen_stats: list[dict] = []  # one entry per engine call
        self.fast_gen_fallbacks: list[str] = []  # why requests went to stock lm-eval
        self.last_generated_ids: dict[int, list[int]] = {}  # request index -> kept token ids (the bench compares)

    def generate_until(self, requests, disable_tqdm: bool = False):
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
        from tqdm import tqdm

        if not self.fast_gen or self.backend != "causal" or self.think_end_token is not None:
            return super().generate_until(requests, disable_tqdm)
        self.last_generated_ids = {}
        results: list = [None] * len(requests)
        quiet = disable_tqdm or not getattr(self, "progress", True) or self.rank != 0
        pbar = tqdm(total=len(requests), disable=quiet, desc="Generating")
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        by_penalty: dict[float, list[tuple[int, int, list[str]]]] = {}  # penalty -> (request, budget, stops)
        for i, req in enumerate(requests):
            kwargs = normalize_gen_kwargs(req.args[1], self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            budget = kwargs.pop("max_gen_toks")
            penalty = float(kwargs.get("repetition_penalty", 1.0))
            reason = self._fast_gen_refusal(kwargs, penalty)
            if reason:
                self.fast_gen_fallbacks.append(reason)
                print(f"medbench: fast_gen: {reason}: request {i} goes to stock lm-eval", file=sys.stderr)
                (results[i],) = super().generate_until([req], disable_tqdm=True)
                pbar.update(1)
                continue
            by_penalty.setdefault(penalty, []).append((i, budget, until))
        for penalty, entries in by_penalty.items():
            prompts: dict[int, list[int]] = {}
            for budget in {b for _, b, _ in entries}:
                members = [i for i, b, _ in entries if b == budget]
                prompts.update(zip(members, self._fast_gen_encode([requests[i].args[0] for i in members], budget)))
            batch = [
                GenerationRequest(prompts[i], b, tuple(until), str(getattr(requests[i], "task_name", "")))
                for i, b, until in entries
            ]

            def on_finish(k: int, tokens: list[int], entries=entries) -> None:
                i, _, until = entries[k]
                text = postprocess_generated_text(self.tok_decode(tokens), until, None)
                results[i] = text
                self.last_generated_ids[i] = tokens
                self.cache_hook.add_partial("generate_until", (requests[i].args[0], requests[i].args[1]), text)
                pbar.update(1)

            self._fast_gen_run(batch, penalty, on_finish)
        pbar.close()
        return results

    def _fast_gen_run(self, batch: list[GenerationRequest], penalty: float, on_finish) -> None:
        engine, why = resolve_engine(self.fast_gen_engine, self.model, self.device)
        slots = self.gen_slots if self.gen_slots is not None else self.batch_size
        if not isinstance(slots, int):
            slots = auto_slots(self.model, self.device, batch)
        attention = self.model.config._attn_implementation
        if attention not in ("sdpa", "eager"):
            # The engine's per-slot masks are for sdpa and eager; generation switches to sdpa and back.
            self.model.set_attn_implementation("sdpa")
        start = time.perf_counter()
        try:
            stats = self._generate(batch, penalty, slots, engine, on_finish)
        finally:
            if attention not in ("sdpa", "eager"):
                self.model.set_attn_implementation(attention)
        # The record names what decoded: graphs chosen but not captured (a capture that failed) decoded eagerly.
        if engine == "graphs" and not stats.graphs:
            engine, why = "eager", f"{why}; graphs not captured: {stats.graphs_reason}"
        self.gen_engine_used.setdefault(engine, why)
        if hasattr(self, "generate_seconds"):  # MedbenchLM's counters for the record
            self.generate_seconds += time.perf_counter() - start
            self.generated_tokens += stats.generated_tokens
        entry = {"requests": len(batch), "engine": engine, "attention": self.model.config._attn_implementation}
        if attention not in ("sdpa", "eager"):
            entry["attention"] = f"sdpa (the model's {attention} switched for generation)"
        self.fast_gen_stats.append({**entry, **stats.as_dict()})

    def _generate(self, batch: list[GenerationRequest], penalty: float, slots: int, engine: str, on_finish):
        _, stats = generate(
            self.model,
            self.tokenizer,
            batch,
            repetition_penalty=penalty,
            slots=slots,
            check_every=self.fast_gen_check_every,
            refill_fraction=self.fast_gen_refill_fraction,
            prefill_tokens=self.fast_gen_prefill_tokens,
            prefix_min=64 if self.prefix_sharing else 10**9,
            graphs="auto" if engine == "graphs" else "off",
            pad_token_id=self.tokenizer.pad_token_id,
            autocast_dtype=self.mixed_precision_dtype,
            on_finish=on_finish,
        )
        return stats

    def _fast_gen_refusal(self, kwargs: dict, penalty: float) -> str | None:
        """Why stock lm-eval must answer these arguments, or None when the engine reproduces them."""
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
