"""Public names of a sub-package, imported from their modules on first use (PEP 562).

A sub-package's `__init__.py` names what it offers without importing it: importing `medbench.eval.request`
must not load torch because `medbench/eval/__init__.py` re-exports the model class.
"""

from __future__ import annotations

from importlib import import_module


def lazy_exports(package: str, names: dict[str, str]):
    """(`__all__`, `__getattr__`) for `package`, whose public `names` map to the submodule defining each."""

    def __getattr__(name: str):
        if name in names:
            return getattr(import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return sorted(names), __getattr__
