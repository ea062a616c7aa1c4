"""The model side of the engine: a KV cache of fixed slots, the prefill that fills them, and the decode step.

Every slot holds one sequence's keys and values, left-aligned: column j is the token at position j, so a slot needs no
padding and no compaction. A decode step runs every slot at once, each token at its own position (its own write
column, its own causal and sliding-window mask), so its shape never changes: the same step serves every task of a
run, and on CUDA it is captured once as a CUDA graph and replayed (no per-step kernel launches from Python; the small
models this harness studies spend most of an eager step launching kernels). Empty slots compute garbage nobody reads.

The prefill runs eagerly, in batches of waiting sequences left-padded to a common width, on a DynamicCache; each
sequence's keys and values are then gathered into its slot. A group's shared prefix (a task's few-shot exemplars) is
prefilled once: its keys and values start the cache of every batch of that group, and only the rest of each prompt is
computed, attending to them.

Greedy decoding with HF's repetition-penalty arithmetic (divide a positive logit, multiply a negative one, once per
token id seen in the prompt or the generation) over a device mask of seen ids, as batch-1 `generate` applies it.
"""

from __future__ import annotations

import time

import torch
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicCache

from medbench.eval.generation.sequence import GenerationStats, Sequence


def penalize(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    if penalty == 1.0:
        return scores
    return torch.where(seen, torch.where(scores < 0, scores * penalty, scores / penalty), scores)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def left_padded(seqs: list[list[int]], width: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids left-padded to `width` and their attention mask (on the host)."""
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, seq in enumerate(seqs):
        if seq:
            ids[i, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[i, width - len(seq) :] = 1
    return ids, mask


class SlotLayer(CacheLayerMixin):
    """One layer's keys and values for every slot, [slots, kv heads, columns, head dim]; a decode step writes each
    slot's new token at that slot's own column (`write_pos`)."""

    is_compileable = True

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, rows: torch.Tensor, write_pos: torch.Tensor):
        super().__init__()
        self.keys, self.values, self.rows, self.write_pos = keys, values, rows, write_pos
        self.is_initialized = True

    def lazy_initialization(self, key_states, value_states) -> None:
        pass

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        self.keys[self.rows, :, self.write_pos] = key_states[:, :, 0]
        self.values[self.rows, :, self.write_pos] = value_states[:, :, 0]
        return self.keys, self.values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.keys.shape[-2], 0

    def get_seq_length(self) -> int:
        return 0

    def get_max_length(self) -> int:
        return self.keys.shape[-2]


class ModelRunner:
    def __init__(
        self,
        model,
        slots: int,
        cache_len: int,
        penalty: float,
        pad: int,
        prefill_tokens: int,
        stats: GenerationStats,
        autocast_dtype: torch.dtype | None = None,
    ):
        self.model, self.slots, self.cache_len, self.penalty, self.pad = model, slots, cache_len, penalty, pad
        self.prefill_tokens, self.stats = prefill_tokens, stats
        self.device = model.get_input_embeddings().weight.device
        self.autocast = torch.autocast(
            device_type=self.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
        )
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.vocab = model.get_output_embeddings().weight.shape[0]
        self.window = getattr(config, "sliding_window", None)
        kinds = set(getattr(config, "layer_types", None) or ())
        self.mask_kinds = sorted(kinds & {"full_attention", "sliding_attention"}) or ["full_attention"]
        self.eager_masks = model.config._attn_implementation == "eager"
        self.mask_dtype = next(model.parameters()).dtype if autocast_dtype is None else autocast_dtype
        # Static buffers: a captured graph reads and writes these same tensors at every replay.
        self.rows = torch.arange(slots, device=self.device)
        self.cols = torch.arange(cache_len, device=self.device)
        self.tokens = torch.zeros(slots, dtype=torch.long, device=self.device)  # the token each slot decodes next
        self.lens = torch.zeros(slots, dtype=torch.long, device=self.device)  # its position (= tokens cached)
        self.write_pos = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.seen = torch.zeros((slots, self.vocab), dtype=torch.bool, device=self.device)
        # What a step marks seen, kept on the device: `seen[rows, chosen] = True` makes a host tensor of the True
        # and copies it over at every step, a copy CUDA graph capture refuses.
        self.marks = torch.ones((slots, 1), dtype=torch.bool, device=self.device)
        self.cache = self._allocate()
        self.prefix_kv: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.graph = None

    # --- the slot cache -------------------------------------------------------------------------------------

    def _allocate(self) -> Cache:
        """Every layer's slot tensors, shaped like the keys and values a one-token forward produces."""
        probe = DynamicCache()
        with self.autocast:
            self.model(input_ids=torch.tensor([[self.pad]], device=self.device), cache=probe, use_cache=True)
        layers = []
        for layer in probe.layers:
            k, v = layer.keys, layer.values
            keys = torch.zeros((self.slots, k.shape[1], self.cache_len, k.shape[3]), dtype=k.dtype, device=k.device)
            values = torch.zeros((self.slots, v.shape[1], self.cache_len, v.shape[3]), dtype=v.dtype, device=v.device)
            layers.append(SlotLayer(keys, values, self.rows.to(k.device), self.write_pos))
        return Cache(layers=layers)

    # --- prefill --------------------------------------------------------------------------------------------

    def prefix(self, group: str, ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A group's shared prefix, prefilled once: every layer's keys and values, [1, heads, len, dim]."""
        if group not in self.prefix_kv:
            cache = DynamicCache()
            start = time.perf_counter()
            with self.autocast:
                self.model(
                    input_ids=torch.tensor([ids], device=self.device), cache=cache, use_cache=True, logits_to_keep=1
                )
            self.prefix_kv[group] = [(layer.keys, layer.values) for layer in cache.layers]
            self.stats.prefill_tokens += len(ids)
            sync(self.device)
            self.stats.prefill_seconds += time.perf_counter() - start
        return self.prefix_kv[group]

    def prefill(self, seqs: list[Sequence], prefix: list[int] | None) -> list[int]:
        """Prefill sequences into their slots (all of one prefix group, or none); returns each one's first token."""
        start = time.perf_counter()
        first: list[int] = []
        shared = len(prefix) if prefix else 0
        kv = self.prefix(seqs[0].group, prefix) if prefix else None
        width = max(s.length for s in seqs)
        chunk = max(1, self.prefill_tokens // width)
        for lo in range(0, len(seqs), chunk):
            first += self._prefill_rows(seqs[lo : lo + chunk], shared, kv)
        sync(self.device)
        self.stats.prefill_seconds += time.perf_counter() - start
        return first

    def _prefill_rows(self, seqs: list[Sequence], shared: int, kv) -> list[int]:
        """One batch: each prompt left-padded to a common width; with a shared prefix, the first `shared` columns are
        the cache (the prefix's keys and values, moved right by each row's padding, so that column distances stay
        position distances as the sliding-window masks need) and only the columns after them are computed."""
        n = len(seqs)
        width = max(len(s.prompt) for s in seqs) - shared
        total = shared + width
        pad = torch.tensor([total - len(s.prompt) for s in seqs])
        ids, mask = left_padded([s.prompt for s in seqs], total, self.pad)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        if kv is not None:
            past = (torch.arange(shared)[None, :] - pad[:, None]).clamp(min=0)  # a padded row's first columns: masked
            for i, (k, v) in enumerate(kv):
                index = past.to(k.device)[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
                cache.update(k.expand(n, -1, -1, -1).gather(2, index), v.expand(n, -1, -1, -1).gather(2, index), i)
        self.stats.prefill_tokens += int(mask[:, shared:].sum())
        self.stats.shared_prefix_tokens += int(mask[:, :shared].sum())
        with self.autocast:
            out = self.model(
                input_ids=ids[:, shared:].to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions[:, shared:].to(self.device),
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        slots = torch.tensor([s.slot for s in seqs], dtype=torch.long)
        # Slot column c holds prompt position c, which the left padding put `pad` columns later in the prefill.
        source = (torch.arange(total)[None, :] + pad[:, None]).clamp(max=total - 1)
        for layer, slot_layer in zip(cache.layers, self.cache.layers):
            index = source.to(layer.keys.device)[:, None, :, None].expand(
                -1, layer.keys.shape[1], -1, layer.keys.shape[3]
            )
            target = slots.to(slot_layer.keys.device)
            slot_layer.keys[target, :, :total] = layer.keys.gather(2, index).to(slot_layer.keys.dtype)
            slot_layer.values[target, :, :total] = layer.values.gather(2, index).to(slot_layer.values.dtype)
        # Every token id of the prompt, as the penalty sees it (pads out of range: column `vocab`, dropped).
        seen = torch.zeros((n, self.vocab + 1), dtype=torch.bool, device=self.device)
        seen.scatter_(1, torch.where(mask.bool(), ids.clamp(max=self.vocab), self.vocab).to(self.device), True)
        seen = seen[:, : self.vocab]
        scores = out.logits[:, -1, :].to(dtype=torch.float32)
        chosen = torch.argmax(penalize(scores, seen, self.penalty), dim=-1)
        seen[torch.arange(n, device=self.device), chosen] = True
        target = slots.to(self.device)
        self.seen[target] = seen
        self.tokens[target] = chosen
        self.lens[target] = torch.tensor([len(s.prompt) for s in seqs], device=self.device)
        return chosen.tolist()

    # --- decode ---------------------------------------------------------------------------------------------

    def _masks(self, pos: torch.Tensor):
        """Each slot's attention over the cache's columns for a token at position `pos`: causal (and within the
        sliding window for sliding layers), as the model's own masks are, in the form its attention expects."""
        causal = self.cols[None, :] <= pos[:, None]
        out = {}
        for kind in self.mask_kinds:
            mask = causal
            if kind == "sliding_attention" and self.window:
                mask = causal & (self.cols[None, :] > pos[:, None] - self.window)
            mask = mask[:, None, None, :]
            if self.eager_masks:  # eager attention adds its mask to the scores
                mask = torch.where(mask, 0.0, torch.finfo(self.mask_dtype).min).to(self.mask_dtype)
            out[kind] = mask
        return out if len(out) > 1 else next(iter(out.values()))

    def _step(self) -> None:
        """One token for every slot: reads and writes only the static buffers (what a CUDA graph captures)."""
        self.write_pos.copy_(self.lens.clamp(max=self.cache_len - 1))  # an empty slot's position keeps growing
        with self.autocast:
            out = self.model(
                input_ids=self.tokens[:, None],
                attention_mask=self._masks(self.write_pos),
                position_ids=self.write_pos[:, None],
                cache=self.cache,
                use_cache=True,
                logits_to_keep=1,
            )
        scores = out.logits[:, -1, :].to(dtype=torch.float32)
        chosen = torch.argmax(penalize(scores, self.seen, self.penalty), dim=-1)
        self.seen.scatter_(1, chosen[:, None], self.marks)
        self.lens.add_(1)
        self.tokens.copy_(chosen)

    def capture(self) -> None:
        """Capture the decode step as a CUDA graph (before any sequence holds a slot: the warm-up steps it takes
        write only into empty slots, and the buffers are reset after)."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):  # kernels chosen and libraries initialised outside the capture
                self._step()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._step()
        self.graph = graph
        self.tokens.zero_()
        self.lens.zero_()
        self.seen.zero_()

    def decode(self) -> torch.Tensor:
        """One decode step; returns the tokens chosen (a copy: the buffer is overwritten by the next step)."""
        if self.graph is not None:
            self.graph.replay()
        else:
            self._step()
        return self.tokens.clone()
