"""`just bench eval`: our evaluation paths beside stock lm-eval and the simplest loops, side by side in one process.

Same model (one load), same questions, same machine, same batch size:

    mc    medbench   MedbenchLM.loglikelihood (the `mc` runs' path, medbench/eval/lm.py)
          stock_hf   lm-eval's own HFLM.loglikelihood on the same model object
          plain      a one-forward letter scorer in a few lines: length-sorted left-padded batches,
                     logits_to_keep=1, the answer letters' logits gathered on the device
    gen   medbench   MedbenchLM.generate_until through the engine (medbench/eval/generation/): a first call, with
    cot              its graph capture, then a warm one; with --ablations also without graphs and without prefix sharing
          stock_hf   lm-eval's HFLM.generate_until (HF generate on padded batches)
          study      the study's loop: one question at a time, HF generate, greedy, repetition_penalty
                     1.5, stopped by lm-eval's own stop-string criteria

Answers are compared question by question: `mc` by the chosen letter (where they differ, the gap
between the reference's two best letters says whether it was a near-tie); `gen`/`cot` by the
generated token ids against the study's loop (where they differ, the gap between the two best
penalized logits at the first differing token) and by the answer text against stock lm-eval.
The slow baselines can run on the first questions only (`--baseline-limit`, `--study-limit`); every
ratio is computed on the questions both sides answered, and our path's numbers on all questions are
reported beside. Records go to results/bench/eval-<model>-<modes>-<device>.json.

Each mode is what `just eval` would run: the request is checked by medbench/eval/request.py's
`prepare` (model, machine, variant, --limit, data against SHA256SUMS, the chat plan) before the load,
our model is built by `MedbenchLM.from_loaded` (canary, per-task scoring, fast_gen), and the prompts
are rendered with the run's generation arguments, few-shot seed and chat template
(medbench/prompts/chat.py). Nothing is written under results/runs/ and no response cache is used: every
method computes every answer.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from medbench.records import provenance

MODES = ("mc", "gen", "cot")
PROMPT_OF_MODE = {"mc": ("zeroshot", "mc"), "gen": ("zeroshot", "gen"), "cot": ("cot", "gen")}


@dataclass
class EvalBenchOptions:
    model: str = "gemma3-270m"
    variant: str = "base"
    modes: tuple[str, ...] = MODES
    limit: int | None = None  # questions per task, every method
    baseline_limit: int | None = None  # questions per task for stock lm-eval (default: limit)
    study_limit: int | None = 20  # questions per task for the batch-1 study loop (0: skip)
    flip_sample: int = 50  # mc: seeded questions per task also scored at batch size 1 (0: skip)
    batch_size: int = 64  # mc and stock lm-eval's generation
    slots: int | str = "auto"  # gen/cot: the engine's slots (the batch_size setting of a run)
    device: str = "auto"
    attn_implementation: str = "auto"
    dtype: str = "auto"  # as the dtype setting
    ablations: bool = False  # gen/cot: also without CUDA graphs and without prefix sharing, on the same questions


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class _Meter:
    """Seconds and peak GPU memory of one measured block (peak RSS of the process on CPU, not per block)."""

    def __enter__(self):
        _sync()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        _sync()
        self.seconds = time.perf_counter() - self.start
        self.peak_gib = round(torch.cuda.max_memory_allocated() / 2**30, 3) if torch.cuda.is_available() else None


def _prepare(opts: EvalBenchOptions, mode: str, settings):
    """A run request for `mode`, checked as `just eval` checks one (request.prepare: the model, the machine,
    the variant, --limit, the data against SHA256SUMS, the chat plan); nothing is claimed or written."""
    from medbench.eval.request import RunRequest, prepare

    prompt, task_mode = PROMPT_OF_MODE[mode]
    return prepare(
        RunRequest(
            model=opts.model, variant=opts.variant, prompt=prompt, mode=task_mode, limit=opts.limit, settings=settings
        )
    )


def _instances(prepared, lm, limit: int | None, gen_kwargs: dict | None, seed: int) -> list:
    """The requests of `prepared`'s tasks as simple_evaluate builds them in a run (its generation arguments,
    few-shot seed and chat template, rendered by `lm`)."""
    from lm_eval.tasks import TaskManager

    from medbench import paths

    chat = prepared.chat
    tasks = TaskManager(include_path=str(paths.tasks_dir()), include_defaults=False).load(prepared.names)["tasks"]
    out = []
    for name in prepared.names:
        task = tasks[name]
        if gen_kwargs is not None and task.get_config("output_type") == "generate_until":
            task.set_config(key="generation_kwargs", value=gen_kwargs, update=True)
        if task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=seed)
        task.build_all_requests(
            limit=limit,
            rank=0,
            world_size=1,
            system_instruction=chat.system_instruction,
            apply_chat_template=chat.apply,
            fewshot_as_multiturn=chat.fewshot_as_multiturn,
            chat_template=lm.apply_chat_template if chat.apply else None,
            tokenizer_name=getattr(lm, "tokenizer_name", "") if chat.apply else "",
        )
        out += task.instances
    return out


def _medbench_lm(loaded, prepared, settings):
    """Our lm-eval model as a run builds it (MedbenchLM.from_loaded: canary, fast_mc, fast_gen, chat arguments)."""
    from medbench.eval.lm import MedbenchLM

    chat = prepared.chat
    return MedbenchLM.from_loaded(
        loaded, settings, progress=False, chat_template_args=chat.template_kwargs if chat.apply else None
    )


def _first_questions(instances: list, per_task: int | None) -> list:
    """The instances of the first `per_task` questions of each task."""
    if per_task is None:
        return instances
    kept: dict[str, set] = defaultdict(set)
    out = []
    for inst in instances:
        ids = kept[inst.task_name]
        if inst.doc_id in ids or len(ids) < per_task:
            ids.add(inst.doc_id)
            out.append(inst)
    return out


# --- the whole bench ----------------------------------------------------------------------------------


def bench_eval(opts: EvalBenchOptions, save=lambda result: None) -> dict:
    """Every mode of `opts`; `save(result)` is called after each measurement (the CLI writes the record)."""
    from lm_eval.models.huggingface import HFLM

    from medbench.models.loading import load, pick_device
    from medbench.settings import EvalSettings

    settings = EvalSettings(
        device=opts.device, batch_size=opts.batch_size, attn_implementation=opts.attn_implementation, dtype=opts.dtype
    )
    gen_settings = replace(settings, batch_size=opts.slots)  # the engine's slots; mc and stock keep batch_size
    # Every refusal of `just eval` for each mode's run, before the load.
    prepared = {mode: _prepare(opts, mode, settings) for mode in opts.modes}
    spec = next(iter(prepared.values())).spec
    device = pick_device(opts.device)
    loaded = load(spec, opts.variant, settings)
    # lm-eval's own loading of the same weights, for its load time (then dropped).
    start = time.perf_counter()
    stock = (
        HFLM(
            pretrained=loaded.source,
            dtype=loaded.dtype,
            device=device,
            batch_size=1,
            trust_remote_code=spec.trust_remote_code,
        )
        if not loaded.adapter
        else None
    )
    stock_load = time.perf_counter() - start if stock is not None else None
    del stock
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    hardware = provenance.hardware()
    result = {
        "bench": "eval",
        "model": opts.model,
        "variant": opts.variant,
        "source": loaded.source,
        "weights": "real" if (spec.embedded or spec.verified) else "unverified",
        "device": hardware.get("gpu") or f"cpu: {hardware.get('cpu')}",
        "dtype": loaded.dtype,
        "attn_implementation": loaded.attn_implementation,
        "batch_size": opts.batch_size,
        "limit": opts.limit,
        "baseline_limit": opts.baseline_limit,
        "study_limit": opts.study_limit,
        "slots": opts.slots,
        "settings": settings.as_dict(),
        "load_seconds": {
            "medbench": round(loaded.load_seconds, 2),
            "stock_hf": round(stock_load, 2) if stock_load is not None else None,
        },
        "modes": {},
        "hardware": hardware,
        "versions": provenance.package_versions(),
        **provenance.code_state(),
        "data_files": {k: v for p in prepared.values() for k, v in p.config["identity"]["data"].items()},
    }
    for mode in opts.modes:
        if mode == "mc":
            result["modes"]["mc"] = bench_mc(loaded, prepared[mode], opts, settings)
        else:
            result["modes"][mode] = {}
            bench_gen(loaded, prepared[mode], opts, gen_settings, result["modes"][mode], lambda: save(result))
        result["peak_rss_gib"] = provenance.peak_memory()["peak_rss_gib"]
        save(result)
    return result


# --- mc: letter scoring ----------------------------------------------------------------------------------


def _questions(instances: list) -> dict[tuple, list[int]]:
    by_q: dict[tuple, list[int]] = defaultdict(list)
    for i, inst in enumerate(instances):
        by_q[(inst.task_name, inst.doc_id)].append(i)
    return by_q


def _choices(scores: list[float], by_q: dict) -> dict[tuple, int]:
    return {q: max(range(len(idx)), key=lambda k: scores[idx[k]]) for q, idx in by_q.items()}


@torch.inference_mode()
def plain_letter_scores(
    model, encode_pair, instances: list, batch_size: int, prompt_max_tokens: int, pad_id: int
) -> list[float]:
    """The one-forward scorer: each question's answer-letter logits from one forward pass of its context."""
    device = next(model.parameters()).device
    by_ctx: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    for i, inst in enumerate(instances):
        ctx, cont = encode_pair(*inst.args)
        by_ctx[tuple(ctx[-prompt_max_tokens:])].append((i, cont[0]))
    contexts = sorted(by_ctx, key=len, reverse=True)
    out = [0.0] * len(instances)
    for lo in range(0, len(contexts), batch_size):
        batch = contexts[lo : lo + batch_size]
        width = len(batch[0])
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, ctx in enumerate(batch):
            ids[row, width - len(ctx) :] = torch.tensor(ctx)
            mask[row, width - len(ctx) :] = 1
        logits = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(device),
            logits_to_keep=1,
        ).logits[:, -1]
        rows = [row for row, ctx in enumerate(batch) for _ in by_ctx[ctx]]
        letters = [tok for ctx in batch for _, tok in by_ctx[ctx]]
        picked = logits[torch.tensor(rows, device=device), torch.tensor(letters, device=device)].float().tolist()
        for (i, _), value in zip((p for ctx in batch for p in by_ctx[ctx]), picked):
            out[i] = value
    return out


def bench_mc(loaded, prepared, opts: EvalBenchOptions, settings) -> dict:
    from lm_eval.models.huggingface import HFLM

    from medbench.prompts import chat as chat_templates

    model, tokenizer = loaded.model, loaded.tokenizer
    ours = _medbench_lm(loaded, prepared, settings)
    instances = _instances(prepared, ours, opts.limit, None, settings.seed)
    by_q = _questions(instances)
    stock = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=opts.batch_size)
    methods, scores = {}, {}
    runs = [
        ("medbench", lambda: [s for s, _ in ours.loglikelihood(instances, disable_tqdm=True)]),
        ("stock_hf", lambda: [s for s, _ in stock.loglikelihood(instances, disable_tqdm=True)]),
        (
            "plain",
            lambda: plain_letter_scores(
                model,
                stock._encode_pair,
                instances,
                opts.batch_size,
                settings.prompt_max_tokens,
                tokenizer.pad_token_id or 0,
            ),
        ),
    ]
    warm = instances[: min(len(instances), 2 * opts.batch_size)]
    for name, fn in runs:
        _warm_up(name, ours, stock, model, tokenizer, warm, opts, settings)
        with _Meter() as m:
            scores[name] = fn()
        methods[name] = {
            "questions": len(by_q),
            "seconds": round(m.seconds, 3),
            "questions_per_second": round(len(by_q) / m.seconds, 2),
            "peak_gpu_gib": m.peak_gib,
        }
    chosen = {name: _choices(s, by_q) for name, s in scores.items()}
    flips = _batch1_flips(loaded, prepared, settings, instances, by_q, scores["medbench"], opts.flip_sample)
    same = {}
    for name in ("stock_hf", "plain"):
        differ = [q for q in by_q if chosen[name][q] != chosen["medbench"][q]]
        gaps = []
        for q in differ:  # the reference's (stock lm-eval's) gap between its two best letters
            ref = sorted((scores["stock_hf"][i] for i in by_q[q]), reverse=True)
            gaps.append(round(ref[0] - ref[1], 6))
        same[name] = {"questions": len(by_q), "different": len(differ), "reference_top2_gaps": gaps}
    base = methods["stock_hf"]["seconds"]
    return {
        "tasks": sorted({i.task_name for i in instances}),
        "questions": len(by_q),
        "methods": methods,
        "same_answer_as_medbench": same,
        "speedup_over_stock_hf": {k: round(base / v["seconds"], 2) for k, v in methods.items()},
        "batch1_flips": flips,
        "chat": chat_templates.describe(prepared.chat, tokenizer),
    }


def _batch1_flips(loaded, prepared, settings, instances, by_q, batched: list[float], per_task: int) -> dict | None:
    """How many answers batching changes: a seeded sample of questions per task scored again at batch size 1
    (no padding), letters compared with the batched run's; each flip with the batched run's top-two gap."""
    import dataclasses
    import random

    if not per_task:
        return None
    by_task: dict[str, list] = defaultdict(list)
    for q in by_q:
        by_task[q[0]].append(q)
    rng = random.Random(settings.seed)
    sample = [q for task in sorted(by_task) for q in rng.sample(by_task[task], min(per_task, len(by_task[task])))]
    alone = _medbench_lm(loaded, prepared, dataclasses.replace(settings, batch_size=1, batch_tokens=0, canary=0))
    flat = [i for q in sample for i in by_q[q]]
    one = [s for s, _ in alone.loglikelihood([instances[i] for i in flat], disable_tqdm=True)]
    pos = 0
    flips = []
    for q in sample:
        idx = by_q[q]
        single = one[pos : pos + len(idx)]
        pos += len(idx)
        a = max(range(len(idx)), key=lambda k: batched[idx[k]])
        b = max(range(len(idx)), key=single.__getitem__)
        if a != b:
            top = sorted((batched[i] for i in idx), reverse=True)
            flips.append({"task": q[0], "doc_id": q[1], "batched_top2_gap": round(top[0] - top[1], 6)})
    return {
        "questions": len(sample),
        "seed": settings.seed,
        "different": len(flips),
        "flip_rate": round(len(flips) / len(sample), 6) if sample else None,
        "flips": flips,
        "max_abs_logprob_diff": round(max((abs(x - batched[i]) for x, i in zip(one, flat, strict=True)), default=0), 6),
    }


def _warm_up(name, ours, stock, model, tokenizer, warm, opts, settings) -> None:
    """One untimed pass over a few questions: lazy initialisation and kernel selection are not measured."""
    if name == "medbench":
        ours.loglikelihood(warm, disable_tqdm=True)
    elif name == "stock_hf":
        stock.loglikelihood(warm, disable_tqdm=True)
    else:
        plain_letter_scores(
            model, stock._encode_pair, warm, opts.batch_size, settings.prompt_max_tokens, tokenizer.pad_token_id or 0
        )


# --- gen and cot: generation -----------------------------------------------------------------------------


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
    from medbench.eval.generation.runner import penalize

    device = next(model.parameters()).device
    seq = prompt + prefix
    logits = model(input_ids=torch.tensor([seq], device=device), logits_to_keep=1).logits[0, -1].float()
    seen = torch.zeros_like(logits, dtype=torch.bool)
    seen[torch.tensor(sorted(set(seq)), device=device)] = True
    top = torch.topk(penalize(logits[None], seen[None], penalty)[0], 2).values.tolist()
    return round(top[0] - top[1], 6)


def bench_gen(loaded, prepared, opts: EvalBenchOptions, settings, out: dict | None = None, save=lambda: None) -> dict:
    """`prepared`'s gen or cot run (medbench/eval/request.py), its prompts as a run renders them (chat template
    and stop included): the engine's first call (graph capture and kernel selection included) and a second, warm
    call on every question; with `ablations`, the same questions without CUDA graphs and without prefix sharing;
    then stock lm-eval and the study's batch-1 loop on the first questions. Fills `out` as it goes and calls
    `save()` after each measurement: a run cut short keeps what it measured."""
    from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

    from medbench.eval.generation.stop import StopChecker, eos_token_ids
    from medbench.prompts import chat as chat_templates

    model, tokenizer = loaded.model, loaded.tokenizer
    ours = _medbench_lm(loaded, prepared, settings)
    if prepared.chat.apply:
        chat_templates.require_template(tokenizer, opts.model)
    gen_kwargs = chat_templates.generation_kwargs(prepared.chat, tokenizer, prepared.mode, settings)
    instances = _instances(prepared, ours, opts.limit, gen_kwargs, settings.seed)
    with _Meter() as first:
        ours.generate_until(instances, disable_tqdm=True)
    first_stats = ours.fast_gen_stats[-1] if ours.fast_gen_stats else None
    with _Meter() as m:
        texts = ours.generate_until(instances, disable_tqdm=True)
    ids = dict(ours.last_generated_ids)
    row = _gen_row(len(instances), m, sum(len(t) for t in ids.values()))
    row.update(first_call_seconds=round(first.seconds, 3), engine=ours.fast_gen_stats[-1], first_call=first_stats)
    methods = {"medbench": row}
    out = {} if out is None else out
    out.update(
        {
            "tasks": sorted({i.task_name for i in instances}),
            "questions": len(instances),
            "methods": methods,
            "fallbacks": ours.fast_gen_fallbacks,
            "generation_kwargs": gen_kwargs,
            "chat": chat_templates.describe(prepared.chat, tokenizer),
            "engine": dict(ours.gen_engine_used),
        }
    )
    save()
    if opts.ablations:
        for name, change in (
            ("medbench_eager", {"gen_engine": "eager"}),
            ("medbench_no_prefix", {"prefix_sharing": False}),
        ):
            variant = _medbench_lm(loaded, prepared, replace(settings, **change))
            variant.generate_until(_short(instances), disable_tqdm=True)
            with _Meter() as mv:
                variant.generate_until(instances, disable_tqdm=True)
            other = variant.last_generated_ids
            methods[name] = _gen_row(len(instances), mv, sum(len(t) for t in other.values()))
            methods[name].update(
                engine=variant.fast_gen_stats[-1], speedup_of_medbench=round(mv.seconds / m.seconds, 2)
            )
            methods[name]["same_tokens_as_medbench"] = {
                "questions": len(ids),
                "different": sum(ids[i] != other[i] for i in ids),
            }
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
        with _Meter() as ms:
            stock_texts = stock.generate_until(subset, disable_tqdm=True)
        kept = sum(len(ids[index[id(inst)]]) for inst in subset)  # the same answers' tokens, where they agree
        methods["stock_hf"] = _gen_row(len(subset), ms, kept)
        methods["stock_hf"]["generated_tokens_all"] = stock.generated_all
        differ = [k for k, inst in enumerate(subset) if stock_texts[k] != texts[index[id(inst)]]]
        out["same_text_as_stock_hf"] = {"questions": len(subset), "different": len(differ)}
        save()
        ours_subset = _ours_on(loaded, prepared, subset, settings)
        methods["medbench_on_stock_questions"] = _gen_row(len(subset), ours_subset, kept)
        out["speedup_over_stock_hf"] = round(ms.seconds / ours_subset.seconds, 2)
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
        with _Meter() as mb:
            reference = study_loop(model, tokenizer, prompts, max_new, until, settings.repetition_penalty)
        # generate keeps a token that completes a stop string; so does the engine: cut both the same way
        checker = StopChecker(tokenizer, until, eos_token_ids(model, tokenizer))
        cuts = [checker.stop_index(r, 0) for r in reference]
        reference = [r if cut is None else r[: cut + 1] for r, cut in zip(reference, cuts)]
        methods["study"] = _gen_row(len(subset), mb, sum(len(r) for r in reference))
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
        ours_subset = _ours_on(loaded, prepared, subset, settings)
        methods["medbench_on_study_questions"] = _gen_row(
            len(subset), ours_subset, sum(len(ids[index[id(i)]]) for i in subset)
        )
        out["speedup_over_study"] = round(mb.seconds / ours_subset.seconds, 2)
    return out


def _ours_on(loaded, prepared, subset: list, settings) -> _Meter:
    lm = _medbench_lm(loaded, prepared, settings)
    lm.generate_until(_short(subset), disable_tqdm=True)
    with _Meter() as m:
        lm.generate_until(subset, disable_tqdm=True)
    return m


# --- the user's path, end to end -----------------------------------------------------------------------------


def end_to_end(
    model: str, variant: str, modes: tuple[str, ...], limit: int | None, stock_limit: int | None, batch_size: int
) -> list[dict]:
    """`medbench eval` as a user types it (its defaults), one process per mode: import, load, request building, graph
    capture and every answer inside the wall time; beside it lm-eval's own command line with its `hf` model on the
    same weights and tasks (the study's repetition penalty; `stock_limit` questions per task, 0: skipped)."""
    import os
    import shlex
    import subprocess
    import sys
    import tempfile

    from medbench import paths
    from medbench.eval.request import task_names
    from medbench.records.io import read_json

    rows = []
    for mode in modes:
        prompt, task_mode = PROMPT_OF_MODE[mode]
        with tempfile.TemporaryDirectory(prefix="medbench-e2e-") as tmp:
            cmd = [sys.executable, "-m", "medbench.cli", "eval", model, variant, prompt, "--mode", task_mode]
            cmd += ["--run-id", f"e2e-{mode}", "--quiet", *(["--limit", str(limit)] if limit else [])]
            start = time.perf_counter()
            done = subprocess.run(cmd, env={**os.environ, "MEDBENCH_RESULTS": tmp}, capture_output=True, text=True)
            wall = time.perf_counter() - start
            row = {"mode": mode, "method": "medbench", "command": shlex.join(["medbench", *cmd[3:]])}
            row.update(returncode=done.returncode, wall_seconds=round(wall, 2))
            record_path = Path(tmp) / "runs" / f"e2e-{mode}" / "record.json"
            if done.returncode or not record_path.exists():
                row["error"] = done.stderr[-2000:]
            else:
                record = read_json(record_path)
                timing = record["timing"]
                n = sum(t["n"] for t in record["tasks"])
                row.update(
                    questions=n,
                    load_seconds=timing["load_seconds"],
                    eval_seconds=timing["eval_seconds"],
                    questions_per_second=round(n / wall, 2),
                    generated_tokens=timing.get("generated_tokens"),
                    generated_tokens_per_second=round(timing["generated_tokens"] / wall, 1)
                    if timing.get("generated_tokens")
                    else None,
                    engine=timing.get("gen_engine"),
                    model_source=record.get("model_source"),
                    dtype=record.get("dtype"),
                )
            rows.append(row)
        if stock_limit == 0 or "error" in row:
            continue
        with tempfile.TemporaryDirectory(prefix="medbench-e2e-stock-") as tmp:
            tasks = ",".join(task_names(prompt, task_mode, []))
            args = f"pretrained={row['model_source']},dtype={row['dtype']}"
            cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args", args, "--tasks", tasks]
            cmd += ["--include_path", str(paths.tasks_dir()), "--batch_size", str(batch_size), "--output_path", tmp]
            cmd += ["--gen_kwargs", "repetition_penalty=1.5"] if task_mode == "gen" else []
            cmd += ["--limit", str(stock_limit)] if stock_limit else []
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - start
            stock = {"mode": mode, "method": "stock_lm_eval_hf", "command": shlex.join(["lm-eval", *cmd[3:]])}
            stock.update(returncode=done.returncode, wall_seconds=round(wall, 2), limit=stock_limit)
            if done.returncode:
                stock["error"] = done.stderr[-2000:]
            else:  # the questions lm-eval answered, from its own results file
                results = sorted(Path(tmp).rglob("results_*.json"))
                counts = read_json(results[-1]).get("n-samples", {}) if results else {}
                n = sum(int(c.get("effective", 0)) for c in counts.values())
                stock.update(questions=n, questions_per_second=round(n / wall, 2) if n else None)
            rows.append(stock)
    return rows


# --- fixed-length decode at a published shape ----------------------------------------------------------------


@torch.inference_mode()
def fixed_length_decode(shape: str, batches: list[int], prompt_tokens: int, new_tokens: int, rounds: int = 2) -> dict:
    """Output tokens/s of the engine on a random-init model at a registry shape, every sequence generating exactly
    `new_tokens` (no stop, EOS ignored: vLLM's throughput benchmark does the same), `rounds` x batch sequences of
    `prompt_tokens` random prompt tokens per batch size, on one GPU in bf16. Speed does not depend on the weights'
    values; the answers are noise."""
    from transformers import AutoModelForCausalLM

    from medbench.eval.generation.engine import generate
    from medbench.eval.generation.sequence import GenerationRequest
    from medbench.models.shapes import config_at_shape

    config, _ = config_at_shape(shape)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    build = time.perf_counter() - start
    vocab = config.get_text_config().vocab_size if hasattr(config, "get_text_config") else config.vocab_size
    generator = torch.Generator().manual_seed(0)
    rows = []
    for batch in batches:
        prompts = torch.randint(10, vocab - 1, (rounds * batch, prompt_tokens), generator=generator).tolist()
        requests = [GenerationRequest(p, new_tokens) for p in prompts]
        torch.cuda.reset_peak_memory_stats()
        with _Meter() as m:
            tokens, stats = generate(model, _NoStops(), requests, slots=batch, ignore_eos=True)
        assert all(len(t) == new_tokens for t in tokens)
        rows.append(
            {
                "batch": batch,
                "sequences": len(requests),
                "seconds": round(m.seconds, 3),
                "output_tokens": stats.generated_tokens,
                "output_tokens_per_second": round(stats.generated_tokens / m.seconds, 1),
                "decode_step_seconds": stats.as_dict()["decode_step_seconds"],
                "peak_gpu_gib": m.peak_gib,
                "engine": stats.as_dict(),
            }
        )
    params = sum(p.numel() for p in model.parameters())
    return {"shape": shape, "weights": "random", "params": params, "build_seconds": round(build, 2), "rows": rows}


class _NoStops:
    """A tokenizer stand-in for `generate` when nothing stops a sequence but its budget (no stop strings, no EOS)."""

    pad_token_id = 0
    eos_token_id = None


def _gen_row(questions: int, meter: _Meter, tokens: int) -> dict:
    return {
        "questions": questions,
        "seconds": round(meter.seconds, 3),
        "questions_per_second": round(questions / meter.seconds, 3),
        "generated_tokens": tokens,
        "generated_tokens_per_second": round(tokens / meter.seconds, 1),
        "peak_gpu_gib": meter.peak_gib,
    }


# --- the record as Markdown -------------------------------------------------------------------------------


def markdown_table(result: dict) -> str:
    """README-ready rows: one per mode and method, the speed-up on the same questions, and answer agreement."""
    from medbench.report.markdown import num, table

    header = [
        "mode",
        "method",
        "questions",
        "seconds",
        "questions/s",
        "generated tok/s",
        "peak GiB",
        "speed-up, same questions",
        "same answers as medbench",
        "device",
    ]
    body = []
    for mode, r in result["modes"].items():
        for name, m in r.get("methods", {}).items():
            if mode == "mc":
                ratio = r["speedup_over_stock_hf"].get(name)
                speed = f"{ratio:.2f}x stock_hf" if name != "stock_hf" else "1"
                agree, what = r["same_answer_as_medbench"].get(name), "letters"
            else:
                speed = {
                    "medbench_on_stock_questions": f"{r.get('speedup_over_stock_hf', 0):.2f}x stock_hf",
                    "medbench_on_study_questions": f"{r.get('speedup_over_study', 0):.2f}x study",
                }.get(name, f"medbench {m['speedup_of_medbench']:.2f}x this" if "speedup_of_medbench" in m else "")
                agree = {
                    "stock_hf": r.get("same_text_as_stock_hf"),
                    "study": r.get("same_tokens_as_study"),
                }.get(name, m.get("same_tokens_as_medbench"))
                what = "texts" if name == "stock_hf" else "token ids"
            same = "–" if agree is None else f"{agree['questions'] - agree['different']}/{agree['questions']} {what}"
            body.append(
                [
                    mode,
                    name,
                    m["questions"],
                    num(m["seconds"], ".1f"),
                    num(m["questions_per_second"], ".2f"),
                    num(m.get("generated_tokens_per_second"), ".0f"),
                    num(m.get("peak_gpu_gib"), ".2f"),
                    speed,
                    same,
                    result["device"],
                ]
            )
    lines = [table(header, body)]
    if result.get("end_to_end"):
        e2e = [
            [
                r["mode"],
                r["method"],
                r.get("questions", r.get("limit") and f"limit {r['limit']}/task") or "all",
                num(r["wall_seconds"], ".1f"),
                num(r.get("questions_per_second"), ".2f"),
                num(r.get("generated_tokens_per_second"), ".0f"),
                "failed" if r.get("returncode") else "",
                f"`{r['command']}`",
            ]
            for r in result["end_to_end"]
        ]
        head = ["mode", "end to end", "questions", "wall s", "questions/s", "generated tok/s", "", "command"]
        lines += ["", table(head, e2e)]
    load = result["load_seconds"]
    flips = result["modes"].get("mc", {}).get("batch1_flips")
    if flips:
        lines += [
            "",
            f"Batching vs batch size 1 (mc, seeded sample): {flips['different']} of {flips['questions']} letters "
            f"differ (largest |log p| difference {flips['max_abs_logprob_diff']:.3g}).",
        ]
    lines += [
        "",
        f"Load: medbench {load['medbench']} s (with its perplexity check), lm-eval's HFLM "
        f"{num(load['stock_hf'], '.2f')} s. Batch size {result['batch_size']}, {result['dtype']}, "
        f"{result['attn_implementation']}.",
    ]
    return "\n".join(lines)
