"""Verdicts at two quadrature orders: combined rows, unresolved verdicts, and what the run reports."""

from __future__ import annotations

import argparse

import numpy as np

from vaetheory import claims as C
from vaetheory.claims import command, runner
from vaetheory.claims.convergence import combine
from vaetheory.claims.measure import MAX_ORDER, measure
from vaetheory.claims.report import summary, table, verdict
from vaetheory.solver.quadrature import gauss_hermite
from vaetheory.solver.stationary import default_order, find_stationary_point, fine_order, finer_order
from vaetheory.solver.synthetic import manifold


def row(measured, threshold=0.1, kind="approximate", problem="p", id="eq11"):
    return C.make_claim(id, ["(11)"], problem, measured, threshold, kind, "d", "c", extra=1)


def test_combine_keeps_the_fine_row_and_records_the_coarse_value_and_change():
    coarse = [row(0.05), row(0.5, problem="q"), row(0.3, problem="r")]
    fine = [row(0.04), row(0.05, problem="q"), row(0.4, problem="r")]
    out = combine(coarse, fine, (24, 48))
    assert [c.measured for c in out] == [0.04, 0.05, 0.4]
    assert [c.measured_coarse for c in out] == [0.05, 0.5, 0.3]
    assert [c.resolved for c in out] == [True, False, True]
    assert [verdict(c) for c in out] == ["holds", "unresolved", "off"]
    d = out[1].details
    assert d["orders"] == [24, 48] and d["change"] == 0.05 - 0.5 and d["holds_coarse"] is False
    assert d["extra"] == 1
    text = table(out)
    assert "unresolved" in text.splitlines()[3] and "0.5" in text.splitlines()[3]
    assert "approximate 1 held, 1 off; 1 unresolved" in summary(out, 1.0)


def test_rows_measured_at_one_order_pass_through():
    out = combine([row(0.05, id="eq12")], [row(0.04)], (24, 48))
    assert [(c.id, c.measured_coarse, c.resolved) for c in out] == [("eq11", None, True), ("eq12", None, True)]
    assert table(out).splitlines()[2].split()[4:6] == ["-", "-"]


def test_an_unresolved_exact_claim_fails_the_run_and_is_named(monkeypatch, capsys):
    (bound,) = combine([row(-0.1, 0.0, "exact", id="bound")], [row(0.1, 0.0, "exact", id="bound")], (12, 18))
    monkeypatch.setattr(runner, "run_all", lambda **kw: ([bound], {}))
    args = argparse.Namespace(
        claims=None, seed=0, quick=True, no_progress=True, gtol=1e-6, out=None, threads=1, jobs=None
    )
    assert command.run(args) == 1
    captured = capsys.readouterr()
    assert "UNRESOLVED: bound (11) on p: 0.1 (at q: -0.1)" in captured.err
    assert "exact 0 held, 0 failed" in captured.out and "1 unresolved" in captured.out


def test_the_fine_order_is_finer():
    assert fine_order(1) == 2 * default_order(1) and fine_order(2) > default_order(2)
    assert finer_order(1, 48) == 96 and finer_order(2, 18) == 27


def test_measure_stays_finite_at_the_refined_order_of_n1():
    """The refinement solves n = 1 points at order 96; measure's reference rules stay at <= 256 nodes."""
    assert np.all(np.isfinite(gauss_hermite(1, MAX_ORDER)[1]))
    x, _ = manifold(12, 1, 2, np.random.default_rng(0))
    sp = find_stationary_point(x, 1, rng=np.random.default_rng(0), variant="constant", order=96)
    m = measure(sp)
    assert np.all(np.isfinite(m["elbo"])) and np.all(np.isfinite(m["quad_err"]))
