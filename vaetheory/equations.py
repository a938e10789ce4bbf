"""The equation -> function -> test map, read from the code itself.

A public function's docstring cites what it implements in its first paragraph
(``Eq. (7)``, ``Eqs. (28)-(30)``, ``Sec. 6``, ``Appendix A``); a test cites
the equations it checks in its name (``test_..._eq7``, ``test_..._eq2_eq24``).
``vaetheory equations`` prints the table and ``--write`` regenerates
``docs/equations.md``; a test keeps that file current.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

# Modules whose public functions must cite the paper (a test enforces it).
# Baselines that are not in the paper say "Not in the paper" instead.
PAPER_MODULES = [
    "vaetheory.gaussian",
    "vaetheory.optimal",
    "vaetheory.optimal_gemm",
    "vaetheory.optimality",
    "vaetheory.evidence",
    "vaetheory.logdet",
    "vaetheory.constant_variance",
    "vaetheory.objectives",
    "vaetheory.linear",
    "vaetheory.solver.stationary",
]

_EQ_GROUP = re.compile(r"Eqs?\.\s*((?:\(\d+\)(?:\s*(?:-|–|,|and|to)\s*)?)+)")
_EQ_NUM = re.compile(r"\((\d+)\)")
_EQ_RANGE = re.compile(r"\((\d+)\)\s*(?:-|–|to)\s*\((\d+)\)")
_SEC = re.compile(r"\b(?:Sec\.|Section)\s*(\d+(?:\.\d+)?)")
_APP = re.compile(r"\bAppendix\s+([A-C])\b")
_TEST_EQ = re.compile(r"eq(\d+)")
CITATION_MARKERS = ("Eq. (", "Eqs. (", "Sec. ", "Section ", "Appendix ", "Not in the paper")


def first_paragraph(doc: str | None) -> str:
    """The first paragraph of a docstring (where citations are read), or "" when there is none."""
    if not doc:
        return ""
    return inspect.cleandoc(doc).split("\n\n", 1)[0]


def cited(text: str) -> list[str]:
    """Return the citations in ``text`` as labels: ``"(7)"``, ``"Sec. 6"``, ``"App. A"``."""
    out: list[str] = []
    for group in _EQ_GROUP.findall(text):
        nums = [int(k) for k in _EQ_NUM.findall(group)]
        for a, b in _EQ_RANGE.findall(group):
            nums += list(range(int(a), int(b) + 1))
        out += [f"({k})" for k in sorted(set(nums))]
    out += [f"Sec. {s}" for s in _SEC.findall(text)]
    out += [f"App. {s}" for s in _APP.findall(text)]
    return list(dict.fromkeys(out))


def public_functions(module_name: str):
    """Yield ``(name, function)`` for the public functions defined in a module."""
    mod = importlib.import_module(module_name)
    names = getattr(mod, "__all__", None)
    for name, obj in inspect.getmembers(mod, inspect.isfunction):
        if name.startswith("_") or obj.__module__ != module_name:
            continue
        if names is not None and name not in names:
            continue
        yield name, obj


@dataclass
class TestRef:
    """A test function that cites equations: its file (relative to tests/), name, equations and source."""

    file: str
    name: str
    equations: list[str]
    source: str


def find_tests(tests_dir: Path) -> list[TestRef]:
    """Every test function under ``tests_dir`` (recursively) whose name cites equations (``test_..._eq7``).

    Files are read in the order of their base names (then paths), so a test
    keeps its place in the table when its file moves into a sub-folder; a
    test is named by its path relative to ``tests_dir``.
    """
    refs: list[TestRef] = []
    for path in sorted(tests_dir.rglob("test_*.py"), key=lambda p: (p.name, p.as_posix())):
        text = path.read_text()
        rel = path.relative_to(tests_dir).as_posix()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                eqs = [f"({k})" for k in _TEST_EQ.findall(node.name)]
                if eqs:
                    src = ast.get_source_segment(text, node) or ""
                    refs.append(TestRef(rel, node.name, eqs, src))
    return refs


def default_tests_dir() -> Path:
    """The repository's tests/ folder."""
    return Path(__file__).resolve().parent.parent / "tests"


def table(modules=None, tests_dir: Path | None = None) -> list[dict]:
    """Rows ``{"equation", "function", "tests"}`` sorted by equation number."""
    tests = find_tests(tests_dir or default_tests_dir()) if (tests_dir or default_tests_dir()).is_dir() else []
    rows = []
    for module_name in modules or PAPER_MODULES:
        try:
            funcs = list(public_functions(module_name))
        except ModuleNotFoundError:
            continue
        for name, fn in funcs:
            for eq in cited(first_paragraph(fn.__doc__)):
                matching = [t for t in tests if eq in t.equations]
                direct = [t for t in matching if re.search(rf"\b{name}\b", t.source)]
                chosen = direct or matching
                rows.append(
                    {
                        "equation": eq,
                        "function": f"{module_name}.{name}",
                        "tests": [f"{t.file}::{t.name}" for t in chosen],
                    }
                )

    def key(row):
        eq = row["equation"]
        if eq.startswith("("):
            return (0, int(eq[1:-1]), "", row["function"])
        return (1, 0, eq, row["function"])

    return sorted(rows, key=key)


def markdown(rows: list[dict]) -> str:
    """The table as docs/equations.md writes it."""
    lines = [
        "# Equation -> function -> test",
        "",
        "Generated by `vaetheory equations --write`; a test checks that this file is current.",
        "Equations are numbered as in the paper; a test cites the equations it checks in its name.",
        "",
        "| equation | function | tests |",
        "|---|---|---|",
    ]
    for r in rows:
        tests = "<br>".join(f"`{t}`" for t in r["tests"]) or "**none**"
        lines.append(f"| {r['equation']} | `{r['function']}` | {tests} |")
    return "\n".join(lines) + "\n"


def docs_path() -> Path:
    """docs/equations.md in the repository."""
    return Path(__file__).resolve().parent.parent / "docs" / "equations.md"


def add_arguments(parser) -> None:
    """The options of ``vaetheory equations``."""
    parser.add_argument("--write", action="store_true", help="regenerate docs/equations.md")
    parser.add_argument("--missing", action="store_true", help="list only equations with no test")


def run(args) -> int:
    """Print the table, or write docs/equations.md with ``--write``."""
    rows = table()
    if args.missing:
        rows = [r for r in rows if not r["tests"]]
    text = markdown(rows)
    if args.write:
        docs_path().write_text(text)
        print(f"wrote {docs_path()}")
    else:
        print(text, end="")
    return 0
