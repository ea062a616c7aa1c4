"""Permutation evaluation (`--set permute=cyclic`; MMBench calls it CircularEval).

Each test question is asked again with its options rotated by every cyclic shift (4 for MedQA, 5
for KorMedMCQA), the gold letter moving with its option. A model that answers by position rather
than content scores at the rate of its favourite letter's share under each rotation, so the mean
over rotations (the position-debiased accuracy) and the share right under every rotation (circular
accuracy) measure knowledge where plain accuracy can measure a letter habit.

Only the test split is rotated: few-shot rows keep their order, because their written rationales
name letters. A rotated question keeps its id, and its rotation index is recorded in the row, so
paired statistics line up per question.
"""

from __future__ import annotations

from medbench.data.rotation import rotated_task_name, rotations


def expand(names: list[str], task_manager, scheme: str) -> tuple[list, dict[str, list[str]]]:
    """lm-eval task specs for the run, and {task: [its rotated task names]}.

    A rotated task is the task's own resolved YAML with `rotation` added to its dataset kwargs (read
    by medbench.prompts.tasks.load_dataset) and a name of its own, so lm-eval scores, caches and
    logs it like any task.
    """
    if scheme == "none":
        return list(names), {}
    from lm_eval.tasks._yaml_loader import load_yaml  # the loader lm-eval's TaskFactory uses

    specs, rotated = list(names), {}
    for name in names:
        cfg = load_yaml(task_manager.task_index[name].yaml_path, resolve_func=True)
        dataset_kwargs = cfg.get("dataset_kwargs") or {}
        rotated[name] = []
        for k in range(1, rotations(dataset_kwargs["dataset"])):
            specs.append(
                {**cfg, "task": rotated_task_name(name, k), "dataset_kwargs": {**dataset_kwargs, "rotation": k}}
            )
            rotated[name].append(rotated_task_name(name, k))
    return specs, rotated
