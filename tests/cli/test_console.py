"""A quiet, informative console and a clean tree: what a run prints, and where a user's runs go."""

import io
import logging
import subprocess

import pytest

from medbench import paths
from medbench.cli import console
from medbench.records.reader import ReportError, load_runs
from tests.run_folders import write_run


def test_named_harmless_messages_are_dropped_and_others_kept(caplog):
    console.configure("normal")
    task_log = logging.getLogger("lm_eval.api.task")
    with caplog.at_level(logging.INFO):
        task_log.warning("medbench_kormedmcqa_doctor: Custom kwargs can be passed to `--metadata` in console")
        task_log.warning("a real problem with a task")
        logging.getLogger("lm_eval.evaluator").warning("generation_kwargs: {} specified through cli, these settings")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["a real problem with a task"]
    console.configure("verbose")  # --verbose: every library message again
    with caplog.at_level(logging.INFO):
        task_log.warning("medbench_kormedmcqa_doctor: Custom kwargs can be passed to `--metadata` in console")
    assert any("Custom kwargs" in r.getMessage() for r in caplog.records)
    console.configure("normal")


def test_each_filter_names_its_reason():
    for name, (pattern, why) in console.HARMLESS.items():
        assert name.startswith("lm_eval.") and pattern and len(why) > 20


def test_a_users_runs_go_to_an_ignored_folder(monkeypatch):
    monkeypatch.delenv("MEDBENCH_RESULTS")
    assert paths.results_dir() == paths.REPO_ROOT / "results" / "local"
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/local/runs/demo/record.json"], cwd=paths.REPO_ROOT)
    assert ignored.returncode == 0  # the demo never touches a committed file
    published = subprocess.run(["git", "check-ignore", "-q", "results/runs/x/record.json"], cwd=paths.REPO_ROOT)
    assert published.returncode == 1  # the project's own records stay tracked


def test_the_report_reads_published_and_local_runs_and_refuses_a_clash(tmp_path):
    published, local = tmp_path / "results", tmp_path / "results" / "local"
    write_run(published, "base", {"usmle": [("q1", 1), ("q2", 0)]})
    write_run(local, "mine", {"usmle": [("q1", 0), ("q2", 0)]}, variant="lora")
    assert [r.run_id for r in load_runs(published, local)] == ["base", "mine"]
    write_run(local, "base", {"usmle": [("q1", 0), ("q2", 0)]})  # same name, other answers
    with pytest.raises(ReportError, match="also names a different run"):
        load_runs(published, local)


# --- result tables at 80 columns, whatever the terminal or COLUMNS says -----------------------------------------


def _record(model: str, permuted: bool) -> dict:
    tasks = []
    for dataset, exam, n in (
        ("kormedmcqa", "doctor", 435),
        ("kormedmcqa", "nurse", 878),
        ("kormedmcqa", "pharm", 885),
        ("kormedmcqa", "dentist", 811),
        ("medqa", "usmle", 1273),
    ):
        suffix = "_usmle" if dataset == "medqa" else f"_{exam}"
        task = {
            "task": f"medbench_{dataset}{suffix}",
            "dataset": dataset,
            "exam": exam,
            "n": n,
            "accuracy": 0.3456,
            "ci95_low": 0.3012,
            "ci95_high": 0.3923,
            "invalid": 12,
            "truncated_prompts": 0,
            "letters": {"predicted": {"A": n - 300, "B": 100, "C": 100, "D": 100}, "dominant": True},
        }
        if permuted:
            task["permutation"] = {"debiased_accuracy": 0.3012, "circular_accuracy": 0.1234}
        tasks.append(task)
    return {
        "model": model,
        "variant": "base",
        "prompt": "zeroshot",
        "mode": "mc",
        "tasks": tasks,
        "kormedmcqa_average": 0.3333,
        "timing": {"load_seconds": 12.3, "eval_seconds": 456.7, "questions_per_second": 9.37},
        "memory": {"peak_gib": 1.5, "peak_rss_gib": 1.5, "peak_gpu_gib": None},
        "responses": {"computed": 21640, "from_cache": 0},
    }


@pytest.mark.parametrize("permuted", [False, True], ids=["plain", "permuted"])
def test_the_result_table_reads_at_80_columns_whatever_the_terminal_says(tmp_path, monkeypatch, capsys, permuted):
    """Before: a fresh shell (no COLUMNS) cut every task to `kormedmcqa…`, the permuted columns to `accur…`/`debia…`,
    and the record's path was folded mid-word. Rendered the same with COLUMNS unset, narrow or wide."""
    from rich.cells import cell_len

    from medbench.cli.eval import print_table

    model = tmp_path / ("a-long-parent-folder-" * 4) / "gemma3-270m-korean-sft-final"
    model.mkdir(parents=True)
    path = "results/local/runs/" + "a-long-run-id-" * 6 + "0123abcd/record.json"  # longer than 80 columns
    outputs = []
    for columns in (None, "20", "300"):
        if columns is None:
            monkeypatch.delenv("COLUMNS", raising=False)
        else:
            monkeypatch.setenv("COLUMNS", columns)
        monkeypatch.delenv("LINES", raising=False)
        print_table(_record(str(model), permuted), path)  # to stdout, which is no terminal here
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2]
    lines = outputs[0].splitlines()
    assert lines[-1] == f"record: {path}"  # whole, on a line of its own, never folded
    assert all(cell_len(line) <= 80 for line in lines[:-1]), outputs[0]
    header = next(line for line in lines if line.lstrip().startswith("task"))
    columns = ["task", "n", "acc%", "95% CI", "inv", "cut", "top"] + (["deb%", "circ%"] if permuted else [])
    assert header.split() == [c for col in columns for c in col.split()]
    rows = {line.split()[0]: line.split() for line in lines if line.split() and line.split()[0] in LABELS}
    assert sorted(rows) == sorted(LABELS)  # every label whole: doctor, nurse, pharm, dentist, MedQA, KorMedMCQA
    assert rows["doctor"][:6] == ["doctor", "435", "34.6", "30.1–39.2", "12", "0"]
    assert rows["MedQA"][6:9] == ["A", "76.4", "⚠"]
    if permuted:
        assert rows["nurse"][-2:] == ["30.1", "12.3"]
    assert lines[0].split() == [model.name, "·", "base", "·", "zeroshot", "·", "mc"]  # a long path by its folder's name

    print_table(_record("gemma3-270m", permuted), path, file=(out := io.StringIO()))  # to a file: the same layout
    assert out.getvalue().splitlines()[-1] == f"record: {path}"
    assert all(cell_len(line) <= 80 for line in out.getvalue().splitlines()[:-1])


LABELS = ("doctor", "nurse", "pharm", "dentist", "MedQA", "KorMedMCQA")


def test_the_consistency_report_reads_at_80_columns(monkeypatch, capsys):
    from rich.cells import cell_len

    from medbench.cli.consistency import print_report

    exam = {
        "n": 435,
        "ours": {"accuracy": 0.3456},
        "upstream": {"accuracy": 0.3457},
        "agree": 430,
        "same_raw_generation": 0,
        "identical_prompts": 435,
        "context_identical": True,
    }
    path = "results/local/consistency/" + "gemma3-270m-kormedmcqa-5shot-" * 3 + "all.json"
    result = {
        "model": "gemma3-270m",
        "subset": "all questions",
        "per_exam": {e: exam for e in ("doctor", "nurse", "pharm", "dentist")},
        "overall": {
            "n": 1740,
            "ours_accuracy": 0.3456,
            "upstream_accuracy": 0.3457,
            "agree": 1720,
            "identical_prompts": 1740,
        },
        "prompt_differences": [{"aspect": "fewshot separator", "text": "\n\n", "ours": "\n\n", "upstream": "\n\n"}],
        "path": path,
    }
    monkeypatch.setenv("COLUMNS", "300")
    print_report(result)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"result: {path}" and all(cell_len(line) <= 80 for line in lines[:-1])
    header = next(line for line in lines if line.lstrip().startswith("exam"))
    assert header.split() == ["exam", "n", "ours", "lm-eval", "agree", "same", "gen", "same", "prompt"]
    row = next(line.split() for line in lines if line.split()[:1] == ["dentist"])
    assert row == ["dentist", "435", "0.346", "0.346", "430/435", "0/435", "435/435"]
