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
from medbench.report import build, summary
from medbench.report.build import ReportError, build_report, replace_readme_block, summary_rows
from medbench.report.compare import compare_tasks, comparisons, most_significant, planned_missing
from medbench.report.reference import load_paper, weighted_average
from tests.run_folders import write_run

EXAMS = ("doctor", "nurse", "pharm", "dentist")
README = "# medbench\n\nintro\n\n<!-- results:start -->\n(no results yet)\n<!-- results:end -->\n\n## After\ntail\n"
OUTPUTS = (
    "summary.md",
    "summary.csv",
    "comparisons.csv",
    "positive_control.csv",
    "contamination.csv",
    "accuracy_vs_params.png",
    "accuracy_vs_params.svg",
)


def exam_scores(rng, n_per_exam, p):
    """Seeded scores for every exam, ids as medbench.data.loader makes them."""
    return {exam: [(f"{exam}-2024-1-{i}", int(rng.random() < p)) for i in range(n_per_exam)] for exam in EXAMS}


PLAN = {
    "families": [
        {
            "name": "primary",
            "description": "each fine-tune against the base model",
            "model": "gemma3-270m",
            "prompt": "zeroshot",
            "mode": "mc",
            "against": "base",
            "members": ["lora", "qlora"],
            "datasets": ["kormedmcqa", "medqa"],
            "metric": "standard",
            "margin": 0.02,
        }
    ],
    "alpha": 0.05,
}


@pytest.fixture
def results(tmp_path):
    """The base model and a fine-tune trained under two seeds (every exam + MedQA), a run of another model, and a
    legacy run (no provenance)."""
    rng = np.random.default_rng(0)
    results = tmp_path / "results"
    medqa = {"usmle": [(f"medqa-{i:04d}", int(rng.random() < 0.3)) for i in range(40)]}
    write_run(results, "a-base", exam_scores(rng, 30, 0.3) | medqa)
    for seed in (1, 2):
        write_run(results, f"a-lora-s{seed}", exam_scores(rng, 30, 0.6) | medqa, variant="lora", checkpoint=f"s{seed}")
    write_run(results, "b-zeroshot", exam_scores(rng, 20, 0.5), model="qwen3-0.6b", params_b=0.6)
    write_run(results, "old", exam_scores(rng, 20, 0.5), provenance=False)
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
    runs = {r.run_id: r for r in load_runs(results)}

    result = compare_tasks(runs["a"].tasks[0], runs["b"].tasks[0], seed=3)
    assert result["n_paired"] == 12
    assert result["acc_a"] == pytest.approx(4 / 12) and result["acc_b"] == pytest.approx(10 / 12)
    assert result["difference"] == pytest.approx(6 / 12)
    assert result["p_value"] == pytest.approx(2 * 0.5**6) and result["test"] == "mcnemar_exact"
    assert result["diff_ci95_low"] <= 0.5 <= result["diff_ci95_high"] and result["diff_ci95_low"] > 0
    assert result["mdd80"] > 0 and result["equivalent"] is False  # a half-point gain is no equivalence


def test_families_pool_seeds_and_admit_only_full_runs_with_provenance(results):
    rng = np.random.default_rng(5)
    everything = exam_scores(rng, 30, 0.9) | {"usmle": [(f"medqa-{i:04d}", 1) for i in range(40)]}
    write_run(results, "a-lora-limit", everything, variant="lora", checkpoint="s9", limit=5)  # a subset
    write_run(results, "a-lora-legacy", everything, variant="lora", checkpoint="s8", provenance=False)
    seen = {"dataset": "medqa", "split": "test", "ids": ["medqa-0000"]}
    write_run(results, "a-lora-control", everything, variant="lora", checkpoint="pc",
              extra={"training_record": {"sha256": "0" * 64, "contaminated": seen}})  # fmt: skip
    runs = {r.run_id: r for r in load_runs(results)}
    rows = comparisons(list(runs.values()), seed=3, resamples=200, plan=PLAN)
    assert [(r["dataset"], r["variant_b"]) for r in rows] == [("kormedmcqa", "lora"), ("medqa", "lora")]
    assert all(r["family_size"] == 2 and r["runs_b"] == "a-lora-s1 a-lora-s2" for r in rows)
    kor = rows[0]
    seeds = [runs[f"a-lora-s{k}"].scored_tasks()["kormedmcqa_average"].scores for k in (1, 2)]
    assert kor["acc_b"] == pytest.approx(np.mean(seeds))  # each question averaged over the seeds
    assert kor["seed_accuracies_b"] == " ".join(f"{s.mean():.4f}" for s in seeds)
    assert kor["test"] == "sign_flip_exact"  # seed means lie on a lattice of halves
    assert kor["holm_p"] == pytest.approx(min(1.0, 2 * min(r["p_value"] for r in rows)))
    assert planned_missing(list(runs.values()), PLAN) == [
        {"family": "primary", "member": "qlora", "why": "no run of gemma3-270m qlora"}
    ]
    assert most_significant(rows) is kor


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


@pytest.mark.slow  # reads every record, the whole data or a browser: seconds
def test_report_writes_every_output_and_is_idempotent(results, capsys, monkeypatch):
    monkeypatch.setattr(build, "load_plan", lambda: PLAN)
    assert main(["--results", str(results), "--seed", "7", "--resamples", "300"]) == 0
    out = capsys.readouterr().out
    assert "4 run(s) with full provenance, 1 legacy, 2 planned comparison(s)" in out
    assert "smallest Holm p: family primary (m=2)" in out
    for name in OUTPUTS:
        assert (results / name).stat().st_size > 0, name
    assert (results / "accuracy_vs_params.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(results.glob(".report-*"))  # the staging folder is gone

    summary = read_csv(results / "summary.csv")
    assert len(summary) == 3 * (5 + 1) + (4 + 1)  # tasks + one exam average per run; the legacy run left out
    assert "old" not in {r["run_id"] for r in summary}
    avg = next(r for r in summary if r["run_id"] == "a-base" and r["task"] == "kormedmcqa_average")
    assert avg["n"] == "120" and avg["ci_method"] == "bootstrap300"
    assert float(avg["ci95_low"]) <= float(avg["accuracy"]) <= float(avg["ci95_high"])

    comp = read_csv(results / "comparisons.csv")
    assert [(r["family"], r["dataset"], r["variant_b"], r["n_paired"]) for r in comp] == [
        ("primary", "kormedmcqa", "lora", "120"),
        ("primary", "medqa", "lora", "40"),
    ]

    contamination = read_csv(results / "contamination.csv")  # every matched pair of the vendored data
    assert contamination and list(contamination[0]) == list(CONTAMINATION_FIELDS)
    assert {r["match"] for r in contamination} <= set(MATCHES)

    md = (results / "summary.md").read_text()
    for section in ("## Comparison families", "### Family `primary` (m = 2)", "## Position bias",
                    "## Contamination check", "## Legacy records"):  # fmt: skip
        assert section in md, section
    assert "Planned but not run: qlora (no run of gemma3-270m qlora)" in md
    assert "| `old` | " in md.split("## Legacy records")[1]  # listed apart, with what it lacks
    assert "| kormedmcqa/nurse test | all sources (" in md

    readme = (results.parent / "README.md").read_text()
    assert readme.startswith("# medbench\n\nintro\n\n<!-- results:start -->\n")
    assert readme.endswith("<!-- results:end -->\n\n## After\ntail\n")
    assert "(no results yet)" not in readme and str(results.parent) not in readme  # no absolute path
    assert "![accuracy vs parameters](results/accuracy_vs_params.png)" in readme
    assert "| KorMedMCQA | lora | 120 |" in readme

    # Idempotent: a second report over the same results changes no byte (chart and README included).
    first = outputs(results)
    assert main(["--results", str(results), "--seed", "7", "--resamples", "300"]) == 0
    assert outputs(results) == first
    assert (results.parent / "README.md").read_text() == readme


@pytest.mark.slow  # reads every record, the whole data or a browser: seconds
def test_a_bad_input_or_a_failed_output_leaves_the_previous_report_whole(results, monkeypatch):
    readme = results.parent / "README.md"
    build_report(results, resamples=50, readme=readme)
    before, readme_before = outputs(results), readme.read_text()
    bad = write_run(results, "zz-broken", {"doctor": [("doctor-1-1-1", 1)]}, drop=("params_b",))
    with pytest.raises(ReportError, match="zz-broken/record.json: missing field"):
        build_report(results, resamples=50, readme=readme)
    assert outputs(results) == before and readme.read_text() == readme_before
    (bad / "record.json").unlink()
    write_run(results, "c-new", exam_scores(np.random.default_rng(1), 10, 0.5), model="qwen3-1.7b", params_b=1.7)

    def fails(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(build, "write_site", fails)  # the last output to render
    with pytest.raises(OSError, match="disk full"):
        build_report(results, resamples=50, readme=readme)
    assert outputs(results) == before and readme.read_text() == readme_before
    assert not list(results.glob(".report-*"))


@pytest.mark.slow  # reads every record, the whole data or a browser: seconds
def test_names_from_records_are_escaped_in_markdown(results):
    write_run(results, "x-evil", exam_scores(np.random.default_rng(2), 5, 0.5),
              model="<img src=x onerror=alert(1)>", variant="*bold*_")  # fmt: skip
    build_report(results, resamples=50)
    md = (results / "summary.md").read_text()
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    assert "\\*bold\\*\\_" in md


@pytest.mark.slow  # reads every record, the whole data or a browser: seconds
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
    samples = io.samples_path(results / "runs" / "a-lora-s1", "medbench_kormedmcqa_nurse")
    samples.unlink()
    with pytest.raises(ReportError, match=f"{samples}: samples file missing"):
        build_report(results)


def test_samples_that_disagree_with_the_record_are_refused(results):
    samples = io.samples_path(results / "runs" / "a-base", "medbench_medqa_usmle")
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
    # A bootstrap from 100 questions, Wilson below (an exam of 20 or 30 questions).
    assert {r["ci_method"] for r in after_report if int(r["n"]) >= 100} == {"bootstrap50"}
    assert {r["ci_method"] for r in after_report if int(r["n"]) < 100} == {"wilson"}


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
        "training_arguments": {"seed": 3},
        "best_checkpoint": {"checkpoint": "checkpoint-4", "step": 4, "eval_loss": 0.9},
        "loss_floor": {"per_token": 0.8},
        "loss_history": [{"step": 4, "eval_loss": 0.9}, {"step": 5, "eval_loss": 0.95}],
        # full provenance (records/verify.py); a record without it is listed apart, not in this table
        "medbench_version": "0.0.0",
        "source_fingerprint": {"sha256": "0" * 64, "files": 1},
        "git_sha_status": "read from the tree's git",
        "git_dirty": [],
        "data_files": {"kormedmcqa/doctor/train.jsonl": "0" * 64},
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
    # Steady-state figures win over whole-run ones; the best step, its loss, the last one and the floor beside.
    assert rows["lora"].split(" | ")[3:] == [
        "study", "3", "5", "4.00", "–", "4", "0.900", "0.950", "0.800", "0.500", "100", "2.00", "1.50",
        "H100 80GB HBM3 |",
    ]  # fmt: skip
    assert rows["full@2"].split(" | ")[3:9] == ["4000", "1374", "0.600", "1.25", "20.50", "2.00"]
    assert "failed (exit 1) disk full" in rows["full-zero3@1"]
    assert "not measured: cut by a time limit" in rows["lora@2"]
    assert training_section(tmp_path / "nothing") == "" and bench_sections(tmp_path / "nothing") == ""
