"""medbench command line: `python -m harness.cli {eval,demo,data,tasks-readme}` (the justfile calls these)."""

from __future__ import annotations

import argparse
import sys

from harness.settings import EvalSettings, parse_assignments

DEMO_PER_TASK = 30  # five tasks x 30 questions: about five minutes on 2 CPU cores, conversion included


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("mc", "gen"), help="mc: answer-letter log-likelihood; gen: greedy generation")
    p.add_argument("--tasks", default="", help="comma-separated: kormedmcqa_doctor,…,kormedmcqa,medqa_usmle,medqa")
    p.add_argument("--limit", type=int, help="first N questions of each task (smoke runs)")
    p.add_argument("--sample", type=int, help="a seeded random sample of N questions per task")
    p.add_argument("--run-id", help="results/runs/<run-id>; re-running an id resumes it")
    p.add_argument("--force", action="store_true", help="discard the run id's cached answers and start again")
    p.add_argument("--batch-size", type=int, help="questions per forward pass (default 8)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"an evaluation setting; known: {', '.join(EvalSettings.__dataclass_fields__)}")


def _settings(args) -> EvalSettings:
    overrides = parse_assignments(args.set)
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    return EvalSettings.from_overrides(overrides)


def _request(args, model: str, variant: str, prompt: str):
    from harness.runner import RunRequest

    return RunRequest(model=model, variant=variant, prompt=prompt, mode=args.mode,
                      tasks=[t for t in args.tasks.split(",") if t], limit=args.limit, sample=args.sample,
                      run_id=args.run_id, force=args.force, settings=_settings(args))


def print_table(record: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{record['model']} · {record['variant']} · {record['prompt']} · {record['mode']}")
    for col in ("task", "n", "accuracy", "95% CI", "invalid", "truncated"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for t in record["tasks"]:
        table.add_row(t["task"].removeprefix("medbench_"), str(t["n"]), f"{t['accuracy']:.3f}",
                      f"{t['ci95_low']:.3f}–{t['ci95_high']:.3f}", str(t["invalid"]), str(t["truncated_prompts"]))
    if record.get("kormedmcqa_average") is not None:
        table.add_row("kormedmcqa (weighted avg)", "", f"{record['kormedmcqa_average']:.3f}", "", "", "")
    console = Console()
    console.print(table)
    timing = record["timing"]
    console.print(f"load {timing['load_seconds']} s · eval {timing['eval_seconds']} s · "
                  f"{timing['questions_per_second']} questions/s · peak memory {record['memory']['peak_gib']} GiB · "
                  f"answers computed {record['responses']['computed']}, from cache {record['responses']['from_cache']}")
    console.print(f"record: results/runs/{record['run_id']}/record.json")


def cmd_eval(args) -> None:
    from harness.runner import run

    print_table(run(_request(args, args.model, args.variant, args.prompt)))


def cmd_demo(args) -> None:
    from harness.runner import run

    if args.sample is None:
        args.sample = DEMO_PER_TASK
    print_table(run(_request(args, "gemma3-270m", "base", "zeroshot")))


def cmd_data(args) -> None:
    from rich.console import Console
    from rich.table import Table

    from harness import data

    console = Console()
    if args.from_hub:
        from harness.hub import fetch_from_hub

        for path, n in fetch_from_hub().items():
            console.print(f"{path}: {n} rows")
    checked = data.verify_checksums()
    console.print(f"sha256 OK for {len(checked)} vendored files")
    table = Table(title="rows (validated)")
    for col in ("dataset", "exam", "split", "rows"):
        table.add_column(col)
    for exam in data.KORMEDMCQA_EXAMS:
        for split in data.KORMEDMCQA_SPLITS:
            table.add_row("kormedmcqa", exam, split, str(len(data.load_rows("kormedmcqa", exam, split))))
    for split in data.MEDQA_SPLITS:
        try:
            table.add_row("medqa", "usmle", split, str(len(data.load_rows("medqa", None, split))))
        except data.DataError as e:
            table.add_row("medqa", "usmle", split, f"— ({e})" if split != "train" else "— (hub only: --from-hub)")
    console.print(table)


def cmd_tasks_readme(args) -> None:
    from harness.prompts import README_PATH, render_readme

    text = render_readme()
    if args.check:
        if README_PATH.read_text() != text:
            sys.exit(f"{README_PATH} is out of date: run `just tasks-readme`")
        return
    README_PATH.write_text(text)
    print(f"wrote {README_PATH}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("eval", help="evaluate MODEL [VARIANT] [PROMPT] on MedQA and KorMedMCQA")
    p.add_argument("model", help="alias (harness/models.yaml), family alias, local directory or hub id")
    p.add_argument("variant", nargs="?", default="base")
    p.add_argument("prompt", nargs="?", default="zeroshot", help="zeroshot | fewshot | cot")
    _add_run_options(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="the embedded Gemma 3 270M on a seeded sample of every task")
    _add_run_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("data", help="verify the vendored data's checksums and validate every row")
    p.add_argument("--from-hub", action="store_true", help="also fetch the hub copies (needs network)")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("tasks-readme", help="regenerate tasks/README.md from the task YAMLs")
    p.add_argument("--check", action="store_true", help="fail if tasks/README.md is out of date")
    p.set_defaults(func=cmd_tasks_readme)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from harness.data import DataError
    from harness.embedded import SanityCheckError
    from harness.registry import RegistryError
    from harness.runner import RunError
    from harness.settings import SettingsError
    from harness.variants import VariantError

    try:
        args.func(args)
    except (DataError, RegistryError, RunError, SettingsError, VariantError, SanityCheckError, FileNotFoundError) as e:
        sys.exit(f"medbench: error: {e}")


if __name__ == "__main__":
    main()
