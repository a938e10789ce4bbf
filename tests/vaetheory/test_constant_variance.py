"""Sec. 4.3: the second-order gap Eq. (21), the optimal constant variance, the penalty Eq. (22)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TOL
from hypothesis import given
from hypothesis import strategies as st
from strategies import SEEDS, vae_cases

from vaetheory import constant_variance as c
from vaetheory import evidence as e
from vaetheory import optimality as q


def _S2(s2):
    return s2 if s2.ndim == 2 else np.diag(s2)


def _precisions(s2, J):
    return np.linalg.inv(_S2(s2)) + np.swapaxes(J, 1, 2) @ J


def _sym(rng, n):
    A = rng.standard_normal((n, n))
    return (A + A.T) / 2


def _tr_power(E, k):
    return np.trace(np.linalg.matrix_power(E, k), axis1=1, axis2=2)


@given(vae_cases(), SEEDS)
def test_second_order_gap_agrees_with_exact_gap_to_third_order_eq18_eq21(case, seed):
    # Sigma = P^-1 + t D, E = P Sigma - I = t P D with eigenvalues d (|d| <= 0.1):
    # Eq. (18) = 1/2 sum(d - log(1 + d)) = 1/4 tr E^2 - 1/6 tr E^3 + R, |R| <= 0.19 tr E^4
    # (Lagrange remainder d^4 / (4 (1 + xi)^4) halved, 1 + xi >= 0.9).
    rng = np.random.default_rng(seed)
    N, n = case["N"], case["n"]
    J = rng.standard_normal((N, case["m"], n))
    P = _precisions(case["s2"], J)
    D = np.stack([_sym(rng, n) for _ in range(N)])
    rho = np.abs(np.linalg.eigvals(P @ D)).max(axis=1)
    for scale in (0.1, 0.05, 0.025):
        t = (scale / rho)[:, None, None]
        Sig = np.linalg.inv(P) + t * D
        Sig = (Sig + np.swapaxes(Sig, 1, 2)) / 2
        E = P @ Sig - np.eye(n)
        exact = e.evidence_gap(Sig, case["s2"], J)
        second = c.gap_second_order(Sig, case["s2"], J)
        np.testing.assert_allclose(second, 0.25 * _tr_power(E, 2), rtol=TOL["identity_f64"])
        third = exact - second + _tr_power(E, 3) / 6
        assert np.all(np.abs(third) <= 0.2 * _tr_power(E, 4) + TOL["gap_roundoff_abs"])


def test_second_order_gap_error_scales_as_t_cubed_eq18_eq21():
    # known example: the ratio of errors for t and t/2 tends to 2^3 = 8
    rng = np.random.default_rng(11)
    J = rng.standard_normal((1, 4, 2))
    s2 = np.array([1.0, 2.0])
    P = _precisions(s2, J)[0]
    D = np.array([[1.0, 0.3], [0.3, 0.5]])  # tr((P D)^3) != 0 here
    err = []
    for t in (4e-3, 2e-3, 1e-3):
        Sig = np.linalg.inv(P) + t * D
        err.append((e.evidence_gap(Sig[None], s2, J) - c.gap_second_order(Sig[None], s2, J))[0])
    r1, r2 = err[0] / err[1], err[1] / err[2]
    assert abs(r1 - 8) < 0.2 and abs(r2 - 8) < 0.1, (r1, r2)


@given(vae_cases(), SEEDS)
def test_penalty_is_zero_when_every_jacobian_is_the_same_eq22(case, seed):
    J0 = np.random.default_rng(seed).standard_normal((case["m"], case["n"]))
    J = np.broadcast_to(J0, (case["N"],) + J0.shape)
    assert abs(c.cv2_penalty(case["s2"], J)) <= TOL["identity_f64"]
    # and Sigma~ is then the true posterior covariance of every example, Eq. (25)
    np.testing.assert_allclose(
        c.optimal_constant_variance(case["s2"], J),
        e.true_posterior_covariance(case["s2"], J)[0],
        rtol=TOL["identity_f64"],
        atol=TOL["known_answer_f64"],
    )


@given(vae_cases(), SEEDS)
def test_penalty_is_mean_second_order_gap_at_optimal_constant_variance_both_forms_eq21_eq22(case, seed):
    rng = np.random.default_rng(seed)
    N, m, n, s2 = case["N"], case["m"], case["n"], case["s2"]
    J = rng.standard_normal((N, m, n))
    Sig = c.optimal_constant_variance(s2, J)
    pen = c.cv2_penalty(s2, J)
    tol = dict(rtol=TOL["identity_f64"], atol=TOL["identity_f64"])
    np.testing.assert_allclose(pen, np.mean(c.gap_second_order(Sig[None], s2, J)), **tol)
    np.testing.assert_allclose(c.cv2_penalty_terms(s2, J), c.gap_second_order(Sig[None], s2, J), **tol)
    # the paper's other form: 1/4 tr CV^2[J^T J S^2 + I] (matrix reading), the S^2 factors cancel
    Q = np.swapaxes(J, 1, 2) @ J @ _S2(s2) + np.eye(n)
    E = Q @ np.linalg.inv(Q.mean(axis=0)) - np.eye(n)
    np.testing.assert_allclose(pen, 0.25 * np.mean(_tr_power(E, 2)), **tol)
    assert pen >= 0


@given(vae_cases(), SEEDS)
def test_optimal_constant_variance_zeroes_the_summed_variance_gradient_eq10(case, seed):
    # Sigma~ maximises E_x[ELBO] over a shared Sigma: the sum over examples of Eq. (10) vanishes
    J = np.random.default_rng(seed).standard_normal((case["N"], case["m"], case["n"]))
    Sig = c.optimal_constant_variance(case["s2"], J)
    G = q.variance_gradient(Sig[None], case["s2"], J).sum(axis=0)
    assert np.abs(G).max() <= TOL["identity_f64"] * np.abs(np.linalg.inv(Sig)).max()


@given(vae_cases(), SEEDS, st.sampled_from([0.3, 0.1, 0.03]))
def test_penalty_matches_exact_mean_gap_to_second_order_eq18_eq22(case, seed, t):
    # J_x = J0 + t D_x: the exact penalty E_x[Eq. (18) at Sigma~] - E_x[Eq. (18) at P_x^-1] (= 0)
    # and Eq. (22) differ by at most (2/3) rho / (1 - rho) of Eq. (22), rho = max |eig(P_x Sigma~ - I)|
    # (|sum_{k>=3} (-d)^k / k| <= |d|^3 / (3 (1 - |d|)) against d^2 / 2 per eigenvalue).
    rng = np.random.default_rng(seed)
    N, m, n, s2 = case["N"], case["m"], case["n"], case["s2"]
    J0, D = rng.standard_normal((m, n)), rng.standard_normal((N, m, n))
    while True:  # halve t until the expansion converges (rho < 1/2); rho -> 0 with t
        J = J0 + t * D
        Sig = c.optimal_constant_variance(s2, J)
        rho = np.abs(np.linalg.eigvals(_precisions(s2, J) @ Sig - np.eye(n))).max()
        if rho < 0.5:
            break
        t /= 2
    exact = np.mean(e.evidence_gap(Sig[None], s2, J) - e.evidence_gap(e.true_posterior_covariance(s2, J), s2, J))
    pen = c.cv2_penalty(s2, J)
    assert abs(exact - pen) <= (2 / 3) * rho / (1 - rho) * pen + TOL["gap_roundoff_abs"]


@given(st.integers(1, 5), st.integers(2, 9), SEEDS)
def test_penalty_of_indefinite_precisions_is_the_whitened_relative_variance_eq22(n, N, seed):
    # P_x = S^-2 + H_x with H_x = J^T J - 2 u u^T (BAGGINS' curvature): some P_x indefinite, Pbar positive definite.
    # Independent route: whiten symmetrically, W_x = Pbar^-1/2 P_x Pbar^-1/2, and 1/4 |W_x - I|_F^2.
    rng = np.random.default_rng(seed)
    J = rng.standard_normal((N, n + 2, n))
    u = 1.5 * rng.standard_normal((N, n))
    P = np.eye(n) + np.swapaxes(J, 1, 2) @ J - 2.0 * u[:, :, None] * u[:, None, :]
    P[0] = (1.0 + N * np.abs(np.linalg.eigvalsh(P)).max()) * np.eye(n)  # keeps the mean positive definite
    lam, V = np.linalg.eigh(P.mean(axis=0))
    R = V @ np.diag(lam**-0.5) @ V.T
    W = R @ P @ R - np.eye(n)
    np.testing.assert_allclose(
        c.cv2_penalty_terms_of_precisions(P), 0.25 * (W * W).sum(axis=(1, 2)), rtol=1e-10, atol=1e-12
    )


def test_penalty_of_precisions_equals_the_jacobian_form_and_refuses_an_indefinite_mean_eq22():
    rng = np.random.default_rng(3)
    s2, J = np.array([0.5, 2.0, 1.0]), rng.standard_normal((6, 8, 3))
    np.testing.assert_allclose(
        c.cv2_penalty_terms_of_precisions(_precisions(s2, J)), c.cv2_penalty_terms(s2, J), rtol=1e-12
    )
    with pytest.raises(ValueError, match="positive definite"):
        c.cv2_penalty_terms_of_precisions(-np.broadcast_to(np.eye(3), (4, 3, 3)))
    with pytest.raises(ValueError, match="finite"):
        c.cv2_penalty_terms_of_precisions(np.full((2, 3, 3), np.nan))
