"""`medbench merge` against incoming folders made to hurt the tree (medbench/records/merge.py), driven through the CLI:
links and special files refused and never followed, corrupt records named before anything is copied, runs keyed by
the id inside their record, and a merge that fails part-way rolled back to the tree as it was."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from medbench.cli import main
from medbench.records import merge as merge_module
from medbench.records.reader import load_runs
from tests.run_folders import write_run


def merge(capsys, *args) -> tuple[int, str, str]:
    """`medbench merge ARGS` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main(["merge", *map(str, args)])
    except SystemExit as e:  # argparse
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root (links not followed) with a plain file's bytes: the state a refused merge must keep."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return out


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def here(tmp_path):
    """The results folder merged into, holding one run already."""
    results = tmp_path / "results"
    write_run(results, "local", {"usmle": [("q1", 1), ("q2", 0)]})
    return results


def test_links_and_special_files_are_refused_and_never_followed(tmp_path, here, capsys):
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("a file outside every results folder")
    before = tree(here)

    def incoming(name: str) -> tuple[Path, Path]:
        source = tmp_path / name / "results"
        write_run(source, "good", {"usmle": [("q1", 1)]})  # a valid run beside the bad one: not copied either
        return source, write_run(source, "bad", {"usmle": [("q1", 0)]})

    link = "a symbolic link; merge copies plain files only: replace it with the file itself"
    special = "not a plain file or folder (a device, pipe or socket); remove it and merge again"
    cases = []
    source, run = incoming("link-out")
    (run / "notes.txt").symlink_to(secret)  # would copy a file from outside the folder into results/
    cases.append((source, f"{run / 'notes.txt'}: {link}"))
    source, run = incoming("link-zero")
    (run / "zero.bin").symlink_to("/dev/zero")  # followed, it would write until the disk is full
    cases.append((source, f"{run / 'zero.bin'}: {link}"))
    source, run = incoming("fifo")
    os.mkfifo(run / "pipe")  # opened, it would block the merge forever
    cases.append((source, f"{run / 'pipe'}: {special}"))
    source, run = incoming("linked-run")
    shutil.rmtree(run)
    run.symlink_to(here / "runs" / "local", target_is_directory=True)
    cases.append((source, f"{run}: {link}"))
    source = tmp_path / "linked-runs" / "results"
    source.mkdir(parents=True)
    (source / "runs").symlink_to(tmp_path / "link-out" / "results" / "runs", target_is_directory=True)
    cases.append((source, f"{source / 'runs'}: {link}"))
    source = tmp_path / "linked-train" / "results"
    (source / "train").mkdir(parents=True)
    (source / "train" / "m-lora.json").symlink_to(secret)
    cases.append((source, f"{source / 'train' / 'm-lora.json'}: {link}"))

    for source, message in cases:
        code, _, err = merge(capsys, source, "--into", here)
        assert code == 2 and one_error_line(err) == f"medbench merge: error: {message}", err
        assert tree(here) == before, message  # nothing copied, nothing followed
    assert not [p for p in here.iterdir() if p.name.startswith(".merging")]


def test_a_corrupt_record_is_refused_by_name_and_nothing_is_copied(tmp_path, here, capsys):
    before = tree(here)
    source = tmp_path / "node1" / "results"
    write_run(source, "fine", {"usmle": [("q1", 1)]})
    run = write_run(source, "broken", {"usmle": [("q1", 1), ("q2", 1)]})
    record = run / "record.json"
    text = record.read_text()

    record.write_text(text[: len(text) // 2])  # truncated: every later report would fail on it
    code, _, err = merge(capsys, source, "--into", here)
    assert code == 2 and one_error_line(err).startswith(f"medbench merge: error: {record}: not valid JSON (")
    assert tree(here) == before

    wrong = json.loads(text)
    wrong["tasks"][0]["n"] = "2"  # a wrongly typed field
    record.write_text(json.dumps(wrong))
    code, _, err = merge(capsys, source, "--into", here)
    assert code == 2
    assert (
        one_error_line(err)
        == f"medbench merge: error: {record}: task medbench_medqa_usmle field n is str, expected int"
    )
    assert tree(here) == before

    wrong["tasks"][0]["n"] = 3  # the record says 3 questions, its samples hold 2
    record.write_text(json.dumps(wrong))
    code, _, err = merge(capsys, source, "--into", here)
    samples = run / "samples_medbench_medqa_usmle.jsonl.gz"
    assert (
        code == 2 and one_error_line(err) == f"medbench merge: error: {samples}: 2 questions, but record.json says n=3"
    )
    assert tree(here) == before

    record.write_text(text)  # repaired: both runs merge
    code, out, _ = merge(capsys, source, "--into", here)
    assert code == 0 and "2 run(s) and 0 file(s) to copy" in out
    assert [r.run_id for r in load_runs(here)] == ["broken", "fine", "local"]


def test_runs_are_keyed_by_the_id_inside_their_record_whatever_their_folder_is_called(tmp_path, capsys):
    here = tmp_path / "results"
    # A run here in a folder that is not named by its id: the report knows it as "shared".
    write_run(here, "shared", {"usmle": [("q1", 1), ("q2", 0)]}).rename(here / "runs" / "kept-by-hand")
    before = tree(here)

    other = tmp_path / "node1" / "results"
    write_run(other, "shared", {"usmle": [("q1", 0), ("q2", 0)]})  # the same id, other answers
    code, _, err = merge(capsys, other, "--into", here)
    assert code == 2
    assert (
        "nothing merged: the same name holds different content in 1 place(s) (rename or remove one of each, then "
        "merge again):" in err
    )
    assert f"run shared: {other / 'runs' / 'shared'} and {here / 'runs' / 'kept-by-hand'} differ" in err
    assert tree(here) == before  # before: copied beside it, and every later report refused the clash

    # Two incoming folders of other names holding one id with two contents: a conflict too.
    a, b = tmp_path / "a" / "results", tmp_path / "b" / "results"
    write_run(a, "job", {"usmle": [("q1", 1)]}).rename(a / "runs" / "job-from-a")
    write_run(b, "job", {"usmle": [("q1", 0)]}).rename(b / "runs" / "job-from-b")
    code, _, err = merge(capsys, a, b, "--into", here)
    assert code == 2 and f"run job: {b / 'runs' / 'job-from-b'} and {a / 'runs' / 'job-from-a'} differ" in err
    assert tree(here) == before

    # The same run under another folder name is the same run: counted once. A renamed run is merged under its id.
    same = tmp_path / "copy" / "results"
    shutil.copytree(here / "runs" / "kept-by-hand", same / "runs" / "shared-copy")
    code, out, _ = merge(capsys, same, a, "--into", here)
    assert code == 0 and "1 run(s) and 0 file(s) to copy; 1 already here (identical)" in out
    assert sorted(p.name for p in (here / "runs").iterdir()) == ["job", "kept-by-hand"]
    assert [r.run_id for r in load_runs(here)] == ["job", "shared"]

    # A folder here named by an incoming id but holding no finished run of it is never merged into.
    (here / "runs" / "busy" / "cache").mkdir(parents=True)
    c = tmp_path / "c" / "results"
    write_run(c, "busy", {"usmle": [("q1", 1)]})
    code, _, err = merge(capsys, c, "--into", here)
    assert code == 2 and f"{here / 'runs' / 'busy'} is here without a finished run of that id" in err
    assert list((here / "runs" / "busy").iterdir()) == [here / "runs" / "busy" / "cache"]

    # An id that would name a path outside runs/ is refused by name.
    d = tmp_path / "d" / "results"
    record = write_run(d, "escape", {"usmle": [("q1", 1)]}) / "record.json"
    record.write_text(record.read_text().replace('"run_id": "escape"', '"run_id": "../../escape"'))
    code, _, err = merge(capsys, d, "--into", here)
    assert code == 2 and one_error_line(err).startswith(
        f"medbench merge: error: {record}: invalid run id '../../escape'"
    )
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("stage", ["copying", "placing"])
def test_a_failure_mid_merge_leaves_the_results_as_they_were(tmp_path, here, capsys, monkeypatch, stage):
    """A disk that fills while files are staged, or a rename that fails after one run is in place: nothing of the merge
    stays, no staging folder is left behind, and the message says so."""
    source = tmp_path / "node1" / "results"
    for name in ("a", "b", "c"):
        write_run(source, name, {"usmle": [("q1", 1), ("q2", 0)]})
    (source / "train").mkdir()
    (source / "train" / "m-lora.json").write_text("{}")
    before = tree(here)
    calls = []
    copyfile, rename = shutil.copyfile, Path.rename

    def failing_copy(src, dst, *args, **kwargs):
        calls.append(src)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(dst))
        return copyfile(src, dst, *args, **kwargs)

    def failing_rename(self, target):
        calls.append(target)
        if len(calls) == 2:  # run "a" is in place already
            raise OSError(5, "Input/output error", str(target))
        return rename(self, target)

    with monkeypatch.context() as m:
        if stage == "copying":
            m.setattr(merge_module.shutil, "copyfile", failing_copy)
        else:
            m.setattr(Path, "rename", failing_rename)
        code, _, err = merge(capsys, source, "--into", here)
    assert code == 2 and len(calls) in (2, 3)
    line = one_error_line(err)
    assert line.startswith("medbench merge: error: nothing merged: [Errno ")
    assert f"(what this merge had copied is removed; {here} is as it was)" in line
    assert tree(here) == before
    assert not [p for p in here.iterdir() if p.name.startswith(".merging")]

    # The disk freed: the same merge goes through whole.
    code, out, _ = merge(capsys, source, "--into", here)
    assert code == 0 and "3 run(s) and 1 file(s) to copy" in out
    assert [r.run_id for r in load_runs(here)] == ["a", "b", "c", "local"]
    assert not [p for p in here.iterdir() if p.name.startswith(".merging")]
