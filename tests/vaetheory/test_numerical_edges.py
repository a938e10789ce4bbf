"""Numerical edge cases: each checked in its failing regime against an independent high-precision reference.

The references are computed with mpmath at 50 digits from the same float64 inputs, so they carry no
float64 round-off of their own.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
from conftest import TOL

from vaetheory import evidence as e
from vaetheory import objectives as O
from vaetheory import optimal as opt
from vaetheory.solver import quadrature as qd

mp.mp.dps = 50


def _gap_problem():
    rng = np.random.default_rng(0)
    J = rng.normal(size=(1, 4, 3))
    s2 = np.array([1.0, 2.0, 0.5])
    P = np.diag(1.0 / s2) + J[0].T @ J[0]
    return J, s2, P


def _gap_reference(P, var):
    """1/2 (tr(P Sigma) - n - log|P Sigma|) at 50 digits: no cancellation to fear."""
    A = mp.matrix(P.tolist()) * mp.diag([mp.mpf(float(v)) for v in var])
    n = len(var)
    return float((sum(A[i, i] for i in range(n)) - n - mp.log(mp.det(A))) / 2)


@pytest.mark.parametrize("ratio", [1e-10, 1e-12, 1e-14, 1e-16, 1e-18, 1e-30, 1e-200])
def test_gap_far_below_true_posterior_variance_matches_high_precision_eq18(ratio):
    # Sigma = ratio * diag(P^-1): before the fix the relative error grew from 1e-9 (ratio 1e-10) to 7e-3
    # (1e-16) and the gap was +inf below ~1e-17 (it is ~60 nats at 1e-18).
    J, s2, P = _gap_problem()
    var = ratio * np.diag(np.linalg.inv(P))
    got = e.evidence_gap(var[None], s2, J)[0]
    assert np.isfinite(got)
    assert got == pytest.approx(_gap_reference(P, var), rel=TOL["known_answer_f64"])


def test_gap_with_one_direction_far_below_matches_high_precision_eq18():
    # One direction matched, one 1e-20 below: the small eigenvalue is below the round-off of eigvalsh, so
    # its log comes from the log-determinants (before the fix: +inf).
    J, s2, P = _gap_problem()
    var = np.diag(np.linalg.inv(P)).copy()
    var[0] *= 1e-20
    got = e.evidence_gap(var[None], s2, J)[0]
    assert got == pytest.approx(_gap_reference(P, var), rel=TOL["known_answer_f64"])


def _log_normal_reference(z, mu, var):
    """-1/2 sum_k ((z_k - mu_k)^2 / var_k + log var_k) at 50 digits, (M, N)."""
    M, N = z.shape[0], mu.shape[0]
    out = np.empty((M, N))
    for i in range(M):
        for j in range(N):
            t = mp.mpf(0)
            for k in range(z.shape[1]):
                d = mp.mpf(float(z[i, k])) - mp.mpf(float(mu[j, k]))
                t += d * d / mp.mpf(float(var[j, k])) + mp.log(mp.mpf(float(var[j, k])))
            out[i, j] = float(-t / 2)
    return out


def _far_narrow_problem(offset):
    """Five narrow posteriors (sd ~ 1e-3) at |mu| / sd = offset, query points inside them."""
    rng = np.random.default_rng(1)
    sd = 1e-3
    mu = offset * sd + 3 * sd * rng.normal(size=(5, 2))
    var = (sd * rng.uniform(0.5, 2.0, size=(5, 2))) ** 2
    z = mu[rng.integers(0, 5, 7)] + sd * rng.normal(size=(7, 2))
    x = rng.normal(size=(5, 3))
    return z, mu, var, x


@pytest.mark.parametrize("offset", [1e4, 1e5, 1e6, 1e7])
def test_decoder_log_weights_far_from_origin_match_high_precision_eq6(offset):
    # Before centring, the expanded square erred by 5e-8 (offset 1e4) to 7e-2 nats (1e7); now ~1e-14.
    z, mu, var, _ = _far_narrow_problem(offset)
    got = qd.decoder_log_weights(z, mu, var)
    ref = _log_normal_reference(z, mu, var)
    # Log weights are O(10) nats here: known_answer_f64 as an absolute bound is ~1e-11 relative.
    assert np.max(np.abs(got - ref)) <= TOL["known_answer_f64"]


@pytest.mark.parametrize("offset", [1e4, 1e7])
def test_decoder_mean_far_from_origin_matches_high_precision_eq6(offset):
    z, mu, var, x = _far_narrow_problem(offset)
    nu, a = qd.decoder_mean(z, mu, var, x)
    ref = _log_normal_reference(z, mu, var)
    w = np.exp(ref - ref.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    assert np.max(np.abs(a - w)) <= TOL["known_answer_f64"]
    assert np.max(np.abs(nu - w @ x)) <= TOL["known_answer_f64"]


def _bilbo_reference(mu, var):
    """1/2 sum_k log1p(M_k / Sigma_k) and mu / (B (Sigma + M)) at 50 digits."""
    B, n = mu.shape
    value, grad = mp.mpf(0), np.empty((B, n))
    for k in range(n):
        M = sum(mp.mpf(float(mu[b, k])) ** 2 for b in range(B)) / B
        vk = mp.mpf(float(var[k]))
        value += mp.log1p(M / vk) / 2
        for b in range(B):
            grad[b, k] = float(mp.mpf(float(mu[b, k])) / (B * (vk + M)))
    return float(value), grad


@pytest.mark.parametrize(
    "scale, var",
    [(1e160, [1.0, 1.0]), (1e200, [1.0, 1e-10]), (1.0, [1e-310, 1e-300]), (1.0, [0.5, 2.0]), (1e-3, [0.5, 2.0])],
)
def test_bilbo_kl_overflow_safe_matches_high_precision_eq24(scale, var):
    # Before the fix |mu| ~ 1e160 (or Sigma ~ 1e-310) gave value +inf and d_mu = 0 where the value is ~737 nats.
    mu = scale * np.random.default_rng(0).normal(size=(4, 2))
    var = np.array(var)
    want, grad = _bilbo_reference(mu, var)
    for got in (O.bilbo_kl(mu, var), O.bilbo_kl_unchecked(np, mu, var)):
        assert float(got.value) == pytest.approx(want, rel=TOL["known_answer_f64"])
        np.testing.assert_allclose(got.d_mu, grad, rtol=TOL["known_answer_f64"])


def test_bilbo_kl_unchecked_overflow_form_keeps_models_axis_eq24():
    # K = 2 models, one overflowing: each row gets exactly what it gets alone.
    rng = np.random.default_rng(2)
    mu = np.stack([rng.normal(size=(3, 2)), 1e170 * rng.normal(size=(3, 2))])
    both = O.bilbo_kl_unchecked(np, mu, 0.5)
    for k in range(2):
        alone = O.bilbo_kl_unchecked(np, mu[k], 0.5)
        assert float(both.value[k]) == pytest.approx(float(alone.value), rel=TOL["known_answer_f64"])
        np.testing.assert_allclose(both.d_mu[k], alone.d_mu, rtol=TOL["known_answer_f64"])


def _subnormal_problem():
    """A problem with O(1) inputs and its copy scaled by a = 2^-530: z, mu times a, Sigma times a^2 (subnormal).

    Eq. (6) is invariant under this scaling, the powers of two are exact, and the variances k / 16 stay exact
    as subnormals, so the scaled problem has exactly the weights of the unscaled one.
    """
    rng = np.random.default_rng(0)
    mu, x, z = rng.normal(size=(4, 2)), rng.normal(size=(4, 3)), rng.normal(size=(5, 2))
    var = rng.choice([1 / 16, 2 / 16, 4 / 16, 8 / 16], size=(4, 2))
    a = 2.0**-530
    return (z, mu, var, x), (a * z, a * mu, a * a * var, x), a


def test_optimal_decoder_with_subnormal_variance_matches_high_precision_eq6():
    # Before the fix: NaN (every log density -inf) or errors of 3e-5 (squares of subnormal differences).
    (z, mu, var, x), scaled, a = _subnormal_problem()
    assert scaled[2].max() < np.finfo(np.float64).tiny
    ref = _log_normal_reference(z, mu, var)
    w = np.exp(ref - ref.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    for f in (opt.optimal_decoder, opt.optimal_decoder_reference):
        np.testing.assert_allclose(f(*scaled), w @ x, atol=TOL["known_answer_f64"])
    lw = opt.log_weights(*scaled[:3])
    assert np.max(np.abs(np.exp(lw) - w)) <= TOL["known_answer_f64"]
    # Eq. (7) scales by 1 / a: J(scaled) * a is the unscaled Jacobian.
    _, J0 = opt.optimal_decoder_jacobian(z, mu, var, x)
    _, J1 = opt.optimal_decoder_jacobian(*scaled)
    assert np.max(np.abs(J1 * a - J0)) <= TOL["identity_f64"] * np.max(np.abs(J0))


def test_optimal_decoder_far_from_every_subnormal_posterior_is_nearest_x_eq6():
    # Sigma = 1e-310 and z at O(1) distances: the weight is exactly one-hot on the nearest posterior.
    rng = np.random.default_rng(0)
    mu, x, z = rng.normal(size=(4, 2)), rng.normal(size=(4, 3)), rng.normal(size=(5, 2))
    var = np.full((4, 2), 1e-310)
    nearest = np.argmin(np.sum((z[:, None] - mu[None]) ** 2, axis=-1), axis=1)
    for f in (opt.optimal_decoder, opt.optimal_decoder_reference):
        np.testing.assert_array_equal(f(z, mu, var, x), x[nearest])
    _, J = opt.optimal_decoder_jacobian(z, mu, var, x)
    np.testing.assert_array_equal(J, 0.0)
