from medbench.prompts.tasks import ExtractAnswerFilter, load_dataset  # noqa: F401
