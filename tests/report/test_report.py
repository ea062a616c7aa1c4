"""The report, from hand-built results folders in the real record/samples schema (no model runs)."""

import csv
import json
import math

import numpy as np
import pytest

from medbench import stats
from medbench.cli import main as cli_main
from medbench.data.contamination import CONTAMINATION_FIELDS, MATCHES, NGRAM, ngram_hashes
from medbench.records import io
from medbench.records.reader import load_runs
from medbench.report import summary
from medbench.report.build import ReportError, build_report, replace_readme_block, summary_rows
from medbench.report.compare import compare_tasks, comparisons, most_significant
from medbench.report.reference import load_paper, weighted_average
from tests.run_folders import write_run

EXAMS = ("doctor", "nurse", "pharm", "dentist")
README = "# medbench\n\nintro\n\n<!-- results:start -->\n(no results yet)\n<!-- results:end -->\n\n## After\ntail\n"
OUTPUTS = (
    "summary.md",
    "summary.csv",
    "comparisons.csv",
    "contamination.csv",
    "accuracy_vs_params.png",
    "accuracy_vs_params.svg",
)


def exam_scores(rng, n_per_exam, p):
    """Seeded scores for every exam, ids as medbench.data.loader makes them."""
    return {exam: [(f"{exam}-2024-1-{i}", int(rng.random() < p)) for i in range(n_per_exam)] for exam in EXAMS}


@pytest.fixture
def results(tmp_path):
    """Two configurations of one model (every exam + MedQA) and one run of another model."""
    rng = np.random.default_rng(0)
    results = tmp_path / "results"
    zero = exam_scores(rng, 30, 0.3) | {"usmle": [(f"medqa-{i:04d}", int(rng.random() < 0.3)) for i in range(40)]}
    few = exam_scores(rng, 30, 0.6)
    write_run(results, "a-zeroshot", zero)
    write_run(results, "a-fewshot", few, prompt="fewshot", mode="gen")
    write_run(results, "b-zeroshot", exam_scores(rng, 20, 0.5), model="qwen3-0.6b", params_b=0.6)
    (tmp_path / "README.md").write_text(README)
    return results


def main(argv):
    return cli_main(["report", *argv])


def read_csv(path):
    return list(csv.DictReader(path.read_text().splitlines()))


def outputs(results):
    return {name: (results / name).read_bytes() for name in OUTPUTS}


# ---- statistics -----------------------------------------------------------------------------------


def test_bootstrap_ci_on_constructed_cases():
    assert stats.bootstrap_ci([1] * 40, seed=1) == (1.0, 1.0)
    assert stats.bootstrap_ci([0] * 40, seed=1) == (0.0, 0.0)
    low, high = stats.bootstrap_ci([1] * 50 + [0] * 50, seed=1)
    assert low < 0.5 < high
    assert 0.38 <= low <= 0.42 and 0.58 <= high <= 0.62  # about ±1.96·sqrt(.25/100) = ±0.098
    assert stats.bootstrap_ci([1] * 50 + [0] * 50, seed=1) == (low, high)  # seeded
    assert all(math.isnan(x) for x in stats.bootstrap_ci([], seed=1))


def test_mcnemar_exact_known_cases():
    assert stats.mcnemar_exact(0, 10) == pytest.approx(2 * 0.5**10)
    assert stats.mcnemar_exact(10, 0) == stats.mcnemar_exact(0, 10)
    assert stats.mcnemar_exact(1, 9) == pytest.approx(2 * (1 + 10) / 2**10)  # C(10,0) + C(10,1)
    assert stats.mcnemar_exact(7, 7) == 1.0
    assert stats.mcnemar_exact(0, 0) == 1.0
    # Exact integer sums: large counts neither overflow nor lose the tiny tail before the division.
    assert stats.mcnemar_exact(0, 1000) == pytest.approx(2.0**-999)
    assert stats.mcnemar_exact(1500, 1500) == 1.0


def test_paired_comparison_matches_questions_by_id(tmp_path):
    results = tmp_path / "results"
    ids = [f"doctor-2024-1-{i}" for i in range(12)]
    # a: right on 0-3; b: right on 0-9, answered in another order, plus two questions a never saw.
    a = [(i, int(k < 4)) for k, i in enumerate(ids)]
    b = [(i, int(k < 10)) for k, i in reversed(list(enumerate(ids)))] + [("doctor-2024-2-1", 0), ("doctor-2024-2-2", 1)]
    write_run(results, "a", {"doctor": a})
    write_run(results, "b", {"doctor": b}, prompt="fewshot", mode="gen")
    write_run(results, "a-again", {"doctor": a})  # same configuration as a: not compared
    write_run(results, "other", {"doctor": a}, model="other", variant="sft")  # another model: not compared
    runs = {r.run_id: r for r in load_runs(results)}

    result = compare_tasks(runs["a"].tasks[0], runs["b"].tasks[0], seed=3)
    assert result["n_paired"] == 12
    assert result["acc_a"] == pytest.approx(4 / 12) and result["acc_b"] == pytest.approx(10 / 12)
    assert result["difference"] == pytest.approx(6 / 12)
    assert (result["only_a_correct"], result["only_b_correct"]) == (0, 6)
    assert result["p_value"] == pytest.approx(2 * 0.5**6) and result["test"] == "mcnemar_exact"
    assert result["diff_ci95_low"] <= 0.5 <= result["diff_ci95_high"] and result["diff_ci95_low"] > 0

    rows = comparisons(list(runs.values()), seed=3)
    assert {(r["run_a"], r["run_b"]) for r in rows} == {("a", "b"), ("a-again", "b")}
    assert all(r["task"] == "kormedmcqa_doctor" for r in rows)
    assert most_significant(rows)["p_value"] == pytest.approx(2 * 0.5**6)


def test_exam_average_pools_questions(tmp_path):
    scores = {
        "doctor": [(f"doctor-1-1-{i}", 1) for i in range(10)],
        "nurse": [(f"nurse-1-1-{i}", 0) for i in range(30)],
        "pharm": [(f"pharm-1-1-{i}", i % 2) for i in range(5)],
        "dentist": [(f"dentist-1-1-{i}", 1) for i in range(5)],
    }
    write_run(tmp_path, "r", scores)
    (run,) = load_runs(tmp_path)
    pooled = run.scored_tasks()["kormedmcqa_average"]
    assert pooled.n == 50 and pooled.scores.mean() == pytest.approx((10 + 2 + 5) / 50)  # not the mean of exams
    write_run(tmp_path, "doctor-only", {"doctor": scores["doctor"]})
    only = next(r for r in load_runs(tmp_path) if r.run_id == "doctor-only")
    assert "kormedmcqa_average" not in only.scored_tasks()  # one exam is not the exam average


def test_paper_averages_follow_the_test_size_weighting():
    paper = {p.model: p for p in load_paper()}
    for name, printed in {"o1-preview-2024-09-12": 92.72, "Qwen2.5-72B": 78.86, "gemma-2-2B": 29.18}.items():
        acc = paper[name].accuracy
        assert weighted_average({e: acc[e] for e in EXAMS}) == pytest.approx(printed, abs=0.01)
    # Rows without a printed average get the weighted mean.
    llama = paper["Llama-3.1-8B"].accuracy
    assert llama["average"] == pytest.approx(weighted_average({e: llama[e] for e in EXAMS}))


def test_ngrams_need_thirteen_shared_words():
    words = [f"w{i}" for i in range(20)]
    assert len(ngram_hashes(" ".join(words))) == 20 - NGRAM + 1
    assert ngram_hashes(" ".join(words[: NGRAM - 1])) == set()
    shifted = "새 문장 " + " ".join(words[3 : 3 + NGRAM]).upper()  # case and surrounding words do not matter
    assert ngram_hashes(shifted) & ngram_hashes(" ".join(words))


# ---- the whole report -----------------------------------------------------------------------------


def test_report_writes_every_output_and_is_idempotent(results, capsys):
    assert main(["--results", str(results), "--seed", "7", "--resamples", "300"]) == 0
    out = capsys.readouterr().out
    assert "smallest p: gemma3-270m" in out
    for name in OUTPUTS:
        assert (results / name).stat().st_size > 0, name
    assert (results / "accuracy_vs_params.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    summary = read_csv(results / "summary.csv")
    assert len(summary) == (5 + 1) + (4 + 1) + (4 + 1)  # tasks + one exam average per run
    avg = next(r for r in summary if r["run_id"] == "a-zeroshot" and r["task"] == "kormedmcqa_average")
    assert avg["n"] == "120" and avg["ci_method"] == "bootstrap300"
    assert float(avg["ci95_low"]) <= float(avg["accuracy"]) <= float(avg["ci95_high"])

    comp = read_csv(results / "comparisons.csv")
    assert {r["task"] for r in comp} == {f"kormedmcqa_{e}" for e in EXAMS} | {"kormedmcqa_average"}
    assert all(r["run_a"] == "a-zeroshot" and r["run_b"] == "a-fewshot" for r in comp)  # the plainer one is a
    assert {r["n_paired"] for r in comp} == {"30", "120"}

    contamination = read_csv(results / "contamination.csv")  # every matched pair of the vendored data
    assert contamination and list(contamination[0]) == list(CONTAMINATION_FIELDS)
    assert {r["match"] for r in contamination} <= set(MATCHES)

    md = (results / "summary.md").read_text()
    assert "## Paired comparisons" in md and "## Contamination check" in md and "| gemma3-270m | 0.27 |" in md
    assert "| kormedmcqa/nurse test | all sources (" in md

    readme = (results.parent / "README.md").read_text()
    assert readme.startswith("# medbench\n\nintro\n\n<!-- results:start -->\n")
    assert readme.endswith("<!-- results:end -->\n\n## After\ntail\n")
    assert "(no results yet)" not in readme
    assert "![accuracy vs parameters](results/accuracy_vs_params.png)" in readme
    assert "| qwen3-0.6b | 0.6 | base | zeroshot/mc | all |" in readme

    # Idempotent: a second report over the same results changes no byte (chart and README included).
    first = outputs(results)
    assert main(["--results", str(results), "--seed", "7", "--resamples", "300"]) == 0
    assert outputs(results) == first
    assert (results.parent / "README.md").read_text() == readme


def test_chart_renders_with_reference_points_only(tmp_path):
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    out = build_report(results, resamples=100)
    assert out["runs"] == [] and out["most_significant"] is None
    assert (results / "accuracy_vs_params.png").stat().st_size > 10_000
    assert "(no results yet)" in (results / "summary.md").read_text()
    assert (results / "summary.csv").read_text().startswith("run_id,model,variant")


def test_readme_block_replacement_touches_only_the_block():
    new = replace_readme_block(README, "| table |")
    assert new == README.replace("(no results yet)", "| table |")
    assert replace_readme_block(new, "| table |") == new
    with pytest.raises(ReportError, match="README.md: needs a <!-- results:start -->"):
        replace_readme_block("# no markers\n", "x")


def test_record_missing_a_field_is_refused_with_its_path(results, capsys):
    bad = write_run(results, "broken", {"doctor": [("doctor-1-1-1", 1)]}, drop=("tasks", "params_b"))
    with pytest.raises(ReportError) as err:
        build_report(results)
    assert str(err.value) == f"{bad / 'record.json'}: missing field(s) params_b, tasks"
    assert main(["--results", str(results)]) == 2
    assert f"{bad / 'record.json'}: missing field(s)" in capsys.readouterr().err


def test_missing_samples_file_is_refused_with_its_path(results):
    samples = io.samples_path(results / "runs" / "a-fewshot", "medbench_kormedmcqa_nurse_fewshot")
    samples.unlink()
    with pytest.raises(ReportError, match=f"{samples}: samples file missing"):
        build_report(results)


def test_samples_that_disagree_with_the_record_are_refused(results):
    samples = io.samples_path(results / "runs" / "a-zeroshot", "medbench_medqa_usmle")
    kept = [json.loads(line) for _, line in io.read_samples(samples)][:-1]
    io.write_samples(samples, kept)
    with pytest.raises(ReportError, match=f"{samples}: 39 questions, but record.json says n=40"):
        build_report(results)


def test_the_report_is_the_one_writer_of_summary_csv(results):
    """Evaluation runs no longer touch summary.csv: its columns and intervals come from the report only."""
    assert not (results / "summary.csv").exists()
    summary.write_summary_csv(results / "summary.csv", summary_rows(load_runs(results), seed=1, resamples=50))
    after_report = read_csv(results / "summary.csv")
    assert list(after_report[0]) == list(summary.SUMMARY_FIELDS)
    assert {r["ci_method"] for r in after_report} == {"bootstrap50"}


def test_training_tables_come_from_train_and_bench_records(tmp_path):
    from medbench.bench.report import bench_sections
    from medbench.report.training import training_section

    (tmp_path / "train").mkdir()
    (tmp_path / "bench").mkdir()
    train = {
        "model": "m",
        "method": "lora",
        "data": {"mix": "both"},
        "examples": 10,
        "steps": 5,
        "epochs": 4.0,
        "gpus": 1,
        "deepspeed": {"file": "trainers/deepspeed/zero2.json"},
        "train_tokens_per_second": 90.0,
        "mfu": 0.01,
        "steady_state": {"tokens_per_second": 100.0, "mfu": 0.02},
        "memory": {"peak_gpu_gib": 1.5},
        "final_train_loss": 0.5,
        "final_eval_loss": None,
        "hardware": {"gpu": "NVIDIA H100 80GB HBM3"},
    }
    (tmp_path / "train" / "m-lora.json").write_text(json.dumps(train))
    config = {
        "tokens_per_second": 2000.0,
        "mean_tokens_per_step": 1374.0,
        "median_step_seconds": 0.6,
        "mfu": 0.0125,
        "peak_gpu_gib": 20.5,
    }
    bench = {
        "bench": "train",
        "weights": "random",
        "gpu": "NVIDIA H200",
        "configs": {
            "full@1": config,
            "full@2": {**config, "tokens_per_second": 4000.0},
            "full-zero3@1": {"error": "exit 1"},
        },
        "ratios": {"full@1": {}, "full@2": {"tokens_per_second_over_full": 2.0}},
        "notes": {"full-zero3@1": "disk full", "lora@2": "cut by a time limit"},
    }
    (tmp_path / "bench" / "train-m-H200.json").write_text(json.dumps(bench))
    text = training_section(tmp_path) + "\n" + bench_sections(tmp_path)
    rows = {line.split(" | ")[2]: line for line in text.splitlines() if line.startswith("| `")}
    # Steady-state figures win over whole-run ones; a missing eval loss is a dash, not 0.
    assert rows["lora"].split(" | ")[7:14] == ["zero2 x1", "100", "2.00", "1.50", "0.500", "–", "H100 80GB HBM3 |"]
    assert rows["full@2"].split(" | ")[3:9] == ["4000", "1374", "0.600", "1.25", "20.50", "2.00"]
    assert "failed (exit 1) disk full" in rows["full-zero3@1"]
    assert "not measured: cut by a time limit" in rows["lora@2"]
    assert training_section(tmp_path / "nothing") == "" and bench_sections(tmp_path / "nothing") == ""
