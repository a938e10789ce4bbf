"""The MLP VAE's hand-written backward pass against float64 central finite differences.

Every (posterior mode x likelihood) combination, on a small network in float64
with the noise eps fixed.  Parameters (not single examples) are perturbed, so
the coupling across the batch that the floating prior, BILBO and BAGGINS
introduce is part of what is checked.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from conftest import TOL
from gradcheck import assert_gradient
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpvae.nn import model as M
from vaetheory import objectives as O

COMBOS = list(itertools.product(M.POSTERIORS, M.LIKELIHOODS))


@st.composite
def small_problems(draw, posterior, likelihood, **fixed):
    """A float64 problem on a small net: (config, params, x, eps) with generic (jittered) weights."""
    cfg = M.ModelConfig(
        m=6,
        n=draw(st.integers(1, 3)),
        hidden=5,
        layers=draw(st.sampled_from([1, 2, 4])),
        posterior=posterior,
        likelihood=likelihood,
        sigma2=draw(st.sampled_from([0.05, 0.5, 2.0])),
        t=draw(st.sampled_from([0.1, 1.0])),
        tau=draw(st.sampled_from([0.2, 1.5])),
        latent_scale=draw(st.sampled_from([1.0, 0.3, 4.0])),
        **fixed,
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    params = M.init_params(cfg, rng, dtype=np.float64)
    for p in params.values():  # non-zero biases, weights off the Glorot grid
        p += 0.3 * rng.standard_normal(p.shape)
    B = draw(st.integers(2, 7))
    x = rng.uniform(0, 1, (B, cfg.m))
    eps = rng.standard_normal((B, cfg.n))
    return cfg, params, x, eps


def _check_loss_gradient(cfg, params, x, eps, loss_fn, what):
    _, grads, _ = M.loss_and_grads(params, x, eps, cfg)
    assert set(grads) == set(params)
    for k in params:
        assert grads[k].shape == params[k].shape and grads[k].dtype == params[k].dtype, k
    rng = np.random.default_rng(0)
    for _ in range(2):
        assert_gradient(loss_fn, params, grads, rng, TOL["fd_grad_f64"], what=what)


@pytest.mark.parametrize("posterior,likelihood", COMBOS)
@settings(max_examples=15)
@given(data=st.data())
def test_loss_gradient_matches_finite_differences_eq1_eq2_eq24_eq29_eq30(posterior, likelihood, data):
    cfg, params, x, eps = data.draw(small_problems(posterior, likelihood))
    f = lambda p: M.loss_and_grads(p, x, eps, cfg)[0]  # noqa: E731
    _check_loss_gradient(cfg, params, x, eps, f, f"{posterior}/{likelihood} {cfg}")


def _frozen_T_loss(cfg, x, eps, T):
    """-(objective) with BAGGINS' T held at ``T``, built from the public pieces."""

    def loss(p):
        mu, var = M.encode(p, x, cfg)
        z = mu + np.sqrt(var) * eps
        rec = M.log_likelihood(M.decode(p, z, cfg), x, cfg, T=T)
        if cfg.posterior == "learned":
            kl = np.mean(O.kl_learned(mu, var).value)
        elif cfg.posterior == "constant":
            kl = np.mean(O.kl_constant(mu, cfg.sigma2, O.floating_prior(mu, cfg.sigma2)).value)
        else:
            kl = O.bilbo_kl(mu, cfg.sigma2).value
        return kl - np.mean(rec)

    return loss


@pytest.mark.parametrize("posterior", M.POSTERIORS)
@settings(max_examples=10)
@given(data=st.data())
def test_baggins_stop_gradient_matches_frozen_T_finite_differences_eq29_eq30(posterior, data):
    cfg, params, x, eps = data.draw(small_problems(posterior, "baggins", baggins_stop_gradient=True))
    mu, var = M.encode(params, x, cfg)
    z = mu + np.sqrt(var) * eps
    nu = M.decode(params, z, cfg)["mean"]
    T = O.baggins_T(x, nu, mu, var if posterior == "learned" else cfg.sigma2, cfg.tau)
    f = _frozen_T_loss(cfg, x, eps, T)
    loss, _, _ = M.loss_and_grads(params, x, eps, cfg)
    np.testing.assert_allclose(f(params), loss, rtol=TOL["identity_f64"])
    _check_loss_gradient(cfg, params, x, eps, f, f"stop-gradient {posterior}")


@pytest.mark.parametrize("likelihood", M.LIKELIHOODS)
@settings(max_examples=10)
@given(data=st.data())
def test_constant_and_bilbo_modes_give_equal_objective_and_gradient_eq2_eq3_eq24(likelihood, data):
    """Eq. (2) with S^2 = Sigma + M_B held fixed and Eq. (24) agree in value (the eq2/eq24 identity)
    and in gradient (Eq. (3) vanishes at Eq. (4)'s S^2): the two modes train identically."""
    cfg, params, x, eps = data.draw(small_problems("constant", likelihood))
    lc, gc, ac = M.loss_and_grads(params, x, eps, cfg)
    lb, gb, ab = M.loss_and_grads(params, x, eps, dataclasses.replace(cfg, posterior="bilbo"))
    tol = TOL["identity_f64"]
    np.testing.assert_allclose(lb, lc, rtol=tol, atol=tol)
    np.testing.assert_allclose(ab["kl"], ac["kl"], rtol=tol, atol=tol)
    for k in gc:
        np.testing.assert_allclose(gb[k], gc[k], rtol=tol, atol=tol * np.abs(gc[k]).max(initial=1.0), err_msg=k)


@pytest.mark.parametrize("posterior,likelihood", COMBOS)
@settings(max_examples=10)
@given(data=st.data())
def test_elbo_per_example_averages_to_the_training_objective_eq1_eq2_eq24(posterior, likelihood, data):
    cfg, params, x, eps = data.draw(small_problems(posterior, likelihood))
    loss, _, aux = M.loss_and_grads(params, x, eps, cfg)
    elbo = M.elbo_per_example(params, x, eps, cfg)
    assert elbo.shape == (x.shape[0],)
    tol = TOL["identity_f64"] * max(1.0, abs(float(loss)))
    np.testing.assert_allclose(elbo.mean(), aux["objective"], rtol=0, atol=tol)
    np.testing.assert_allclose(aux["objective"], aux["rec"] - aux["kl"], rtol=0, atol=tol)
    np.testing.assert_allclose(-loss, aux["objective"], rtol=0, atol=tol)
    expected_s2 = (
        np.ones(cfg.n) if posterior == "learned" else O.floating_prior(M.encode(params, x, cfg)[0], cfg.sigma2)
    )
    np.testing.assert_allclose(aux["s2"], expected_s2, rtol=TOL["identity_f64"])


@pytest.mark.parametrize("posterior,likelihood", [("learned", "gaussian-learned"), ("bilbo", "baggins")])
def test_gradient_buffers_are_reused_and_give_the_same_gradients(posterior, likelihood):
    cfg = M.ModelConfig(m=6, n=2, hidden=5, posterior=posterior, likelihood=likelihood)
    rng = np.random.default_rng(5)
    params = M.init_params(cfg, rng, dtype=np.float64)
    x, eps = rng.uniform(0, 1, (4, 6)), rng.standard_normal((4, 2))
    _, fresh, _ = M.loss_and_grads(params, x, eps, cfg)
    buffers = {k: np.full_like(p, np.nan) for k, p in params.items()}
    _, out, _ = M.loss_and_grads(params, x, eps, cfg, grads=buffers)
    for k in params:
        assert out[k] is buffers[k], k
        np.testing.assert_array_equal(out[k], fresh[k], err_msg=k)


@pytest.mark.parametrize("posterior", M.POSTERIORS)
@pytest.mark.parametrize("stop", [False, True])
@settings(max_examples=10)
@given(data=st.data(), lam=st.sampled_from([0.01, 0.3, 7.0, 255.0]))
def test_baggins_model_is_invariant_to_the_data_scale_eq29_eq30(posterior, stop, data, lam):
    """Data x -> lam x with the decoder's output layer scaled by lam (nu -> lam nu) and the encoder's first
    weights by 1/lam (same mu): the loss shifts by m log lam, the output layer's gradients scale by 1/lam,
    the first encoder weights' by lam, and every other gradient is unchanged (Fig. 6b's invariance)."""
    cfg, params, x, eps = data.draw(small_problems(posterior, "baggins", baggins_stop_gradient=stop))
    L = cfg.layers
    factor = {f"dec_W{L - 1}": lam, f"dec_b{L - 1}": lam, "enc_W0": 1 / lam}
    if L == 1:  # the learned-std head reads x directly too
        factor["enc_std_W"] = 1 / lam
    scaled = {k: factor.get(k, 1.0) * v for k, v in params.items()}
    l1, g1, _ = M.loss_and_grads(params, x, eps, cfg)
    l2, g2, _ = M.loss_and_grads(scaled, lam * x, eps, cfg)
    tol = TOL["identity_f64"]
    np.testing.assert_allclose(l2 - l1, cfg.m * np.log(lam), rtol=0, atol=tol * max(1.0, abs(float(l1))))
    for k in params:
        expected = g1[k] / factor.get(k, 1.0)
        np.testing.assert_allclose(g2[k], expected, rtol=tol, atol=tol * np.abs(expected).max(initial=1.0), err_msg=k)


def test_constant_T_gaussian_is_not_scale_invariant_unlike_baggins_eq26_eq30():
    """The contrast of Fig. 6a: with T = t I fixed, the same rescaling changes the training gradients."""
    cfg = M.ModelConfig(m=6, n=2, hidden=5, layers=2, posterior="bilbo", likelihood="gaussian")
    rng = np.random.default_rng(2)
    params = M.init_params(cfg, rng, dtype=np.float64)
    x, eps = rng.uniform(0, 1, (5, 6)), rng.standard_normal((5, 2))
    lam = 7.0
    factor = {"dec_W1": lam, "dec_b1": lam, "enc_W0": 1 / lam}
    _, g1, _ = M.loss_and_grads(params, x, eps, cfg)
    _, g2, _ = M.loss_and_grads({k: factor.get(k, 1.0) * v for k, v in params.items()}, lam * x, eps, cfg)
    rel = np.abs(g2["enc_W1"] - g1["enc_W1"]).max() / np.abs(g1["enc_W1"]).max()
    assert rel > 1.0, rel  # the decoder residual grows by lam, so the encoder gradient does too
