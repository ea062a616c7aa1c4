"""`just bench eval`'s mc part: our letter scoring beside stock lm-eval's loglikelihood and a one-forward scorer,
and how many answers batching changes.

See medbench/eval/bench.py for what is compared and how.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from medbench.eval.bench import EvalBenchOptions, _instances, _medbench_lm, _Meter


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

    from medbench.eval import chat as chat_templates

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
