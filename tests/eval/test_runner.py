"""End-to-end runs on a tiny random-init Gemma 3: records, resume after a kill, no recomputation."""

import json
import os
import subprocess
import sys

import pytest

from medbench import stats
from medbench.eval.request import RunError, RunRequest
from medbench.eval.runner import run
from medbench.models.registry import RegistryError
from medbench.records import io
from medbench.records.io import RecordError
from medbench.records.schema import RunRecord, TaskRecord, all_keys
from medbench.settings import EvalSettings, SettingsError

# The record contract is medbench/records/schema.py: a run writes every key it declares and no other.
RECORD_KEYS = all_keys(RunRecord) - {"notes"}  # notes: added by hand to older records, never by a run
TASK_KEYS = all_keys(TaskRecord) - {"permutation"}  # permutation: only with --set permute=cyclic


def test_mc_run_writes_a_complete_record(tiny_gemma_dir, results_dir):
    record = run(RunRequest(model=str(tiny_gemma_dir), limit=4, run_id="mc"), results_dir)
    assert set(record) == RECORD_KEYS
    assert [t["task"] for t in record["tasks"]] == [
        "medbench_kormedmcqa_doctor",
        "medbench_kormedmcqa_nurse",
        "medbench_kormedmcqa_pharm",
        "medbench_kormedmcqa_dentist",
        "medbench_medqa_usmle",
    ]
    for t in record["tasks"]:
        assert set(t) == TASK_KEYS
        assert t["n"] == 4 and 0 <= t["accuracy"] <= 1 and t["ci95_low"] <= t["accuracy"] <= t["ci95_high"]
        assert t["invalid"] == 0 and t["truncated_prompts"] == 0
    assert record["settings"]["repetition_penalty"] == 1.5 and record["settings"]["prompt_max_tokens"] == 3500
    assert record["versions"]["transformers"] == "5.24.0" and record["versions"]["lm_eval"] == "0.4.13"
    assert record["hardware"]["cpu_cores"] >= 1 and record["timing"]["eval_seconds"] > 0
    assert record["responses"] == {"computed": 4 * 4 * 5 + 4 * 4, "from_cache": 0}
    run_dir = results_dir / "runs" / "mc"
    assert json.loads((run_dir / "record.json").read_text())["run_id"] == "mc"
    assert "medbench_kormedmcqa_doctor" in json.loads((run_dir / "results.json").read_text())["results"]
    lines = [line for _, line in io.read_samples(io.samples_path(run_dir, "medbench_medqa_usmle"))]
    assert len(lines) == 4 and json.loads(lines[0])["doc"]["id"].startswith("medqa-")
    assert not (results_dir / "summary.csv").exists()  # the report is its one writer


def test_gen_run_counts_invalid_and_truncated(tiny_gemma_dir, results_dir):
    settings = EvalSettings(max_gen_toks=4, prompt_max_tokens=64)
    record = run(
        RunRequest(model=str(tiny_gemma_dir), mode="gen", tasks=["medqa"], limit=3, run_id="gen", settings=settings),
        results_dir,
    )
    (t,) = record["tasks"]
    assert t["task"] == "medbench_medqa_usmle_gen" and t["metric"] == "exact_match"
    samples = [
        json.loads(x)
        for _, x in io.read_samples(io.samples_path(results_dir / "runs" / "gen", "medbench_medqa_usmle_gen"))
    ]
    assert t["invalid"] == sum(s["filtered_resps"][0] == "" for s in samples)
    assert t["truncated_prompts"] == 3  # every MedQA prompt is longer than 64 tokens
    assert record["generation_kwargs"] == {"do_sample": False, "repetition_penalty": 1.5, "max_gen_toks": 4}
    assert "arguments" not in samples[0] and t["first_prompt"].startswith("Question:")  # compacted; one kept
    # The record names the engine and why: `auto` on CPU decodes eagerly.
    assert record["timing"]["gen_engine"] == {"eager": "auto: not on CUDA"}


def test_a_run_id_keeps_its_settings(tiny_gemma_dir, results_dir):
    run(RunRequest(model=str(tiny_gemma_dir), tasks=["medqa"], limit=2, run_id="fixed"), results_dir)
    with pytest.raises(RecordError, match="was started with other settings"):
        run(
            RunRequest(
                model=str(tiny_gemma_dir),
                tasks=["medqa"],
                limit=2,
                run_id="fixed",
                settings=EvalSettings(prompt_max_tokens=100),
            ),
            results_dir,
        )
    forced = run(
        RunRequest(
            model=str(tiny_gemma_dir),
            tasks=["medqa"],
            limit=2,
            run_id="fixed",
            force=True,
            settings=EvalSettings(prompt_max_tokens=100),
        ),
        results_dir,
    )
    assert forced["responses"]["from_cache"] == 0


def test_bad_requests_fail_before_loading(results_dir):
    with pytest.raises(RegistryError, match="unknown model 'gemma-9000'.*Known aliases: gemma3-270m"):
        run(RunRequest(model="gemma-9000"), results_dir)
    with pytest.raises(RunError, match="unknown prompt 'twoshot'"):
        run(RunRequest(model="gemma3-270m", prompt="twoshot"), results_dir)
    with pytest.raises(RunError, match="generative"):
        run(RunRequest(model="gemma3-270m", prompt="cot", mode="mc"), results_dir)
    with pytest.raises(SettingsError, match="unknown setting 'repetiton_penalty'"):
        EvalSettings.from_overrides({"repetiton_penalty": "1.2"})
    with pytest.raises(SettingsError, match="expects float"):
        EvalSettings.from_overrides({"repetition_penalty": "high"})
    assert EvalSettings.from_overrides({"repetition-penalty": "1.0", "max_gen_toks": "none"}).repetition_penalty == 1.0


@pytest.mark.slow
def test_cli_reports_errors_plainly(results_dir):
    out = subprocess.run(
        [sys.executable, "-m", "medbench.cli", "eval", "qwen9"],
        check=False,
        capture_output=True,
        text=True,
        env=dict(os.environ, MEDBENCH_RESULTS=str(results_dir)),
    )
    assert out.returncode == 2 and "medbench eval: error: unknown model 'qwen9'" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "medbench.cli", "eval", "gemma3-270m", "--set", "top_k=3"],
        check=False,
        capture_output=True,
        text=True,
        env=dict(os.environ, MEDBENCH_RESULTS=str(results_dir)),
    )
    assert out.returncode == 2 and "unknown setting 'top_k'" in out.stderr


def test_offline_missing_hub_weights_name_the_id(results_dir):
    with pytest.raises(RegistryError, match="Qwen/Qwen3-4B is not in the local Hugging Face cache"):
        run(RunRequest(model="qwen3", tasks=["medqa"], limit=1), results_dir)


def test_wilson_interval_known_values():
    low, high = stats.wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert stats.wilson_interval(0, 5)[0] == 0.0


def test_default_run_ids_keep_a_readable_prefix_and_hash_the_full_model_path(tmp_path):
    """Two local models whose long paths end alike never share a default run id (before: the last 128 characters
    named the run, and `--force` on one deleted the other's finished run); neither do two settings of one model."""
    from medbench.eval.request import default_run_id

    tail = "gemma3-270m-korean-medical-sft-lr1e-4-" * 4 + "final"
    a, b = tmp_path / "team-a" / tail, tmp_path / "team-b" / tail
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    ids = {
        default_run_id(RunRequest(model=str(a)), "mc"),
        default_run_id(RunRequest(model=str(b)), "mc"),
        default_run_id(RunRequest(model=str(a), settings=EvalSettings(prompt_max_tokens=100)), "mc"),
        default_run_id(RunRequest(model=str(a), limit=5), "mc"),
    }
    assert len(ids) == 4
    for run_id in ids:
        assert io.check_run_id(run_id) == run_id and len(run_id) <= 128
        assert run_id.startswith("gemma3-270m-korean-medical-sft-lr1e-4-")  # the readable part: the folder's name
    assert default_run_id(RunRequest(model=str(a)), "mc") == default_run_id(RunRequest(model=str(a)), "mc")
    short = default_run_id(RunRequest(model="gemma3-270m", tasks=["medqa"], limit=1), "mc")
    assert short.startswith("gemma3-270m-base-zeroshot-mc-medqa-limit1-") and len(short.rsplit("-", 1)[1]) == 8
