"""The equation -> function -> test map, read from the code itself.

A public function's docstring cites what it implements in its first paragraph
(``Eq. (7)``, ``Eqs. (28)-(30)``, ``Sec. 6``, ``Appendix A``); a test cites
the equations it checks in its name (``test_..._eq7``, ``test_..._eq2_eq24``).
``vaetheory equations`` prints the table in 100 columns, ``--markdown`` in
full, and ``--write`` regenerates ``docs/equations.md`` (the full table); a
test keeps that file current.  Every numbered equation of the paper has a row;
those no function implements are derivation steps.
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
    "vaetheory.solver.certificate",
    "vaetheory.solver.symmetry",
    "vaetheory.solver.polish",
]

_EQ_GROUP = re.compile(r"Eqs?\.\s*((?:\(\d+\)(?:\s*(?:-|–|,|and|to)\s*)?)+)")
_EQ_NUM = re.compile(r"\((\d+)\)")
_EQ_RANGE = re.compile(r"\((\d+)\)\s*(?:-|–|to)\s*\((\d+)\)")
_SEC = re.compile(r"\b(?:Sec\.|Section)\s*(\d+(?:\.\d+)?)")
_APP = re.compile(r"\bAppendix\s+([A-C])\b")
_TEST_EQ = re.compile(r"eq(\d+)")
_FUNC_REF = re.compile(r":func:`~?(?:[\w.]+\.)?(\w+)`")
CITATION_MARKERS = ("Eq. (", "Eqs. (", "Sec. ", "Section ", "Appendix ", "Not in the paper")

# The paper numbers its equations (1) to (38); the table has a row for each.
PAPER_EQUATIONS = 38
NO_FUNCTION = "derivation step, no function"
# What the equations no function implements are (the paper's own words, shortened); the
# table says "derivation step, no function" for any numbered equation no function cites.
DERIVATION_STEPS = {
    13: "log p(x) by a change of variables (pseudo-determinant)",
    14: "Eq. (13) in the limit epsilon -> 0",
    15: "exact log evidence, general model; (16), (26), (27) are its cases",
    23: "expected ELBO at the optimal S^2, constant Sigma; leads to (24)",
    28: "the BAGGINS constraint; rearranged, it is Eq. (29)",
    34: "d/d mu of E[log p(x|z)], end of App. A; gives Eq. (9)",
    36: "Eq. (35) in the standard normal domain (App. B)",
    37: "Eq. (36) to second order in J (App. B)",
    38: "d/d Sigma of E[log p(x|z)], end of App. B; gives Eq. (10)",
}


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


def tests_for(name: str, eq: str, tests: list[TestRef], refs=()) -> list[TestRef]:
    """The tests listed for function ``name`` at equation ``eq``.

    The tests that cite ``eq`` and name the function; else the function's own
    tests (those that name it, whatever they cite); else the tests that cite
    ``eq`` and name a function of ``refs`` (those its docstring refers to: an
    unchecked kernel's checked wrapper); else every test that cites ``eq``.
    """
    named = [t for t in tests if re.search(rf"\b{name}\b", t.source)]
    via = [t for t in tests if eq in t.equations and any(re.search(rf"\b{r}\b", t.source) for r in refs)]
    return [t for t in named if eq in t.equations] or named or via or [t for t in tests if eq in t.equations]


def table(modules=None, tests_dir: Path | None = None) -> list[dict]:
    """Rows ``{"equation", "function", "tests", "note"}`` sorted by equation number.

    Every numbered equation of the paper, (1) to (:data:`PAPER_EQUATIONS`), has a
    row: one per function that cites it, or one with ``function`` None and its
    ``note`` from :data:`DERIVATION_STEPS` when no function implements it.
    """
    tests_dir = tests_dir or default_tests_dir()
    tests = find_tests(tests_dir) if tests_dir.is_dir() else []
    rows = []
    for module_name in modules or PAPER_MODULES:
        try:
            funcs = list(public_functions(module_name))
        except ModuleNotFoundError:
            continue
        for name, fn in funcs:
            for eq in cited(first_paragraph(fn.__doc__)):
                refs = [r for r in _FUNC_REF.findall(fn.__doc__ or "") if r != name]
                chosen = tests_for(name, eq, tests, refs)
                rows.append(
                    {
                        "equation": eq,
                        "function": f"{module_name}.{name}",
                        "tests": [f"{t.file}::{t.name}" for t in chosen],
                        "note": "",
                    }
                )
    implemented = {r["equation"] for r in rows}
    for k in range(1, PAPER_EQUATIONS + 1):
        if f"({k})" not in implemented:
            rows.append({"equation": f"({k})", "function": None, "tests": [], "note": DERIVATION_STEPS.get(k, "")})

    def key(row):
        eq = row["equation"]
        if eq.startswith("("):
            return (0, int(eq[1:-1]), "", row["function"] or "")
        return (1, 0, eq, row["function"] or "")

    return sorted(rows, key=key)


def missing_tests(rows: list[dict]) -> list[dict]:
    """The rows of functions with no test (derivation steps have no function to test)."""
    return [r for r in rows if r["function"] is not None and not r["tests"]]


def markdown(rows: list[dict]) -> str:
    """The table as docs/equations.md writes it: every test of every row."""
    lines = [
        "# Equation -> function -> test",
        "",
        "Generated by `vaetheory equations --write`; a test checks that this file is current.",
        "Equations are numbered as in the paper; a test cites the equations it checks in its name.",
        f"Every numbered equation, (1) to ({PAPER_EQUATIONS}), has a row; one that no function implements is a",
        f"{NO_FUNCTION}.",
        "",
        "| equation | function | tests |",
        "|---|---|---|",
    ]
    for r in rows:
        if r["function"] is None:
            lines.append(f"| {r['equation']} | {NO_FUNCTION} | {r['note']} |")
            continue
        tests = "<br>".join(f"`{t}`" for t in r["tests"]) or "**none**"
        lines.append(f"| {r['equation']} | `{r['function']}` | {tests} |")
    return "\n".join(lines) + "\n"


def terminal(rows: list[dict], width: int = 100) -> str:
    """The table for a terminal, each line at most ``width`` characters: the number of tests and their files."""
    names = [r["function"].removeprefix("vaetheory.") for r in rows if r["function"]]
    fw = min(max(map(len, names), default=8), 46)
    ew = max(len(r["equation"]) for r in rows) if rows else 2
    lines = [f"{'eq':{ew}s} {'function':{fw}s} tests (files under tests/)"]
    for r in rows:
        if r["function"] is None:
            text = f"{NO_FUNCTION}: {r['note']}" if r["note"] else NO_FUNCTION
        else:
            files = dict.fromkeys(Path(t.split("::")[0]).stem.removeprefix("test_") for t in r["tests"])
            tests = f"{len(r['tests'])}: {', '.join(files)}" if r["tests"] else "NONE"
            text = f"{r['function'].removeprefix('vaetheory.'):{fw}s} {tests}"
        line = f"{r['equation']:{ew}s} {text}"
        lines.append(line if len(line) <= width else line[: width - 3] + "...")
    return "\n".join(lines) + "\n"


def docs_path() -> Path:
    """docs/equations.md in the repository."""
    return Path(__file__).resolve().parent.parent / "docs" / "equations.md"


def add_arguments(parser) -> None:
    """The options of ``vaetheory equations``."""
    parser.add_argument("--markdown", action="store_true", help="print the full table (every test) as Markdown")
    parser.add_argument("--write", action="store_true", help="write the full Markdown table to docs/equations.md")
    parser.add_argument(
        "--missing", action="store_true", help="list only functions with no test ('none' when every one has one)"
    )


def run(args) -> int:
    """Print the table (100 columns; Markdown with ``--markdown``), or write docs/equations.md with ``--write``."""
    rows = table()
    if args.write:
        docs_path().write_text(markdown(rows))
        print(f"wrote {docs_path()}")
        return 0
    if args.missing:
        rows = missing_tests(rows)
        if not rows:
            print("none: every function that cites an equation has a test")
            return 0
    print(markdown(rows) if args.markdown else terminal(rows), end="")
    return 0
