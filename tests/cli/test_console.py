"""A quiet, informative console and a clean tree: what a run prints, and where a user's runs go."""

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
