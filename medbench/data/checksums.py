"""The vendored data's checksums: `just data` checks every file in full; each evaluation and training checks the files
it reads (verify_splits), through the hash cache (medbench/hashing.py) so a run pays milliseconds.

Two lists: data/SHA256SUMS beside the files, and the same list pinned in the package
(medbench/data/pinned_sha256sums.txt). A file edited together with its line in data/SHA256SUMS verifies against the
first and not the second: such data is refused by `just data`, and a run on it records `data_pinned: false`, which
the report marks.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from medbench.data.loader import DataError, Source, hub_dir, source_path
from medbench.hashing import HashCache, file_sha256
from medbench.paths import data_dir

PINNED = Path(__file__).with_name("pinned_sha256sums.txt")
# Folders under data/ that hold no vendored file: `just data --from-hub` copies, and the provenance notes.
NOT_VENDORED = ("hub",)
DOCUMENTS = ("SHA256SUMS", "PROVENANCE.md")


def parse_sums(path: Path) -> dict[str, tuple[str, int]]:
    """{file relative to the data folder: (sha256, line)} of a sha256sum listing."""
    if not path.exists():
        raise DataError(f"{path} is missing; restore the vendored data (git checkout data/) and run `just data`")
    out = {}
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                expected, name = line.split(maxsplit=1)
            except ValueError:
                raise DataError(f"{path}:{line_no}: not a `SHA256  FILE` line") from None
            out[name.strip().removeprefix("./")] = (expected, line_no)
    return out


def expected_sums(root: Path | None = None) -> dict[str, tuple[str, int]]:
    """{file relative to the data folder: (sha256, line of SHA256SUMS)}."""
    return parse_sums((root or data_dir()) / "SHA256SUMS")


def pinned_sums() -> dict[str, str]:
    return {name: sha for name, (sha, _) in parse_sums(PINNED).items()}


def vendored_files(root: Path) -> list[str]:
    """Every file under the data folder that should be listed (hub copies and the two documents aside)."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] not in NOT_VENDORED and p.name not in DOCUMENTS
    )


def verify_checksums(root: Path | None = None) -> list[str]:
    """Check every file listed in data/SHA256SUMS in full, that no vendored file is unlisted, and that the list is the
    one pinned in the package; returns the files checked, raises on any difference."""
    root = root or data_dir()
    sums = root / "SHA256SUMS"
    listed = expected_sums(root)
    unlisted = sorted(set(vendored_files(root)) - set(listed))
    if unlisted:
        raise DataError(
            f"{', '.join(unlisted)}: in {root} but not in {sums}; medbench reads only data it can verify: remove the "
            f"file, or list it (and pin it in {PINNED.name}) if it belongs to the benchmark"
        )
    pinned = pinned_sums()
    checked = []
    for name, (expected, line_no) in listed.items():
        path = root / name
        if not path.exists():
            raise DataError(f"{sums}:{line_no}: {name} is missing")
        actual = file_sha256(path)  # in full, never from the hash cache: the check that trusts nothing
        if actual != expected:
            raise DataError(f"{sums}:{line_no}: {name} has sha256 {actual}, expected {expected}: the file changed")
        if pinned.get(name) != expected:
            raise DataError(
                f"{sums}:{line_no}: {name} is listed with sha256 {expected}, but the package pins "
                f"{pinned.get(name, 'no such file')}: the file and its checksum line were changed together. "
                f"Restore the vendored data (git checkout data/)"
            )
        checked.append(name)
    if missing := sorted(set(pinned) - set(listed)):
        raise DataError(f"{sums}: {', '.join(missing)} missing from the list the package pins; restore data/")
    return checked


def verify_splits(splits: Iterable[tuple[str, str | None, str]], prefer_hub: bool | None = None) -> dict[str, str]:
    """{file relative to the data folder: sha256} of the files these (dataset, exam, split) are read from.

    Each vendored file is checked against SHA256SUMS and a mismatch refused, naming the file and `just data`; a
    file SHA256SUMS does not list is refused too. Hub copies (data/hub/, written by `just data --from-hub`) are in no
    list: they are hashed, so the record still says exactly what was read (data_matches_pinned says whether every
    file read is one the package pins).
    """
    import os

    if prefer_hub is None:
        prefer_hub = os.environ.get("MEDBENCH_PREFER_HUB") == "1"
    root = data_dir()
    paths = []
    for dataset, exam, split in splits:
        path = source_path(Source(dataset, exam if dataset == "kormedmcqa" else None, split), prefer_hub)
        if path not in paths:
            paths.append(path)
    expected = None
    cache = HashCache()
    out = {}
    for path in paths:
        name = _relative(path, root)
        actual = cache.sha256(path)
        if not path.is_relative_to(hub_dir()):
            expected = expected if expected is not None else expected_sums(root)
            if name not in expected:
                raise DataError(
                    f"{path} is not listed in {root / 'SHA256SUMS'}: medbench reads only data it can "
                    f"verify; restore the vendored data (git checkout data/) and run `just data`"
                )
            want, line_no = expected[name]
            if actual != want:
                raise DataError(
                    f"data file {path} has sha256 {actual}, but SHA256SUMS:{line_no} says {want}: it "
                    f"changed since the checksums were written. Restore it (git checkout data/) and "
                    f"check with `just data`"
                )
        out[name] = actual
    cache.save()
    return out


def data_matches_pinned(files: dict[str, str]) -> bool:
    """Whether every file a run read is a vendored file with the sha256 the package pins."""
    pinned = pinned_sums()
    return bool(files) and all(pinned.get(name) == sha for name, sha in files.items())


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
