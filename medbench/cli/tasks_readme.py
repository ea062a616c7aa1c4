"""`medbench tasks-readme`: regenerate tasks/README.md (every task's rendered prompt) from the YAMLs.

Rendered through lm-eval itself, so the README cannot drift from the tasks (a test runs `tasks-readme --check`);
the chat section renders each family's published template with the registry's template arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medbench.errors import MedbenchError
from medbench.options import add_arguments, arg, from_args
from medbench.paths import tasks_dir

HELP = "regenerate tasks/README.md and the README tables that copy a source of truth"


@dataclass
class TasksReadmeArguments:
    check: bool = arg(False, help="fail if tasks/README.md is out of date instead of writing it")


def make_parser(sub) -> None:
    add_arguments(sub.add_parser("tasks-readme", help=HELP, description=HELP), TasksReadmeArguments)


def run(args) -> int:
    from medbench.cli import readme_tables

    opts = from_args(TasksReadmeArguments, args)
    outputs = {readme_path(): render_readme()}
    for path in readme_tables.readme_paths():
        outputs[path] = readme_tables.render(path.read_text())
    stale = [path for path, text in outputs.items() if path.read_text() != text]
    if opts.check:
        if stale:
            raise MedbenchError(f"out of date: {', '.join(map(str, stale))}; run `just tasks-readme`")
        return 0
    for path in stale:
        path.write_text(outputs[path])
        print(f"wrote {path}")
    return 0


def readme_path() -> Path:
    return tasks_dir() / "README.md"


SHOWN = [
    (
        "medbench_kormedmcqa_doctor",
        "KorMedMCQA zero-shot, `mc` (also nurse, pharm, dentist; group `medbench_kormedmcqa`)",
    ),
    ("medbench_kormedmcqa_doctor_gen", "KorMedMCQA zero-shot, `gen`"),
    ("medbench_kormedmcqa_doctor_fewshot", "KorMedMCQA 5-shot direct answering (the paper's protocol)"),
    ("medbench_kormedmcqa_doctor_cot", "KorMedMCQA 5-shot chain of thought"),
    ("medbench_medqa_usmle", "MedQA (USMLE, 4 options) zero-shot, `mc`"),
    ("medbench_medqa_usmle_gen", "MedQA zero-shot, `gen`"),
    ("medbench_medqa_usmle_fewshot", "MedQA 5-shot direct answering (shots: first five dev rows)"),
    ("medbench_medqa_usmle_cot", "MedQA 5-shot chain of thought (the same shots, rationales written for medbench)"),
]

HEADER = """# medbench tasks

lm-eval task YAMLs for MedQA (USMLE) and KorMedMCQA, reading the vendored rows in `data/` through
`medbench/data/loader.py` (`custom_dataset`). Every name carries the `medbench_` prefix so it never
collides with lm-eval's built-in `kormedmcqa_*` and `medqa_4options` tasks.

| prompt × mode | KorMedMCQA (per exam; group) | MedQA |
|---|---|---|
| zeroshot × mc | `medbench_kormedmcqa_{exam}`; `medbench_kormedmcqa` | `medbench_medqa_usmle` |
| zeroshot × gen | `medbench_kormedmcqa_{exam}_gen`; `medbench_kormedmcqa_gen` | `medbench_medqa_usmle_gen` |
| fewshot (5-shot, gen) | `medbench_kormedmcqa_{exam}_fewshot`; `medbench_kormedmcqa_fewshot` | `medbench_medqa_usmle_fewshot` |
| cot (5-shot CoT, gen) | `medbench_kormedmcqa_{exam}_cot`; `medbench_kormedmcqa_cot` | `medbench_medqa_usmle_cot` |

`{exam}` is doctor, nurse, pharm or dentist. Groups average exams weighted by test size, as the
KorMedMCQA paper does. KorMedMCQA's CoT shots carry the dataset's own expert rationales; MedQA has
none, so its CoT shots (the same five dev rows as its 5-shot direct task) use rationales written for
medbench, kept as data in `medqa/cot_rationales.yaml` (provenance in its header). Both end with the
phrase the extraction reads: "따라서, 정답은 (E) 입니다." and "Therefore, the answer is (C).".

- **mc** scores the log-likelihood of each answer letter (" A" … " E") after the prompt; the
  highest wins (`acc`). No answer can be invalid.
- **gen** generates greedily (the study's `repetition_penalty` 1.5 is applied by the harness and
  recorded) until a blank line, then `medbench/prompts/answers.py` extracts the letter with the KorMedMCQA
  paper's Appendix B cascade (plus the documented digit and English extensions). No parsable
  answer scores wrong and counts as invalid. Budgets: 32 new tokens direct, 512 chain of thought.
- Prompts longer than 3,500 tokens are cut from the left (the question and options at the end
  survive) and counted in each record as `truncated_prompts`.

Rendered prompts for the first test question of each kind follow (`just tasks-readme` regenerates
this file). The text between the fences is sent verbatim; `→` lines show the scored continuations
or the target.
"""


CHAT_TASK = "medbench_medqa_usmle_gen"

CHAT_HEADER = """
## Chat prompts

Chat models (`chat: true` in `medbench/models/models.yaml`) are sent their own chat template in `gen`
(zeroshot gen, fewshot, cot) under `--chat auto`, through lm-eval's `apply_chat_template`; few-shot examples
become user/assistant turn pairs (`fewshot_as_multiturn`), an optional `system_instruction` becomes the system
turn, and generation stops at the template's end-of-turn token instead of a blank line. `mc` stays a plain
completion unless `--chat on`. Each family's prompt for the first MedQA test question in `gen` follows,
rendered from the published template (`tests/fixtures/chat_templates/`) with the registry's template arguments.
Gemma's and Llama's templates write the BOS token themselves; lm-eval then adds none, so each prompt carries
exactly one.
"""


def _template_renderer(family: str, facts: dict, kwargs: dict):
    """lm-eval's chat_template callable (HFLM.apply_chat_template) for a family, without loading a tokenizer."""
    from transformers.utils.chat_template_utils import render_jinja_template

    from medbench.prompts.chat import template_fixtures

    template = (template_fixtures() / facts["template"]).read_text()

    def render(chat_history, add_generation_prompt=True):
        rendered, _ = render_jinja_template(
            conversations=[chat_history],
            chat_template=template,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
            bos_token=facts.get("bos_token") or "",
            eos_token=facts.get("eos_token") or "",
            **kwargs,
        )
        return rendered[0]

    return render


def render_chat_section(tm) -> str:
    from medbench.models.registry import resolve
    from medbench.prompts.chat import families

    parts = [CHAT_HEADER]
    for family, facts in families().items():
        aliases = facts["aliases"]
        kwargs = dict(resolve(aliases[0]).chat_template_kwargs or {})
        task = tm.load([CHAT_TASK])["tasks"][CHAT_TASK]
        task.build_all_requests(
            limit=1,
            rank=0,
            world_size=1,
            apply_chat_template=True,
            fewshot_as_multiturn=True,
            chat_template=_template_renderer(family, facts, kwargs),
            tokenizer_name=family,
        )
        context = task.instances[0].args[0]
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "none"
        parts.append(
            f"\n### {family} ({', '.join(f'`{a}`' for a in aliases)})\n\nTemplate arguments: {args}.\n\n"
            f"```text\n{context}\n```\n"
        )
    return "".join(parts)


def render_readme() -> str:
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(tasks_dir()), include_defaults=False)
    tasks = tm.load([name for name, _ in SHOWN])["tasks"]
    parts = [HEADER]
    for name, title in SHOWN:
        task = tasks[name]
        task.build_all_requests(limit=1, rank=0, world_size=1)
        instances = task.instances
        context = instances[0].args[0]
        parts.append(f"\n## `{name}`: {title}\n\n```text\n{context}\n```\n")
        if task.OUTPUT_TYPE == "multiple_choice":
            parts.append("→ scored continuations: " + ", ".join(f"`{i.args[1]!r}`" for i in instances) + "\n")
        else:
            gen = instances[0].args[1]
            doc = instances[0].doc
            parts.append(
                f"→ generation until {gen['until']!r}, at most {gen['max_gen_toks']} new tokens; "
                f"target `{doc['answer']}`\n"
            )
    parts.append(render_chat_section(tm))
    return "".join(parts)
