"""Several GPUs on CPU: data-parallel evaluation (gloo processes), the sharding decision, published shapes,
and the plumbing of dev/gpu_scale.py that runs without a GPU."""

import pytest
import torch

from medbench.bench import oversize
from medbench.models import placement
from medbench.models.placement import PlacementError, decide
from medbench.settings import EvalSettings

GIB = 2**30


# --- launching ----------------------------------------------------------------------------------------


def test_estimate_counts_the_parameters_a_model_loads(tiny_gemma_dir):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(tiny_gemma_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32)
    real = sum(p.numel() for p in model.parameters())  # tied embedding and LM head once
    assert placement.estimate_from_config(config, dtype_bytes=4) == 4 * real
    assert placement.estimate_from_config(config, dtype_bytes=2) == 2 * real
    four_bit = placement.estimate_from_config(config, dtype_bytes=2, four_bit="bitsandbytes")
    linear = sum(
        m.weight.numel() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"
    )
    assert four_bit == int(2 * (real - linear) + linear * placement.FOUR_BIT_BITS["bitsandbytes"] / 8)


def test_published_shapes_and_their_sizes():
    for name, facts in oversize.PUBLISHED.items():
        model = oversize.meta_model(oversize.config(name))
        assert sum(p.numel() for p in model.parameters()) == facts["params"], name
    llama = oversize.meta_model(oversize.config("llama3-70b"))
    assert round(placement.estimate_bytes(llama, 2) / GIB, 1) == 131.4  # bf16: more than any one GPU here
    assert 35 < placement.estimate_bytes(llama, 2, "bitsandbytes") / GIB < 40  # NF4: one H100
    # With Gemma 3's vocabulary (the tokenizer at hand), as the GPU script builds them.
    bigger = oversize.config("qwen3-8b", vocab_size=262144)
    assert round(sum(p.numel() for p in oversize.meta_model(bigger).parameters()) / 1e9, 2) == 9.09
    # Gemma 3 270M's published config (the GPU script's random 270M) builds the embedded model's architecture.
    from medbench.models.shapes import _with_layer_types, config_from_dict, published_config

    gemma = oversize.meta_model(_with_layer_types(config_from_dict(published_config("gemma3-270m.json"))))
    assert sum(p.numel() for p in gemma.parameters()) == 268_098_176


@pytest.mark.parametrize(
    "setting, estimated, free, processes, mode, reason",
    [
        ("auto", 16 * GIB, [80 * GIB] * 4, 1, "single", "fit one GPU"),
        ("auto", 16 * GIB, [80 * GIB] * 4, 4, "single", "fit one GPU"),
        ("auto", 136 * GIB, [79 * GIB] * 2, 1, "sharded", "do not fit one GPU"),
        ("auto", 136 * GIB, [79 * GIB] * 4, 1, "sharded", "layers across 4 GPUs"),
        ("auto", 70 * GIB, [79 * GIB], 1, "single", "one GPU is visible: trying it"),
        ("auto", 136 * GIB, [], 1, "single", "no CUDA"),
        ("auto", None, [79 * GIB] * 2, 1, "single", "size unknown"),
        ("true", 1 * GIB, [79 * GIB] * 2, 1, "sharded", "parallelize=true"),
        ("true", 1 * GIB, [79 * GIB], 1, "single", "one GPU is visible"),
        ("false", 136 * GIB, [79 * GIB] * 2, 1, "single", "parallelize=false"),
    ],
)
def test_sharding_decision(setting, estimated, free, processes, mode, reason):
    chosen = decide(setting, estimated, free, processes)
    assert chosen.mode == mode and reason in chosen.reason
    if chosen.sharded:
        assert chosen.max_memory == {i: int(f * placement.SHARD_FILL) for i, f in enumerate(free)}
    assert chosen.as_record()["gpu_free_gib"] == [round(f / GIB, 2) for f in free]


@pytest.mark.parametrize(
    "setting, estimated, free, processes, message",
    [
        ("auto", 136 * GIB, [79 * GIB] * 2, 2, "without --gpus"),
        ("auto", 136 * GIB, [79 * GIB], 1, "no other GPU"),
        ("auto", 300 * GIB, [79 * GIB] * 2, 1, "nor the 2 visible GPUs together"),
        ("true", 1 * GIB, [79 * GIB] * 2, 2, "use one or the other"),
        ("maybe", 1, [1], 1, "choose from auto, true, false"),
    ],
)
def test_sharding_refusals(setting, estimated, free, processes, message):
    with pytest.raises(PlacementError, match=message):
        decide(setting, estimated, free, processes)


def test_placement_at_load_asks_only_its_own_gpu_unless_it_may_shard(tiny_gemma_dir, monkeypatch):
    from transformers import AutoConfig

    from medbench.models import loading
    from medbench.models.registry import resolve

    asked, free_each = [], [0]

    def free(indices=None):
        asked.append(indices)
        return [free_each[0]] * (3 if indices is None else len(indices))

    monkeypatch.setattr(placement, "gpu_free_bytes", free)
    spec, source = resolve(str(tiny_gemma_dir)), str(tiny_gemma_dir)
    size = placement.estimate_from_config(AutoConfig.from_pretrained(tiny_gemma_dir), 2)

    free_each[0] = 10 * size  # fits: one GPU, and only this process's GPU is asked
    kwargs = {"dtype": torch.bfloat16}
    chosen = loading.place(spec, source, kwargs, EvalSettings(), "cuda:1", processes=2)
    assert chosen.mode == "single" and asked == [[1]] and "device_map" not in kwargs

    asked.clear()
    free_each[0] = size // 2  # too big for one GPU, and 3 GPUs together hold it: sharded from_pretrained arguments
    chosen = loading.place(spec, source, kwargs, EvalSettings(), "cuda:0")
    assert chosen.sharded and asked == [[0], None]
    assert kwargs["device_map"] == "auto" and kwargs["max_memory"] == {i: int(free_each[0] * 0.9) for i in range(3)}
    with pytest.raises(PlacementError, match="without --gpus"):
        loading.place(spec, source, {"dtype": torch.bfloat16}, EvalSettings(), "cuda:1", processes=2)
    settings = EvalSettings(parallelize="false")
    assert loading.place(spec, source, {"dtype": torch.bfloat16}, settings, "cuda:0").reason == "parallelize=false"

    # parallelize=true on a model far smaller than a GPU: budgets that make accelerate's plan really split it.
    free_each[0] = 100 * size
    kwargs = {"dtype": torch.bfloat16}
    chosen = loading.place(spec, source, kwargs, EvalSettings(parallelize="true"), "cuda:0")
    assert chosen.sharded and all(b < free_each[0] for b in kwargs["max_memory"].values())
    from accelerate.utils import infer_auto_device_map

    meta = placement.meta_model(AutoConfig.from_pretrained(tiny_gemma_dir), dtype=torch.bfloat16)
    device_map = infer_auto_device_map(
        meta, max_memory=kwargs["max_memory"], no_split_module_classes=meta._no_split_modules, dtype=torch.bfloat16
    )
    assert len(set(device_map.values())) >= 2, device_map
