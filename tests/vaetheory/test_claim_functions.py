"""The claim functions of vaetheory.claims one by one, on small inputs (the command is tested in test_claims)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from vaetheory import linear as lin
from vaetheory.claims import linear as linear_claims
from vaetheory.claims import nonparametric, sweeps
from vaetheory.claims.problems import default_problems
from vaetheory.claims.registry import LinearCase, PointCase, SweepCase, make_claim


@pytest.mark.parametrize("n", [1, 2, 3])
def test_linear_closed_form_claims_hold_eq2_eq16_eq18(n):
    problem = default_problems(0, quick=True)[0]
    x = problem["x"]
    mdl = lin.linear_stationary_point(x, n=n, var=0.5)
    case = LinearCase(problem, n, mdl, np.cov(x.T, bias=True), x.mean(axis=0))
    rows = linear_claims.linear_exactness(case) + linear_claims.linear_collapse(case)
    assert [r.id for r in rows][:2] == ["linear", "linear"]
    assert all(r.holds for r in rows)
    # the spectrum (6, .6, .4, .3): only the first direction is above the likelihood variance
    assert len(rows) == (2 if n == 1 else 3)
    # W's collapsed columns are zero by construction: a check, not an exact claim
    assert [r.kind for r in rows if r.id == "collapse"] == ([] if n == 1 else ["check"])
    assert all(r.kind == "exact" for r in rows if r.id == "linear")


def _point_case(elbo, log_px, quad_err, gtol=1e-6):
    sp = SimpleNamespace(
        variant="diagonal",
        mu=np.zeros((4, 1)),
        var=np.ones((4, 1)),
        s2=np.ones(1),
        grad_norm=1e-9,
        n_iter=3,
        seconds=0.1,
        order=20,
    )
    meas = dict(elbo=np.asarray(elbo, float), log_px=np.asarray(log_px, float), quad_err=np.asarray(quad_err, float))
    return PointCase("p", sp, meas, gtol)


def test_bound_is_strict_the_quadrature_error_counts_against_it():
    # ELBO below log p by 0.1 everywhere, but the quadrature error (0.2) could cover that: the bound is not shown
    (c,) = nonparametric.bound(_point_case([-1.1, -2.1], [-1.0, -2.0], [0.2, 0.2]))
    assert c.kind == "exact" and c.measured == pytest.approx(0.1) and not c.holds
    # the error is added per example: the worst example is the one whose excess plus error is largest
    (c,) = nonparametric.bound(_point_case([-1.1, -2.5], [-1.0, -2.0], [0.05, 0.3]))
    assert c.measured == pytest.approx(-0.05) and c.holds
    assert c.details["max_excess_raw"] == pytest.approx(-0.1)
    # ELBO above log p by less than the quadrature error: the lenient reading would pass it; the strict one fails
    (c,) = nonparametric.bound(_point_case([-0.95], [-1.0], [0.1]))
    assert c.measured == pytest.approx(0.15) and not c.holds


def test_solver_and_floating_prior_rows_are_checks_not_exact_claims():
    case = _point_case([-1.0], [-1.0], [0.0])
    (s,) = nonparametric.solver(case)
    (e,) = nonparametric.eq4(case)
    assert s.kind == "check" and s.holds
    assert e.kind == "check" and e.holds


def _curvature_draws(smooth, rough):
    """Draw rows at curvature 0 and 1 with the errors ``smooth[d]`` and ``rough[d]`` (eq11 = eq12 = gap18)."""
    out = []
    for d, (a, b) in enumerate(zip(smooth, rough)):
        out.append(dict(curvature=0.0, draw=d, eq11=a, eq12=a, gap18=a))
        out.append(dict(curvature=1.0, draw=d, eq11=b, eq12=b, gap18=b))
    return out


def test_sweep_claims_decide_by_the_interval_over_paired_draws_eq11_eq12_eq18():
    rows = [dict(curvature=0.0), dict(curvature=1.0)]
    # Every draw shrinks by about half: the interval lies below 1, so the claim holds.
    (c,) = sweeps.smoothness(SweepCase(rows, _curvature_draws([0.05, 0.1, 0.2], [0.1, 0.21, 0.39])))
    assert c.holds and c.resolved and c.details["interval"][1] < 1
    assert c.measured == pytest.approx(np.exp(np.mean(np.log([0.5, 0.1 / 0.21, 0.2 / 0.39]))))
    # Every draw grows: off, and resolved.
    (c,) = sweeps.smoothness(SweepCase(rows, _curvature_draws([0.2, 0.4, 0.8], [0.1, 0.21, 0.39])))
    assert not c.holds and c.resolved and c.details["interval"][0] > 1
    # One draw shrinks, one grows: the interval straddles 1, the verdict is unresolved (neither holds nor off).
    (c,) = sweeps.smoothness(SweepCase(rows, _curvature_draws([0.05, 0.4], [0.1, 0.2])))
    assert not c.holds and not c.resolved
    # The largest of the three ratios is the per-draw statistic: one error that grows decides.
    draws = _curvature_draws([0.05, 0.1], [0.1, 0.2])
    draws[0]["gap18"] = 0.3
    assert sweeps.paired_ratios(draws, "curvature", 1.0, 0.0, sweeps.SMOOTHNESS_KEYS) == pytest.approx([3.0, 0.5])
    assert sweeps.smoothness(SweepCase([])) == [] and sweeps.density(SweepCase([])) == []


def test_make_claim_turns_arrays_into_json_values():
    c = make_claim("eq4", ["(4)"], "p", np.float64(0.5), 1.0, "exact", "d", "c", s2=np.array([1.0, 2.0]))
    assert c.holds and c.details == {"s2": [1.0, 2.0]} and isinstance(c.measured, float)
