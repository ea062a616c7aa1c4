"""The two things lm-eval task YAML cannot say: where the rows come from, and how to read an answer.

Task folders re-export these from their `utils.py` so `!function utils.…` resolves.
"""

from __future__ import annotations

import datasets
from lm_eval.api.filter import Filter

from medbench.data.loader import KORMEDMCQA_SPLITS, MEDQA_SPLITS, load_rows
from medbench.data.rotation import ROTATED_SPLIT, rotate_row
from medbench.prompts.answers import extract_answer

# The splits a task reads (its test set, and the shots' and lm-eval's other splits); MedQA train is
# hub-only and never needed for evaluation. The runner verifies exactly these files before a run.
EVAL_SPLITS = {"kormedmcqa": KORMEDMCQA_SPLITS, "medqa": tuple(s for s in MEDQA_SPLITS if s != "train")}


def load_dataset(dataset: str, exam: str | None = None, rotation: int = 0, **lm_eval_metadata) -> datasets.DatasetDict:
    """Every available split of one exam as a DatasetDict of canonical rows.

    lm-eval calls this with the task's `dataset_kwargs` (ours: dataset, exam, and `rotation` for a
    permuted task: medbench/eval/permute.py) and its own metadata (version, config_source, …),
    which only lm-eval interprets.
    """
    out = {}
    for split in EVAL_SPLITS[dataset]:
        rows = load_rows(dataset, exam, split)
        if split == ROTATED_SPLIT:
            rows = [rotate_row(r, rotation) for r in rows]
        out[split] = datasets.Dataset.from_list(rows)
    return datasets.DatasetDict(out)


class ExtractAnswerFilter(Filter):
    """Maps each generation to an option letter ("" when none is parsable)."""

    def apply(self, resps, docs):
        return [[extract_answer(r, len(doc["options"])) for r in rs] for rs, doc in zip(resps, docs)]
