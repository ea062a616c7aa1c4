"""Documentation tables generated from their source of truth (settings, variants, methods, models).

Each sits between `<!-- table:NAME:start -->` and `<!-- table:NAME:end -->` in docs/configuration.md (and docs/evaluation.md, docs/training.md);
`just tasks-readme` rewrites them and a test checks they are current. The methods table reads
trainers/methods/, which is why this lives in the CLI layer.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from medbench.paths import REPO_ROOT


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def settings_table() -> str:
    from medbench.settings import EvalSettings

    rows = [
        [
            f"`{f.name}`",
            f"`{'none' if f.default is None else str(f.default).lower() if isinstance(f.default, bool) else f.default}`",
            f.metadata["help"],
        ]
        for f in dataclasses.fields(EvalSettings)
    ]
    return _table(["setting", "default", "meaning"], rows)


def variants_table() -> str:
    from medbench.models.variants import load_variants

    rows = [
        [
            f"`{v.name}`",
            v.description,
            v.weights + (f" (`just train MODEL {v.train_method}`)" if v.train_method else ""),
            "CUDA" if v.requires_cuda else "",
        ]
        for v in load_variants().values()
    ]
    return _table(["variant", "what is evaluated", "weights", "needs"], rows)


def methods_table() -> str:
    from trainers.config import load_method, method_names

    rows = []
    for name in method_names():
        m = load_method(name)
        rows.append(
            [
                f"`{name}`",
                m.description,
                m.model_dtype,
                m.training.get("learning_rate", ""),
                "CUDA" if m.requires_cuda else "",
            ]
        )
    return _table(["method", "what trains", "base dtype on GPU", "learning rate", "needs"], rows)


def models_table() -> str:
    from medbench.models.registry import load_registry

    rows = [
        [
            f"`{s.alias}`",
            f"`{s.hub_id}`" if s.hub_id else "",
            s.params_b,
            s.family or "",
            "yes" if s.family_default else "",
            "yes" if s.chat else "",
            "embedded" if s.embedded else ("yes" if s.verified else "no"),
            s.architecture_checked or "",
        ]
        for s in load_registry().values()
    ]
    return _table(
        [
            "alias",
            "hub id",
            "params (B)",
            "family",
            "family default",
            "chat",
            "weights verified",
            "architecture checked (tiny, CPU)",
        ],
        rows,
    )


TABLES = {"settings": settings_table, "variants": variants_table, "methods": methods_table, "models": models_table}


def render(text: str) -> str:
    for name, make in TABLES.items():
        start, end = f"<!-- table:{name}:start -->", f"<!-- table:{name}:end -->"
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
        if not pattern.search(text):
            continue
        block = f"{start}\n{make()}\n{end}"
        text = pattern.sub(lambda _m, block=block: block, text)
    return text


def readme_paths() -> list[Path]:
    return [
        REPO_ROOT / "docs" / "configuration.md",
        REPO_ROOT / "docs" / "evaluation.md",
        REPO_ROOT / "docs" / "training.md",
    ]
