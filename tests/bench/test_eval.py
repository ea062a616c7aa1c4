"""`just bench eval` on the tiny model on CPU: every method runs, answers agree, the record and the table."""

import json

import torch

from medbench.cli.bench import EvalBenchArguments, bench_eval


def test_bench_eval_compares_every_method_on_the_same_questions(tiny_gemma_dir, results_dir, capsys):
    torch.set_num_threads(1)  # tiny matrices: a second thread on a shared 2-core machine only waits
    opts = EvalBenchArguments(
        model=str(tiny_gemma_dir), modes="mc,gen", limit=1, study_limit=1, batch_size=4, slots="3", ablations=True
    )
    assert bench_eval(opts, results_dir / "bench") == 0
    (path,) = (results_dir / "bench").glob("eval-*-mc+gen-limit1-b4-cpu-*.json")
    record = json.loads(path.read_text())
    mc, gen = record["modes"]["mc"], record["modes"]["gen"]
    assert mc["questions"] == 5 and set(mc["methods"]) == {"medbench", "stock_hf", "plain"}
    for other in ("stock_hf", "plain"):  # fp32: the same letter for every question
        assert mc["same_answer_as_medbench"][other]["different"] == 0
    # fp32 on CPU: scoring alone (batch 1, no padding) flips no answer of the seeded sample.
    assert mc["batch1_flips"]["questions"] == 5 and mc["batch1_flips"]["different"] == 0
    assert mc["batch1_flips"]["max_abs_logprob_diff"] < 1e-3
    assert gen["questions"] == 5 and not gen["fallbacks"]
    assert gen["same_text_as_stock_hf"] == {"questions": 5, "different": 0}
    assert gen["same_tokens_as_study"]["different"] == 0 and gen["same_tokens_as_study"]["questions"] == 5
    assert gen["methods"]["medbench"]["generated_tokens"] > 0 and gen["speedup_over_study"] > 0
    # The engine: a first and a warm call; the ablations (eager, no prefix sharing) give the same tokens (fp32).
    ours = gen["methods"]["medbench"]
    assert ours["first_call_seconds"] > 0 and ours["engine"]["slots"] == 3 and ours["engine"]["admissions"] >= 2
    for name in ("medbench_eager", "medbench_no_prefix"):
        assert gen["methods"][name]["same_tokens_as_medbench"] == {"questions": 5, "different": 0}
        assert gen["methods"][name]["generated_tokens"] == ours["generated_tokens"]
    assert gen["engine"] == {"eager": "auto: not on CUDA"}
    assert record["device"].startswith("cpu") and record["load_seconds"]["medbench"] > 0
    table = capsys.readouterr().out
    assert "0 of 5 letters differ" in table
    assert "| gen | medbench_eager | 5 |" in table and "5/5 token ids" in table
    assert "| mc | plain | 5 |" in table and "5/5 token ids" in table and "5/5 texts" in table
