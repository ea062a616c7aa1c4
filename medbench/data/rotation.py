"""Option rotation: a test question asked with its options shifted, the gold letter moving with its option.

The rows' transformation, shared by the task hooks that load rotated tasks (medbench/prompts/tasks.py), the run
that asks for them (medbench/eval/permute.py) and the records that read them back (medbench/records/questions.py).
Only the test split is rotated: few-shot rows keep their order, because their written rationales name letters.
"""

from __future__ import annotations

from medbench.data.loader import LETTERS, OPTION_COUNT

ROTATED_SPLIT = "test"


def rotate_row(row: dict, k: int) -> dict:
    """The row with options shifted left by k: the option at index j moves to (j - k) mod n."""
    n = len(row["options"])
    k %= n
    options = row["options"][k:] + row["options"][:k]
    index = (row["answer_index"] - k) % n
    return {**row, "options": options, "answer_index": index, "answer": LETTERS[index], "rotation": k}


def rotated_task_name(name: str, k: int) -> str:
    return f"{name}_rot{k}"


def rotations(dataset: str) -> int:
    return OPTION_COUNT[dataset]
