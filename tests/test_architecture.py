"""The layered shape of the code (docs/architecture.md), read from the source with ``ast``.

Each module of ``vaetheory`` and ``mlpvae`` belongs to one layer; a module may import from its
own layer and the layers below, never above, and the module import graph has no cycle.  Project
imports sit at module top (a function-local import hides a dependency); a leading-underscore name
is private to its module.  The checks read the source, so they see what ``import`` would not
report: an upward import that happens to run fine.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vaetheory", "mlpvae")

# Lowest first.  A module belongs to the first layer with a prefix matching its dotted name;
# the vaetheory modules not named elsewhere are the paper's equations.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "vaetheory.xp",
            "vaetheory.validate",
            "vaetheory.numerics",
            "vaetheory.covariance",
            "vaetheory.plotting",
            "mlpvae.configs",
        ),
    ),
    ("command line", ("vaetheory.cli", "vaetheory.__main__")),
    ("claims and benchmarks", ("vaetheory.claims", "vaetheory.bench", "vaetheory.equations")),
    ("solver", ("vaetheory.solver",)),
    ("accel", ("mlpvae.accel",)),
    ("nn", ("mlpvae.nn",)),
    ("training", ("mlpvae.training",)),
    ("evidence", ("mlpvae.evidence",)),
    ("experiments", ("mlpvae.experiments",)),
    ("equations", ("vaetheory",)),
]
ORDER = [
    "base",
    "equations",
    "solver",
    "claims and benchmarks",
    "accel",
    "nn",
    "training",
    "evidence",
    "experiments",
    "command line",
]


def layer_of(module: str) -> str:
    if module in PACKAGES:
        return "base"  # a package's own __init__: a docstring, nothing imported
    for name, prefixes in LAYERS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return name
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")


def modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = modules()


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def project_imports(module: str, path: Path):
    """(imported module, node, imported names) for every import of a project module in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PACKAGES:
                    yield a.name, node, ()
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, is_package)
            if target.split(".")[0] not in PACKAGES:
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in MODULES:
                    yield sub, node, ()
                else:
                    yield target, node, (a.name,)


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, _, _ in project_imports(module, path):
            if target in MODULES and target != module and not module.startswith(target + "."):
                graph[module].add(target)
    return graph


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_upward_import():
    bad = []
    for module, path in MODULES.items():
        here = ORDER.index(layer_of(module))
        for target, node, _ in project_imports(module, path):
            if target.split(".")[0] == target or target not in MODULES:
                continue
            there = ORDER.index(layer_of(target))
            if there > here:
                bad.append(
                    f"{path.relative_to(ROOT)}:{node.lineno} {module} ({layer_of(module)}) imports "
                    f"{target} ({layer_of(target)})"
                )
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_import_cycle():
    graph = edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_project_imports_at_module_top():
    bad = []
    for module, path in MODULES.items():
        nested = set()
        for outer in ast.walk(ast.parse(path.read_text())):
            if isinstance(outer, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                nested |= {
                    (n.lineno, n.col_offset) for n in ast.walk(outer) if isinstance(n, (ast.Import, ast.ImportFrom))
                }
        for target, node, _ in project_imports(module, path):
            if (node.lineno, node.col_offset) in nested:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target} inside a function or class")
    bad = sorted(set(bad))
    assert not bad, "function-local project imports:\n" + "\n".join(bad)


def test_no_private_name_across_modules():
    bad = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        aliases = set()
        for target, node, names in project_imports(module, path):
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target}.{name}")
            if not names and target != module:
                for a in node.names:
                    aliases.add(
                        a.asname or a.name.split(".")[-1] if isinstance(node, ast.ImportFrom) else a.asname or a.name
                    )
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module):
    path = MODULES[module]
    lines = path.read_text().count("\n")
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert lines <= 420 or "longer than" in doc.lower(), (
        f"{path.relative_to(ROOT)} has {lines} lines: split it, or say why in its docstring "
        "('Longer than ... because ...')"
    )


def test_the_checks_see_violations(tmp_path):
    """The parser finds a function-local import, a private name and a relative upward import."""
    src = "from .model import _dims\n\ndef f():\n    from mlpvae.experiments import plots\n"
    path = tmp_path / "x.py"
    path.write_text(src)
    found = list(project_imports("mlpvae.nn.x", path))
    assert ("mlpvae.nn.model", ("_dims",)) in [(t, n) for t, _, n in found]
    assert any(t == "mlpvae.experiments.plots" for t, _, _ in found)
    assert ORDER.index(layer_of("mlpvae.experiments.plots")) > ORDER.index(layer_of("mlpvae.nn.x"))


def test_no_test_module_imports_another():
    """Shared test helpers live in helper modules (conftest, strategies, tiny_runs, idx_files, matrices, linear_models),
    never in a test."""
    bad = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            bad += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names if n.startswith("test_")]
    assert not bad, "\n".join(bad)
