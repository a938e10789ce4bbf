"""The problems of ``vaetheory verify``: the m >> n manifold data and the sweeps' paired draws."""

import numpy as np

from vaetheory.claims import problems


def test_regime_problems_lie_near_an_n_manifold_in_m_dimensions_with_unit_noise():
    # Outside the (n + 1)-dimensional span of the curved manifold only the unit noise remains: the data
    # covariance has n + 1 eigenvalues well above 1 and m - n - 1 near 1 (sampling error ~ sqrt(2 / N)).
    for p in problems.regime_problems(0) + [p for p in problems.default_problems(0, False) if p.get("regime")]:
        x, n = p["x"], p["n"]
        N, m = x.shape
        assert 20 <= m <= 100 and 100 <= N <= 999 and n in (1, 2)
        lam = np.linalg.eigvalsh(np.cov(x.T))[::-1]
        assert np.all(lam[:n] > 5.0)
        rest = lam[n + 1 :]
        assert abs(np.mean(rest) - 1.0) < 0.1 and rest.max() < 1.0 + 6 * np.sqrt(m / N)
        assert p["name"] == f"{'curve' if n == 1 else 'surface'}-m{m}-n{n}-N{N}"


def test_sweep_draws_pair_across_settings():
    # smoothness: the same draw at both ends of the curvature sweep, enough draws for an interval.
    sweep = problems.curvature_sweep(0, quick=False)
    ends = [p for p in sweep if p["curvature"] in (0.0, 1.6)]
    assert sorted({p["draw"] for p in ends}) == list(range(problems.SWEEP_DRAWS[False]))
    # density: each draw's smaller set is the first rows of its larger set (nested, so paired).
    dens = problems.density_sweep(0, quick=False)
    for d in range(problems.SWEEP_DRAWS[False]):
        rows = sorted((p for p in dens if p["draw"] == d), key=lambda p: p["N"])
        assert len(rows) >= 2 and np.array_equal(rows[-1]["x"][: rows[0]["N"]], rows[0]["x"])


def test_the_default_run_solves_the_papers_regime_and_quick_does_not():
    # Issue 18 item 5: problems with m >> n in the default run, at the sizes of REGIME_DEFAULT; --quick stays small.
    full = [p for p in problems.default_problems(0, quick=False) if p.get("regime")]
    assert [(p["x"].shape[1], p["x"].shape[0]) for p in full] == list(problems.REGIME_DEFAULT)
    assert all(p["x"].shape[1] >= 20 and p["n"] == 1 for p in full)
    assert max(p["x"].shape[1] for p in full) >= 100
    assert not any(p.get("regime") for p in problems.default_problems(0, quick=True))
