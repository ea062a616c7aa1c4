"""`just bench eval`'s gen and cot part: fastgen beside stock lm-eval's generate_until and the study's loop.

See medbench/eval/bench.py for what is compared and how.
"""

from __future__ import annotations

import copy

import torch

from medbench.eval.bench import EvalBenchOptions, _first_questions, _instances, _medbench_lm, _Meter
from medbench.eval.fastgen_lm import resolve_engine


def _short(instances: list, n: int = 2, tokens: int = 4) -> list:
    """Copies of the first requests with a tiny generation budget, for warming up."""
    out = []
    for inst in instances[:n]:
        c = copy.copy(inst)
        c.arguments = (inst.arguments[0], {**inst.arguments[1], "max_gen_toks": tokens})
        out.append(c)
    return out


def _stock_generator(model, tokenizer, batch_size: int, max_length: int):
    """lm-eval's HFLM, counting the tokens its batches generate; `max_length` gives it the study's prompt cut."""
    from lm_eval.models.huggingface import HFLM

    class CountingHFLM(HFLM):
        generated_all = 0

        def _model_generate(self, context, max_length, stop, **kwargs):
            out = super()._model_generate(context, max_length, stop, **kwargs)
            new = out[:, context.shape[1] :]
            pad = self.tokenizer.pad_token_id
            self.generated_all += int((new != pad).sum()) if pad is not None else new.numel()
            return out

    return CountingHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length)


@torch.inference_mode()
def study_loop(model, tokenizer, prompts: list[list[int]], max_new: int, stops: list[str], penalty: float) -> list:
    """The study's generation: one prompt at a time through HF generate, greedy, the repetition penalty."""
    from lm_eval.models.utils_hf import stop_sequences_criteria

    device = next(model.parameters()).device
    out = []
    for p in prompts:
        ids = torch.tensor([p], device=device)
        gen = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new,
            stopping_criteria=stop_sequences_criteria(tokenizer, stops, len(p), 1),
            pad_token_id=tokenizer.pad_token_id,
            do_sample=False,
            repetition_penalty=penalty,
        )
        out.append(gen[0, len(p) :].tolist())
    return out


@torch.inference_mode()
def top2_gap(model, prompt: list[int], prefix: list[int], penalty: float) -> float:
    """Gap between the two best penalized logits after prompt + prefix, batch 1 (how near a tie a difference was)."""
    from medbench.eval.fastgen_rows import penalize

    device = next(model.parameters()).device
    seq = prompt + prefix
    logits = model(input_ids=torch.tensor([seq], device=device), logits_to_keep=1).logits[0, -1].float()
    seen = torch.zeros_like(logits, dtype=torch.bool)
    seen[torch.tensor(sorted(set(seq)), device=device)] = True
    top = torch.topk(penalize(logits[None], seen[None], penalty)[0], 2).values.tolist()
    return round(top[0] - top[1], 6)


def bench_gen(loaded, prepared, opts: EvalBenchOptions, settings, out: dict | None = None, save=lambda: None) -> dict:
    """`prepared`'s gen or cot run (medbench/eval/request.py), its prompts as a run renders them (chat template
    and stop included). Fills `out` as it goes and calls `save()` after each measurement: a run cut short keeps
    what it measured."""
    from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

    from medbench.eval import chat as chat_templates
    from medbench.eval.fastgen_stop import StopChecker, eos_token_ids

    model, tokenizer = loaded.model, loaded.tokenizer
    ours = _fast_lm(loaded, prepared, opts, settings)
    if prepared.chat.apply:
        chat_templates.require_template(tokenizer, opts.model)
    gen_kwargs = chat_templates.generation_kwargs(prepared.chat, tokenizer, prepared.mode, settings)
    instances = _instances(prepared, ours, opts.limit, gen_kwargs, settings.seed)
    ours.generate_until(_short(instances), disable_tqdm=True)
    with _Meter() as m:
        texts = ours.generate_until(instances, disable_tqdm=True)
    ids = ours.last_generated_ids
    methods = {"medbench": _gen_row(len(instances), m, sum(len(t) for t in ids.values()))}
    methods["medbench"]["fast_gen"] = ours.fast_gen_stats
    out = {} if out is None else out
    out.update(
        {
            "tasks": sorted({i.task_name for i in instances}),
            "questions": len(instances),
            "methods": methods,
            "fallbacks": ours.fast_gen_fallbacks,
            "generation_kwargs": gen_kwargs,
            "chat": chat_templates.describe(prepared.chat, tokenizer),
            # The engine a run here uses (`medbench` rows: the dynamic engine; --static-engine adds the other).
            "run_engine": _run_engine(ours, settings),
        }
    )
    save()
    if opts.static_engine:
        try:
            _static_engine(loaded, prepared, instances, ids, opts, settings, out)
        except Exception as e:  # an engine on trial: its failure is a finding, the methods measured above are kept
            out["static_engine_error"] = f"{type(e).__name__}: {e}"[:2000]
        save()

    baseline_n = opts.limit if opts.baseline_limit is None else opts.baseline_limit
    if baseline_n != 0:
        subset = _first_questions(instances, baseline_n)
        index = {id(inst): i for i, inst in enumerate(instances)}
        # Stock cuts prompts to max_length - max_gen_toks from the left: the study's prompt_max_tokens, as ours.
        budget = normalize_gen_kwargs(subset[0].args[1], ours.max_gen_toks)["max_gen_toks"]
        stock = _stock_generator(model, tokenizer, opts.batch_size, settings.prompt_max_tokens + budget)
        stock.generate_until(_short(subset), disable_tqdm=True)
        stock.generated_all = 0
        with _Meter() as m:
            stock_texts = stock.generate_until(subset, disable_tqdm=True)
        kept = sum(len(ids[index[id(inst)]]) for inst in subset)  # the same answers' tokens, where they agree
        methods["stock_hf"] = _gen_row(len(subset), m, kept)
        methods["stock_hf"]["generated_tokens_all"] = stock.generated_all
        differ = [k for k, inst in enumerate(subset) if stock_texts[k] != texts[index[id(inst)]]]
        out["same_text_as_stock_hf"] = {"questions": len(subset), "different": len(differ)}
        save()
        ours_subset_seconds = _ours_on(loaded, prepared, subset, opts, settings)
        methods["medbench_on_stock_questions"] = _gen_row(len(subset), ours_subset_seconds, kept)
        out["speedup_over_stock_hf"] = round(m.seconds / ours_subset_seconds.seconds, 2)
        save()

    if opts.study_limit:
        subset = _first_questions(instances, opts.study_limit)
        index = {id(inst): i for i, inst in enumerate(instances)}
        kwargs = normalize_gen_kwargs(subset[0].args[1], ours.max_gen_toks)
        eos = ours.tok_decode(ours.eot_token_id, skip_special_tokens=False)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
        max_new = kwargs.pop("max_gen_toks")
        prompts = ours._fast_gen_encode([inst.args[0] for inst in subset], max_new)
        study_loop(model, tokenizer, prompts[:1], 4, until, settings.repetition_penalty)  # warm-up
        with _Meter() as m:
            reference = study_loop(model, tokenizer, prompts, max_new, until, settings.repetition_penalty)
        # generate keeps a token that completes a stop string; so does fastgen: cut both the same way
        checker = StopChecker(tokenizer, until, eos_token_ids(model, tokenizer))
        cuts = [checker.stop_index(r, 0) for r in reference]
        reference = [r if cut is None else r[: cut + 1] for r, cut in zip(reference, cuts)]
        methods["study"] = _gen_row(len(subset), m, sum(len(r) for r in reference))
        differ, gaps = 0, []
        for k, inst in enumerate(subset):
            mine = ids[index[id(inst)]]
            if mine != reference[k]:
                differ += 1
                at = next(
                    (j for j, (a, b) in enumerate(zip(mine, reference[k])) if a != b), min(len(mine), len(reference[k]))
                )
                gaps.append(
                    {
                        "question": k,
                        "first_different_token": at,
                        "top2_gap": top2_gap(model, prompts[k], reference[k][:at], settings.repetition_penalty),
                    }
                )
        out["same_tokens_as_study"] = {"questions": len(subset), "different": differ, "differences": gaps}
        save()
        ours_subset = _ours_on(loaded, prepared, subset, opts, settings)
        methods["medbench_on_study_questions"] = _gen_row(
            len(subset), ours_subset, sum(len(ids[index[id(i)]]) for i in subset)
        )
        out["speedup_over_study"] = round(m.seconds / ours_subset.seconds, 2)
    return out


def _static_engine(loaded, prepared, instances: list, ids: dict, opts: EvalBenchOptions, settings, out: dict) -> None:
    """The static-cache engine on the same questions: a first call (which compiles the decode step on CUDA) and a
    second, timed call; its tokens against the default engine's, and its speed over it."""
    lm = _fast_lm(loaded, prepared, opts, settings)
    lm.fast_gen_engine = "static"
    with _Meter() as first:
        lm.generate_until(instances, disable_tqdm=True)
    lm.fast_gen_stats = []
    with _Meter() as m:
        lm.generate_until(instances, disable_tqdm=True)
    static_ids = lm.last_generated_ids
    row = _gen_row(len(instances), m, sum(len(t) for t in static_ids.values()))
    row["first_call_seconds"] = round(first.seconds, 3)
    row["fast_gen"] = lm.fast_gen_stats
    out["methods"]["medbench_static"] = row
    differ = [i for i in ids if ids[i] != static_ids[i]]
    out["static_same_tokens_as_dynamic"] = {"questions": len(ids), "different": len(differ)}
    out["static_speedup_over_dynamic"] = round(out["methods"]["medbench"]["seconds"] / m.seconds, 2)


def _run_engine(lm, settings) -> dict:
    """The fast_gen engine a run with these settings uses on this model and device, and why."""
    engine, why = resolve_engine(settings.gen_engine, lm.model, lm.device)
    return {"engine": engine, "why": why}


def _fast_lm(loaded, prepared, opts: EvalBenchOptions, settings):
    """MedbenchLM as a run builds it, with fast_gen and the bench's two fast_gen knobs."""
    lm = _medbench_lm(loaded, prepared, settings)
    lm.fast_gen = True
    lm.fast_gen_engine = "dynamic"  # the `medbench` rows; --static-engine adds the static one beside them
    lm.fast_gen_check_every, lm.fast_gen_refill_below = opts.check_every, opts.refill_below
    return lm


def _ours_on(loaded, prepared, subset: list, opts: EvalBenchOptions, settings) -> _Meter:
    lm = _fast_lm(loaded, prepared, opts, settings)
    lm.generate_until(_short(subset), disable_tqdm=True)
    with _Meter() as m:
        lm.generate_until(subset, disable_tqdm=True)
    return m


def _gen_row(questions: int, meter: _Meter, tokens: int) -> dict:
    return {
        "questions": questions,
        "seconds": round(meter.seconds, 3),
        "questions_per_second": round(questions / meter.seconds, 3),
        "generated_tokens": tokens,
        "generated_tokens_per_second": round(tokens / meter.seconds, 1),
        "peak_gpu_gib": meter.peak_gib,
    }
