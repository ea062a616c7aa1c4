from medbench.eval.task_utils import ExtractAnswerFilter, load_dataset  # noqa: F401
