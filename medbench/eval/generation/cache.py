"""The default fast_gen engine's DynamicCache surgery: rows concatenated, all-padding columns trimmed, and which
layers allow both (medbench/eval/generation/dynamic.py)."""

from __future__ import annotations

import torch


def cache_of(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def concat_caches(caches: list) -> object:
    """Several prefill caches of the same width, one after another in the batch dimension."""
    first = caches[0]
    if len(caches) == 1:
        return first
    for i, layer in enumerate(first.layers):
        layer.keys = torch.cat([c.layers[i].keys for c in caches], dim=0)
        layer.values = torch.cat([c.layers[i].values for c in caches], dim=0)
    return first


def layer_kinds(cache) -> list[str] | None:
    """ "full" or "sliding" per layer of a DynamicCache whose rows can be trimmed and joined; None otherwise."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    if type(cache).__name__ != "DynamicCache":
        return None
    kinds = []
    for layer in getattr(cache, "layers", None) or [None]:
        if type(layer) is DynamicSlidingWindowLayer and not layer.record_past:
            kinds.append("sliding")
        elif type(layer) is DynamicLayer:
            kinds.append("full")
        else:
            return None
    return kinds


def trim_front(cache, kinds: list[str], k: int) -> None:
    """Drop the first k columns, padding in every row: full layers lose them, sliding layers count k fewer."""
    for layer, kind in zip(cache.layers, kinds):
        if kind == "full":
            layer.keys, layer.values = layer.keys[:, :, k:], layer.values[:, :, k:]
        else:
            layer.cumulative_length -= k
            if layer.keys.shape[-2] > layer.cumulative_length:
                layer.keys = layer.keys[:, :, -layer.cumulative_length :]
                layer.values = layer.values[:, :, -layer.cumulative_length :]
