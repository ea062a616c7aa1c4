"""The layer map of the code, checked on the source (imports inside functions included): no import from a layer
that is not below, no import cycle between modules, no module importing another module's `_private` name.

Layers, lowest first (README "Architecture"):

    leaf       medbench/*.py: errors, paths, options, overrides, settings, stats, launch, exports
    data       vendored data, one canonical row
    prompts    what evaluation and training share: task hooks, templates, answers, rotation, chat
    models     registry, variants, loading
    records    the record contract, provenance, run folders
    eval       one evaluation run (and eval/generation, the engine)
    trainers   beside eval: never imports it, and eval never imports trainers
    report     reads records only
    bench      measures the harness: imports anything, imported only by the CLI (and dev/)
    cli        the command line
    dev        developer-only drivers (GPU benchmarks and probes), imported by nothing in the product
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("medbench", "trainers")
BELOW = {
    "leaf": {"leaf"},
    "data": {"leaf"},
    "prompts": {"leaf", "data"},
    "models": {"leaf", "data"},
    "records": {"leaf", "data", "models"},
    "eval": {"leaf", "data", "prompts", "models", "records"},
    "trainers": {"leaf", "data", "prompts", "models", "records"},
    "report": {"leaf", "data", "records"},
    "bench": {"leaf", "data", "prompts", "models", "records", "eval", "trainers", "report"},
    "cli": {"leaf", "data", "prompts", "models", "records", "eval", "trainers", "report", "bench"},
    "dev": {"leaf", "data", "prompts", "models", "records", "eval", "trainers", "report", "bench", "cli"},
}


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.what}"


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for the product packages and dev/ under `root`."""
    out = {}
    for top in (*PRODUCT, "dev"):
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def layer(module: str, known: dict[str, Path]) -> str:
    """trainers, dev, a sub-package of medbench, or leaf (a module at medbench's top level)."""
    parts = module.split(".")
    if parts[0] in ("trainers", "dev"):
        return parts[0]
    top = ".".join(parts[:2])
    return parts[1] if len(parts) > 1 and known.get(top, Path()).name == "__init__.py" else "leaf"


def imports(tree: ast.Module, module: str, known: dict[str, Path]):
    """(line, imported module, imported names) for every import of the project's own code in `tree`."""
    package = module if known.get(module, Path()).name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in (*PRODUCT, "dev"):
                    yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] not in (*PRODUCT, "dev"):
                continue
            names = [a.name for a in node.names]
            # `from medbench.eval import parallel` imports the module medbench.eval.parallel
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in known]
            yield node.lineno, base, [n for n in names if f"{base}.{n}" not in known]
            for sub in submodules:
                yield node.lineno, sub, []


def private_attributes(tree: ast.Module, module: str, known: dict[str, Path]):
    """(line, name) for `alias._name` where alias is an imported module of the project."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in known and a.asname:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                if f"{node.module}.{a.name}" in known:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and aliases[node.value.id] != module
            and _private(node.attr)
        ):
            yield node.lineno, f"{aliases[node.value.id]}.{node.attr}"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def check(root: Path) -> list[Violation]:
    known = modules(root)
    found: list[Violation] = []
    edges: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        src_layer = layer(module, known)
        for line, target, names in imports(tree, module, known):
            # the deepest module of the project the import names
            parts = target.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            target_module = ".".join(parts)
            if not target_module or target_module == module:
                continue
            dst_layer = layer(target_module, known)
            if dst_layer != src_layer and dst_layer not in BELOW[src_layer]:
                found.append(Violation(module, line, f"the {src_layer} layer imports {target} ({dst_layer})"))
            if not target_module.startswith(module + ".") and known[target_module].name != "__init__.py":
                edges[module].add(target_module)
            for name in names:
                if _private(name):
                    found.append(Violation(module, line, f"imports the private name {name} from {target}"))
        for line, name in private_attributes(tree, module, known):
            found.append(Violation(module, line, f"uses the private name {name}"))
    for cycle in cycles(edges):
        found.append(Violation(cycle[0], 0, "import cycle: " + " -> ".join([*cycle, cycle[0]])))
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_code_keeps_its_layer_map():
    assert [str(v) for v in check(REPO)] == []


def test_every_sub_package_says_its_job():
    for init in sorted((REPO / "medbench").rglob("__init__.py")) + [REPO / "trainers" / "__init__.py"]:
        tree = ast.parse(init.read_text())
        assert ast.get_docstring(tree), f"{init.relative_to(REPO)} has no docstring"
    for folder in [p for p in (REPO / "medbench").rglob("*") if p.is_dir() and any(p.glob("*.py"))]:
        assert (folder / "__init__.py").exists(), f"{folder.relative_to(REPO)} is a namespace package"


def _plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in {"medbench/__init__.py": "", "trainers/__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    "files, expected",
    [
        (
            {
                "medbench/data/__init__.py": "",
                "medbench/data/loader.py": "from medbench.eval.runner import run\n",
                "medbench/eval/__init__.py": "",
                "medbench/eval/runner.py": "",
            },
            "the data layer imports medbench.eval.runner (eval)",
        ),
        (
            {
                "trainers/sft.py": "def f():\n    from medbench.eval import lm\n",
                "medbench/eval/__init__.py": "",
                "medbench/eval/lm.py": "",
            },
            "the trainers layer imports medbench.eval.lm (eval)",
        ),
        (
            {
                "medbench/eval/__init__.py": "",
                "medbench/eval/a.py": "def f():\n    from medbench.eval import b\n",
                "medbench/eval/b.py": "from medbench.eval.a import f\n",
            },
            "import cycle: medbench.eval.a -> medbench.eval.b -> medbench.eval.a",
        ),
        (
            {
                "medbench/eval/__init__.py": "",
                "medbench/eval/a.py": "_helper = 1\n",
                "medbench/eval/b.py": "from medbench.eval.a import _helper\n",
            },
            "imports the private name _helper from medbench.eval.a",
        ),
        (
            {
                "medbench/eval/__init__.py": "",
                "medbench/eval/a.py": "_helper = 1\n",
                "medbench/eval/b.py": "from medbench.eval import a\nx = a._helper\n",
            },
            "uses the private name medbench.eval.a._helper",
        ),
    ],
)
def test_a_planted_violation_is_found(tmp_path, files, expected):
    found = [v.what for v in check(_plant(tmp_path, files))]
    assert expected in found


def test_a_clean_tree_has_no_violation(tmp_path):
    files = {
        "medbench/data/__init__.py": "",
        "medbench/data/loader.py": "from medbench.errors import MedbenchError\n",
        "medbench/errors.py": "",
        "medbench/eval/__init__.py": "",
        "medbench/eval/runner.py": "from medbench.data import loader\n",
    }
    assert check(_plant(tmp_path, files)) == []
