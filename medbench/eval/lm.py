"""lm-eval's HF model with a cheaper multiple-choice path and the study's prompt truncation.

Stock `HFLM` computes logits over the whole vocabulary (262k for Gemma 3) at every position.
When every continuation of a context is a single token (answer letters " A" … " E"), one forward
pass with `logits_to_keep=1` gives all of that context's choices (`just bench eval` measures the gain).
Everything else (batching order, multi-token continuations, metrics) stays lm-eval's; greedy generation goes through medbench/eval/generation/ (the `fast_gen` setting, mixed
in below), whose answers reach the response cache as stock `generate_until`'s do.

Prompts longer than `prompt_max_tokens` (the study's 3,500) are truncated from the left, so the
question and options at the end survive; the generation budget is separate.
"""

from __future__ import annotations

import time
from collections import defaultdict

import lm_eval.evaluator as lm_eval_evaluator
import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import _add_special_kwargs, has_bos_prefix
from tqdm import tqdm

from medbench.errors import MedbenchError
from medbench.eval.generation.lm import (
    FastGenerationMixin,  # generation: medbench/eval/generation/ (the fast_gen setting)
)
from medbench.prompts import templates

templates.install()


def _commit_of_this_code() -> str | None:
    from medbench.records import provenance

    return provenance.code_state()["git_sha"]


# lm-eval asks `git describe` in the current folder for its results.json (and lets git print "fatal: not a git
# repository" where there is none); the commit of medbench's own code, read quietly, goes there instead.
lm_eval_evaluator.get_git_commit_hash = _commit_of_this_code

# Largest |batched - alone| letter log-probability allowed by the canary, per compute dtype: fp32
# differs by summation order only; bf16 batching changes rounding of whole activations. Measured on an
# H200 (results/bench/sdpa-width-check-NVIDIA-H200.json and canaries): bf16 rounding moved a letter's
# log-probability by up to 0.35 (the AWQ 270M's canary: 0.27), while the faulty kernel moved it by 8.6
# to 12.4; 1.0 lies between the two.
MC_ROWS = 8  # `batch_size=auto` for mc: rows per forward pass at least (batch_tokens may give more)
CANARY_TOLERANCE = {"float32": 1e-3, "bfloat16": 1.0, "float16": 0.5}


class CanaryError(MedbenchError):
    """Batched scores disagree with the same questions scored alone."""


@register_model("medbench-hf")
class MedbenchLM(FastGenerationMixin, HFLM):
    # mc batches are padded to a multiple of this many tokens (see _batches); 64 costs a few percent of padding.
    width_multiple = 64

    def __init__(
        self,
        *args,
        prompt_max_tokens: int = 3500,
        fast_mc: bool = True,
        batch_tokens: int = 0,
        canary_size: int = 4,
        progress: bool = True,
        fixed_shapes: str = "auto",
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.prompt_max_tokens = int(prompt_max_tokens)
        self.fast_mc = fast_mc
        self.batch_tokens = int(batch_tokens)
        self._encoded: dict[tuple[str, tuple], list[int]] = {}  # tok_encode's answers, filled a batch at a time
        self.canary_size = canary_size
        self.dtype_name = str(next(self.model.parameters()).dtype).replace("torch.", "")
        self.canary_tolerance = CANARY_TOLERANCE.get(self.dtype_name, 1.0)
        self.canary_report: list[dict] = []  # one entry per scoring call, for the record
        self.progress = progress
        self._pbar = None
        # Filler rows (see _batches) on CUDA, where a batch's shape changed bf16 rounding enough to flip
        # near-ties (32 of 4,282 answers between 1 and 2 GPUs). On CPU, fp32 moved at most a last bit, and
        # filling every small batch to its row count would multiply the work of a short run.
        self.fixed_shapes = fixed_shapes == "true" or (fixed_shapes == "auto" and str(self.device).startswith("cuda"))
        self.generated_tokens = 0  # for the record's generated tokens/s
        self.generate_seconds = 0.0

    @classmethod
    def from_loaded(cls, loaded, settings, progress: bool = True, chat_template_args: dict | None = None) -> MedbenchLM:
        """Wrap a medbench.models.loading.Loaded model with the evaluation settings (runner and consistency check).

        `chat_template_args` reach the tokenizer's chat template when lm-eval applies it (medbench/prompts/chat.py)."""
        return cls(
            pretrained=loaded.model,
            tokenizer=loaded.tokenizer,
            # lm-eval's own `auto` probes memory by trial; ours: 8 rows (and batch_tokens) for mc, slots for gen.
            batch_size=settings.batch_size if isinstance(settings.batch_size, int) else MC_ROWS,
            gen_slots=settings.batch_size,
            device=loaded.device,
            prompt_max_tokens=settings.prompt_max_tokens,
            fast_mc=settings.fast_mc,
            fast_gen=settings.fast_gen,
            gen_engine=settings.gen_engine,
            prefix_sharing=settings.prefix_sharing,
            batch_tokens=settings.batch_tokens,
            canary_size=settings.canary,
            fixed_shapes=settings.fixed_shapes,
            progress=progress,
            chat_template_args=chat_template_args or None,
        )

    @property
    def max_length(self) -> int:
        # Room for a full prompt plus any generation budget: truncation is ours (prompt_max_tokens).
        return max(super().max_length, self.prompt_max_tokens + 4096)

    def _encode_kwargs(self, string: str) -> dict:
        """The tokenizer arguments lm-eval's `tok_encode(string)` uses (BOS unless the text starts with one)."""
        kwargs = _add_special_kwargs(None, self.add_bos_token)
        if not hasattr(self, "_bos_text"):
            self._bos_text = self.tokenizer.decode(self.prefix_token_id)
        if has_bos_prefix(string, self._bos_text):
            kwargs["add_special_tokens"] = False
        return kwargs

    def encode_many(self, strings) -> None:
        """Tokenize `strings` in one batched call per argument set, for `tok_encode` to answer from.

        lm-eval encodes each (context, context + letter) pair on its own, twice per answer letter: 11,457
        single calls for MedQA's 1,273 questions. One batched call runs in the tokenizer's threads and
        encodes each distinct context once; the token ids are the same (tests/test_mc_host.py).
        """
        groups: dict[tuple, list[str]] = defaultdict(list)
        for string in dict.fromkeys(strings):
            kwargs = self._encode_kwargs(string)
            key = tuple(sorted(kwargs.items()))
            if (string, key) not in self._encoded:
                groups[key].append(string)
        for key, todo in groups.items():
            for string, ids in zip(todo, self.tokenizer(todo, **dict(key))["input_ids"], strict=True):
                self._encoded[(string, key)] = list(ids)

    def tok_encode(self, string, add_special_tokens=None, left_truncate_len=None, **kwargs):
        if add_special_tokens is None and not kwargs:
            hit = self._encoded.get((string, tuple(sorted(self._encode_kwargs(string).items()))))
            if hit is not None:
                return hit[-left_truncate_len:] if left_truncate_len else list(hit)
        return super().tok_encode(string, add_special_tokens, left_truncate_len, **kwargs)

    def tok_batch_encode(self, strings, padding_side="left", left_truncate_len=None, truncation=False):
        return super().tok_batch_encode(strings, padding_side, self.prompt_max_tokens, truncation)

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        start = time.perf_counter()
        out = super()._model_generate(context, max_length, stop, **generation_kwargs)
        if out.is_cuda:
            torch.cuda.synchronize()
        self.generate_seconds += time.perf_counter() - start
        new = out[:, context.shape[1] :]
        pad = self.tokenizer.pad_token_id
        self.generated_tokens += int((new != pad).sum()) if pad is not None else new.numel()
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        """Each task's questions in batches of that task only, tasks in name order.

        Batches that mix tasks make a task's padding, and so its rounding on a GPU, depend on what ran
        beside it (a bf16 accuracy moved that way); per task, a task's numbers are
        its own.
        """
        by_task: dict[str, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            by_task[str(getattr(req, "task_name", ""))].append(i)
        results: list = [None] * len(requests)
        if self.backend == "causal":
            self.encode_many(_pair_strings(req.args for req in requests))
        # One bar for the whole scoring phase, over every task's answers.
        self._pbar = tqdm(
            total=len(requests),
            disable=disable_tqdm or not self.progress or self.rank != 0,
            desc="Scoring answer letters",
            unit="answer",
        )
        try:
            for task in sorted(by_task):
                idx = by_task[task]
                for i, res in zip(idx, super().loglikelihood([requests[i] for i in idx], True), strict=True):
                    results[i] = res
        finally:
            self._pbar.close()
            self._pbar = None
        return results

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        if not self.fast_mc or self.backend != "causal":
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        single = [i for i, r in enumerate(requests) if len(r[2]) == 1]
        multi = [i for i, r in enumerate(requests) if len(r[2]) != 1]
        results: list = [None] * len(requests)
        if multi:
            for i, res in zip(multi, self._continuation_scores([requests[i] for i in multi], disable_tqdm)):
                results[i] = res
        if single:
            for i, res in zip(single, self._last_token_scores([requests[i] for i in single], disable_tqdm)):
                results[i] = res
        return results

    def _progress(self, total: int, disable_tqdm: bool):
        return self._pbar or tqdm(
            total=total, disable=disable_tqdm or self.rank != 0, desc="Scoring answers", unit="answer"
        )

    @torch.no_grad()
    def _last_token_scores(self, requests, disable_tqdm: bool):
        """(log p(token | context), token is greedy) for one-token continuations, one forward per context.

        Each batch's answers reach the response cache as soon as the batch is scored (an interrupted run keeps
        them), after the canary contexts in it were scored alone and agreed."""
        by_context: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, (_, context_enc, _) in enumerate(requests):
            by_context[tuple(context_enc[-self.prompt_max_tokens :])].append(i)
        # Longest first, as lm-eval does: memory errors surface at once and padding stays small.
        # Ties in length keep the requests' order, so the batches are the same on every run.
        contexts = sorted(by_context, key=len, reverse=True)
        canary = self._canary_picks(contexts)
        pbar = self._progress(len(requests), disable_tqdm)
        results: list = [None] * len(requests)
        for batch, width, rows in self._batches(contexts):
            wanted = sorted({requests[i][2][0] for ctx in batch for i in by_context[ctx]})
            filled = batch + [batch[-1]] * (rows - len(batch)) if self.fixed_shapes else batch
            scored = dict(zip(batch, self._score_batch(filled, wanted, width)[: len(batch)]))
            for ctx in canary & scored.keys():
                tokens = sorted({requests[i][2][0] for i in by_context[ctx]})
                ((_, alone, _),) = self._score_batch([ctx], tokens)
                self._canary_check([abs(alone[t] - scored[ctx][1][t]) for t in tokens])
            for ctx, (_, letter_logprobs, greedy) in scored.items():
                for i in by_context[ctx]:
                    token = requests[i][2][0]
                    results[i] = (letter_logprobs[token], greedy == token)
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], results[i])
                pbar.update(len(by_context[ctx]))
        if pbar is not self._pbar:
            pbar.close()
        self._canary_report_call(len(canary))
        return results

    @torch.no_grad()
    def _continuation_scores(self, requests, disable_tqdm: bool):
        """(sum of log p of each continuation token, every token greedy) for multi-token continuations (cloze
        scoring: an option's text after the question): one forward of context + continuation per request, the
        continuation's logits computed in fp32 from the final hidden states, as the letters' are."""
        sequences = [(tuple(ctx[-self.prompt_max_tokens :]) + tuple(cont), len(cont)) for _, ctx, cont in requests]
        order = sorted(range(len(requests)), key=lambda i: -len(sequences[i][0]))
        canary = self._canary_picks(order)
        pbar = self._progress(len(requests), disable_tqdm)
        results: list = [None] * len(requests)
        start = 0
        while start < len(order):
            width = self._width(len(sequences[order[start]][0]))
            end, rows = start, self._rows(width)
            while end < len(order) and end - start < rows and self._width(len(sequences[order[end]][0])) == width:
                end += 1
            batch = order[start:end]
            filled = batch + [batch[-1]] * (rows - len(batch)) if self.fixed_shapes else batch
            scored = self._score_continuations([sequences[i] for i in filled], width)[: len(batch)]
            for i, answer in zip(batch, scored, strict=True):
                if i in canary:
                    (alone,) = self._score_continuations([sequences[i]])
                    self._canary_check([abs(alone[0] - answer[0])])
                results[i] = answer
                self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
            pbar.update(len(batch))
            start = end
        if pbar is not self._pbar:
            pbar.close()
        self._canary_report_call(len(canary))
        return results

    def _score_continuations(self, batch: list[tuple[tuple[int, ...], int]], width: int | None = None):
        """Per (tokens, continuation length): (log p of the continuation, every continuation token greedy)."""
        width = max(width or 0, max(len(t) for t, _ in batch))
        keep = max(n for _, n in batch) + 1
        ids, mask = _left_padded([t for t, _ in batch], width, self._pad_id())
        head = self.model.get_output_embeddings()
        hidden = self._forward_hidden(ids, mask, keep)  # [rows, keep, d]: the last `keep` positions
        out = []
        weight32 = self._head_fp32(head)
        for row, (tokens, n) in enumerate(batch):
            logits = exact_logits(hidden[row, keep - n - 1 : keep - 1], head, self.model.config, weight32)
            logprobs = torch.log_softmax(logits, dim=-1)
            target = torch.tensor(tokens[-n:], device=logprobs.device)
            picked = logprobs.gather(1, target[:, None])[:, 0]
            greedy = bool((logits.argmax(dim=-1) == target).all())
            out.append((float(picked.sum()), greedy))
        return out

    def _forward_hidden(self, ids: torch.Tensor, mask: torch.Tensor, keep: int) -> torch.Tensor:
        """The final hidden states (after the final norm) of the last `keep` positions, through the model's own
        forward (left padding, each sequence at its own positions)."""
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        head = self.model.get_output_embeddings()
        captured = {}
        hook = head.register_forward_hook(lambda _m, inputs, _o: captured.__setitem__("hidden", inputs[0]))
        try:
            with torch.autocast(
                device_type=self.device.type,
                dtype=self.mixed_precision_dtype,
                enabled=self.mixed_precision_dtype is not None,
            ):
                self.model(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    position_ids=positions.to(self.device),
                    logits_to_keep=keep,
                )
        finally:
            hook.remove()
        return captured["hidden"]

    def _pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def _rows(self, width: int) -> int:
        rows = self.batch_size if isinstance(self.batch_size, int) else 1
        return max(rows, self.batch_tokens // width) if self.batch_tokens else rows

    def _width(self, length: int) -> int:
        """A context's padded width: its length rounded up to `width_multiple` tokens."""
        return -(-length // self.width_multiple) * self.width_multiple

    def _batches(self, contexts: list[tuple[int, ...]]):
        """(batch, width, rows): consecutive slices of the length-sorted contexts that never cross a width
        bucket, `rows` long at most: `batch_size`, or with `batch_tokens` set, as many rows as fit that many
        padded tokens at `width` (never fewer).

        Each batch is then scored at its bucket's width, and with `fixed_shapes` (on CUDA) filled with throw-away
        rows up to its row count, so every forward pass a context takes part in has a shape that depends on
        that context's length alone: not on the other questions, on `--limit`, or on how data-parallel
        processes shared them out. Same shape, same kernels: a question's scores are the same bit for bit
        whatever ran beside it."""
        start = 0
        while start < len(contexts):
            width = self._width(len(contexts[start]))
            end, rows = start, self._rows(width)
            while end < len(contexts) and end - start < rows and self._width(len(contexts[end])) == width:
                end += 1
            yield contexts[start:end], width, rows
            start = end

    def _score_batch(self, batch: list[tuple[int, ...]], wanted: list[int], width: int | None = None):
        """Per context: (hidden state, {token: log p in fp32}, greedy token) for the `wanted` tokens, the
        contexts left-padded to `width` (default: the longest).

        Every logit is computed again in fp32 from the final hidden state and the output head (one product
        of the batch's fixed shape): in bf16, logits of this size have a resolution of 0.125, and letters that
        round to the same value would be chosen by their order; and the normaliser (log-sum-exp over the
        vocabulary) comes from the same fp32 logits as the letters, so a context's letter probabilities never
        sum to more than 1.
        """
        width = max(width or 0, max(len(c) for c in batch))
        ids, mask = _left_padded(batch, width, self._pad_id())
        head = self.model.get_output_embeddings()
        hidden = self._forward_hidden(ids, mask, 1)[:, -1, :]
        exact = exact_logits(hidden, head, self.model.config, self._head_fp32(head))
        normaliser = torch.logsumexp(exact, dim=-1)
        letters, greedy = exact[:, wanted], exact.argmax(dim=-1)
        # One copy to the host per batch (a float() per letter would wait on the device 320 times a batch).
        letters, logprobs, greedy = (t.cpu() for t in (letters, letters - normaliser[:, None], greedy))
        table, chosen = logprobs.tolist(), greedy.tolist()
        return [(letters[row], dict(zip(wanted, table[row], strict=True)), chosen[row]) for row in range(len(batch))]

    def _head_fp32(self, head) -> torch.Tensor:
        """The output head's weight in fp32, converted once per model (a sharded head keeps its device)."""
        key = (head.weight.data_ptr(), head.weight.dtype)
        if getattr(self, "_head32_key", None) != key:
            self._head32, self._head32_key = head.weight.detach().float(), key
        return self._head32

    def _canary_picks(self, items: list) -> set:
        """A fixed handful of a call's contexts (spread over its length order) to score again alone."""
        if not self.canary_size or not items:
            return set()
        step = max(1, len(items) // self.canary_size)
        return set(items[::step][: self.canary_size])

    def _canary_check(self, differences: list[float]) -> None:
        """A context scored alone (batch 1, no padding) against its batched scores: a batched kernel that returns
        wrong numbers (seen once: fp32 attention on an H200 at some padded widths gave 72 questions scores that did
        not depend on the question) stops the run before its batch reaches the record or the cache."""
        worst = max([getattr(self, "_canary_worst", 0.0), *differences])
        self._canary_worst = worst
        if worst > self.canary_tolerance:
            self._canary_report_call(None)
            raise CanaryError(
                f"batched scores differ from the same questions scored alone by up to {worst:.4g} "
                f"(tolerance {self.canary_tolerance:g} for {self.dtype_name}): a batched kernel is computing wrong "
                f"numbers. Nothing was recorded for this batch. Try --set attn_implementation=eager, another "
                f"batch size, or report it with the record's hardware and versions."
            )

    def _canary_report_call(self, checked: int | None) -> None:
        """One entry per scoring call for the record: contexts checked, the worst difference, pass or fail."""
        worst = getattr(self, "_canary_worst", 0.0)
        self._canary_worst = 0.0
        if checked == 0:
            return
        tolerance = self.canary_tolerance
        self.canary_report.append(
            {
                "checked": checked if checked is not None else self.canary_size,
                "max_abs_diff": worst,
                "tolerance": tolerance,
                "passed": worst <= tolerance,
            }
        )


def _left_padded(rows, width: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids left-padded to `width` (every sequence's last token in the last column) and their mask."""
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, seq in enumerate(rows):
        ids[row, width - len(seq) :] = torch.tensor(seq)
        mask[row, width - len(seq) :] = 1
    return ids, mask


def _pair_strings(pairs):
    """The strings lm-eval's `_encode_pair` tokenizes: the context and context + continuation, after
    moving the context's trailing spaces onto the continuation as it does."""
    for context, continuation in pairs:
        if not context:
            continue
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        yield context
        yield context + continuation


def exact_logits(hidden: torch.Tensor, head, config, weight32: torch.Tensor | None = None) -> torch.Tensor:
    """fp32 logits over the whole vocabulary from the final hidden state (after the final norm) and the head."""
    weight = head.weight.float() if weight32 is None else weight32
    hidden = hidden.to(weight.device).float()  # sharded: the final norm and the head may sit on different GPUs
    out = hidden @ weight.T
    if getattr(head, "bias", None) is not None:
        out = out + head.bias.float()
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:  # Gemma 2 style soft-capping, applied by the model after the head
        out = torch.tanh(out / cap) * cap
    return out
