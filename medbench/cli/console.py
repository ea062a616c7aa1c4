"""What a run prints: known-harmless library messages filtered by name, one progress bar per phase, and tables
laid out for 80 columns wherever the output is not a terminal.

`--verbose` shows everything the libraries say; the default drops only the messages listed in
HARMLESS (each with the reason it does not apply to medbench) and lm-eval's one-bar-per-task
prompt building; `--quiet` also hides progress bars and anything below a warning.
"""

from __future__ import annotations

import logging
import re
import sys
from functools import partial

LEVELS = ("quiet", "normal", "verbose")

# logger -> (message pattern, why it is harmless here)
HARMLESS = {
    "lm_eval.api.task": (
        r"Custom kwargs can be passed to `--metadata`",
        "our tasks' loader takes its arguments from the task YAML (dataset, exam), never from --metadata",
    ),
    "lm_eval.models.huggingface": (
        r"`pretrained` model kwarg is not of type `str`|Passed an already-initialized model",
        "medbench loads the model itself (variants, adapters, quantization) and hands lm-eval the object",
    ),
    "lm_eval.evaluator": (
        r"generation_kwargs: .* specified through cli",
        "the study's generation settings, given on purpose and written to every record",
    ),
}


class _DropHarmless(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def configure(level: str = "normal") -> None:
    """Set the console for one run (idempotent)."""
    if level not in LEVELS:
        raise ValueError(f"console level {level!r}; choose from {', '.join(LEVELS)}")
    for name, (pattern, _why) in HARMLESS.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _DropHarmless)]:
            logger.removeFilter(old)
        if level != "verbose":
            logger.addFilter(_DropHarmless(pattern))
    logging.getLogger("lm_eval").setLevel(logging.WARNING if level == "quiet" else logging.INFO)
    import lm_eval.api.task as task_module
    from tqdm import tqdm

    # lm-eval draws one bar per task while it renders prompts (a second each); the scoring or
    # generation bar that follows counts the questions of every task.
    task_module.tqdm = tqdm if level == "verbose" else partial(tqdm, disable=True)
    if level == "quiet":
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def progress_enabled(level: str) -> bool:
    return level != "quiet"


WIDTH = 80  # a fresh shell has no COLUMNS, and logs, CI, SLURM and docker output are no terminal


def rich_console(file=None):
    """A rich console for tables: a terminal's own width, else WIDTH columns whatever COLUMNS says, so what is
    printed (and every test of it) never depends on the environment it ran in. Paths are printed with print()
    beside it, never through it: rich folds a long word, and a path folded mid-word cannot be pasted."""
    from rich.console import Console

    target = sys.stdout if file is None else file
    terminal = file is None and hasattr(target, "isatty") and target.isatty()
    return Console(file=file, width=None if terminal else WIDTH)
