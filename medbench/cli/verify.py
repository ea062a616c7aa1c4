"""`medbench verify [RECORD…]`: each record checked against the data, code and weights it names (records/verify.py)."""

from __future__ import annotations

from dataclasses import dataclass

from medbench.options import add_arguments, arg, from_args

HELP = "check records against the data, code and weights they name (default: every record in results/)"


@dataclass
class VerifyArguments:
    commit: str | None = arg(None, help="compare each record's code with this commit instead of the one it names")
    tree: bool = arg(False, help="compare each record's code with the working tree instead")
    strict: bool = arg(False, help="also fail on a record without full provenance (legacy)")


def make_parser(sub) -> None:
    p = sub.add_parser("verify", help=HELP, description=__doc__)
    p.add_argument("records", nargs="*", metavar="RECORD", help="record files, run folders or results folders")
    add_arguments(p, VerifyArguments)


def run(args) -> int:
    from pathlib import Path

    from medbench.errors import MedbenchError
    from medbench.paths import REPO_ROOT, published_results_dir
    from medbench.records.verify import OK, record_files, verify

    opts = from_args(VerifyArguments, args)
    files = record_files([Path(p) for p in args.records] or [published_results_dir()])
    if not files:
        raise MedbenchError(f"no records in {', '.join(args.records) or published_results_dir()}")
    failed = legacy = 0
    for path in files:
        result = verify(path, opts.commit, opts.tree)
        try:
            shown = path.resolve().relative_to(REPO_ROOT)
        except ValueError:
            shown = path
        state = "FAIL" if result.failed else "ok" if result.full else "legacy"
        failed += result.failed
        legacy += not result.full and not result.failed
        print(f"{state:<6} {shown}")
        for check in result.checks:
            if check.status != OK:
                print(f"       {check.name}: {check.status}{f' ({check.detail})' if check.detail else ''}")
    print(f"{len(files)} record(s): {failed} failed, {legacy} legacy, {len(files) - failed - legacy} full")
    return 1 if failed or (opts.strict and legacy) else 0
