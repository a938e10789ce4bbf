"""The linear-Gaussian VAE: closed-form stationary point, exact evidence identities, collapse."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TOL
from hypothesis import given, settings
from strategies import linear_problems

from vaetheory import linear as lin
from vaetheory.evidence import log_evidence, true_posterior_covariance
from vaetheory.optimality import mean_condition_residual, variance_condition_residual


def _scale(v):
    return max(1.0, float(np.max(np.abs(v))))


@given(p=linear_problems())
def test_linear_elbo_equals_log_likelihood_and_laplace_form_eq2_eq16_eq18(p):
    x = p["x"]
    mdl = lin.linear_stationary_point(x, n=p["n"], var=p["var"])
    logp = lin.linear_log_likelihood(mdl, x)
    tol = TOL["linear_stationary"] * _scale(logp)
    for kind in ("diagonal", "constant"):
        mu, var = lin.linear_posterior(mdl, x, kind)
        e = lin.linear_elbo(x, mdl.W, mdl.b, mdl.V, var if var.ndim == 1 else var[0], mdl.s2)
        np.testing.assert_allclose(e, logp, rtol=0, atol=tol)
    np.testing.assert_allclose(lin.linear_laplace_log_evidence(mdl, x), logp, rtol=0, atol=tol)
    # The same Eq. (16) through the evidence module (z = mu, nu = W mu + b, J = W).
    mu, _ = lin.linear_posterior(mdl, x)
    J = np.broadcast_to(mdl.W, (x.shape[0],) + mdl.W.shape)
    np.testing.assert_allclose(log_evidence(x, mu, mu @ mdl.W.T + mdl.b, J, mdl.s2), logp, rtol=0, atol=tol)


@settings(max_examples=10)
@given(p=linear_problems(m_max=4))
def test_linear_closed_form_is_a_stationary_point_of_the_expected_elbo_eq2(p):
    x = p["x"]
    mdl = lin.linear_stationary_point(x, n=p["n"], var=p["var"])
    C, b = np.cov(x.T, bias=True), x.mean(0)
    params = [mdl.W, mdl.b, mdl.V, mdl.var, mdl.s2]
    h = 1e-5
    for k, q in enumerate(params):
        for idx in np.ndindex(q.shape):
            plus, minus = [a.copy() for a in params], [a.copy() for a in params]
            plus[k][idx] += h
            minus[k][idx] -= h
            g = (lin.linear_expected_elbo(C, b, *plus) - lin.linear_expected_elbo(C, b, *minus)) / (2 * h)
            assert abs(g) <= TOL["fd_at_stationary"] * _scale(q), (k, idx, g)


@given(p=linear_problems())
def test_linear_expected_elbo_is_the_sample_average_and_the_known_maximum_eq2_eq16(p):
    x = p["x"]
    mdl = lin.linear_stationary_point(x, n=p["n"], var=p["var"])
    C, b = np.cov(x.T, bias=True), x.mean(0)
    e = lin.linear_elbo(x, mdl.W, mdl.b, mdl.V, mdl.var, mdl.s2)
    expected = lin.linear_expected_elbo(C, b, mdl.W, mdl.b, mdl.V, mdl.var, mdl.s2)
    tol = TOL["linear_stationary"] * _scale(e)
    assert abs(np.mean(e) - expected) <= tol
    assert abs(lin.linear_expected_log_likelihood(mdl, C, b) - expected) <= tol
    assert abs(lin.linear_optimal_expected_log_likelihood(mdl.lam, p["n"]) - expected) <= tol


@given(p=linear_problems())
def test_linear_posterior_is_the_true_posterior_and_meets_conditions_eq11_eq12_eq25(p):
    x = p["x"]
    mdl = lin.linear_stationary_point(x, n=p["n"], var=p["var"])
    mu, cov = lin.linear_posterior(mdl, x, "full")
    J = np.broadcast_to(mdl.W, (x.shape[0],) + mdl.W.shape)
    np.testing.assert_allclose(true_posterior_covariance(mdl.s2, J)[0], cov, atol=TOL["identity_f64"] * _scale(cov))
    np.testing.assert_allclose(cov, np.diag(mdl.var), atol=TOL["identity_f64"] * _scale(cov))
    nu = mu @ mdl.W.T + mdl.b
    r11 = mean_condition_residual(mu, mdl.s2, nu, x, J)
    assert np.max(np.abs(r11)) <= TOL["identity_f64"] * _scale(mu)
    r12 = variance_condition_residual(mdl.var, mdl.s2, J, relative=True)
    assert np.max(r12) <= TOL["identity_f64"]


@given(p=linear_problems())
def test_linear_collapse_of_directions_not_above_unit_variance_eq16(p):
    """Sec. 6: a latent direction collapses (W column and mu zero) iff its data variance <= 1."""
    x = p["x"]
    mdl = lin.linear_stationary_point(x, n=p["n"], var=p["var"])
    np.testing.assert_array_equal(mdl.collapsed, mdl.lam[: p["n"]] <= 1.0)
    assert np.all(mdl.W[:, mdl.collapsed] == 0.0)
    mu, _ = lin.linear_posterior(mdl, x)
    assert np.all(mu[:, mdl.collapsed] == 0.0)
    active = ~mdl.collapsed
    # Model variance along active directions equals the data variance: |W_k|^2 S^2_k + 1 = lam_k.
    np.testing.assert_allclose(
        np.sum(mdl.W**2, 0)[active] * mdl.s2[active] + 1.0, mdl.lam[: p["n"]][active], rtol=TOL["identity_f64"]
    )
    # Floating prior, Eq. (4): S^2 = Sigma + E[mu^2].
    np.testing.assert_allclose(mdl.s2, mdl.var + np.mean(mu**2, 0), rtol=TOL["identity_f64"])


def test_linear_evidence_is_invariant_to_the_chosen_posterior_variance_eq16():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3)) * [3.0, 1.5, 0.5]
    a = lin.linear_log_likelihood(lin.linear_stationary_point(x, n=2, var=1.0), x)
    b = lin.linear_log_likelihood(lin.linear_stationary_point(x, n=2, var=[0.01, 7.0]), x)
    np.testing.assert_allclose(a, b, rtol=0, atol=TOL["linear_stationary"] * _scale(a))


def test_linear_known_answer_isotropic_data_eq16():
    # Every direction at variance 1 collapses: the model is N(mean, I) and E log p = -m/2 (log 2 pi + 1).
    C = np.eye(3)
    mdl = lin.linear_stationary_point(cov=C, n=2)
    assert mdl.collapsed.all() and np.all(mdl.W == 0)
    assert abs(lin.linear_expected_log_likelihood(mdl, C) + 1.5 * (np.log(2 * np.pi) + 1)) < 1e-14


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n=4), "n must be at most"),
        (dict(n=1, var=-1.0), "var"),
        (dict(n=0), "n must be"),
    ],
)
def test_linear_stationary_point_rejects_bad_arguments(kwargs, match):
    x = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(ValueError, match=match):
        lin.linear_stationary_point(x, **kwargs)


def test_linear_stationary_point_needs_data_or_covariance():
    with pytest.raises(ValueError, match="cov is required"):
        lin.linear_stationary_point(n=1)
    with pytest.raises(ValueError, match="either x or cov"):
        lin.linear_stationary_point(np.zeros((4, 2)), n=1, cov=np.eye(2))
