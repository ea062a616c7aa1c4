"""Mistakes and tampering, driven through the CLI as a user would: each fault is refused early with a
message that says what to do (exit status 2), or the run completes with nothing lost.

Refusals run `medbench.cli.main` in this process (the same parsing, checks and error printing as
`python -m medbench.cli`, seconds each); faults that need a process of their own (a run holding its
id, an unwritable or full results folder, a run killed or interrupted mid-task) start
`python -m medbench.cli eval` with the tiny model. Merge (tests/records/test_merge.py), training arguments
(tests/trainers/test_arguments.py) and the console at 80 columns (tests/cli/test_console.py) have their own files.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medbench import hashing
from medbench.cli import main
from medbench.data import checksums, loader
from medbench.data.checksums import verify_splits
from medbench.data.loader import DataError, load_rows
from medbench.eval import response_cache
from medbench.models import fingerprint
from medbench.models.tiny import build_tiny
from medbench.records import io

QUICK = ["--tasks", "medqa", "--limit", "1"]  # 4 answer-letter scores: seconds on 2 CPU cores


def medbench(capsys, *args: str) -> tuple[int, str]:
    """`medbench ARGS` in this process: (exit status, stderr)."""
    capsys.readouterr()
    try:
        code = main([*args])
    except SystemExit as e:  # argparse
        code = e.code
    return code, capsys.readouterr().err


def cli(*args: str, results_dir: Path, preexec_fn=None, prefix: tuple[str, ...] = (), **kwargs):
    env = dict(os.environ, MEDBENCH_RESULTS=str(results_dir))
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "medbench.cli", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=preexec_fn,
        **kwargs,
    )


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_gemma_dir):
    """A finished quick run of the tiny model (results folder copied by each test that starts from it)."""
    results = tmp_path_factory.mktemp("finished") / "results"
    results.mkdir()
    old = os.environ.get("MEDBENCH_RESULTS")
    os.environ["MEDBENCH_RESULTS"] = str(results)
    try:
        assert main(["eval", str(tiny_gemma_dir), *QUICK, "--run-id", "done"]) == 0
    finally:
        if old is None:
            del os.environ["MEDBENCH_RESULTS"]
        else:
            os.environ["MEDBENCH_RESULTS"] = old
    return results


@pytest.fixture
def done(finished, results_dir):
    """results_dir holding the finished run `done`; returns its folder."""
    shutil.copytree(finished / "runs", results_dir / "runs")
    return results_dir / "runs" / "done"


# --- path escapes and --force on foreign folders ------------------------------------------------------


def test_run_ids_are_names_never_paths(tmp_path, results_dir, tiny_gemma_dir, capsys):
    # A medbench run outside results/runs/: before, `--run-id <its path> --force` deleted it.
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "run_config.json").write_text("{}")
    (victim / "thesis.txt").write_text("years of work")
    before = files_under(tmp_path)
    for run_id in (str(victim), "../../victim", ".", "..", "a/b", ".hidden", "x" * 129, ""):
        code, err = medbench(capsys, "eval", str(tiny_gemma_dir), *QUICK, "--run-id", run_id, "--force")
        assert code == 2, run_id
        assert (
            f"medbench eval: error: invalid run id {run_id!r}: a run id names a folder in results/runs/, so it "
            f"is letters, digits, '.', '_', '+' and '-' (not starting with '.'), at most 128 characters, never "
            f"a path" in err
        )
    assert files_under(tmp_path) == before


def test_force_never_deletes_a_folder_that_holds_no_run(results_dir, tiny_gemma_dir, capsys):
    notes = results_dir / "runs" / "notes"
    (notes / "cache").mkdir(parents=True)  # "cache" and "record.json" made a folder look like a run before
    (notes / "record.json").write_text("my own record")
    (notes / "thesis.txt").write_text("years of work")
    before = files_under(results_dir)
    code, err = medbench(capsys, "eval", str(tiny_gemma_dir), *QUICK, "--run-id", "notes", "--force")
    assert code == 2
    assert (
        f"--force would delete {notes}, which holds no medbench evaluation run; remove it yourself or choose "
        f"another name" in err
    )
    code, err = medbench(capsys, "eval", str(tiny_gemma_dir), *QUICK, "--run-id", "notes")
    assert code == 2
    assert (
        f"{notes} holds no medbench evaluation run (run_config.json is missing); remove it yourself or choose "
        f"another name" in err
    )
    assert files_under(results_dir) == before


# --- stale caches: weights, versions --------------------------------------------------------------------


def test_changed_weights_are_never_scored_from_an_old_cache(
    tmp_path, results_dir, tiny_gemma_dir, embedded_dir, capsys
):
    model = shutil.copytree(tiny_gemma_dir, tmp_path / "model")
    args = ["eval", str(model), *QUICK, "--run-id", "w"]
    assert medbench(capsys, *args)[0] == 0
    record = json.loads((results_dir / "runs" / "w" / "record.json").read_text())
    assert record["weights_fingerprint"]["model"]["files"]["model.safetensors"].split()[1].startswith("sha256:")
    sums = checksums.expected_sums()
    assert record["data_files"] == {name: sums[name][0] for name in ("medqa/dev.jsonl", "medqa/test.jsonl")}

    build_tiny(embedded_dir, model, seed=1)  # retrained in place: same files, same sizes, other values
    code, err = medbench(capsys, *args)
    assert code == 2
    assert (
        f"{results_dir / 'runs' / 'w'} holds answers cached from other inputs: the model weights changed "
        f"(model.safetensors). They would be scored as this run's: --force discards them and evaluates again "
        f"(or choose another --run-id)" in err
    )

    assert medbench(capsys, *args, "--force")[0] == 0
    record = json.loads((results_dir / "runs" / "w" / "record.json").read_text())
    assert record["responses"] == {"computed": 4, "from_cache": 0}

    config_path = results_dir / "runs" / "w" / "run_config.json"
    config = json.loads(config_path.read_text())
    config["identity"]["versions"]["transformers"] = "4.57.0"
    config_path.write_text(json.dumps(config))
    code, err = medbench(capsys, *args)
    assert code == 2 and "holds answers cached from other inputs: transformers was 4.57.0, now 5.24.0." in err


def test_one_value_in_one_layer_changes_the_fingerprint_and_refuses_the_cache(
    tmp_path, results_dir, tiny_gemma_dir, capsys
):
    """Every byte of every weight file is hashed: one value of one tensor in a middle layer, edited in place (same
    size, same header), is seen, and the run that cached the old model's answers is not resumed."""
    from safetensors.torch import load_file, save_file

    model = shutil.copytree(tiny_gemma_dir, tmp_path / "model")
    args = ["eval", str(model), *QUICK, "--run-id", "one-value"]
    assert medbench(capsys, *args)[0] == 0
    before = fingerprint.fingerprint(str(model))
    tensors = load_file(model / "model.safetensors")
    name = sorted(k for k in tensors if ".layers.1." in k and k.endswith("mlp.down_proj.weight"))[0]
    tensors[name][3, 5] += 1.0
    time.sleep(0.01)
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    after = fingerprint.fingerprint(str(model))
    assert fingerprint.changed_files(before, after) == ["model.safetensors"]
    code, err = medbench(capsys, *args)
    assert code == 2 and "the model weights changed (model.safetensors)" in err


def test_a_rehash_costs_a_stat_and_a_rewrite_is_seen(tmp_path, monkeypatch):
    """The hash cache remembers a file by size, mtime, ctime and inode: a second fingerprint reads nothing, and a
    rewrite that restores the old mtime still changes the ctime."""
    import os

    from medbench import hashing

    path = tmp_path / "model.safetensors"
    path.write_bytes(bytes(range(256)) * 1000)
    os.utime(path, ns=(1, 10**18))  # an mtime old enough not to be racy
    time.sleep(hashing.RACY_SECONDS + 0.1)
    first = fingerprint.fingerprint(str(tmp_path))
    reads = []
    monkeypatch.setattr(hashing, "file_sha256", lambda p: reads.append(p) or "x")
    assert fingerprint.fingerprint(str(tmp_path)) == first and reads == []
    path.write_bytes(bytes(reversed(range(256))) * 1000)
    os.utime(path, ns=(1, 10**18))
    assert fingerprint.fingerprint(str(tmp_path)) != first and reads == [path]


# --- tampered and truncated data -------------------------------------------------------------------------


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    root = tmp_path / "data"
    shutil.copytree(loader.data_dir(), root, ignore=shutil.ignore_patterns("hub"))
    monkeypatch.setenv("MEDBENCH_DATA", str(root))
    return root


def test_tampered_data_is_refused_before_the_model_loads(data_copy, results_dir, tiny_gemma_dir, capsys):
    test = data_copy / "medqa" / "test.jsonl"
    time.sleep(hashing.RACY_SECONDS + 0.1)  # a file just written is never trusted to the cache
    verify_splits([("medqa", None, "test")])  # its hash cached (by size, mtime, ctime, inode)
    assert str(test.resolve()) in json.loads((hashing.cache_dir() / hashing.CACHE_FILE).read_text())
    line = next(
        i
        for i, name in enumerate((data_copy / "SHA256SUMS").read_text().splitlines(), 1)
        if name.endswith("medqa/test.jsonl")
    )
    expected = checksums.expected_sums()["medqa/test.jsonl"][0]
    # An edited answer key, same size, and the old mtime put back: the cache must not vouch for it.
    stat = test.stat()
    text = test.read_text(encoding="utf-8")
    first = json.loads(text.split("\n", 1)[0])
    wrong = next(k for k in "ABCD" if k != first["answer_idx"])
    test.write_text(
        text.replace(f'"answer_idx": "{first["answer_idx"]}"', f'"answer_idx": "{wrong}"', 1), encoding="utf-8"
    )
    os.utime(test, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert test.stat().st_size == stat.st_size
    code, err = medbench(capsys, "eval", str(tiny_gemma_dir), *QUICK, "--run-id", "t")
    assert code == 2
    actual = hashing.file_sha256(test)
    assert (
        f"data file {test} has sha256 {actual}, but SHA256SUMS:{line} says {expected}: it changed since the "
        f"checksums were written. Restore it (git checkout data/) and check with `just data`" in err
    )
    assert not (results_dir / "runs" / "t").exists()


def test_a_file_and_its_checksum_line_edited_together_are_caught(data_copy, results_dir, tiny_gemma_dir, capsys):
    """data/SHA256SUMS agrees with the edited file, the list pinned in the package does not: `just data` refuses,
    and a run on it says data_pinned: false (the report marks it)."""
    test = data_copy / "medqa" / "test.jsonl"
    text = test.read_text(encoding="utf-8")
    first = json.loads(text.split("\n", 1)[0])
    wrong = next(k for k in "ABCD" if k != first["answer_idx"])
    test.write_text(text.replace(f'"answer_idx": "{first["answer_idx"]}"', f'"answer_idx": "{wrong}"', 1))
    sums = data_copy / "SHA256SUMS"
    new = hashing.file_sha256(test)
    sums.write_text(
        "\n".join(
            f"{new}  ./medqa/test.jsonl" if line.endswith("medqa/test.jsonl") else line
            for line in sums.read_text().splitlines()
        )
        + "\n"
    )
    code, err = medbench(capsys, "data")
    assert code == 2 and "medqa/test.jsonl is listed with sha256" in err and "changed together" in err
    assert medbench(capsys, "eval", str(tiny_gemma_dir), *QUICK, "--run-id", "p")[0] == 0
    record = json.loads((results_dir / "runs" / "p" / "record.json").read_text())
    assert record["data_pinned"] is False


def test_a_data_file_missing_from_or_extra_to_the_list_is_refused(data_copy, capsys):
    (data_copy / "medqa" / "extra.jsonl").write_text("{}\n")
    code, err = medbench(capsys, "data")
    assert code == 2 and "medqa/extra.jsonl: in" in err and "not in" in err
    (data_copy / "medqa" / "extra.jsonl").unlink()
    sums = data_copy / "SHA256SUMS"
    sums.write_text("".join(line + "\n" for line in sums.read_text().splitlines() if "dentist/test.csv" not in line))
    code, err = medbench(capsys, "data")
    assert code == 2 and "kormedmcqa/dentist/test.csv" in err


def test_training_verifies_its_data_before_it_claims_a_folder(data_copy, tmp_path, tiny_gemma_dir, monkeypatch):
    from trainers import sft
    from trainers.arguments import parse_args

    monkeypatch.setenv("MEDBENCH_CHECKPOINTS", str(tmp_path / "checkpoints"))
    valid = data_copy / "kormedmcqa" / "nurse" / "valid.csv"
    valid.write_bytes(valid.read_bytes()[:-200])  # cut at the end
    with pytest.raises(DataError, match=rf"data file {valid} has sha256 \w+, but SHA256SUMS:\d+ says \w+: it changed"):
        sft.train(parse_args([str(tiny_gemma_dir), "lora", "--mix", "korean"]))
    assert not (tmp_path / "checkpoints").exists()


def test_truncated_or_undecodable_data_names_file_and_line(data_copy):
    path = data_copy / "kormedmcqa" / "doctor" / "test.csv"
    raw = path.read_bytes()
    cut = raw.index("예방접종".encode()) + 1  # inside a Korean character
    path.write_bytes(raw[:cut])
    line = raw[:cut].count(b"\n") + 1
    with pytest.raises(
        DataError,
        match=rf"doctor/test\.csv:{line}: not valid UTF-8 \(byte {cut - 1} of {cut}\): the "
        rf"file is truncated or corrupt; restore it",
    ):
        load_rows("kormedmcqa", "doctor", "test")
    # Cut inside a quoted field: the row is incomplete, never read as a shorter one.
    path.write_bytes(raw[: raw.index(b',"') + 2])
    with pytest.raises(DataError, match=r"doctor/test\.csv:\d+: not valid CSV \(unexpected end of data\)"):
        load_rows("kormedmcqa", "doctor", "test")


# --- corrupt caches and records --------------------------------------------------------------------------


def test_corrupt_or_foreign_caches_are_named_with_their_remedy(done, tiny_gemma_dir, capsys):
    args = ["eval", str(tiny_gemma_dir), *QUICK, "--run-id", "done"]
    db = done / "cache" / response_cache.FILENAME
    with sqlite3.connect(db) as con:  # plain JSON text, never a pickle
        rows = con.execute("SELECT attr, typeof(value), value FROM responses").fetchall()
    assert len(rows) == 4 and all(a == "loglikelihood" and t == "text" for a, t, _ in rows)
    assert all(isinstance(json.loads(v)[0], float) and isinstance(json.loads(v)[1], bool) for _, _, v in rows)

    saved = db.read_bytes()
    db.write_bytes(b"this is not a database" * 100)
    code, err = medbench(capsys, *args)
    assert code == 2
    assert (
        f"{db}: not a usable medbench response cache (file is not a database); --force discards this run's "
        f"cached answers and starts it again" in err
    )

    db.write_bytes(saved)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE responses SET value = '\"__import__(os)\"'")
    code, err = medbench(capsys, *args)
    assert code == 2
    assert f"{db}: a cached loglikelihood response is not one ('\"__import__(os)\"'); --force discards" in err

    db.unlink()
    legacy = done / "cache" / "responses_rank0.db"
    legacy.write_bytes(b"pickles")
    code, err = medbench(capsys, *args)
    assert code == 2
    assert (
        f"{legacy}: an lm-eval response cache from an older medbench, which stores pickles (they run code when "
        f"read), so medbench never opens it; --force discards this run's cached answers and starts it again" in err
    )

    # A folder with no cached answers (a committed record) has nothing to go stale: it is evaluated again.
    legacy.unlink()
    config = json.loads((done / "run_config.json").read_text())
    del config["identity"]
    (done / "run_config.json").write_text(json.dumps(config))
    assert medbench(capsys, *args)[0] == 0
    assert json.loads((done / "record.json").read_text())["responses"] == {"computed": 4, "from_cache": 0}


def test_finished_runs_keep_their_record_and_corrupt_ones_are_named(done, tiny_gemma_dir, capsys):
    args = ["eval", str(tiny_gemma_dir), *QUICK, "--run-id", "done"]
    record = done / "record.json"
    written = record.read_bytes()
    code, err = medbench(capsys, *args)
    assert code == 0 and record.read_bytes() == written  # the timings of the run that computed the answers
    assert f"nothing computed; {record} is left as the run that computed these answers wrote it" in err

    record.write_bytes(written[: len(written) // 2])  # a record cut short: rewritten from the cache
    assert medbench(capsys, *args)[0] == 0
    assert json.loads(record.read_text())["responses"] == {"computed": 0, "from_cache": 4}

    config = done / "run_config.json"
    config.write_text(config.read_text()[:50])
    code, err = medbench(capsys, *args)
    assert code == 2 and f"{config}: not valid JSON (" in err and "); --force starts the run again" in err


# --- numbers, settings and model directories: refused before anything loads ------------------------------

REFUSED = [
    # Numbers out of range are refused as the command line is parsed (medbench/options.py, shared by every command).
    (["--sample", "0"], "argument --sample: must be a whole number >= 1, got 0"),
    (["--limit", "0"], "argument --limit: must be a whole number >= 1, got 0"),
    (["--limit", "-3"], "argument --limit: must be a whole number >= 1, got -3"),
    (["--batch-size", "0"], "argument --batch-size: must be a whole number >= 1, got 0"),
    (["--gpus", "0"], "argument --gpus: must be a whole number >= 1, got 0"),
    (
        ["--sample", "2", "--limit", "2"],
        "--sample and --limit exclude each other: --limit takes the first N questions "
        "of each task, --sample a seeded random N; choose one",
    ),
    (
        ["--tasks", "medqa", "--sample", "5000"],
        "--sample 5000 is more than the 1273 questions of medqa_usmle's test "
        "set: it would run every question under a sample's name; use --sample "
        "1273 or less, or leave --sample out to run every question",
    ),
    (
        ["--tasks", "kormedmcqa", "--limit", "500"],
        "--limit 500 is more than the 435 questions of kormedmcqa_doctor's test set",
    ),
    (["--set", "batch_size=0"], "setting batch_size must be a whole number >= 1, got 0"),
    (["--set", "prompt_max_tokens=0"], "setting prompt_max_tokens must be a whole number >= 1, got 0"),
    (["--set", "max_gen_toks=-1"], "setting max_gen_toks must be a whole number >= 1, got -1"),
    (["--set", "repetition_penalty=0"], "setting repetition_penalty must be > 0 (1.0: none), got 0.0"),
    (["--set", "seed=-1"], "setting seed must be a whole number >= 0, got -1"),
    (["--set", "dtype=float8"], "setting dtype must be one of auto, float32, bfloat16, float16, got 'float8'"),
    (["--set", "device=gpu"], "setting device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    (
        ["--set", "attn_implementation=flash"],
        "setting attn_implementation must be one of auto, eager, sdpa, "
        "flash_attention_2, flash_attention_3, flex_attention, got 'flash'",
    ),
    (
        ["--set", "attn_implementation=flash_attention_2"],
        "setting attn_implementation=flash_attention_2 needs a CUDA "
        "GPU, and this run is on cpu; use sdpa or eager (or auto)",
    ),
]


def test_numbers_and_settings_are_refused_before_the_load(results_dir, tiny_gemma_dir, capsys):
    import torch

    cases = list(REFUSED)
    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        cases.append((["--set", "device=cuda"], f"setting device=cuda, but {why}; use device=cpu (or auto)"))
    for extra, message in cases:
        start = time.perf_counter()
        code, err = medbench(capsys, "eval", str(tiny_gemma_dir), *extra)
        assert code == 2 and f"medbench eval: error: {message}" in err, (extra, err)
        assert time.perf_counter() - start < 20, extra  # nothing loaded
    assert files_under(results_dir) <= {"runs"}  # no run claimed


def test_model_directories_are_checked_before_the_load(tmp_path, results_dir, tiny_gemma_dir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_config = shutil.copytree(tiny_gemma_dir, tmp_path / "no-config")
    (no_config / "config.json").unlink()
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    shutil.copy(tiny_gemma_dir / "config.json", no_tokenizer)
    shutil.copy(tiny_gemma_dir / "model.safetensors", no_tokenizer)
    cases = [
        (str(tmp_path / "nope"), f"model directory {tmp_path / 'nope'} does not exist"),
        ("./models/nope", "model directory ./models/nope does not exist"),
        (
            str(empty),
            f"model directory {empty} is empty: a model directory holds config.json, the weights and the tokenizer",
        ),
        (str(no_config), f"model directory {no_config} has no config.json"),
        (
            str(no_tokenizer),
            f"model directory {no_tokenizer} has no tokenizer (none of tokenizer.json, "
            f"tokenizer.model, vocab.json, vocab.txt, tokenizer.tiktoken)",
        ),
        (str(tiny_gemma_dir / "config.json"), f"{tiny_gemma_dir / 'config.json'} is a file, not a model directory"),
    ]
    for model, message in cases:
        code, err = medbench(capsys, "eval", model, *QUICK)
        assert code == 2 and f"medbench eval: error: {message}" in err, (model, err)
    assert files_under(results_dir) <= {"runs"}


# --- processes: concurrent runs, unwritable and full folders ---------------------------------------------


@pytest.mark.slow
def test_a_second_run_on_a_busy_id_is_refused(results_dir, tiny_gemma_dir, capsys):
    # The first run holds its id from its checks to its record: the model load and 5 questions, seconds.
    args = ["eval", str(tiny_gemma_dir), "--tasks", "medqa", "--limit", "5", "--batch-size", "1", "--run-id", "busy"]
    first = cli(*args, results_dir=results_dir)
    lock = results_dir / "runs" / ".busy.lock"
    deadline = time.time() + 240
    while not lock.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert lock.exists(), first.communicate()
    code, err = medbench(capsys, *args, "--force")  # --force included: it must not delete a run in progress
    assert code == 2
    assert (
        f"{results_dir / 'runs' / 'busy'} is in use by another medbench evaluation run (pid {first.pid}); wait "
        f"for it to finish, or choose another name" in err
    )
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    record = json.loads((results_dir / "runs" / "busy" / "record.json").read_text())
    assert record["responses"] == {"computed": 20, "from_cache": 0} and not lock.exists()


def _without_root_privileges() -> tuple[str, ...]:
    """A command prefix under which root obeys file permissions (as every other user does)."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("root ignores file permissions, and setpriv is not installed")
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner")


@pytest.mark.slow
def test_an_unwritable_results_folder_is_refused_cleanly(results_dir, tiny_gemma_dir):
    results_dir.chmod(0o555)
    try:
        proc = cli(
            "eval",
            str(tiny_gemma_dir),
            *QUICK,
            "--run-id",
            "ro",
            results_dir=results_dir,
            prefix=_without_root_privileges(),
        )
        _, err = proc.communicate(timeout=300)
    finally:
        results_dir.chmod(0o755)
    assert proc.returncode == 2, err
    assert (
        f"medbench eval: error: cannot write {results_dir / 'runs'}: Permission denied; free space or make "
        f"{results_dir} writable (MEDBENCH_RESULTS and MEDBENCH_CHECKPOINTS move medbench's folders)" in err
    )
    assert files_under(results_dir) == set()


def _file_size_limit(n_bytes: int):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))

    return limit


@pytest.mark.slow
def test_a_disk_full_at_the_start_leaves_no_claim(results_dir, tiny_gemma_dir):
    """No file may grow past 4 KiB: run_config.json fits, the response cache does not."""
    proc = cli(
        "eval",
        str(tiny_gemma_dir),
        *QUICK,
        "--run-id",
        "full",
        results_dir=results_dir,
        preexec_fn=_file_size_limit(4096),
    )
    _, err = proc.communicate(timeout=300)
    db = results_dir / "runs" / "full" / "cache" / response_cache.FILENAME
    assert proc.returncode == 2, err
    assert (
        f"medbench eval: error: cannot write {db}: disk I/O error (is the disk full?); free space or make "
        f"{db.parent} writable" in err
    )
    assert files_under(results_dir) == {"runs"}


def test_a_disk_full_at_the_end_loses_no_answer(results_dir, tiny_gemma_dir, capsys, monkeypatch):
    """lm-eval's results.json cannot be written: the error names it, no file is half-written, the answers stay."""
    import errno

    write_text = Path.write_text

    def full(self, *args, **kwargs):
        if self.name.startswith(".results.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_text(self, *args, **kwargs)

    args = ["eval", str(tiny_gemma_dir), *QUICK, "--run-id", "end"]
    run_dir = results_dir / "runs" / "end"
    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", full)
        code, err = medbench(capsys, *args)
    assert code == 2
    assert (
        f"medbench eval: error: cannot write {run_dir / 'results.json'}: No space left on device; free space "
        f"or make {run_dir} writable" in err
    )
    assert not (run_dir / "record.json").exists() and not list(results_dir.rglob("*.tmp"))
    assert response_cache.count_rows(run_dir / "cache" / response_cache.FILENAME) == 4
    assert medbench(capsys, *args)[0] == 0
    record = json.loads((run_dir / "record.json").read_text())
    assert record["responses"] == {"computed": 0, "from_cache": 4}


def test_run_lock_is_exclusive_and_leaves_nothing(tmp_path):
    run_dir = tmp_path / "runs" / "x"
    busy = rf"is in use by another medbench evaluation run \(pid {os.getpid()}\)"
    with (
        io.run_lock(run_dir, "evaluation run"),
        pytest.raises(io.RecordError, match=busy),
        io.run_lock(run_dir, "evaluation run"),
    ):
        pass
    assert list((tmp_path / "runs").iterdir()) == []


# --- every command: the same checked argument types as eval, refused as the command line is parsed -----------

PARSE_REFUSED = [
    (["consistency", "gemma3-270m", "--sample", "0"], "argument --sample: must be a whole number >= 1, got 0"),
    (["consistency", "gemma3-270m", "--limit", "-5"], "argument --limit: must be a whole number >= 1, got -5"),
    (["consistency", "gemma3-270m", "--batch-size", "0"], "argument --batch-size: must be a whole number >= 1, got 0"),
    (["eval", "gemma3-270m", "--limit", "-5"], "argument --limit: must be a whole number >= 1, got -5"),
    (["demo", "--sample", "0"], "argument --sample: must be a whole number >= 1, got 0"),
    (["suite", "--limit", "-1"], "argument --limit: must be a whole number >= 1, got -1"),
    (["suite", "--gpus", "0"], "argument --gpus: must be a whole number >= 1, got 0"),
    (["suite", "--shard", "4/4"], "argument --shard: expected I/N with 0 <= I < N, e.g. 0/4; got '4/4'"),
    (["bench", "eval", "--limit", "0"], "argument --limit: must be a whole number >= 1, got 0"),
    (["bench", "eval", "--study-limit", "-1"], "argument --study-limit: must be a whole number >= 0, got -1"),
    (["bench", "eval", "--batch-size", "many"], "argument --batch-size: expected a whole number >= 1, got 'many'"),
    (["bench", "eval", "--slots", "0"], "argument --slots: must be a whole number >= 1 or auto, got '0'"),
    (["bench", "eval", "--slots", "many"], "argument --slots: must be a whole number >= 1 or auto, got 'many'"),
    (["bench", "quant", "--repeats", "0"], "argument --repeats: must be a whole number >= 1, got 0"),
    (["bench", "train", "--steps", "-3"], "argument --steps: must be a whole number >= 1, got -3"),
    (["train", "gemma3-270m", "lora", "--max-steps", "0"], "argument --max-steps: must be a whole number >= 1, got 0"),
    (
        ["quantize-awq", "m", "--source", "s", "--samples", "0"],
        "argument --samples: must be a whole number >= 1, got 0",
    ),
    (["merge"], "the following arguments are required: DIR"),
    (["data", "--from-hub", "--limit", "3"], "unrecognized arguments: --limit 3"),
]


@pytest.mark.parametrize("argv, message", PARSE_REFUSED, ids=[" ".join(a) for a, _ in PARSE_REFUSED])
def test_every_command_refuses_a_bad_number_as_it_parses(argv, message, capsys, monkeypatch):
    """Before: `consistency --sample 0` ran the whole exam and a negative --limit crashed after the model load."""
    from medbench import cli

    module = cli._module(argv[0])
    monkeypatch.setattr(module, "run", lambda args: pytest.fail(f"{argv[0]} ran with {args}"))
    code, err = medbench(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err  # one line: no usage screen, no traceback
    assert message in lines[0] and lines[0].startswith("medbench") and "error: " in lines[0]


def test_refusals_after_parsing_come_before_any_load_in_every_command(tmp_path, capsys, monkeypatch):
    """What parsing cannot see alone (two options together, a missing folder) is refused in one line before a model
    or a process is asked for."""
    import subprocess as sp

    from medbench.eval import consistency, runner

    monkeypatch.setattr(consistency, "check_consistency", lambda *a, **k: pytest.fail("consistency loaded"))
    monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("eval loaded"))
    monkeypatch.setattr(sp, "call", lambda *a, **k: pytest.fail("a process started"))
    cases = [
        (
            ["consistency", "gemma3-270m", "--limit", "2", "--sample", "2"],
            "medbench consistency: error: --limit and --sample exclude each other",
        ),
        (["merge", str(tmp_path / "nowhere")], f"medbench merge: error: {tmp_path / 'nowhere'}: no such folder"),
        (
            ["eval", "gemma3-270m", "--num-machines", "2"],
            "medbench eval: error: a run over several machines (--num-machines > 1) needs --main-process-ip",
        ),
    ]
    for argv, message in cases:
        code, err = medbench(capsys, *argv)
        assert code == 2 and err.strip().startswith(message) and len(err.strip().splitlines()) == 1, (argv, err)


# --- interruptions: SIGKILL and Ctrl-C keep every answer written; a resume computes only the rest --------------


def _interrupt(args: list[str], results_dir: Path, run_id: str, at_rows: int, sig) -> tuple[int, str, int]:
    """`medbench eval ARGS` as its own process, sent `sig` once its response cache holds `at_rows` answers (0: as
    soon as the cache exists, before the first answer). Returns (exit status, stderr, answers in the cache)."""
    run_dir = results_dir / "runs" / run_id
    db = run_dir / "cache" / response_cache.FILENAME
    proc = cli(*args, "--run-id", run_id, "--quiet", results_dir=results_dir)
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline:
        if db.exists() and response_cache.count_rows(db) >= at_rows:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before it was interrupted: {proc.communicate()}"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, response_cache.count_rows(db)


def _resumed_equals_uninterrupted(capsys, args: list[str], run_dir: Path, kept: int, total: int) -> None:
    """The same command again: it computes only what the interruption left, and every answer equals a run that was
    never interrupted."""
    from medbench.records.compare import compare_answers

    capsys.readouterr()
    assert main(["eval", *args, "--run-id", run_dir.name]) == 0
    out = capsys.readouterr().out
    record = json.loads((run_dir / "record.json").read_text())
    assert record["responses"] == {"computed": total - kept, "from_cache": kept}
    assert f"answers computed {total - kept}, from the cache {kept}" in out  # what the user reads
    assert main(["eval", *args, "--run-id", "uninterrupted"]) == 0
    clean = json.loads((run_dir.parent / "uninterrupted" / "record.json").read_text())
    same = compare_answers(run_dir.parent / "uninterrupted", run_dir)
    assert same["questions"] == record["tasks"][0]["n"] and same["order_identical"], same
    assert same["same_answer"] == same["same_output"] == same["questions"], same
    assert same["max_abs_score_difference"] == 0.0, same
    assert [t["accuracy"] for t in record["tasks"]] == [t["accuracy"] for t in clean["tasks"]]


@pytest.mark.slow
def test_a_killed_mc_run_keeps_its_answers_and_resumes_only_the_rest(results_dir, tiny_gemma_dir, capsys):
    """SIGKILL mid-task: every scored batch is in the cache (before, a task's answers were written when it ended)."""
    args = [str(tiny_gemma_dir), "--tasks", "medqa", "--limit", "40", "--batch-size", "1"]
    total = 40 * 4  # one loglikelihood per answer letter
    code, _, kept = _interrupt(["eval", *args], results_dir, "killed-mc", 12, signal.SIGKILL)
    run_dir = results_dir / "runs" / "killed-mc"
    assert code == -signal.SIGKILL and 12 <= kept < total, kept
    assert (run_dir / "run_config.json").exists() and not (run_dir / "record.json").exists()
    _resumed_equals_uninterrupted(capsys, args, run_dir, kept, total)


@pytest.mark.slow
def test_a_killed_gen_run_keeps_its_answers_and_resumes_only_the_rest(results_dir, tiny_gemma_dir, capsys):
    """SIGKILL mid-generation: each finished generation is in the cache, the rest is generated on resume."""
    args = [str(tiny_gemma_dir), "--mode", "gen", "--tasks", "medqa", "--limit", "6", "--batch-size", "1"]
    args += ["--set", "max_gen_toks=8"]
    code, _, kept = _interrupt(["eval", *args], results_dir, "killed-gen", 2, signal.SIGKILL)
    run_dir = results_dir / "runs" / "killed-gen"
    assert code == -signal.SIGKILL and 2 <= kept < 6, kept
    assert (run_dir / "run_config.json").exists() and not (run_dir / "record.json").exists()
    _resumed_equals_uninterrupted(capsys, args, run_dir, kept, 6)


@pytest.mark.slow
def test_ctrl_c_never_deletes_the_run_folder_and_says_how_to_resume(results_dir, tiny_gemma_dir, capsys, monkeypatch):
    """Ctrl-C while the model loads (no answer yet: before, the folder was deleted) and SIGINT mid-task: exit status
    130, one line saying what was kept, no traceback; the folder and its answers stay, and the same command resumes."""
    from medbench.eval import runner

    args = [str(tiny_gemma_dir), "--tasks", "medqa", "--limit", "40", "--batch-size", "1"]
    run_dir = results_dir / "runs" / "ctrl-c"

    def interrupted_load(*a, **k):
        raise KeyboardInterrupt  # what Ctrl-C raises in the middle of the load

    with monkeypatch.context() as m:
        m.setattr(runner, "load", interrupted_load)
        code, err = medbench(capsys, "eval", *args, "--run-id", "ctrl-c")
    assert code == 130 and err.strip() == (
        f"medbench eval: interrupted: no answer computed yet; {run_dir} is kept, and the same command starts it"
    )
    assert sorted(files_under(run_dir)) == ["cache", "cache/responses.sqlite", "run_config.json"]

    code, err, kept = _interrupt(["eval", *args], results_dir, "ctrl-c", 12, signal.SIGINT)
    assert code == 130 and 12 <= kept < 40 * 4 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"medbench eval: interrupted: {kept} answer(s) kept in {run_dir}; the same command resumes the run from them"
    )
    assert (run_dir / "run_config.json").exists() and not (run_dir / "record.json").exists()

    assert main(["eval", *args, "--run-id", "ctrl-c"]) == 0
    record = json.loads((run_dir / "record.json").read_text())
    assert record["responses"] == {"computed": 40 * 4 - kept, "from_cache": kept}


# --- run ids: long model paths with the same tail never share one ---------------------------------------------


def test_long_model_paths_with_the_same_tail_get_their_own_run_ids(tmp_path, results_dir, tiny_gemma_dir, capsys):
    """Before: the last 128 characters of the path named the run, two such models shared it, and the suggested
    --force deleted the other model's finished run."""
    from medbench.eval.request import RunRequest, default_run_id

    tail = "checkpoints/" + "gemma3-270m-korean-medical-sft-lr1e-4-epochs3-seed42-" * 3 + "final"
    first = shutil.copytree(tiny_gemma_dir, tmp_path / "team-a" / tail)
    second = shutil.copytree(tiny_gemma_dir, tmp_path / "team-b" / tail)
    ids = [default_run_id(RunRequest(model=str(m), tasks=["medqa"], limit=1), "mc") for m in (first, second)]
    assert ids[0] != ids[1] and all(io.check_run_id(i) == i and len(i) <= 128 for i in ids)
    assert ids[0][:-9] == ids[1][:-9] and ids[0].startswith("gemma3-270m-korean-medical-sft")  # readable prefix

    for model in (first, second):
        code, err = medbench(capsys, "eval", str(model), *QUICK)
        assert code == 0, err
    assert sorted(p.name for p in (results_dir / "runs").iterdir()) == sorted(ids)
    records = [json.loads((results_dir / "runs" / i / "record.json").read_text()) for i in ids]
    assert [r["model"] for r in records] == [str(first), str(second)]
    assert all(r["responses"] == {"computed": 4, "from_cache": 0} for r in records)  # neither answered from the other
