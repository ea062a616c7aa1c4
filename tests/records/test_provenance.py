"""What a record says about the code that made it, and `medbench verify` checking a record against it."""

from __future__ import annotations

import json
import subprocess

import pytest

from medbench.cli import main
from medbench.records import provenance, verify
from medbench.records.io import write_json


def test_the_fingerprint_covers_every_source_file_and_only_those(tmp_path):
    for name, text in {
        "medbench/a.py": "x = 1\n",
        "medbench/notes.md": "prose\n",
        "medbench/__pycache__/a.cpython-311.pyc": "compiled",
        "tasks/kormedmcqa/_mc_template_yaml": "doc_to_text: q\n",
        "trainers/methods/lora.yaml": "r: 32\n",
        "README.md": "not source\n",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    first = provenance.source_fingerprint(tmp_path)
    assert first["files"] == 3  # the Markdown and the compiled file left out
    (tmp_path / "medbench" / "notes.md").write_text("other prose\n")
    assert provenance.source_fingerprint(tmp_path) == first
    (tmp_path / "tasks" / "kormedmcqa" / "_mc_template_yaml").write_text("doc_to_text: other\n")
    assert provenance.source_fingerprint(tmp_path) != first


def test_a_commit_given_by_the_environment_is_kept_only_when_the_sources_match(tmp_path, monkeypatch):
    """A copy of the tree without .git (a GPU machine): the sha it is given is verified by the fingerprint."""
    (tmp_path / "medbench").mkdir()
    (tmp_path / "medbench" / "a.py").write_text("x = 1\n")
    fingerprint = provenance.source_fingerprint(tmp_path)["sha256"]
    monkeypatch.setenv("MEDBENCH_GIT_SHA", "abc123")
    monkeypatch.setenv("MEDBENCH_SOURCE_FINGERPRINT", fingerprint)
    state = provenance.code_state(tmp_path)
    assert state["git_sha"] == "abc123" and state["git_sha_status"].startswith("verified")
    monkeypatch.setenv("MEDBENCH_SOURCE_FINGERPRINT", "0" * 64)
    state = provenance.code_state(tmp_path)
    assert state["git_sha_status"].startswith("unverified") and state["git_dirty"] is None
    monkeypatch.delenv("MEDBENCH_GIT_SHA")
    assert provenance.code_state(tmp_path)["git_sha_status"].startswith("unknown")


def test_no_git_prints_nothing(tmp_path, capfd):
    """Tried as a new user would, on a copy without .git: no stray `fatal: not a git repository`."""
    (tmp_path / "medbench").mkdir()
    provenance.code_state(tmp_path)
    assert capfd.readouterr().err == ""


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_verify_checks_code_against_the_named_commit_and_data_against_the_files(tmp_path, monkeypatch, capsys):
    repo = tmp_path / "repo"
    (repo / "medbench").mkdir(parents=True)
    (repo / "medbench" / "a.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    monkeypatch.setattr(verify, "REPO_ROOT", repo)
    good = provenance.source_fingerprint(repo)
    data = {"medqa/test.jsonl": verify.file_sha256(verify.data_dir() / "medqa" / "test.jsonl")}
    record = {"method": "lora", "steps": 3, "data": {"files": data}, "source_fingerprint": good, "git_sha": sha}
    record.update(git_sha_status="read from the tree's git", medbench_version="0.3.0", git_dirty=[])
    path = tmp_path / "train.json"
    write_json(path, record)
    result = verify.verify(path)
    assert not result.failed and result.full, result.checks
    assert [c.status for c in result.checks if c.name == "code"] == [verify.OK]
    write_json(path, {**record, "source_fingerprint": {"sha256": "f" * 64, "files": 1}})
    assert [c.name for c in verify.verify(path).checks if c.status == verify.MISMATCH] == ["code"]
    write_json(path, {**record, "data": {"files": {"medqa/test.jsonl": "0" * 64}}})
    failed = [c for c in verify.verify(path).checks if c.status == verify.MISMATCH]
    assert {c.name for c in failed} == {"data", "data pinned"}
    assert main(["verify", str(path)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_a_record_without_provenance_is_legacy_not_a_failure(tmp_path, capsys):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"method": "full", "steps": 10, "git_sha": "ec95d62"}))
    result = verify.verify(path)
    assert not result.failed and not result.full
    assert main(["verify", str(path)]) == 0 and main(["verify", "--strict", str(path)]) == 1


@pytest.mark.parametrize("field", ["source_fingerprint", "weights_fingerprint", "data_files"])
def test_provenance_gaps_name_what_a_run_record_lacks(field):
    record = {
        "run_id": "r",
        "tasks": [],
        "variant": "base",
        "source_fingerprint": {"sha256": "x"},
        "git_sha_status": "read from the tree's git",
        "git_dirty": [],
        "medbench_version": "0.3.0",
        "data_files": {"a": "b"},
        "weights_fingerprint": {"model": {}},
    }
    assert verify.provenance_gaps(record) == []
    del record[field]
    assert verify.provenance_gaps(record)
