"""Sec. 4.1: gradients Eqs. (3), (5), (9), (10) against finite differences; conditions Eqs. (4), (6), (11), (12)."""

from __future__ import annotations

import numpy as np
from conftest import TOL
from hypothesis import given
from hypothesis import strategies as st
from strategies import SEEDS, vae_cases

from vaetheory import evidence as e
from vaetheory import gaussian as g
from vaetheory import optimal as o
from vaetheory import optimality as q


def _sym(rng, n):
    A = rng.standard_normal((n, n))
    return (A + A.T) / 2


def _expected_elbo(case, mu=None, var=None, s2=None):
    """E_x[ELBO] = mean of the exact Eq. (2) with the case's linear decoder."""
    dec = g.LinearDecoder(case["W"], case["b"])
    return float(
        np.mean(
            g.elbo(
                case["x"],
                case["mu"] if mu is None else mu,
                case["var"] if var is None else var,
                case["s2"] if s2 is None else s2,
                dec,
                method="exact",
            )
        )
    )


def _central(f, h):
    return (f(h) - f(-h)) / (2 * h)


def _close(fd, an, scale):
    assert abs(fd - an) <= TOL["fd_grad_f64"] * max(scale, 1.0), (fd, an)


@given(vae_cases())
def test_optimal_prior_zeroes_prior_gradient_eq3_eq4(case):
    mu, var = case["mu"], case["var"]
    for full in (False, True):
        s2 = o.optimal_prior(mu, var, full=full)
        G = q.prior_gradient(mu, var, s2)
        assert G.shape == s2.shape
        assert np.abs(G).max() <= TOL["identity_f64"] * np.abs(s2).max()
    # away from Eq. (4) it is not zero: at S^2 = 2 S*^2 it is 1/2 S*^2
    s2 = o.optimal_prior(mu, var)
    np.testing.assert_allclose(q.prior_gradient(mu, var, 2 * s2), s2 / 2, rtol=TOL["identity_f64"])


@given(vae_cases(), SEEDS)
def test_prior_gradient_matches_finite_difference_wrt_prior_precision_eq3(case, seed):
    rng = np.random.default_rng(seed)
    s2, n = case["s2"], case["n"]
    G = q.prior_gradient(case["mu"], case["var"], s2)
    if s2.ndim == 2:
        P, E = np.linalg.inv(s2), _sym(rng, n)

        def f(h):
            return _expected_elbo(case, s2=np.linalg.inv(P + h * E))

        an = np.sum(G * E)
    else:
        p, e_ = 1.0 / s2, rng.standard_normal(n)

        def f(h):
            return _expected_elbo(case, s2=1.0 / (p + h * e_))

        an = G @ e_
    h = 1e-6 / np.abs(1.0 / np.atleast_1d(np.diag(np.atleast_2d(s2)))).max()
    _close(_central(f, h), an, np.abs(G).max() * n)


@given(vae_cases(), SEEDS)
def test_functional_gradient_is_the_weighted_residual_and_optimal_decoder_zeroes_it_eq5_eq6(case, seed):
    rng = np.random.default_rng(seed)
    mu, var, x, N = case["mu"], case["var"], case["x"], case["N"]
    z = rng.standard_normal((6, case["n"]))
    nu_any = rng.standard_normal((6, case["m"]))
    full = var if var.ndim == 3 else np.stack([np.diag(d) for d in var])
    dens = np.stack([np.exp(g.log_normal(z, m_, S)) for m_, S in zip(mu, full)], axis=1)  # (M, N)
    want = -(dens[:, :, None] * (nu_any[:, None, :] - x[None])).sum(axis=1) / N
    got = q.decoder_functional_gradient(z, mu, var, x, nu_any)
    np.testing.assert_allclose(got, want, rtol=TOL["identity_f64"], atol=TOL["known_answer_f64"] * np.abs(want).max())
    at_opt = q.decoder_functional_gradient(z, mu, var, x, o.optimal_decoder(z, mu, var, x))
    # zero up to round-off of nu: |grad| <= density/N * eps-size error in nu
    bound = TOL["identity_f64"] * dens.sum(axis=1, keepdims=True) / N * np.abs(x).max()
    assert np.all(np.abs(at_opt) <= bound)


def test_functional_gradient_matches_directional_derivative_of_elbo_eq2_eq5():
    # Weak form: d/dt E_x[ELBO](nu + t h) = int Eq.(5)(z) . h(z) dz, in n = 1 with a
    # nonlinear decoder; left side by Gauss-Hermite of Eq. (2) (exactly quadratic in t,
    # so the central difference has no truncation error), right side by the trapezoid rule.
    rng = np.random.default_rng(7)
    N, m = 5, 3
    mu, var, x = rng.standard_normal((N, 1)), rng.uniform(0.2, 1.0, (N, 1)), rng.standard_normal((N, m))
    A = rng.standard_normal((1, m))

    def nu(z):
        return np.sin(z @ A) + 0.3 * z**2

    def h(z):
        return np.cos(z @ A + 0.5) * np.exp(-0.1 * z**2)

    def F(t):
        return float(np.mean(g.expected_log_likelihood(x, mu, var, lambda z: nu(z) + t * h(z), order=80)))

    lhs = (F(1e-3) - F(-1e-3)) / 2e-3
    grid = np.linspace(-14, 14, 20001)[:, None]
    grad = q.decoder_functional_gradient(grid, mu, var, x, nu(grid))
    rhs = np.trapezoid(np.sum(grad * h(grid), axis=1), grid[:, 0])
    assert abs(lhs - rhs) <= TOL["weak_form_f64"] * abs(rhs)


@given(vae_cases(), SEEDS)
def test_mean_gradient_matches_finite_difference_for_linear_decoder_eq9(case, seed):
    rng = np.random.default_rng(seed)
    dec = g.LinearDecoder(case["W"], case["b"])
    mu, N = case["mu"], case["N"]
    G = q.mean_gradient(mu, case["s2"], dec(mu), case["x"], dec.jacobian(N))
    D = rng.standard_normal(mu.shape)
    fd = _central(lambda h: _expected_elbo(case, mu=mu + h * D), 1e-6)
    _close(fd, np.sum(G * D), np.abs(G).max() * D.size)


@given(vae_cases(), SEEDS)
def test_variance_gradient_matches_finite_difference_for_linear_decoder_eq10(case, seed):
    rng = np.random.default_rng(seed)
    dec = g.LinearDecoder(case["W"], case["b"])
    var, N, n = case["var"], case["N"], case["n"]
    G = q.variance_gradient(var, case["s2"], dec.jacobian(N))
    assert G.shape == (N, n, n)
    if var.ndim == 3:
        D = np.stack([_sym(rng, n) for _ in range(N)])
        an = np.sum(G * D)
    else:
        D = rng.standard_normal(var.shape)
        an = np.sum(np.diagonal(G, axis1=1, axis2=2) * D)
    h = 1e-6 * np.min(var if var.ndim == 2 else np.linalg.eigvalsh(var))
    fd = _central(lambda t: _expected_elbo(case, var=var + t * D), h)
    _close(fd, an, np.abs(G).max() * D.size)


@given(vae_cases())
def test_conditions_hold_at_the_linear_posterior_eq9_eq10_eq11_eq12_eq25(case):
    # For a linear decoder the ELBO's maximiser over (mu, Sigma) is the true posterior:
    # mu = z* = (S^-2 + W^T W)^-1 W^T (x - b), Sigma = (S^-2 + W^T W)^-1.
    dec = g.LinearDecoder(case["W"], case["b"])
    x, s2, N, W = case["x"], case["s2"], case["N"], case["W"]
    J = dec.jacobian(N)
    Sig = e.true_posterior_covariance(s2, J)
    zs = np.einsum("kij,kj->ki", Sig, (x - case["b"]) @ W)
    scale = np.abs(zs).max() + 1.0
    assert np.abs(q.mean_condition_residual(zs, s2, dec(zs), x, J)).max() <= TOL["identity_f64"] * scale
    assert np.abs(q.mean_gradient(zs, s2, dec(zs), x, J)).max() <= TOL["identity_f64"] * scale
    P = np.linalg.inv(Sig)
    assert np.abs(q.variance_condition_residual(Sig, s2, J)).max() <= TOL["identity_f64"] * np.abs(P).max()
    assert np.abs(q.variance_gradient(Sig, s2, J)).max() <= TOL["identity_f64"] * np.abs(P).max()
    assert np.all(q.variance_condition_residual(Sig, s2, J, relative=True) <= TOL["identity_f64"])
    # Sigma = 2 P^-1: Sigma P - I = I, so the relative size is sqrt(n)
    np.testing.assert_allclose(
        q.variance_condition_residual(2 * Sig, s2, J, relative=True), np.sqrt(case["n"]), rtol=TOL["identity_f64"]
    )


@given(vae_cases(), SEEDS)
def test_mean_residual_is_minus_N_S2_times_mean_gradient_eq9_eq11(case, seed):
    rng = np.random.default_rng(seed)
    mu, s2, x, N = case["mu"], case["s2"], case["x"], case["N"]
    J = rng.standard_normal((N, case["m"], case["n"]))
    nu = rng.standard_normal((N, case["m"]))
    S2 = s2 if s2.ndim == 2 else np.diag(s2)
    r = q.mean_condition_residual(mu, s2, nu, x, J)
    G = q.mean_gradient(mu, s2, nu, x, J)
    np.testing.assert_allclose(r, -N * G @ S2.T, rtol=TOL["identity_f64"], atol=TOL["identity_f64"] * np.abs(r).max())


@given(st.floats(-2, 2), st.floats(-2, 2))
def test_local_linear_gradients_errors_for_a_nonlinear_decoder_eq9_eq10(x, mu):
    # n = m = N = 1, nu = sin, S^2 = 1, Sigma = v.  Exact gradients of Eq. (2) by central differences
    # of Gauss-Hermite quadrature, against Eqs. (9)-(10) with J = cos(mu), residual r = x - sin(mu),
    # curvature H = -sin(mu).  Known answers (from E sin z and E sin^2 z in closed form):
    #   exact - Eq. (9)  = v (sin(2 mu) - x cos(mu) / 2) + O(v^2)    (small with Sigma), and
    #   exact - Eq. (10) = r H / 2 + O(v)                             (NOT small with Sigma:
    # the local-linear fit drops the residual-curvature term of the Sigma gradient).
    s2, v = np.array([1.0]), 1e-3

    def F(m_, v_):
        return g.elbo([[x]], [[m_]], [v_], s2, np.sin, order=40)[0]

    h = 1e-5
    d_mu = (F(mu + h, v) - F(mu - h, v)) / (2 * h)
    d_var = (F(mu, v + h * v) - F(mu, v - h * v)) / (2 * h * v)
    J, nu = np.array([[[np.cos(mu)]]]), np.array([[np.sin(mu)]])
    eq9 = q.mean_gradient([[mu]], s2, nu, [[x]], J)[0, 0]
    eq10 = q.variance_gradient([[v]], s2, J)[0, 0, 0]
    fd_err = 1e-8 / v  # round-off of the differences, relative to O(1) values
    assert abs((d_mu - eq9) / v - (np.sin(2 * mu) - x * np.cos(mu) / 2)) <= (abs(x) / 8 + 1) * v + fd_err
    r, H = x - np.sin(mu), -np.sin(mu)
    assert abs((d_var - eq10) - r * H / 2) <= (abs(x) / 4 + 1) * v + fd_err


# ---------------------------------------------------------------- the posterior-windowed J of Appendix A
def _nodes(mu, var, order):
    from vaetheory.solver.quadrature import gauss_hermite

    eps, w = gauss_hermite(mu.shape[1], order)
    z = mu[:, None, :] + np.sqrt(var)[:, None, :] * eps[None]
    return z, eps, w


@given(seed=SEEDS, n=st.integers(1, 2), m=st.integers(1, 4))
def test_windowed_jacobian_of_a_linear_decoder_is_its_matrix_eq32_eq33(seed, n, m):
    rng = np.random.default_rng(seed)
    A, b = rng.standard_normal((m, n)), rng.standard_normal(m)
    mu, var = rng.standard_normal((5, n)), np.exp(rng.uniform(-3, 1, (5, n)))
    z, eps, w = _nodes(mu, var, 3)
    J = q.windowed_jacobian(z @ A.T + b, mu @ A.T + b, eps, w, var)
    np.testing.assert_allclose(J, np.broadcast_to(A, J.shape), rtol=TOL["identity_f64"], atol=TOL["identity_f64"])


def test_windowed_jacobian_is_the_posterior_averaged_derivative_eq32_eq33():
    # nu(z) = (sin z, cos z): E_q[cos z] = cos(mu) exp(-var/2), E_q[-sin z] = -sin(mu) exp(-var/2) (Stein's lemma)
    mu, var = np.array([[0.3], [-1.2], [2.0]]), np.array([[0.01], [0.5], [2.0]])
    z, eps, w = _nodes(mu, var, 40)
    nu = lambda t: np.concatenate([np.sin(t), np.cos(t)], axis=-1)  # noqa: E731
    J = q.windowed_jacobian(nu(z), nu(mu), eps, w, var)
    damp = np.exp(-var / 2)
    want = np.stack([np.cos(mu) * damp, -np.sin(mu) * damp], axis=1)  # (N, m=2, n=1)
    np.testing.assert_allclose(J, want, rtol=TOL["known_answer_f64"], atol=TOL["known_answer_f64"])
    # a narrow posterior gives the point Jacobian back; a wide one shrinks it by exp(-var/2)
    assert abs(J[0, 0, 0] - np.cos(0.3)) < 0.01 and J[2, 0, 0] / np.cos(2.0) < 0.4


def test_windowed_jacobian_checks_its_arguments_by_name():
    import pytest

    mu, var = np.zeros((2, 1)), np.ones((2, 1))
    z, eps, w = _nodes(mu, var, 3)
    with pytest.raises(ValueError, match="nu_mu"):
        q.windowed_jacobian(z, np.zeros((3, 1)), eps, w, var)
    with pytest.raises(ValueError, match="var"):
        q.windowed_jacobian(z, np.zeros((2, 1)), eps, w, -var)
