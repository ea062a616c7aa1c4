"""lm-eval's Jinja templates, compiled once per template instead of once per document.

lm-eval 0.4.13's `utils.apply_template` calls `env.from_string(template)` for every document: for
4,282 questions that is 4,282 compilations of the same prompt template, a large share of the host
time of a zero-shot `mc` run. The same environment renders the
same template, so the text is unchanged (tests/test_mc_host.py checks every prompt).
"""

from __future__ import annotations

import functools

from lm_eval import utils


@functools.lru_cache(maxsize=512)
def _compiled(template: str):
    return utils.env.from_string(template)


def apply_template(template: str, doc: dict) -> str:
    return _compiled(template).render(**doc)


def install() -> None:
    """Make lm-eval's task code render through the cache (it looks `utils.apply_template` up at each call)."""
    utils.apply_template = apply_template
