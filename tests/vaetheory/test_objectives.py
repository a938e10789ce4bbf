"""Objectives of Secs. 4.3, 4.4 and 5.1: identities, gradients and array-module behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import TOL
from gradcheck import assert_gradient
from hypothesis import given
from hypothesis import strategies as st
from strategies import batch_cases

from vaetheory import objectives as O
from vaetheory.gaussian import kl_gaussian


def _full(sigma2, B, n):
    return np.broadcast_to(np.asarray(sigma2, dtype=np.float64), (B, n)).copy()


def _gauss_loglik(x, nu, T):
    """log N(x; nu, T I) per example, written out (T (B,))."""
    m = x.shape[1]
    return -0.5 * (m * np.log(2 * np.pi * T) + np.sum((x - nu) ** 2, axis=1) / T)


def _close(a, b, tol):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# ---------------------------------------------------------------------------
# known answers
# ---------------------------------------------------------------------------
def test_floating_prior_known_answer_eq4():
    mu = np.array([[1.0, -2.0], [3.0, 0.0]])
    # M_B = E_B[diag(mu)^2] = [(1 + 9) / 2, (4 + 0) / 2] = [5, 2]
    _close(O.floating_prior(mu, 0.5), [5.5, 2.5], TOL["identity_f64"])
    _close(O.floating_prior(mu, np.array([1.0, 2.0])), [6.0, 4.0], TOL["identity_f64"])
    var = np.array([[1.0, 3.0], [2.0, 1.0]])
    _close(O.floating_prior(mu, var), [6.5, 4.0], TOL["identity_f64"])


@given(batch_cases())
def test_floating_prior_is_the_diagonal_of_eq4(case):
    mu, var = case["mu"], case["var"]
    full = np.mean([np.diag(v) + np.outer(u, u) for u, v in zip(mu, var)], axis=0)  # Eq. (4)
    _close(O.floating_prior(mu, var), np.diag(full), TOL["identity_f64"])
    _close(O.floating_prior(mu, case["sigma2"]), np.diag(full) - var.mean(0) + case["sigma2"], TOL["identity_f64"])


def test_bilbo_kl_known_answer_eq24():
    mu = np.array([[1.0, -2.0], [3.0, 0.0]])
    # 1/2 (log1p(5 / 0.5) + log1p(2 / 0.5))
    _close(O.bilbo_kl(mu, 0.5).value, 0.5 * (math.log(11.0) + math.log(5.0)), TOL["identity_f64"])


def test_baggins_known_answer_eq29_eq30():
    x = np.array([[3.0, 4.0], [0.0, 1.0]])
    nu = np.zeros((2, 2))
    mu = np.array([[1.0], [-1.0]])
    # Sigma = 1, M_B = 1, S_B^2 = 2, tr(Sigma^-1 S_B^2) = 2; T_b = 0.2 |x_b - nu_b|^2 / 2
    T = O.baggins_T(x, nu, mu, 1.0, 0.2)
    _close(T, [2.5, 0.1], TOL["identity_f64"])
    # Eq. (30): -1/2 (log 2 + 2 / 0.2 + mean_b 2 log(2 pi T_b))
    expected = -0.5 * (math.log(2.0) + 10.0 + math.log(2 * math.pi * 2.5) * 2 / 2 + math.log(2 * math.pi * 0.1) * 2 / 2)
    _close(O.bilbo_baggins(x, nu, mu, 1.0, 0.2).value, expected, TOL["identity_f64"])


# ---------------------------------------------------------------------------
# identities
# ---------------------------------------------------------------------------
@given(batch_cases())
def test_kl_learned_and_constant_match_the_eq2_reference_eq1_eq2(case):
    B, n, mu, var, sigma2 = case["B"], case["n"], case["mu"], case["var"], case["sigma2"]
    _close(O.kl_learned(mu, var).value, kl_gaussian(mu, var, np.ones(n)), TOL["identity_f64"])
    s2 = np.exp(np.linspace(-1, 1, n))
    _close(O.kl_learned(mu, var, s2).value, kl_gaussian(mu, var, s2), TOL["identity_f64"])
    _close(O.kl_constant(mu, sigma2, s2).value, kl_gaussian(mu, _full(sigma2, B, n), s2), TOL["identity_f64"])


@given(batch_cases())
def test_bilbo_equals_floating_prior_elbo_eq2_eq24(case):
    """E_B of Eq. (2)'s KL with S^2 = Sigma + M_B is exactly Eq. (24)'s 1/2 log|I + Sigma^-1 M_B|."""
    B, n, mu, sigma2 = case["B"], case["n"], case["mu"], case["sigma2"]
    s2 = O.floating_prior(mu, sigma2)
    kl_mean = np.mean(kl_gaussian(mu, _full(sigma2, B, n), s2))
    M = np.diag(np.mean([np.outer(u, u) for u in mu], axis=0))
    logdet = np.linalg.slogdet(np.eye(n) + np.diag(M / np.broadcast_to(sigma2, (n,))))[1]
    _close(O.bilbo_kl(mu, sigma2).value, 0.5 * logdet, TOL["identity_f64"])
    _close(O.bilbo_kl(mu, sigma2).value, kl_mean, TOL["identity_f64"])


@given(batch_cases())
def test_bilbo_gradient_equals_held_constant_prior_gradient_eq3_eq4_eq24(case):
    """The S^2 derivative (Eq. (3)) vanishes at the floating prior (Eq. (4)), so the constant-Sigma
    gradient with S^2 held fixed equals BILBO's gradient through M_B."""
    mu, sigma2 = case["mu"], case["sigma2"]
    s2 = O.floating_prior(mu, sigma2)
    _close(O.kl_constant(mu, sigma2, s2).d_mu, O.bilbo_kl(mu, sigma2).d_mu, TOL["identity_f64"])


@given(batch_cases())
def test_baggins_T_satisfies_eq28_eq29(case):
    """tau |x - nu|^2 / T = tr(Sigma^-1 S_B^2) per example, with S_B^2 from Eq. (4)."""
    x, nu, mu, tau = case["x"], case["nu"], case["mu"], case["tau"]
    for var in (case["var"], case["sigma2"]):
        Sig = _full(var, case["B"], case["n"])
        S2 = np.mean([np.diag(v) + np.outer(u, u) for u, v in zip(mu, Sig)], axis=0)
        trace = np.array([np.trace(np.linalg.solve(np.diag(v), S2)) for v in Sig])
        T = O.baggins_T(x, nu, mu, var, tau)
        _close(tau * np.sum((x - nu) ** 2, axis=1) / T, trace, TOL["identity_f64"])


@given(batch_cases(), st.booleans())
def test_bilbo_baggins_equals_bilbo_with_gaussian_likelihood_eq24_eq29_eq30(case, stop):
    """Eq. (30) is Eq. (24) with the Gaussian likelihood whose T is Eq. (29)."""
    x, nu, mu, sigma2, tau = case["x"], case["nu"], case["mu"], case["sigma2"], case["tau"]
    T = O.baggins_T(x, nu, mu, sigma2, tau)
    eq24 = -O.bilbo_kl(mu, sigma2).value + np.mean(_gauss_loglik(x, nu, T))
    _close(O.bilbo_baggins(x, nu, mu, sigma2, tau, stop).value, eq24, TOL["identity_f64"])
    _close(O.baggins_log_likelihood(x, nu, mu, sigma2, tau, stop).value, _gauss_loglik(x, nu, T), TOL["identity_f64"])


@given(batch_cases(), st.booleans())
def test_bilbo_baggins_data_scale_invariance_eq30(case, stop):
    """x -> lam x, nu -> lam nu~ shifts Eq. (30) by -m log lam; gradients in nu~ and mu are unchanged."""
    x, nu, mu, sigma2, tau, lam, m = (
        case["x"],
        case["nu"],
        case["mu"],
        case["sigma2"],
        case["tau"],
        case["lam"],
        case["m"],
    )
    a = O.bilbo_baggins(x, nu, mu, sigma2, tau, stop)
    b = O.bilbo_baggins(lam * x, lam * nu, mu, sigma2, tau, stop)
    _close(b.value - a.value, -m * math.log(lam), TOL["identity_f64"] * max(1.0, abs(float(a.value))))
    _close(lam * b.d_nu, a.d_nu, TOL["identity_f64"])  # d/dnu~ = lam d/dnu
    _close(b.d_mu, a.d_mu, TOL["identity_f64"])


# ---------------------------------------------------------------------------
# gradients against float64 central finite differences
# ---------------------------------------------------------------------------
def _batch_mean(value):
    return float(np.mean(value))


GRADIENT_CASES = {
    # name: (function of the case's arrays, which arrays are differentiated)
    "kl_learned_eq2": (lambda c, a: O.kl_learned(a["mu"], a["var"]), ("mu", "var")),
    "kl_learned_with_s2_eq2": (lambda c, a: O.kl_learned(a["mu"], a["var"], c["s2"]), ("mu", "var")),
    # S^2 computed from the perturbed mu, as in training: the envelope property makes the
    # held-constant gradient the total gradient (see the eq3/eq4 test above)
    "kl_constant_floating_eq2_eq4": (
        lambda c, a: O.kl_constant(a["mu"], c["sigma2"], O.floating_prior(a["mu"], c["sigma2"])),
        ("mu",),
    ),
    "bilbo_kl_eq24": (lambda c, a: O.bilbo_kl(a["mu"], c["sigma2"]), ("mu",)),
    "baggins_learned_var_eq29": (
        lambda c, a: O.baggins_log_likelihood(a["x"], a["nu"], a["mu"], a["var"], c["tau"]),
        ("nu", "mu", "var"),
    ),
    "baggins_constant_var_eq29": (
        lambda c, a: O.baggins_log_likelihood(a["x"], a["nu"], a["mu"], c["sigma2"], c["tau"]),
        ("nu", "mu"),
    ),
    "bilbo_baggins_eq30": (lambda c, a: O.bilbo_baggins(a["x"], a["nu"], a["mu"], c["sigma2"], c["tau"]), ("nu", "mu")),
}


@pytest.mark.parametrize("name", sorted(GRADIENT_CASES))
@given(case=batch_cases())
def test_objective_gradients_match_finite_differences_eq2_eq24_eq29_eq30(name, case):
    fn, wrt = GRADIENT_CASES[name]
    case = dict(case, s2=np.exp(np.linspace(-1, 1, case["n"])))
    arrays = {k: case[k] for k in wrt}
    out = fn(case, {**case, **arrays})
    grads = {"mu": out.d_mu, "var": out.d_var, "nu": out.d_nu}
    f = lambda a: _batch_mean(fn(case, {**case, **a}).value)  # noqa: E731
    rng = np.random.default_rng(0)
    for _ in range(2):
        assert_gradient(f, arrays, {k: grads[k] for k in wrt}, rng, TOL["fd_grad_f64"], what=name)


@given(batch_cases())
def test_baggins_stop_gradient_is_the_gradient_with_T_frozen_eq29_eq30(case):
    """The stop-gradient variant differentiates -|x - nu|^2 / (2T) with T held at its value."""
    x, nu, mu, sigma2, tau = case["x"], case["nu"], case["mu"], case["sigma2"], case["tau"]
    T = O.baggins_T(x, nu, mu, sigma2, tau)
    out = O.baggins_log_likelihood(x, nu, mu, sigma2, tau, stop_gradient=True)
    f = lambda a: np.mean(_gauss_loglik(x, a["nu"], T))  # noqa: E731
    assert_gradient(f, {"nu": nu}, {"nu": out.d_nu}, np.random.default_rng(1), TOL["fd_grad_f64"])
    assert not np.any(out.d_mu)
    bb = O.bilbo_baggins(x, nu, mu, sigma2, tau, stop_gradient=True)
    _close(bb.d_mu, -O.bilbo_kl(mu, sigma2).d_mu, TOL["identity_f64"])


# ---------------------------------------------------------------------------
# array module, dtype and argument checks
# ---------------------------------------------------------------------------
def test_float32_in_float32_out_and_agrees_with_float64():
    rng = np.random.default_rng(3)
    B, n, m = 6, 3, 5
    mu, var = rng.standard_normal((B, n)), np.exp(rng.standard_normal((B, n)))
    x, nu = rng.standard_normal((B, m)), rng.standard_normal((B, m))
    calls = [
        lambda f: O.floating_prior(f(mu), 0.7),
        lambda f: O.kl_learned(f(mu), f(var)),
        lambda f: O.kl_constant(f(mu), 0.7, f(np.ones(n))),
        lambda f: O.bilbo_kl(f(mu), 0.7),
        lambda f: O.baggins_T(f(x), f(nu), f(mu), f(var), 0.2),
        lambda f: O.baggins_log_likelihood(f(x), f(nu), f(mu), f(var), 0.2),
        lambda f: O.bilbo_baggins(f(x), f(nu), f(mu), 0.7, 0.2),
    ]
    for call in calls:
        lo, hi = call(lambda a: a.astype(np.float32)), call(lambda a: a)
        lo = lo if isinstance(lo, tuple) else (lo,)
        hi = hi if isinstance(hi, tuple) else (hi,)
        for a, b in zip(lo, hi):
            if a is None:
                continue
            assert a.dtype == np.float32, call
            _close(a, b, TOL["f32_vs_f64"])


def test_shape_errors_name_the_argument():
    mu = np.zeros((4, 2))
    with pytest.raises(ValueError, match="s2"):
        O.kl_constant(mu, 1.0, np.ones(3))
    with pytest.raises(ValueError, match="var"):
        O.kl_learned(mu, np.ones((4, 3)))
    with pytest.raises(ValueError, match="sigma2"):
        O.bilbo_kl(mu, -1.0)
    with pytest.raises(ValueError, match="nu"):
        O.baggins_T(np.zeros((4, 5)), np.zeros((3, 5)), mu, 1.0, 0.2)
    with pytest.raises(ValueError, match="tau"):
        O.bilbo_baggins(np.zeros((4, 5)), np.zeros((4, 5)), mu, 1.0, 0.0)
