"""`vaetheory verify`: runs, writes its outputs, selects claims, and fails loudly on an exact claim."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from vaetheory import claims as C
from vaetheory.claims import command, runner
from vaetheory.claims.registry import REGISTRY, SCOPES, in_scope
from vaetheory.claims.report import UNITS, legend, report_markdown, table
from vaetheory.cli import main

REQUIRED = {"id", "equations", "problem", "measured", "threshold", "holds", "kind"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify")
    status = main(["verify", "--quick", "--no-progress", "--out", str(out)])
    return status, out


def test_verify_quick_exits_zero_and_writes_report_json_and_plots(quick_run, capsys):
    status, out = quick_run
    assert status == 0
    assert (out / "report.md").read_text().startswith("# vaetheory verify")
    for name in C.PLOTS:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name


def test_claims_json_schema_and_verdicts_are_consistent(quick_run):
    _, out = quick_run
    rows = json.loads((out / "claims.json").read_text())
    assert rows and all(REQUIRED <= set(r) for r in rows)
    for r in rows:
        assert r["kind"] in ("exact", "check", "approximate")
        assert isinstance(r["holds"], bool)
        if "interval" in r["details"]:
            # Ratio claims decide by their confidence interval: holds only if it lies below the threshold.
            lo, hi = r["details"]["interval"]
            assert r["holds"] == (hi < r["threshold"]) and lo <= r["measured"] <= hi
        else:
            assert r["holds"] == (r["measured"] <= r["threshold"])
        assert all(e.startswith("(") for e in r["equations"])
    ids = {r["id"] for r in rows}
    # Every claim family is measured by the default run.
    assert ids == set(C.CLAIM_IDS)
    # The exact claims and the checks all hold (the exit status says so too).
    assert all(r["holds"] for r in rows if r["kind"] in ("exact", "check"))
    # Consistency checks true by construction are labelled "check", never "exact" (they are not evidence).
    kinds = {}
    for r in rows:
        kinds.setdefault(r["id"], set()).add(r["kind"])
    assert kinds["solver"] == {"check"} and kinds["eq4"] == {"check"}
    assert "check" in kinds["collapse"] and "exact" not in kinds["collapse"]
    assert kinds["bound"] == {"exact"}
    # bound is read strictly: the excess plus the quadrature error, never minus it.
    for r in rows:
        if r["id"] == "bound":
            d = r["details"]
            assert r["measured"] >= d["max_excess_raw"]
            assert r["measured"] <= d["max_excess_raw"] + d["max_quadrature_error"] + 1e-12


def test_claims_option_selects_a_subset(capsys):
    status = main(["verify", "--quick", "--no-progress", "--claims", "eq4,linear"])
    text = capsys.readouterr().out
    assert status == 0
    rows = text.split("\n\n")[0].splitlines()[2:]  # the table ends at the first blank line
    assert {r.split()[0] for r in rows} == {"eq4", "linear"}


def test_unknown_claim_is_an_error(capsys):
    assert main(["verify", "--claims", "eq99", "--no-progress"]) == 2
    assert "unknown claims" in capsys.readouterr().err


def test_exit_status_names_failing_exact_claims(monkeypatch, capsys):
    bad = C.make_claim("solver", ["(2)"], "fake", 1.0, 1e-6, "exact", "d", "c")
    ok = C.make_claim("eq11", ["(11)"], "fake", 5.0, 0.1, "approximate", "d", "c")
    monkeypatch.setattr(runner, "run_all", lambda **kw: ([bad, ok], {}))
    args = argparse.Namespace(
        claims=None, seed=0, quick=True, no_progress=True, gtol=1e-6, out=None, threads=1, jobs=None
    )
    assert command.run(args) == 1
    err = capsys.readouterr().err
    assert "FAILED: solver (2) on fake" in err and "eq11" not in err


def test_verify_runs_blas_on_one_thread_unless_told_otherwise(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    seen = []
    monkeypatch.setattr(runner, "run_all", lambda **kw: (seen.append(blas_threads()), ([], {}))[1])

    def blas_threads():
        return {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}

    before = blas_threads()
    assert main(["verify", "--no-progress"]) == 0
    assert main(["verify", "--no-progress", "--threads", "0"]) == 0
    assert seen == [{1}, before] and blas_threads() == before


def test_claim_verdict_is_measured_against_threshold():
    assert C.make_claim("x", ["(1)"], "p", 0.5, 1.0, "exact", "d", "c").holds
    assert not C.make_claim("x", ["(1)"], "p", 2.0, 1.0, "exact", "d", "c").holds
    assert not C.make_claim("x", ["(1)"], "p", np.nan, 1.0, "exact", "d", "c").holds


def test_every_claim_id_is_registered_and_runs_in_claim_id_order():
    assert {s.id for s in REGISTRY} == set(C.CLAIM_IDS)
    for scope in SCOPES:
        ids = [s.id for s in in_scope(scope, C.CLAIM_IDS)]
        assert ids == sorted(ids, key=C.CLAIM_IDS.index)


def fake_run(monkeypatch, rows):
    monkeypatch.setattr(runner, "run_all", lambda **kw: (rows, {}))
    return argparse.Namespace(
        claims=None, seed=0, quick=True, no_progress=True, gtol=1e-6, out=None, threads=1, jobs=None
    )


def test_summary_counts_held_failed_and_off_by_kind_and_points_to_findings(monkeypatch, capsys):
    rows = [
        C.make_claim("linear", ["(2)"], "a", 1e-9, 1e-6, "exact", "d", "c"),
        C.make_claim("bound", ["(18)"], "a", -1.0, 0.0, "exact", "d", "c"),
        C.make_claim("solver", ["(2)"], "a", 1e-9, 1e-6, "check", "d", "c"),
        C.make_claim("eq11", ["(11)"], "a", 0.01, 0.1, "approximate", "d", "c"),
        C.make_claim("eq12", ["(12)"], "a", 5.0, 0.1, "approximate", "d", "c"),
        C.make_claim("eq16", ["(16)"], "a", 5.0, 0.1, "approximate", "d", "c"),
    ]
    assert command.run(fake_run(monkeypatch, rows)) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert " claims in " in last and last.startswith("6 claims")
    assert (
        "exact 2 held, 0 failed; checks 1 passed, 0 failed; approximate 1 held, 2 off; 0 unresolved (off = outside"
        in last
    )
    assert "docs/findings.md" in last
    rows[0] = C.make_claim("linear", ["(2)"], "a", 1.0, 1e-6, "exact", "d", "c")
    assert command.run(fake_run(monkeypatch, rows)) == 1
    assert "exact 1 held, 1 failed; checks 1 passed, 0 failed;" in capsys.readouterr().out.splitlines()[-1]


def test_a_check_is_counted_apart_from_exact_claims_and_a_failing_check_fails_the_run(monkeypatch, capsys):
    ok = C.make_claim("linear", ["(2)"], "a", 1e-9, 1e-6, "exact", "d", "c")
    bad = C.make_claim("solver", ["(2)"], "fake", 1.0, 1e-6, "check", "d", "c")
    assert command.run(fake_run(monkeypatch, [ok, bad])) == 1
    captured = capsys.readouterr()
    last = captured.out.splitlines()[-1]
    # the check is not counted as an exact claim, held or failed
    assert "exact 1 held, 0 failed; checks 0 passed, 1 failed;" in last
    assert "FAILED: solver (2) on fake" in captured.err
    assert "FAILS" in table([ok, bad]).splitlines()[-1]


def test_report_and_legend_say_what_a_check_is(monkeypatch, capsys, tmp_path):
    rows = [
        C.make_claim("solver", ["(2)"], "a", 1e-9, 1e-6, "check", "d", "c"),
        C.make_claim("eq11", ["(11)"], "a", 0.01, 0.1, "approximate", "d", "c"),
    ]
    meaning = "a consistency check of the computation, true by construction; not evidence for the paper"
    assert meaning in legend(rows)
    args = fake_run(monkeypatch, rows)
    md = report_markdown(rows, 1.0, args)
    assert f"- check: {meaning}" in md
    assert "checks 1 passed, 0 failed" in md


def test_legend_says_what_measured_is_per_claim_id_with_its_unit(monkeypatch, capsys):
    rows = [
        C.make_claim("bound", ["(18)"], "a", -0.1, 0.0, "exact", "max_i (ELBO_i - log p(x_i))", "c"),
        C.make_claim("bound", ["(18)"], "b", -0.2, 0.0, "exact", "max_i (ELBO_i - log p(x_i))", "c"),
        C.make_claim("eq11", ["(11)"], "a", 0.01, 0.1, "approximate", "||mu - S^2 J^T r|| / ||mu||", "c"),
    ]
    command.run(fake_run(monkeypatch, rows))
    out = capsys.readouterr().out
    assert "  bound: max_i (ELBO_i - log p(x_i)) (nats)\n" in out
    assert "  eq11: ||mu - S^2 J^T r|| / ||mu|| (relative)\n" in out
    assert out.count("bound: ") == 1 and "eq4:" not in out
    assert all(i in UNITS for i in C.CLAIM_IDS)


def test_a_measured_inf_or_nan_carries_a_footnote_that_says_why(monkeypatch):
    details = dict(predicted=0.04, measured_gap_between_variants=-0.002)
    rows = [
        C.make_claim("eq22", ["(22)"], "p", np.inf, np.log(2), "approximate", "d", "c", **details),
        C.make_claim("eq11", ["(11)"], "q", np.nan, 0.1, "approximate", "d", "c"),
        C.make_claim("eq12", ["(12)"], "q", 0.5, 0.1, "approximate", "d", "c"),
    ]
    text = table(rows)
    assert "inf [1]" in text and "nan [2]" in text and "[3]" not in text
    notes = legend(rows)
    assert "[1] eq22 on p: measured inf: the measured penalty" in notes and "-0.002 nats, not positive" in notes
    assert "[2] eq11 on q: measured nan: not finite: see claims.json details of this row" in notes
    assert "not finite" not in legend(rows[2:])


def test_verify_explains_inf_and_report_lists_plots_written_and_the_command(tmp_path, capsys):
    out = tmp_path / "run dir"
    argv = ["verify", "--quick", "--no-progress", "--claims", "eq22,linear", "--seed", "0", "--threads", "1"]
    assert main(argv + ["--out", str(out)]) == 0
    text = capsys.readouterr().out
    rows = json.loads((out / "claims.json").read_text())
    values = lambda r: [r["measured"]] + ([] if r["measured_coarse"] is None else [r["measured_coarse"]])
    bad = [r for r in rows if not np.all(np.isfinite(values(r)))]
    assert bad, "eq22 on gauss-m4-n2-N40 is inf on --quick --seed 0 (its measured penalty is negative)"
    table_text = text.split("\n\n")[0]
    infs = sum(int(not np.isfinite(v)) for r in bad for v in values(r))
    assert table_text.count("inf [") == infs and " inf " not in table_text.replace("inf [", "")
    for k, r in enumerate(bad, 1):
        word = "measured inf: " if not np.isfinite(r["measured"]) else "at q inf: "
        assert f"[{k}] {r['id']} on {r['problem']}: {word}" in text
    assert "\n  eq22: |log(predicted / measured)|" in text and "\n  linear: " in text
    report = (out / "report.md").read_text()
    assert (
        "Command: `vaetheory verify --quick --claims eq22,linear --seed 0 --gtol 1e-06 --threads 1 "
        f"--out '{out}'`" in report
    )
    plots = sorted(p.name for p in out.glob("*.png"))
    assert "estimator.png" not in plots and "errors_vs_N.png" not in plots
    listed = report.split("Plots: ")[1].splitlines()[0]
    assert sorted(s.strip("`") for s in listed.split(", ")) == plots
    assert "[1] eq22 on" in report and "- eq22: " in report


def test_solves_in_parallel_processes_give_the_same_claims_as_in_one():
    # The solves are independent and seeded per problem, so the verdicts and values may not depend on the
    # number of processes; only the timing strings in the details do.
    one, _ = runner.run_all(seed=0, quick=True, claims=["eq4", "eq22", "density"], progress=False, jobs=1)
    two, _ = runner.run_all(seed=0, quick=True, claims=["eq4", "eq22", "density"], progress=False, jobs=2)
    assert len(one) == len(two) > 3
    for a, b in zip(one, two):
        assert (a.id, a.problem, a.holds, a.resolved) == (b.id, b.problem, b.holds, b.resolved)
        assert a.measured == b.measured or (np.isnan(a.measured) and np.isnan(b.measured))


def test_solve_all_starts_the_longest_first_and_keeps_the_order_of_the_results():
    # Two processes, the two sleeps named first: both processes sleep before either reads the clock, so the clock
    # tasks (results 1 and 3) end after the whole sleep; submitted in order, task 1 would read it at once.
    import time

    from vaetheory.claims import solves

    tasks = [(time.sleep, (1.5,)), (time.time, ()), (time.sleep, (1.5,)), (time.time, ())]
    t0 = time.time()
    out = solves.solve_all(tasks, jobs=2, first=[0, 2])
    assert out[0] is None and out[2] is None
    assert min(out[1], out[3]) - t0 >= 1.5
