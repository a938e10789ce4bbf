"""The trained decoder's Jacobian, Eq. (8), by forward mode (mlpvae/nn/jacobian.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CUPY, TOL, needs_gpu
from hypothesis import given
from hypothesis import strategies as st
from strategies import SEEDS

from mlpvae.nn import jacobian as Jac
from mlpvae.nn import model as M


def _net(seed, n=3, m=7, hidden=6, layers=3, likelihood="bernoulli", latent_scale=1.0, posterior="learned"):
    cfg = M.ModelConfig(
        m=m, n=n, hidden=hidden, layers=layers, likelihood=likelihood, latent_scale=latent_scale, posterior=posterior
    )
    rng = np.random.default_rng(seed)
    params = M.init_params(cfg, rng, dtype=np.float64)
    for k in params:  # non-zero biases, so the ReLU pattern is not the origin's everywhere
        if "_b" in k:
            params[k] = rng.uniform(-0.5, 0.5, params[k].shape)
    z = rng.standard_normal((9, n)) * 1.5
    return cfg, params, z


def _kink_distance(params, z, cfg):
    """Per row: the smallest |pre-activation| / |its gradient| over hidden units, the distance to a ReLU kink."""
    h, dist = z / cfg.latent_scale, np.full(len(z), np.inf)
    for i in range(cfg.layers - 1):
        a = h @ params[f"dec_W{i}"] + params[f"dec_b{i}"]
        sub = M.ModelConfig(
            m=a.shape[1], n=cfg.n, hidden=cfg.hidden, layers=i + 1, latent_scale=cfg.latent_scale, likelihood="gaussian"
        )
        sub_params = {f"dec_W{j}": params[f"dec_W{j}"] for j in range(i + 1)}
        sub_params.update({f"dec_b{j}": params[f"dec_b{j}"] for j in range(i + 1)})
        _, Ja = Jac.decoder_jacobian(sub_params, z, sub)
        dist = np.minimum(dist, np.min(np.abs(a) / (np.linalg.norm(Ja, axis=2) + 1e-300), axis=1))
        h = np.maximum(a, 0)
    return dist


@given(
    SEEDS,
    st.integers(1, 4),
    st.integers(1, 3),
    st.sampled_from(["bernoulli", "gaussian", "gaussian-learned"]),
    st.sampled_from([1.0, 2.5]),
)
def test_decoder_jacobian_matches_finite_difference_eq8(seed, layers, n, likelihood, c):
    cfg, params, z = _net(seed, n=n, layers=layers, likelihood=likelihood, latent_scale=c)
    out, J = Jac.decoder_jacobian(params, z, cfg)
    key = "logits" if likelihood == "bernoulli" else "mean"
    np.testing.assert_allclose(
        out, M.decode(params, z, cfg)[key], rtol=TOL["known_answer_f64"], atol=TOL["known_answer_f64"]
    )
    h = 1e-6
    fd = Jac.finite_difference_jacobian(params, z, cfg, h)
    smooth = _kink_distance(params, z, cfg) > 100 * h  # central differences are exact only away from ReLU kinks
    assert smooth.sum() >= len(z) // 2
    scale = np.abs(J).max() + 1.0
    np.testing.assert_allclose(J[smooth], fd[smooth], rtol=0, atol=TOL["fd_grad_f64"] * scale)


@given(SEEDS, st.integers(1, 4), st.integers(1, 5), st.sampled_from([1.0, 2.5]))
def test_decoder_vjp_matches_finite_difference_eq8(seed, layers, n, c):
    # J^T g by reverse mode against central differences of <out(z), g> along each latent axis
    cfg, params, z = _net(seed, n=n, layers=layers, latent_scale=c)
    g = np.random.default_rng(seed + 7).standard_normal((len(z), cfg.m))
    out, vjp = Jac.decoder_vjp(params, z, cfg)
    np.testing.assert_allclose(out, M.decode(params, z, cfg)["logits"], rtol=0, atol=TOL["known_answer_f64"])
    got = vjp(g)
    h = 1e-6
    fd = np.empty_like(z)
    for k in range(n):
        zp, zm = z.copy(), z.copy()
        zp[:, k] += h
        zm[:, k] -= h
        f = lambda zz: (M.decode(params, zz, cfg)["logits"] * g).sum(axis=1)  # noqa: E731
        fd[:, k] = (f(zp) - f(zm)) / (zp[:, k] - zm[:, k])
    smooth = _kink_distance(params, z, cfg) > 100 * h
    assert smooth.sum() >= len(z) // 2
    scale = np.abs(got).max() + 1.0
    np.testing.assert_allclose(got[smooth], fd[smooth], rtol=0, atol=TOL["fd_grad_f64"] * scale)


def test_linear_decoder_jacobian_is_its_weight_matrix_eq8():
    cfg, params, z = _net(0, n=2, layers=1, latent_scale=2.0)
    _, J = Jac.decoder_jacobian(params, z, cfg)
    np.testing.assert_allclose(J, np.broadcast_to(params["dec_W0"].T / 2.0, J.shape), rtol=TOL["known_answer_f64"])


def test_decoder_jacobian_chunking_and_float32_eq8():
    cfg, params, z = _net(1, n=3, layers=4)
    out, J = Jac.decoder_jacobian(params, z, cfg)
    out1, J1 = Jac.decoder_jacobian(params, z, cfg, chunk=2)
    np.testing.assert_allclose(J1, J, rtol=TOL["known_answer_f64"], atol=TOL["known_answer_f64"])
    p32 = Jac.cast_params(params, np.float32)
    out32, J32 = Jac.decoder_jacobian(p32, z.astype(np.float32), cfg)
    assert J32.dtype == np.float32
    np.testing.assert_allclose(J32, J, rtol=TOL["f32_vs_f64"], atol=TOL["f32_vs_f64"] * np.abs(J).max())
    with pytest.raises(ValueError, match="z"):
        Jac.decoder_jacobian(params, z[:, :2], cfg)
    with pytest.raises(ValueError, match="chunk"):
        Jac.decoder_jacobian(params, z, cfg, chunk=0)


@needs_gpu
def test_decoder_jacobian_cupy_matches_numpy_eq8():
    cp = CUPY
    cfg, params, z = _net(2, n=3, layers=3)
    _, J = Jac.decoder_jacobian(params, z, cfg)
    _, Jg = Jac.decoder_jacobian({k: cp.asarray(v) for k, v in params.items()}, cp.asarray(z), cfg)
    assert isinstance(Jg, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(Jg), J, rtol=TOL["identity_f64"], atol=TOL["identity_f64"])
