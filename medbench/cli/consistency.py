"""`medbench consistency MODEL`: our 5-shot KorMedMCQA task beside lm-eval's built-in kormedmcqa."""

from __future__ import annotations

from dataclasses import dataclass

from medbench.data.loader import KORMEDMCQA_EXAMS
from medbench.errors import MedbenchError
from medbench.options import add_arguments, arg, from_args, positive_int
from medbench.overrides import parse_assignments
from medbench.settings import EvalSettings

HELP = "our 5-shot KorMedMCQA vs lm-eval's built-in kormedmcqa: same model, rows and settings"


@dataclass
class ConsistencyArguments:
    model: str = arg(positional=True, help="a registry alias, family, local directory or hub id (as `just eval`)")
    exams: str = arg(",".join(KORMEDMCQA_EXAMS), help="comma-separated: doctor,nurse,pharm,dentist")
    limit: int | None = arg(None, type=positive_int, help="the first N questions of each exam")
    sample: int | None = arg(
        None, type=positive_int, help="a seeded sample of N questions per exam (as `just eval --sample`)"
    )
    batch_size: int | None = arg(None, type=positive_int, help="questions per forward pass (default 8)")
    set: list[str] = arg(
        default_factory=list,
        metavar="KEY=VALUE",
        help=f"an evaluation setting; known: {', '.join(EvalSettings.__dataclass_fields__)}",
    )


def make_parser(sub) -> None:
    add_arguments(sub.add_parser("consistency", help=HELP, description=HELP), ConsistencyArguments)


def run(args) -> int:
    from medbench.eval.consistency import check_consistency

    opts = from_args(ConsistencyArguments, args)
    if opts.limit is not None and opts.sample is not None:
        raise MedbenchError("--limit and --sample exclude each other")
    overrides = parse_assignments(opts.set)
    if opts.batch_size is not None:
        overrides["batch_size"] = opts.batch_size
    result = check_consistency(
        opts.model,
        [e for e in opts.exams.split(",") if e],
        opts.limit,
        opts.sample,
        EvalSettings.from_overrides(overrides),
    )
    print_report(result)
    return 0


def _short(value, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def print_report(result: dict, file=None) -> None:
    """The comparison laid out for 80 columns (medbench.cli.console.rich_console); the result's path printed whole."""
    from rich import box
    from rich.table import Table

    from medbench.cli.console import rich_console
    from medbench.cli.eval import model_label

    # ours/lm-eval: accuracy of our 5-shot task and of lm-eval's built-in one; agree: the same answer; gen: the same
    # raw generation; prompt: the same prompt sent.
    table = Table(
        title=f"{model_label(result['model'])} · ours (5-shot) vs lm-eval's kormedmcqa · {result['subset']}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
    )
    for col in ("exam", "n", "ours", "lm-eval", "agree", "same gen", "same prompt"):
        table.add_column(col, justify="left" if col == "exam" else "right", no_wrap=True)
    rows = list(result["per_exam"].items()) + [
        (
            "all",
            {
                "n": result["overall"]["n"],
                "ours": {"accuracy": result["overall"]["ours_accuracy"]},
                "upstream": {"accuracy": result["overall"]["upstream_accuracy"]},
                "agree": result["overall"]["agree"],
                "same_raw_generation": sum(e["same_raw_generation"] for e in result["per_exam"].values()),
                "identical_prompts": result["overall"]["identical_prompts"],
            },
        )
    ]
    for exam, e in rows:
        table.add_row(
            exam,
            str(e["n"]),
            f"{e['ours']['accuracy']:.3f}",
            f"{e['upstream']['accuracy']:.3f}",
            f"{e['agree']}/{e['n']}",
            f"{e['same_raw_generation']}/{e['n']}",
            f"{e['identical_prompts']}/{e['n']}",
        )
    console = rich_console(file)
    console.print(table)
    diffs = Table(title="differences between the tasks (first request; ours → upstream)")
    diffs.add_column("aspect", no_wrap=True)
    diffs.add_column("ours")
    diffs.add_column("upstream")
    for d in result["prompt_differences"]:
        aspect = d["aspect"] + (f" {d['text']!r}" if "text" in d else "")
        diffs.add_row(aspect, _short(d["ours"], 40), _short(d["upstream"], 40))
    console.print(diffs)
    same = [e for e, v in result["per_exam"].items() if v["context_identical"]]
    console.print(
        f"prompt text of the first request identical in {len(same)}/{len(result['per_exam'])} exams; "
        f"sent prompts identical for {result['overall']['identical_prompts']}/{result['overall']['n']} "
        f"questions"
    )
    print(f"result: {result['path']}", file=file, flush=True)  # printed whole: a path folded mid-word cannot be pasted
