"""mlpvae.evidence.posterior_mode: the posterior mode per image and the Laplace proposal
centred there (Not in the paper).

Known answers: for a one-layer (linear) decoder with a Gaussian likelihood the posterior is the
Gaussian N(P^-1 W (x - b) / t, P^-1), P = S^-2 + W W^T / t, so the mode is its mean, the Laplace
posterior there is exact and every importance weight equals p(x) = N(x; b, t I + W^T S^2 W).
Smooth nonlinear log joints (one decoder layer, Bernoulli or BAGGINS): the mode against SciPy's
optimiser.  ReLU decoders: the gradient against float64 central differences, and every image ending
at a local maximum or on a kink where no step along the gradient rises.
"""

import json

import numpy as np
import pytest
from conftest import CUPY, TOL, needs_gpu
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import minimize
from tiny_runs import train_synthetic

from mlpvae.evidence import posterior_mode as PM
from mlpvae.evidence.iwae import iwae_log_px
from mlpvae.evidence.laplace import laplace_proposal
from mlpvae.nn import model as M
from mlpvae.nn.batched import encode_all


def _linear(n, t, w_scale, c, seed, m=6, N=4):
    mc = M.ModelConfig(
        m=m, n=n, hidden=4, layers=1, likelihood="gaussian", t=t, posterior="constant", sigma2=0.5, latent_scale=c
    )
    rng = np.random.default_rng(seed)
    p = M.init_params(mc, rng, dtype=np.float64)
    p["dec_W0"] *= w_scale
    p["dec_b0"] += rng.standard_normal(m)
    s2 = rng.uniform(0.3, 4.0, n)
    x = 2.0 * rng.standard_normal((N, m))
    return mc, p, s2, x, p["dec_W0"] / c  # out = (z / c) W + b


@given(
    n=st.sampled_from([1, 2, 5]),
    t=st.floats(1e-2, 10.0),
    w_scale=st.floats(0.1, 5.0),
    c=st.sampled_from([0.1, 1.0, 10.0]),
    seed=st.integers(0, 2**16),
)
def test_the_mode_and_the_laplace_iwae_are_the_linear_gaussian_closed_form(n, t, w_scale, c, seed):
    from scipy.stats import multivariate_normal

    mc, p, s2, x, W = _linear(n, t, w_scale, c, seed)
    mu, var = encode_all(p, x, mc)
    var = np.broadcast_to(var, mu.shape)
    r = PM.posterior_mode(p, x, mu, var, mc, s2, gtol=1e-12)  # polished to rounding: Newton is exact here
    P = np.diag(1 / s2) + W @ W.T / t
    mean = np.linalg.solve(P, W @ (x - p["dec_b0"]).T / t).T
    # Converged, or stopped at the gradient's rounding floor (TOL["mode_gradient_rounding"]); the mode itself
    # is then checked against the closed form to round-off.
    kappa = 1.0 + np.linalg.eigvalsh(np.sqrt(s2)[:, None] * (W @ W.T / t) * np.sqrt(s2)[None, :]).max()
    floor = TOL["mode_gradient_rounding"] * np.finfo(np.float64).eps * kappa
    assert np.all(r["converged"] | (r["gradient_norm"] <= floor))
    np.testing.assert_allclose(r["mode"], mean, rtol=0, atol=TOL["identity_f64"] * (1 + np.abs(mean).max()))
    # the Laplace posterior at the mode is the posterior: every importance weight is p(x)
    exact = multivariate_normal(p["dec_b0"], t * np.eye(mc.m) + W.T @ np.diag(s2) @ W).logpdf(x)
    prop = laplace_proposal(p, x, r["mode"], var, mc, s2)
    got = iwae_log_px(p, x, mc, np.random.default_rng(seed), k=3, s2=s2, proposal=prop)
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-8 * (1 + np.abs(exact).max()))


def _tiny(likelihood, c=1.0, n=3, seed=0):
    mc = M.ModelConfig(m=5, n=n, hidden=6, layers=3, likelihood=likelihood, t=0.3, latent_scale=c)
    p = M.init_params(mc, np.random.default_rng(seed), dtype=np.float64)
    x = np.random.default_rng(seed + 1).random((4, 5))
    mu, var = encode_all(p, x, mc)
    return mc, p, x, mu, np.broadcast_to(var, mu.shape)


@pytest.mark.parametrize("likelihood", PM.LIKELIHOODS)
@pytest.mark.parametrize("c", [1.0, 3.0])
def test_the_gradient_of_the_log_joint_matches_central_differences(likelihood, c):
    mc, p, x, mu, var = _tiny(likelihood, c)
    s2, bs2 = np.array([1.0, 2.0, 0.5]), np.array([1.5, 0.7, 1.1])
    z = mu + np.random.default_rng(3).standard_normal(mu.shape)
    g, *_ = PM.gradient(p, x, z, mc, s2)
    h = 1e-6
    fd = np.empty_like(z)
    for k in range(mc.n):
        e = np.zeros(mc.n)
        e[k] = h
        fd[:, k] = (
            PM.log_joint_at(p, x, z + e, mu, var, mc, s2, bs2) - PM.log_joint_at(p, x, z - e, mu, var, mc, s2, bs2)
        ) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=TOL["fd_grad_f64"], atol=TOL["fd_grad_f64"])


@pytest.mark.parametrize("likelihood", ["bernoulli", "baggins"])
def test_with_a_smooth_decoder_the_mode_is_scipys_optimum(likelihood):
    # one decoder layer: the log joint is smooth (for Bernoulli strictly concave), so the maximum is a zero gradient
    mc = M.ModelConfig(m=5, n=3, hidden=6, layers=1, likelihood=likelihood, posterior="constant", sigma2=0.5)
    p = M.init_params(mc, np.random.default_rng(0), dtype=np.float64)
    p["dec_W0"] *= 3.0
    x = np.random.default_rng(1).random((4, 5))
    mu, var = encode_all(p, x, mc)
    var = np.broadcast_to(var, mu.shape)
    s2, bs2 = np.array([1.0, 2.0, 0.5]), np.array([1.5, 0.7, 1.1])
    r = PM.posterior_mode(p, x, mu, var, mc, s2, baggins_s2=bs2)
    assert np.all(r["converged"]) and not r["stalled"].any() and np.all(r["log_joint"] >= r["start_log_joint"])
    for i in range(len(x)):

        def neg(z, i=i):
            return -PM.log_joint_at(p, x[i : i + 1], z[None], mu[i : i + 1], var[i : i + 1], mc, s2, bs2)[0]

        def neg_grad(z, i=i):
            return -PM.gradient(p, x[i : i + 1], z[None], mc, s2)[0][0]

        best = minimize(neg, r["mode"][i] + 0.3, jac=neg_grad, method="BFGS", options={"gtol": 1e-10})
        assert r["log_joint"][i] >= -best.fun - 1e-10
        np.testing.assert_allclose(r["mode"][i], best.x, atol=1e-6)


@pytest.mark.parametrize("likelihood", PM.LIKELIHOODS)
def test_with_a_relu_decoder_every_image_ends_at_a_local_maximum_or_on_a_kink(likelihood):
    mc, p, x, mu, var = _tiny(likelihood)
    s2, bs2 = np.array([1.0, 2.0, 0.5]), np.array([1.5, 0.7, 1.1])
    r = PM.posterior_mode(p, x, mu, var, mc, s2, baggins_s2=bs2)
    assert np.all(r["converged"] | r["stalled"]) and np.all(r["log_joint"] >= r["start_log_joint"])
    for i in np.flatnonzero(r["converged"]):  # a zero gradient here is a maximum: no coordinate step rises
        z = r["mode"][i] + 1e-4 * np.vstack([np.eye(mc.n), -np.eye(mc.n)])
        f = PM.log_joint_at(
            p,
            np.repeat(x[i : i + 1], len(z), 0),
            z,
            np.repeat(mu[i : i + 1], len(z), 0),
            np.repeat(var[i : i + 1], len(z), 0),
            mc,
            s2,
            bs2,
        )
        assert np.all(f <= r["log_joint"][i] + 1e-12)
    for i in np.flatnonzero(r["stalled"]):  # on a kink: a small step along its (one-sided) gradient falls
        g = PM.gradient(p, x[i : i + 1], r["mode"][i : i + 1], mc, s2)[0]
        f = PM.log_joint_at(
            p,
            x[i : i + 1],
            r["mode"][i : i + 1] + 1e-6 * g / np.linalg.norm(g),
            mu[i : i + 1],
            var[i : i + 1],
            mc,
            s2,
            bs2,
        )
        assert f[0] <= r["log_joint"][i] + 1e-12


def test_the_highest_of_several_starts_wins_and_neighbours_are_the_nearest_images_posteriors():
    # nu(z) = relu(z_1) w + relu(-z_1) 0.9 w: two modes, z_1 = 2 and z_1 = -2 / 0.9, the first higher (nearer the
    # prior's centre); climbing from the wrong basin finds the lower one, a start in the other basin the higher
    mc = M.ModelConfig(m=3, n=2, hidden=2, layers=2, likelihood="gaussian", t=0.01, posterior="constant")
    p = M.init_params(mc, np.random.default_rng(0), dtype=np.float64)
    p["dec_W0"][:] = [[1.0, -1.0], [0.0, 0.0]]
    p["dec_b0"][:] = 0.0
    w = np.array([1.0, -0.5, 0.3])
    p["dec_W1"][:] = [w, 0.9 * w]
    p["dec_b1"][:] = 0.0
    x = 2.0 * w[None]
    s2, var = np.ones(2), np.full((1, 2), 0.01)
    lower = PM.posterior_mode(p, x, np.array([[-2.0, 0.0]]), var, mc, s2)
    both = PM.posterior_mode(p, x, np.array([[-2.0, 0.0]]), var, mc, s2, starts=np.array([[[1.0, 0.5]]]))
    assert lower["mode"][0, 0] < 0 < both["mode"][0, 0] and both["start"][0] == 1
    assert both["log_joint"][0] > lower["log_joint"][0] and both["start_log_joint"][0] == lower["start_log_joint"][0]
    # the starts of neighbour_starts are the encoder's means of the nearest training images, nearest first
    rng = np.random.default_rng(2)
    x_train, mu_train = rng.random((50, 4)), rng.standard_normal((50, 3))
    got = PM.neighbour_starts(x_train[[7, 31]] + 1e-3, x_train, mu_train, 2, chunk=1)
    assert got.shape == (2, 2, 3) and np.array_equal(got[0], mu_train[[7, 31]])
    d = ((x_train[[7, 31]][:, None] + 1e-3 - x_train[None]) ** 2).sum(-1)
    assert np.array_equal(got[1], mu_train[np.argsort(d, axis=1)[:, 1]])


def test_posterior_mode_rejects_what_it_cannot_do():
    mc, p, x, mu, var = _tiny("bernoulli")
    with pytest.raises(ValueError, match="gaussian-learned"):
        mcl, pl, xl, mul, varl = _tiny("gaussian-learned")
        PM.posterior_mode(pl, xl, mul, varl, mcl, np.ones(3))
    with pytest.raises(ValueError, match="baggins_s2"):
        mcb, pb, xb, mub, varb = _tiny("baggins")
        PM.posterior_mode(pb, xb, mub, varb, mcb, np.ones(3))
    with pytest.raises(ValueError, match="shapes"):
        PM.posterior_mode(p, x[:2], mu, var, mc, np.ones(3))
    with pytest.raises(ValueError, match="starts"):
        PM.posterior_mode(p, x, mu, var, mc, np.ones(3), starts=mu)


def test_the_command_measures_a_trained_run(tmp_path):
    # `vaetheory analyze RUN --mode-images N` on a small 3-D synthetic run: both IWAE values are lower bounds
    # on the same log p(x), the ELBO is below them, and the mode raised the log joint
    from vaetheory.cli import main

    train_synthetic(tmp_path / "run", n=3)
    assert main(["analyze", str(tmp_path / "run"), "--mode-images", "6", "--iwae-k", "300"]) == 0
    r = json.loads((tmp_path / "run" / "mode_evidence.json").read_text())
    assert r["images"] == 6 and r["iwae_k"] == 300 and r["converged"] + r["stalled"] == 6 and r["log_joint_rise"] >= 0
    assert r["elbo"] < r["iwae_q"] and r["elbo"] < r["iwae_mode"] and abs(r["iwae_mode"] - r["iwae_q"]) < 1.0
    assert np.isfinite(r["eq16_at_mode_minus_best"]) and r["gap_eq18"] >= 0
    per = np.load(tmp_path / "run" / "mode_evidence_per_image.npz")
    assert per["mode"].shape == (6, 3)
    assert main(["analyze", str(tmp_path / "run"), "--mode-images", "0"]) == 2
    # the same through validation/scripts/mode_laplace.py, with a stand-in for the grid's exact values
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "mode_laplace", Path(__file__).resolve().parents[2] / "validation" / "scripts" / "mode_laplace.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    exact = tmp_path / "exact"
    exact.mkdir()
    stand_in = per["iwae_q"] + 2.0  # two nats above q's bound: "exact - best" is 2 - (best - q)
    np.savez(exact / (mod._name(str(tmp_path / "run")) + ".npz"), grid_log_px=stand_in)
    out = tmp_path / "m.json"
    assert (
        mod.main(
            [
                "--images",
                "6",
                "--iwae-k",
                "300",
                "--json",
                str(out),
                "--per-image",
                str(tmp_path / "per"),
                "--exact",
                str(exact),
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    (got,) = json.loads(out.read_text()).values()
    assert got["exact_minus_q"] == pytest.approx(2.0) and got["exact_minus_best"] <= 2.0
    assert got["exact_missed"] == int((stand_in - np.maximum(per["iwae_q"], per["iwae_mode"]) > 1.0).sum())
    assert len(list((tmp_path / "per").glob("*.npz"))) == 1 and mod.main(["--table", str(out)]) == 0


@needs_gpu
def test_posterior_mode_on_cupy_equals_numpy():
    mc, p, x, mu, var = _tiny("baggins")
    s2, bs2 = np.array([1.0, 2.0, 0.5]), np.array([1.5, 0.7, 1.1])
    host = PM.posterior_mode(p, x, mu, var, mc, s2, baggins_s2=bs2)
    dev = PM.posterior_mode(
        {k: CUPY.asarray(v) for k, v in p.items()},
        CUPY.asarray(x),
        CUPY.asarray(mu),
        CUPY.asarray(var),
        mc,
        CUPY.asarray(s2),
        baggins_s2=CUPY.asarray(bs2),
    )
    np.testing.assert_allclose(dev["mode"], host["mode"], atol=1e-8)
    np.testing.assert_allclose(dev["log_joint"], host["log_joint"], atol=1e-8)
