"""Sec. 4.2 and Sec. 5: exact log evidence Eq. (16), gap Eq. (18), Eqs. (25)-(27), on linear-Gaussian closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TOL
from hypothesis import given
from hypothesis import strategies as st
from strategies import SEEDS, vae_cases

from vaetheory import evidence as e
from vaetheory import gaussian as g


def _S2(s2):
    return s2 if s2.ndim == 2 else np.diag(s2)


def _mode(case, Tinv=None):
    """Posterior mode z* = (S^-2 + W^T T^-1 W)^-1 W^T T^-1 (x - b) of the linear model, per example."""
    W, m = case["W"], case["m"]
    Tinv = np.eye(m) if Tinv is None else Tinv
    Tinv = np.broadcast_to(Tinv, (case["N"], m, m))
    P = np.linalg.inv(_S2(case["s2"])) + W.T @ Tinv @ W
    rhs = np.einsum("ij,kjl,kl->ki", W.T, Tinv, case["x"] - case["b"])
    return np.linalg.solve(P, rhs[..., None])[..., 0]


@given(vae_cases())
def test_log_evidence_at_mode_is_exact_for_linear_decoder_eq16(case):
    # any W, not only the optimal one
    dec = g.LinearDecoder(case["W"], case["b"])
    W, N = case["W"], case["N"]
    zs = _mode(case)
    got = e.log_evidence(case["x"], zs, dec(zs), dec.jacobian(N), case["s2"])
    want = g.log_normal(case["x"], case["b"], W @ _S2(case["s2"]) @ W.T + np.eye(case["m"]))
    np.testing.assert_allclose(got, want, rtol=TOL["identity_f64"])


@given(vae_cases(), SEEDS)
def test_sylvester_log_determinant_matches_direct_slogdet_eq16(case, seed):
    rng = np.random.default_rng(seed)
    N, m, n = case["N"], case["m"], case["n"]
    J = rng.standard_normal((N, m, n))
    z, nu, x = rng.standard_normal((N, n)), rng.standard_normal((N, m)), case["x"]
    S2 = _S2(case["s2"])
    direct = np.linalg.slogdet(J @ S2 @ np.swapaxes(J, 1, 2) + np.eye(m))[1]
    want = -0.5 * (
        m * np.log(2 * np.pi) + np.einsum("ki,ij,kj->k", z, np.linalg.inv(S2), z) + np.sum((x - nu) ** 2, 1) + direct
    )
    np.testing.assert_allclose(e.log_evidence(x, z, nu, J, case["s2"]), want, rtol=TOL["identity_f64"])


@given(vae_cases(), st.sampled_from(["scalar", "diag", "per_example", "full", "per_example_full"]), SEEDS)
def test_general_log_evidence_at_mode_is_exact_for_linear_decoder_eq26(case, form, seed):
    rng = np.random.default_rng(seed)
    N, m, W = case["N"], case["m"], case["W"]
    A = rng.standard_normal((m, m))
    T = {
        "scalar": 0.3,
        "diag": np.exp(rng.uniform(-1, 1, m)),
        "per_example": np.exp(rng.uniform(-1, 1, (N, m))),
        # a shared full T as (m, m), or as (1, m, m) when N == m would read (m, m) as diagonals
        "full": (A @ A.T / m + 0.2 * np.eye(m))[(None,) * (N == m)],
        "per_example_full": np.stack([B @ B.T / m + 0.2 * np.eye(m) for B in rng.standard_normal((N, m, m))]),
    }[form]
    # as dense (N, m, m); an (N, m) T is per-example diagonals, even when N == m (documented)
    if np.ndim(T) == 0:
        Tfull = np.broadcast_to(T * np.eye(m), (N, m, m))
    elif form in ("diag", "per_example"):
        Tfull = np.broadcast_to(np.stack([np.diag(t) for t in np.atleast_2d(T)]), (N, m, m))
    else:
        Tfull = np.broadcast_to(T, (N, m, m))
    dec = g.LinearDecoder(W, case["b"])
    zs = _mode(case, np.linalg.inv(Tfull))
    got = e.log_evidence_general(case["x"], zs, dec(zs), dec.jacobian(N), case["s2"], T)
    C = W @ _S2(case["s2"]) @ W.T
    want = [g.log_normal(case["x"][k], case["b"], C + Tfull[k]) for k in range(N)]
    np.testing.assert_allclose(got, want, rtol=TOL["identity_f64"])


@given(vae_cases(), SEEDS)
def test_general_log_evidence_with_identity_T_is_eq16_eq26(case, seed):
    rng = np.random.default_rng(seed)
    N, m, n = case["N"], case["m"], case["n"]
    J, z, nu = rng.standard_normal((N, m, n)), rng.standard_normal((N, n)), rng.standard_normal((N, m))
    want = e.log_evidence(case["x"], z, nu, J, case["s2"])
    for T in (1.0, np.ones(m), np.eye(m)[None]):
        np.testing.assert_allclose(
            e.log_evidence_general(case["x"], z, nu, J, case["s2"], T), want, rtol=TOL["identity_f64"]
        )


@given(vae_cases(m_max=3), SEEDS)
def test_noiseless_log_evidence_is_change_of_variables_eq27(case, seed):
    # n = m, x = W z + b with z ~ N(0, S^2): log p(x) = log N(x; b, W S^2 W^T) at mu = W^-1 (x - b)
    rng = np.random.default_rng(seed)
    n, N = case["n"], case["N"]
    W = rng.standard_normal((n, n)) + 2 * np.eye(n)
    x = rng.standard_normal((N, n))
    b = rng.standard_normal(n)
    mu = np.linalg.solve(W, (x - b).T).T
    got = e.log_evidence_noiseless(mu, np.broadcast_to(W, (N, n, n)), case["s2"])
    np.testing.assert_allclose(got, g.log_normal(x, b, W @ _S2(case["s2"]) @ W.T), rtol=TOL["identity_f64"])
    # the T = t I -> 0 limit of Eq. (26) with the data exactly decoded (x = nu(mu)), A = W S^2 W^T:
    # Eq. (26) - Eq. (27) = -1/2 (log|A + t I| - log|A|) = -t/2 tr A^-1 + t^2/4 tr A^-2 - ...
    Ainv = np.linalg.inv(W @ _S2(case["s2"]) @ W.T)
    t = 0.01 / np.abs(np.linalg.eigvalsh(Ainv)).max()
    diff = e.log_evidence_general(x, mu, x, np.broadcast_to(W, (N, n, n)), case["s2"], t) - got
    assert np.all(np.abs(diff / t + np.trace(Ainv) / 2) <= t * np.trace(Ainv @ Ainv) / 2 + TOL["identity_f64"] / t)


def test_noiseless_log_evidence_is_infinite_for_singular_jacobian_eq27():
    J = np.array([[[1.0, 2.0], [2.0, 4.0]]])
    assert e.log_evidence_noiseless([[0.1, 0.2]], J, [1.0, 1.0])[0] == np.inf


@given(vae_cases())
def test_gap_equals_exact_log_evidence_minus_elbo_at_mode_eq2_eq18(case):
    # For full or diagonal Sigma (any SPD value) at mu = z*: log p(x) - ELBO is exactly Eq. (18).
    dec = g.LinearDecoder(case["W"], case["b"])
    W, N, var, s2 = case["W"], case["N"], case["var"], case["s2"]
    zs = _mode(case)
    logp = g.log_normal(case["x"], case["b"], W @ _S2(s2) @ W.T + np.eye(case["m"]))
    exact_gap = logp - g.elbo(case["x"], zs, var, s2, dec, method="exact")
    got = e.evidence_gap(var, s2, dec.jacobian(N))
    np.testing.assert_allclose(got, exact_gap, rtol=TOL["identity_f64"], atol=TOL["identity_f64"] * np.abs(logp).max())
    assert np.all(got >= 0)


@given(vae_cases())
def test_gap_vanishes_at_true_posterior_covariance_eq18_eq25(case):
    J = g.LinearDecoder(case["W"], case["b"]).jacobian(case["N"])
    Sig = e.true_posterior_covariance(case["s2"], J)
    assert np.all(np.abs(e.evidence_gap(Sig, case["s2"], J)) <= TOL["gap_roundoff_abs"])
    # and is positive elsewhere
    assert np.all(e.evidence_gap(1.5 * Sig, case["s2"], J) > 0.5 * case["n"] * (0.5 - np.log(1.5)) * 0.999)


@given(vae_cases())
def test_true_posterior_covariance_is_gaussian_conditioning_eq25(case):
    # Linear-Gaussian model: Cov(z | x) = S^2 - S^2 W^T (W S^2 W^T + I)^-1 W S^2
    W, S2 = case["W"], _S2(case["s2"])
    want = S2 - S2 @ W.T @ np.linalg.solve(W @ S2 @ W.T + np.eye(case["m"]), W @ S2)
    got = e.true_posterior_covariance(case["s2"], g.LinearDecoder(W, case["b"]).jacobian(case["N"]))
    np.testing.assert_allclose(
        got, np.broadcast_to(want, got.shape), rtol=TOL["identity_f64"], atol=TOL["identity_f64"] * np.abs(S2).max()
    )


def test_gap_known_answer_one_dimension_eq18():
    # n = 1: P = 1/s2 + j^2; gap = 1/2 (P sigma - 1 - log(P sigma))
    s2, j, sig = 2.0, 1.5, 0.1
    P = 1 / s2 + j * j
    want = 0.5 * (P * sig - 1 - np.log(P * sig))
    assert e.evidence_gap([[sig]], [s2], [[[j]]])[0] == pytest.approx(want, rel=TOL["known_answer_f64"])


def test_log_evidence_is_a_gauss_newton_laplace_approximation_for_nonlinear_decoder_eq16():
    # n = m = 1, nu(z) = z + eps sin(z): Eq. (16) at the mode is exact at eps = 0 and its error
    # against the true log p(x) = log int N(z; 0, s2) N(x; nu(z), 1) dz (trapezoid) is O(eps).
    from scipy.optimize import brentq
    from scipy.special import logsumexp

    s2, x = 1.5, 0.8
    grid = np.linspace(-30, 30, 200001)
    errs = []
    for eps in (0.0, 0.02, 0.01):

        def nu(z):
            return z + eps * np.sin(z)

        def dnu(z):
            return 1 + eps * np.cos(z)

        zs = brentq(lambda z: z / s2 - (x - nu(z)) * dnu(z), -20, 20, xtol=1e-15)
        got = e.log_evidence([[x]], [[zs]], [[nu(zs)]], [[[dnu(zs)]]], [s2])[0]
        logf = -0.5 * (grid**2 / s2 + np.log(2 * np.pi * s2) + (x - nu(grid)) ** 2 + np.log(2 * np.pi))
        true = logsumexp(logf) + np.log(grid[1] - grid[0])
        errs.append(abs(got - true))
    assert errs[0] <= TOL["identity_f64"]
    assert 1.6 < errs[1] / errs[2] < 2.4  # first order in eps
