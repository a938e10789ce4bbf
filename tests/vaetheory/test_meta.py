"""The project's own rules: docstrings cite equations, docs are current, the CLI runs."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from vaetheory import equations


@pytest.mark.parametrize("module_name", equations.PAPER_MODULES)
def test_every_public_function_cites_an_equation(module_name):
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError:
        pytest.fail(f"{module_name} is listed in PAPER_MODULES but does not exist")
    missing = [
        name
        for name, fn in equations.public_functions(module_name)
        if not any(m in equations.first_paragraph(fn.__doc__) for m in equations.CITATION_MARKERS)
    ]
    assert not missing, f"{module_name}: docstrings cite no equation: {missing}"


def test_citation_parser_reads_ranges_and_lists():
    assert equations.cited("Implements Eqs. (28)-(30) and Eq. (2).") == ["(28)", "(29)", "(30)", "(2)"]
    assert equations.cited("Eqs. (3), (5) and (9); see Sec. 6 and Appendix A.") == [
        "(3)",
        "(5)",
        "(9)",
        "Sec. 6",
        "App. A",
    ]


def test_tests_are_found_in_sub_folders(tmp_path):
    (tmp_path / "mlpvae").mkdir()
    (tmp_path / "mlpvae" / "test_model.py").write_text("def test_known_answer_eq6():\n    pass\n")
    (tmp_path / "test_top.py").write_text("def test_top_eq7():\n    pass\n\ndef test_no_citation():\n    pass\n")
    refs = {(t.file, t.name, tuple(t.equations)) for t in equations.find_tests(tmp_path)}
    assert refs == {
        ("mlpvae/test_model.py", "test_known_answer_eq6", ("(6)",)),
        ("test_top.py", "test_top_eq7", ("(7)",)),
    }


def test_docs_equations_md_is_current():
    current = equations.docs_path().read_text()
    assert current == equations.markdown(equations.table()), (
        "docs/equations.md is stale: run `vaetheory equations --write`"
    )


def test_every_cited_equation_has_a_test():
    missing = equations.missing_tests(equations.table())
    assert not missing, "equations with no test: " + ", ".join(f"{r['equation']} {r['function']}" for r in missing)


def test_every_numbered_equation_has_a_row():
    rows = equations.table()
    numbers = {r["equation"] for r in rows}
    assert numbers >= {f"({k})" for k in range(1, equations.PAPER_EQUATIONS + 1)}
    steps = {int(r["equation"][1:-1]) for r in rows if r["function"] is None}
    # a derivation step that a function now cites has a stale description: remove it
    assert steps == set(equations.DERIVATION_STEPS), sorted(steps ^ set(equations.DERIVATION_STEPS))


def test_a_function_is_listed_with_its_own_tests_not_every_test_of_its_equation(tmp_path):
    (tmp_path / "test_a.py").write_text(
        "def test_solver_converges_eq4():\n    find_point()\n\n"
        "def test_other_eq2():\n    elbo()\n\n"
        "def test_wrapper_eq2():\n    kl_checked()\n"
    )
    tests = equations.find_tests(tmp_path)
    assert [t.name for t in equations.tests_for("find_point", "(2)", tests)] == ["test_solver_converges_eq4"]
    assert [t.name for t in equations.tests_for("kernel", "(2)", tests, ["kl_checked"])] == ["test_wrapper_eq2"]
    assert [t.name for t in equations.tests_for("kernel", "(2)", tests)] == ["test_other_eq2", "test_wrapper_eq2"]


def test_cli_help_and_equations_run():
    out = subprocess.run([sys.executable, "-m", "vaetheory", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "equations" in out.stdout
    out = subprocess.run([sys.executable, "-m", "vaetheory", "equations"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert max(map(len, out.stdout.splitlines())) <= 100
    assert "(13) derivation step, no function" in out.stdout
    out = subprocess.run([sys.executable, "-m", "vaetheory", "equations", "--markdown"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == equations.markdown(equations.table())
    out = subprocess.run([sys.executable, "-m", "vaetheory", "equations", "--missing"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("none")


class RecordingParser(argparse.ArgumentParser):
    """A parser that keeps the keyword arguments of every option added to it."""

    def __init__(self):
        self.options = {}
        super().__init__(add_help=False)

    def add_argument(self, *names, **kwargs):
        self.options[names[0]] = kwargs
        return super().add_argument(*names, **kwargs)


@pytest.mark.parametrize("module_name", ["mlpvae.experiments.bench", "vaetheory.bench.logdet"])
def test_every_bench_option_has_a_description_and_its_default(module_name):
    parser = RecordingParser()
    importlib.import_module(module_name).add_arguments(parser)
    bad = [name for name, kw in parser.options.items() if "default" not in kw.get("help", "")]
    assert not bad, f"{module_name}: options without a description naming the default: {bad}"
