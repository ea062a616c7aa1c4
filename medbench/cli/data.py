"""`medbench data`: verify the vendored data's checksums and validate every row."""

from __future__ import annotations

from dataclasses import dataclass

from medbench.options import add_arguments, arg, from_args

HELP = "verify data/SHA256SUMS and validate every row of every split"


@dataclass
class DataArguments:
    from_hub: bool = arg(False, help="also fetch the hub copies into data/hub/ (needs network)")


def make_parser(sub) -> None:
    add_arguments(sub.add_parser("data", help=HELP, description=HELP), DataArguments)


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from medbench.data import loader
    from medbench.data.checksums import verify_checksums

    opts = from_args(DataArguments, args)
    console = Console()
    if opts.from_hub:
        from medbench.data.hub import fetch_from_hub

        for path, n in fetch_from_hub().items():
            console.print(f"{path}: {n} rows")
    checked = verify_checksums()
    console.print(
        f"sha256 OK for {len(checked)} vendored files: every one listed, none unlisted, the list the package pins"
    )
    table = Table(title="rows (validated)")
    for col in ("dataset", "exam", "split", "rows"):
        table.add_column(col)
    for exam in loader.KORMEDMCQA_EXAMS:
        for split in loader.KORMEDMCQA_SPLITS:
            table.add_row("kormedmcqa", exam, split, str(len(loader.load_rows("kormedmcqa", exam, split))))
    for split in loader.MEDQA_SPLITS:
        try:
            table.add_row("medqa", "usmle", split, str(len(loader.load_rows("medqa", None, split))))
        except loader.DataError as e:
            table.add_row("medqa", "usmle", split, "— (hub only: --from-hub)" if split == "train" else f"— ({e})")
    console.print(table)
    return 0
