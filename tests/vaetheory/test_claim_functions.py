"""The claim functions of vaetheory.claims one by one, on small inputs (the command is tested in test_claims)."""

from __future__ import annotations

import numpy as np
import pytest

from vaetheory import linear as lin
from vaetheory.claims import linear as linear_claims
from vaetheory.claims import sweeps
from vaetheory.claims.problems import default_problems
from vaetheory.claims.registry import LinearCase, SweepCase, make_claim


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


def test_sweep_claims_compare_the_ends_of_the_sweep_eq11_eq12_eq18():
    rows = [dict(curvature=0.0, eq11=0.01, eq12=0.02, gap18=0.1), dict(curvature=1.0, eq11=0.1, eq12=0.1, gap18=0.2)]
    (c,) = sweeps.smoothness(SweepCase(rows))
    assert c.measured == pytest.approx(0.5) and c.holds
    assert sweeps.smoothness(SweepCase([])) == [] and sweeps.density(SweepCase([])) == []


def test_make_claim_turns_arrays_into_json_values():
    c = make_claim("eq4", ["(4)"], "p", np.float64(0.5), 1.0, "exact", "d", "c", s2=np.array([1.0, 2.0]))
    assert c.holds and c.details == {"s2": [1.0, 2.0]} and isinstance(c.measured, float)
