"""The trace identity Eqs. (19)-(20), the Eq. (19) estimator and its baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TOL
from hypothesis import given
from hypothesis import strategies as st
from matrices import Counter, spd
from strategies import SEEDS, normal_arrays, positive_arrays, spd_matrices

from vaetheory import logdet as L
from vaetheory.bench.logdet import make_family
from vaetheory.bench.logdet_report import rmse_interval, rmse_ratio_interval, summarise
from vaetheory.cli import main
from vaetheory.logdet_baselines import gauss_quadrature

# --- Eqs. (19)-(20): exact identities ---------------------------------------------------


@given(st.integers(1, 6).flatmap(lambda k: spd_matrices(k)))
def test_trace_identity_minimum_equals_slogdet_eq19(A):
    ref = np.linalg.slogdet(A)[1]
    Sigma = L.trace_identity_minimiser(A)
    assert np.allclose(Sigma @ A, np.eye(len(A)), atol=TOL["identity_f64"] * np.linalg.cond(A))
    assert abs(L.trace_identity_objective(A, Sigma) - ref) <= TOL["identity_f64"] * max(1.0, abs(ref))
    assert abs(L.trace_identity_ref(A) - ref) <= TOL["identity_f64"] * max(1.0, abs(ref))


@given(st.integers(1, 6).flatmap(lambda k: st.tuples(spd_matrices(k), spd_matrices(k))))
def test_trace_identity_objective_bounds_slogdet_eq19(pair):
    A, Sigma = pair
    # Stein's loss: tr(B) - log|B| - n >= 0 for B = Sigma^1/2 A Sigma^1/2.
    assert L.trace_identity_objective(A, Sigma) >= np.linalg.slogdet(A)[1] - TOL["identity_f64"] * 10


def test_trace_identity_unbounded_below_for_indefinite_a_eq19():
    A = np.diag([2.0, 1.0, -0.5])
    u = np.array([0.0, 0.0, 1.0])
    vals = [L.trace_identity_objective(A, np.eye(3) + t * np.outer(u, u)) for t in (1.0, 10.0, 100.0, 1000.0)]
    assert np.all(np.diff(vals) < 0) and vals[-1] < -400
    with pytest.raises(ValueError, match="positive definite"):
        L.trace_identity_minimiser(A)
    with pytest.raises(ValueError, match="positive definite"):
        L.logdet_trace_estimator(A, rng=np.random.default_rng(0), budget=10)


@given(st.integers(1, 4), st.integers(1, 6), SEEDS)
def test_trace_identity_posterior_form_eq20(n, m, seed):
    J = np.random.default_rng(seed).standard_normal((m, n))
    s2 = np.exp(np.random.default_rng(seed + 1).uniform(-1, 1, n))
    minimum, rhs, Sigma = L.trace_identity_eq20(J, s2)
    direct = np.linalg.slogdet(J.T @ J @ np.diag(s2) + np.eye(n))[1]
    assert abs(minimum - direct) <= TOL["identity_f64"] * max(1.0, abs(direct))
    assert abs(rhs - direct) <= TOL["identity_f64"] * max(1.0, abs(direct))
    tol = TOL["identity_f64"]
    assert np.allclose(np.linalg.inv(Sigma), np.diag(1 / s2) + J.T @ J, rtol=tol, atol=tol)


@given(normal_arrays((5, 3)), positive_arrays((3,)))
def test_trace_identity_posterior_form_from_strategies_eq20(J, s2):
    minimum, rhs, _ = L.trace_identity_eq20(J, s2)
    assert abs(minimum - rhs) <= TOL["identity_f64"] * max(1.0, abs(rhs))


@given(st.integers(2, 6).flatmap(lambda k: spd_matrices(k)))
def test_bias_floors_are_am_gm_and_hadamard_eq19(A):
    n, ref = len(A), np.linalg.slogdet(A)[1]
    f_scalar = L.trace_identity_bias_floor(A, "scalar")
    f_diag = L.trace_identity_bias_floor(A, "diagonal")
    assert f_scalar >= f_diag - TOL["identity_f64"] * n >= -2 * TOL["identity_f64"] * n
    # The floors are attained at the class minimisers s = n / tr A and d = 1 / diag(A).
    at_scalar = L.trace_identity_objective(A, n / np.trace(A) * np.eye(n))
    at_diag = L.trace_identity_objective(A, np.diag(1 / np.diag(A)))
    assert abs(at_scalar - ref - f_scalar) <= TOL["identity_f64"] * max(1.0, abs(ref))
    assert abs(at_diag - ref - f_diag) <= TOL["identity_f64"] * max(1.0, abs(ref))
    assert L.trace_identity_bias_floor(np.diag(np.diag(A)), "diagonal") == pytest.approx(0, abs=1e-12)
    assert L.trace_identity_bias_floor(3.0 * np.eye(n), "scalar") == pytest.approx(0, abs=1e-12)


# --- the gradients the stochastic steps follow -------------------------------------------


def test_diagonal_step_gradient_matches_finite_difference_eq19():
    A, rng = spd(6, 1), np.random.default_rng(2)
    theta = rng.normal(size=6) * 0.3  # Sigma = diag(exp(theta))
    grad = np.diag(A) * np.exp(theta) - 1  # what the natural-gradient step estimates, per coordinate
    h = 1e-6
    for i in range(6):
        e = np.zeros(6)
        e[i] = h
        f = [L.trace_identity_objective(A, np.diag(np.exp(theta + s * e))) for s in (1, -1)]
        fd = (f[0] - f[1]) / (2 * h)
        assert abs(fd - grad[i]) <= TOL["fd_grad_f64"] * max(1.0, abs(grad[i]))


def test_relative_gradient_matches_finite_difference_eq19():
    A, rng = spd(5, 3), np.random.default_rng(4)
    Lf = np.eye(5) + 0.2 * rng.standard_normal((5, 5))
    G = Lf.T @ A @ Lf - np.eye(5)  # expected relative gradient (up to the factor 2)
    h = 1e-6
    for _ in range(4):
        X = rng.standard_normal((5, 5))
        X = (X + X.T) / 2
        f = [L.trace_identity_objective(A, (Lf @ (np.eye(5) + s * X)) @ (Lf @ (np.eye(5) + s * X)).T) for s in (h, -h)]
        fd = (f[0] - f[1]) / (2 * h)
        assert abs(fd - 2 * np.sum(G * X)) <= TOL["fd_grad_f64"] * max(1.0, abs(fd))


# --- estimators: statistical guarantees with fixed seeds ----------------------------------


def _estimates(fn, A, seeds, **kw):
    return np.array([fn(A, rng=np.random.default_rng(s), **kw).estimate for s in range(seeds)])


def _z(est, target):
    return (np.mean(est) - target) / (np.std(est, ddof=1) / np.sqrt(len(est)))


@pytest.mark.parametrize(
    "fn, kw",
    [
        (L.slq_logdet, {"probes": "rademacher"}),
        (L.slq_logdet, {"probes": "gaussian"}),
        (L.hutchpp_logdet, {}),
        (L.chebyshev_logdet, {"bounds": (0.3, 3.0), "degree": 40}),
    ],
    ids=["slq-rademacher", "slq-gaussian", "hutch++", "chebyshev"],
)
def test_baseline_estimators_are_unbiased(fn, kw):
    A, ref = _unbiased_case()
    est = _estimates(fn, A, 80, budget=120, **kw)
    assert abs(_z(est, ref)) <= TOL["logdet_z"], (np.mean(est) - ref, np.std(est))


def _unbiased_case():
    A = spd(40, 5, lo=np.log(0.4), hi=np.log(2.5), scale_diag=0.1)
    A *= 1.0 / max(np.abs(np.linalg.eigvalsh(A)).max() / 2.9, 1.0)
    return A, np.linalg.slogdet(A)[1]


@pytest.mark.parametrize("fractions", [(0.2, 0.1), (0.0, 0.3)])
def test_preconditioned_slq_is_unbiased_eq19(fractions):
    # Rank 10-30 of 40: the preconditioned B = Sigma^1/2 A Sigma^1/2 is not I, so probes still vary.
    A, ref = _unbiased_case()
    est = _estimates(L.preconditioned_slq_logdet, A, 80, budget=120, fractions=fractions)
    assert np.std(est) > 0
    assert abs(_z(est, ref)) <= TOL["logdet_z"], (np.mean(est) - ref, np.std(est))


def test_diag_lowrank_value_is_unbiased_for_its_gap_eq19():
    # Given the learned Sigma, fresh probes give an unbiased value of Eq. (19) = log|A| + gap(Sigma).
    A = spd(30, 11, scale_diag=0.5)
    ref = np.linalg.slogdet(A)[1]
    res = [
        L.logdet_trace_estimator(A, rng=np.random.default_rng(s), budget=60, parameterization="diag+lowrank")
        for s in range(80)
    ]
    err = np.array([r.estimate - ref - r.bias_floor for r in res])
    assert min(r.bias_floor for r in res) >= 0
    assert abs(np.mean(err)) <= TOL["logdet_z"] * np.std(err, ddof=1) / np.sqrt(len(err))


@pytest.mark.parametrize("p", ["scalar", "diagonal", "full"])
def test_trace_estimator_is_an_upper_bound_above_its_floor_eq19(p):
    A = spd(20, 6, scale_diag=0.5)
    ref = np.linalg.slogdet(A)[1]
    floor = L.trace_identity_bias_floor(A, p)
    res = [L.logdet_trace_estimator(A, rng=np.random.default_rng(s), budget=200, parameterization=p) for s in range(60)]
    est = np.array([r.estimate for r in res])
    assert res[0].bias_floor == pytest.approx(floor)
    # E[estimate] = mean_t f(Sigma_t) >= log|A| + floor: never significantly below it.
    assert _z(est, ref + floor) >= -TOL["logdet_z"]


@pytest.mark.parametrize("p", ["scalar", "diagonal"])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_trace_estimator_converges_to_its_floor_at_any_scale_eq19(p, scale):
    A = scale * spd(10, 7, scale_diag=1.0)
    ref, floor = np.linalg.slogdet(A)[1], L.trace_identity_bias_floor(A, p)
    r = L.logdet_trace_estimator(A, rng=np.random.default_rng(0), budget=20000, parameterization=p, batch=100)
    target = np.full(10, np.trace(A) / 10) if p == "scalar" else np.diag(A)
    assert 1.0 / r.info["sigma_diag"] == pytest.approx(target, rel=0.1)
    # Excess over the floor is second order in the error of Sigma: <= 0.05 nats here.
    assert -0.05 <= r.estimate - ref - floor <= 0.05


def test_control_variate_removes_probe_noise_at_the_minimiser_eq19():
    # For diagonal A the diagonal class contains A^-1; near it B ~ I and v^T A v - eps^T eps ~ 0, so the
    # recorded values stop fluctuating, while v^T A v alone would keep a spread sqrt(2 n / b) per step.
    n, b = 30, 20
    A = np.diag(np.exp(np.random.default_rng(13).uniform(-2, 2, n)))
    r = L.logdet_trace_estimator(A, rng=np.random.default_rng(0), budget=8000, parameterization="diagonal", batch=b)
    assert np.std(r.info["values"][-50:]) < 0.1 * np.sqrt(2 * n / b)
    assert abs(r.estimate - np.linalg.slogdet(A)[1]) < 0.05


def test_full_trace_estimator_converges_to_slogdet_eq19():
    A = spd(6, 8)
    ref = np.linalg.slogdet(A)[1]
    r = L.logdet_trace_estimator(A, rng=np.random.default_rng(1), budget=20000, parameterization="full", batch=20)
    assert r.bias_floor == 0.0
    assert abs(r.estimate - ref) <= 0.1


def test_preconditioned_slq_is_exact_when_the_krylov_space_is_everything_eq19():
    # A Krylov space of dimension n makes Sigma = A^-1 (the Eq. (19) minimiser) and B = I exactly.
    A = spd(40, 9, lo=-2, hi=2)
    ref = np.linalg.slogdet(A)[1]
    r = L.preconditioned_slq_logdet(A, rng=np.random.default_rng(0), budget=400, fractions=(0.0, 0.9))
    assert r.info["rank"] == 40
    assert abs(r.estimate - ref) <= TOL["logdet_exact"] * max(1.0, abs(ref))


def test_slq_quadrature_is_exact_with_n_lanczos_steps():
    # k = n steps integrate v^T log(A) v exactly, so only Hutchinson noise remains.
    A = spd(40, 9, lo=-2, hi=2)
    r = L.slq_logdet(A, rng=np.random.default_rng(0), budget=400, steps=40)
    lam, U = np.linalg.eigh(A)
    logA = (U * np.log(lam)) @ U.T
    vals = r.info["values"]
    V = np.random.default_rng(0).choice(np.array([-1.0, 1.0]), size=(40, len(vals)))
    assert np.allclose(vals, np.einsum("ib,ij,jb->b", V, logA, V), rtol=TOL["logdet_exact"], atol=TOL["logdet_exact"])


def test_chebyshev_interpolant_of_log_converges_on_its_interval():
    from vaetheory.logdet_baselines import chebyshev_coefficients

    lo, hi = 0.01, 8.0
    t = np.linspace(lo, hi, 101)
    x = (2 * t - (lo + hi)) / (hi - lo)
    cheb = np.polynomial.chebyshev.chebval
    err = [np.abs(cheb(x, chebyshev_coefficients(d, lo, hi)) - np.log(t)).max() for d in (50, 200)]
    # Geometric convergence at rate ~ exp(-2 d / sqrt(hi / lo)): 200 terms reach ~1e-7.
    assert err[1] < 1e-6 < err[0]


def test_gauss_quadrature_of_a_diagonal_tridiagonal_is_exact():
    assert gauss_quadrature(np.array([2.0]), np.array([]), np.log) == pytest.approx(np.log(2.0))


# --- matvec accounting and validation ----------------------------------------------------


ALL = [
    (L.logdet_trace_estimator, {"parameterization": "scalar"}),
    (L.logdet_trace_estimator, {"parameterization": "diagonal"}),
    (L.logdet_trace_estimator, {"parameterization": "diag+lowrank"}),
    (L.logdet_trace_estimator, {"parameterization": "full"}),
    (L.slq_logdet, {}),
    (L.slq_logdet, {"probes": "gaussian"}),
    (L.hutchpp_logdet, {}),
    (L.chebyshev_logdet, {"bounds": (0.1, 10.0)}),
    (L.preconditioned_slq_logdet, {}),
]


@pytest.mark.parametrize("fn, kw", ALL)
@pytest.mark.parametrize("budget", [37, 150])
@pytest.mark.parametrize("batched", [True, False])
def test_matvec_counts_are_exact(fn, kw, budget, batched):
    A = spd(30, 10, lo=-1.5, hi=1.5)
    mv = Counter(A)
    r = fn(mv, 30, rng=np.random.default_rng(0), budget=budget, batched=batched, **kw)
    assert r.matvecs == mv.count <= budget
    assert np.isfinite(r.estimate)


@pytest.mark.parametrize("fn, kw", ALL)
def test_estimators_validate_their_inputs(fn, kw):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="positive definite|symmetric"):
        fn(np.diag([1.0, -1.0, 2.0]), rng=rng, budget=20, **kw)
    with pytest.raises(ValueError, match="n is required"):
        fn(lambda X: X, rng=rng, budget=20, **kw)
    with pytest.raises(ValueError, match="rng"):
        fn(np.eye(3), rng=0, budget=20, **kw)
    with pytest.raises(ValueError, match="budget"):
        fn(np.eye(3), rng=rng, budget=0, **kw)


def test_bench_logdet_runs_and_its_known_answers_are_right(tmp_path):
    out = tmp_path / "r.json"
    argv = ["bench", "logdet", "--n", "64", "--seeds", "3", "--budgets", "50", "100"]
    argv += ["--families", "toeplitz", "laplace2d", "varlaplace"]
    argv += ["--methods", "pslq/k0.5", "slq/d8", "eq19-diagonal", "--json", str(out), "--quiet"]
    assert main(argv) == 0
    res = json.loads(out.read_text())
    assert set(res["families"]) == {"toeplitz", "laplace2d", "varlaplace"}
    for fam, fr in res["families"].items():
        _, A, truth, (lo, hi) = make_family(fam, 64)
        # Closed-form / eigenvalue answers agree with Cholesky of the dense matrix.
        assert abs(truth - L.trace_identity_ref(A)) <= TOL["identity_f64"] * abs(truth)
        assert lo == pytest.approx(np.linalg.eigvalsh(A)[0], rel=1e-9)
        cells = [c for v in fr["cells"].values() for c in v.values()]
        assert len(cells) == 6 and all(c["ran"] and c["matvecs_max"] <= 100 for c in cells)
    # varlaplace is the family whose diagonal varies: its Hadamard floor is well below its AM-GM floor.
    floors = res["families"]["varlaplace"]["bias_floor"]
    assert floors["diagonal"] < 0.5 * floors["scalar"]


def test_bench_logdet_continues_a_stopped_run_and_keeps_its_cells(tmp_path):
    out = tmp_path / "r.json"
    base = ["bench", "logdet", "--n", "16", "--seeds", "2", "--families", "toeplitz", "--json", str(out), "--quiet"]
    assert main(base + ["--budgets", "40", "--methods", "slq/d8"]) == 0
    first = json.loads(out.read_text())["families"]["toeplitz"]["cells"]["slq/d8"]["40"]
    first["errors"] = [123.0, 456.0]  # a marker: a kept cell is not recomputed
    res = json.loads(out.read_text())
    res["families"]["toeplitz"]["cells"]["slq/d8"]["40"] = first
    out.write_text(json.dumps(res))
    assert main(base + ["--budgets", "40", "80", "--methods", "slq/d8", "xtrace/d8"]) == 0
    again = json.loads(out.read_text())
    assert again["seconds"] >= res["seconds"] > 0  # the continued run adds its time to the first's
    cells = again["families"]["toeplitz"]["cells"]
    assert cells["slq/d8"]["40"]["errors"] == [123.0, 456.0]
    assert set(cells["slq/d8"]) == {"40", "80"} and set(cells["xtrace/d8"]) == {"40", "80"}
    with pytest.raises(ValueError, match="seeds"):
        main(["bench", "logdet", "--n", "16", "--seeds", "3", "--families", "toeplitz", "--json", str(out), "--quiet"])


def test_bench_logdet_intervals_and_verdicts_follow_the_errors():
    errors = np.random.default_rng(0).standard_normal(40)
    r, lo, hi = rmse_interval(errors)
    assert r == pytest.approx(np.sqrt(np.mean(errors**2))) and lo < r < hi
    cell = {"ran": True, "errors": list(errors)}
    far = {"ran": True, "errors": list(100 * errors)}
    res = {"budgets": [10], "families": {"f": {"cells": {"pslq/k0.5": {"10": cell}, "slq/d8": {"10": far}}}}}
    v = summarise(res)["f"]["verdicts"][0]
    assert v["winner"] == "ours" and v["baseline"]["variant"] == "slq/d8"
    # the same seeds with errors 1% larger on every one: the single-method intervals overlap, the paired
    # ratio does not (a 1% gain on every shared draw), and only the paired verdict names a winner
    res["families"]["f"]["cells"]["slq/d8"]["10"] = {"ran": True, "errors": list(1.01 * errors)}
    v = summarise(res)["f"]["verdicts"][0]
    assert v["ours"]["hi"] > v["baseline"]["lo"] and v["winner"] == "ours"
    assert v["ratio"][0] == pytest.approx(1 / 1.01) and v["ratio"][2] < 1
    # an independent draw of the same distribution: the ratio's interval straddles 1
    other = np.random.default_rng(1).standard_normal(40)
    res["families"]["f"]["cells"]["slq/d8"]["10"] = {"ran": True, "errors": list(other)}
    v = summarise(res)["f"]["verdicts"][0]
    assert v["winner"] == "tie" and v["ratio"][1] < 1 < v["ratio"][2]


def test_rmse_ratio_interval_against_a_direct_bootstrap_and_refuses_unpaired_errors():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(25), 2 * rng.standard_normal(25)
    r, lo, hi = rmse_ratio_interval(a, b, seed=7)
    idx = np.random.default_rng(7).integers(0, 25, size=(2000, 25))
    direct = [np.sqrt((a[i] ** 2).mean() / (b[i] ** 2).mean()) for i in idx]
    assert r == pytest.approx(np.sqrt((a**2).mean() / (b**2).mean()))
    assert (lo, hi) == pytest.approx(tuple(np.quantile(direct, [0.025, 0.975])))
    with pytest.raises(ValueError, match="same seeds"):
        rmse_ratio_interval(a, b[:-1])


@pytest.mark.parametrize("fn, kw", ALL)
@pytest.mark.parametrize("budget", [1, 2, 5, 10, 11])
def test_tiny_budgets_run_or_refuse_with_value_error(fn, kw, budget):
    mv = Counter(spd(12, 12))
    try:
        r = fn(mv, 12, rng=np.random.default_rng(0), budget=budget, **kw)
    except ValueError as exc:
        assert "budget" in str(exc)
        return
    assert r.matvecs == mv.count <= budget and np.isfinite(r.estimate)
