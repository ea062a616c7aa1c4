"""Several GPUs on CPU: data-parallel evaluation (gloo processes), the sharding decision, published shapes,
and the plumbing of dev/gpu_scale.py that runs without a GPU."""

import json

GIB = 2**30


# --- launching ----------------------------------------------------------------------------------------


def test_scale_records_become_report_tables(tmp_path):
    from medbench.bench.scale import scale_section

    bench = tmp_path / "bench"
    bench.mkdir()
    unit = {"questions": 10, "questions_per_second": 5.0, "eval_seconds": 2.0, "wall_seconds": 4.0}
    dp = {
        "part": "dp",
        "gpu": "NVIDIA H200",
        "gpu_count": 2,
        "units": {"x1": {**unit, "parallel": {"processes": 1}}, "x2": {**unit, "questions_per_second": 8.0}},
        "scaling": {
            "x2": {"questions_per_second_over_x1": 1.6, "identical_to_x1": {"questions": 10, "same_answer": 9}}
        },
    }
    train = {
        "part": "train-8b",
        "gpu": "NVIDIA H200",
        "gpu_count": 2,
        "units": {
            "lora@1": {"tokens_per_second": 100.0, "mean_tokens_per_step": 300.0, "median_step_seconds": 2.0},
            "full-zero3@2": {"error": "OutOfMemoryError: CUDA out of memory"},
        },
    }
    tries = {"16": {"error": "OutOfMemoryError: CUDA out of memory"}, "8": {"peak_gpu_gib_rank0": 60.0}}
    batch = {"part": "batch-8b", "gpu": "NVIDIA H200", "gpu_count": 2}
    batch["units"] = {"lora@1": {"tries": tries, "largest": 8, "done": True}}
    (bench / "scale-dp-NVIDIA-H200-x2.json").write_text(json.dumps(dp))
    (bench / "scale-train-8b-NVIDIA-H200-x2.json").write_text(json.dumps(train))
    (bench / "scale-batch-8b-NVIDIA-H200-x2.json").write_text(json.dumps(batch))
    text = "\n".join(scale_section(tmp_path))
    assert "| lora@1 | 8 | yes | 60.0 |" in text and "| lora@1 | 16 | no |" in text  # tries in batch order
    assert text.index("| lora@1 | 8 | yes") < text.index("| lora@1 | 16 | no") < text.index("largest that fits: 8")
    assert "| 2 | 10 | 8.0 | 2.0 | 4.0 | 1.60 | 9/10 |" in text
    assert "| lora@1 | 100 | 150 |" in text  # the median step: 300 tokens in 2 s
    assert "OutOfMemoryError" in text and "2 x H200" in text
    assert "Models larger than one GPU" not in text  # no oversize record, no table
