"""What evaluation and training share about prompts: the task hooks lm-eval calls (rows, answer filter), lm-eval's
templates compiled once, answer extraction, chat templates.

Below both `eval` and `trainers`, so that a model is trained on exactly the prompt it is evaluated on."""

from medbench.exports import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "EVAL_SPLITS": "tasks",
        "ExtractAnswerFilter": "tasks",
        "load_dataset": "tasks",
        "apply_template": "templates",
        "extract_answer": "answers",
        "strip_thinking": "answers",
        "ChatPlan": "chat",
        "ChatError": "chat",
        "plan_chat": "chat",
        "require_template": "chat",
        "end_of_turn": "chat",
    },
)
