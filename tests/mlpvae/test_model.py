"""The MLP VAE (Sec. 7): architecture, initialisation, float32 vs float64, Adam, and that training trains."""

from __future__ import annotations

import dataclasses
import itertools
import warnings

import numpy as np
import pytest
from conftest import CUPY, TOL, needs_gpu

from mlpvae.nn import model as M
from mlpvae.nn.adam import Adam
from vaetheory import objectives as O
from vaetheory.gaussian import kl_gaussian

COMBOS = list(itertools.product(M.POSTERIORS, M.LIKELIHOODS))


def _problem(cfg, B=16, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = M.init_params(cfg, np.random.default_rng(seed), dtype=dtype)
    x = rng.uniform(0, 1, (B, cfg.m)).astype(dtype)
    eps = rng.standard_normal((B, cfg.n)).astype(dtype)
    return params, x, eps


# ---------------------------------------------------------------------------
# architecture and initialisation
# ---------------------------------------------------------------------------
def test_default_architecture_is_the_papers_sec7():
    shapes = M.param_shapes(M.ModelConfig(posterior="learned", likelihood="gaussian-learned"))
    enc = [shapes[f"enc_W{i}"] for i in range(4)]
    dec = [shapes[f"dec_W{i}"] for i in range(4)]
    assert enc == [(784, 200), (200, 200), (200, 200), (200, 2)]
    assert dec == [(2, 200), (200, 200), (200, 200), (200, 784)]
    assert shapes["enc_std_W"] == (200, 2) and shapes["dec_std_W"] == (200, 784)
    plain = M.param_shapes(M.ModelConfig(posterior="bilbo", likelihood="baggins", n=100))
    assert not any("std" in k for k in plain) and plain["enc_W3"] == (200, 100)


def test_same_seed_same_init_and_dtype_is_a_cast():
    cfg = M.ModelConfig(m=20, n=3, hidden=7)
    a = M.init_params(cfg, np.random.default_rng(42))
    b = M.init_params(cfg, np.random.default_rng(42))
    c = M.init_params(cfg, np.random.default_rng(43))
    d = M.init_params(cfg, np.random.default_rng(42), dtype=np.float64)
    for k in a:
        assert a[k].dtype == np.float32 and d[k].dtype == np.float64
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a[k], d[k].astype(np.float32))
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    # Glorot-uniform bound sqrt(6 / (fan_in + fan_out)), zero biases
    assert np.abs(a["enc_W0"]).max() <= np.sqrt(6 / 27) and not np.any(a["enc_b0"])


def test_encode_decode_shapes_and_latent_scale_fig8():
    cfg = M.ModelConfig(m=10, n=3, hidden=6, posterior="learned", likelihood="gaussian-learned")
    params, x, _ = _problem(cfg, B=5)
    mu, var = M.encode(params, x, cfg)
    assert mu.shape == var.shape == (5, 3) and np.all(var > 0)
    dec = M.decode(params, mu, cfg)
    assert set(dec) == {"mean", "var"} and dec["mean"].shape == (5, 10) and np.all(dec["var"] > 0)
    scaled = dataclasses.replace(cfg, latent_scale=3.0)
    mu3, var3 = M.encode(params, x, scaled)
    np.testing.assert_allclose(mu3, 3.0 * mu, rtol=TOL["identity_f64"])
    np.testing.assert_allclose(var3, 9.0 * var, rtol=TOL["identity_f64"])
    np.testing.assert_allclose(M.decode(params, mu3, scaled)["mean"], dec["mean"], rtol=TOL["identity_f64"])
    const = dataclasses.replace(cfg, posterior="constant", likelihood="bernoulli", sigma2=0.3)
    params, x, _ = _problem(const, B=5)
    _, var = M.encode(params, x, const)
    assert np.all(var == 0.3)
    assert set(M.decode(params, mu, const)) == {"logits"}


@pytest.mark.parametrize("posterior", M.POSTERIORS)
def test_linear_gaussian_known_answer_eq1_eq2_eq24(posterior):
    """layers=1 makes encoder and decoder linear: mu_b = x_b[0], nu(z) = (z, z), worked by hand."""
    cfg = M.ModelConfig(m=2, n=1, layers=1, posterior=posterior, likelihood="gaussian", sigma2=1.0, t=1.0)
    params = {
        "enc_W0": np.array([[1.0], [0.0]]),
        "enc_b0": np.zeros(1),
        "dec_W0": np.array([[1.0, 1.0]]),
        "dec_b0": np.zeros(2),
        # softplus(log(e - 1)) = 1: a learned posterior variance of exactly 1
        "enc_std_W": np.zeros((2, 1)),
        "enc_std_b": np.array([np.log(np.e - 1.0)]),
    }
    x = np.array([[1.0, 2.0], [3.0, 0.0]])
    eps = np.zeros((2, 1))  # z = mu = (1, 3); residuals (0, 1) and (0, -3)
    rec = -np.log(2 * np.pi) - 0.5 * (1.0 + 9.0) / 2
    # learned: KL to N(0, 1) with Sigma = 1 is mu^2 / 2, mean 2.5; constant / BILBO: S^2 = 1 + 5 = 6,
    # 1/2 log(6) (Eq. (24), equal to Eq. (2)'s mean KL with the floating prior)
    kl = 2.5 if posterior == "learned" else 0.5 * np.log(6.0)
    loss, _, aux = M.loss_and_grads(params, x, eps, cfg)
    np.testing.assert_allclose([loss, aux["rec"], aux["kl"]], [kl - rec, rec, kl], rtol=TOL["identity_f64"])
    np.testing.assert_allclose(aux["s2"], [1.0] if posterior == "learned" else [6.0], rtol=TOL["identity_f64"])


@pytest.mark.parametrize("posterior,likelihood", COMBOS)
def test_loss_is_kl_minus_log_likelihood_of_the_public_pieces_eq1_eq2_eq24(posterior, likelihood):
    cfg = M.ModelConfig(m=12, n=2, hidden=8, posterior=posterior, likelihood=likelihood, tau=0.5)
    params, x, eps = _problem(cfg, B=9, seed=3)
    loss, _, aux = M.loss_and_grads(params, x, eps, cfg)
    mu, var = M.encode(params, x, cfg)
    z = mu + np.sqrt(var) * eps
    dec = M.decode(params, z, cfg)
    T = None
    if likelihood == "baggins":
        T = O.baggins_T(x, dec["mean"], mu, var if posterior == "learned" else cfg.sigma2, cfg.tau)
    rec = M.log_likelihood(dec, x, cfg, T=T)
    if posterior == "learned":
        kl = O.kl_learned(mu, var).value.mean()
    else:
        kl = O.bilbo_kl(mu, cfg.sigma2).value
    np.testing.assert_allclose(loss, kl - rec.mean(), rtol=TOL["identity_f64"])
    np.testing.assert_allclose(aux["rec"], rec.mean(), rtol=TOL["identity_f64"])


@pytest.mark.parametrize("posterior,likelihood", COMBOS)
def test_elbo_per_example_with_a_given_prior_is_eq2(posterior, likelihood):
    """With S^2 given (e.g. the training set's), the per-example ELBO is Eq. (2) with that prior,
    and BAGGINS' T uses it in Eq. (29); checked against the float64 reference KL."""
    cfg = M.ModelConfig(m=10, n=3, hidden=6, posterior=posterior, likelihood=likelihood, sigma2=0.4)
    params, x, eps = _problem(cfg, B=6, seed=4)
    s2 = np.array([0.5, 2.0, 7.0])
    mu, var = M.encode(params, x, cfg)
    dec = M.decode(params, mu + np.sqrt(var) * eps, cfg)
    T = None
    if likelihood == "baggins":
        T = cfg.tau * np.sum((x - dec["mean"]) ** 2, axis=1) / np.sum(s2 / var, axis=1)
    expected = M.log_likelihood(dec, x, cfg, T=T) - kl_gaussian(mu, var, s2)
    np.testing.assert_allclose(M.elbo_per_example(params, x, eps, cfg, s2=s2), expected, rtol=TOL["identity_f64"])


@pytest.mark.parametrize("posterior,likelihood", COMBOS)
@pytest.mark.parametrize("layers", [1, 3])
def test_inputs_are_not_modified_in_place(posterior, likelihood, layers):
    cfg = M.ModelConfig(m=7, n=2, hidden=4, layers=layers, posterior=posterior, likelihood=likelihood, latent_scale=2.0)
    params, x, eps = _problem(cfg, B=5, seed=6, dtype=np.float32)
    before = {k: v.copy() for k, v in params.items()}, x.copy(), eps.copy()
    M.loss_and_grads(params, x, eps, cfg)
    M.elbo_per_example(params, x, eps, cfg)
    for k in params:
        np.testing.assert_array_equal(params[k], before[0][k], err_msg=k)
    np.testing.assert_array_equal(x, before[1])
    np.testing.assert_array_equal(eps, before[2])


# ---------------------------------------------------------------------------
# float32 training arithmetic
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("posterior,likelihood", COMBOS)
def test_float32_forward_equals_float64_forward(posterior, likelihood):
    cfg = M.ModelConfig(n=2, posterior=posterior, likelihood=likelihood)  # the paper's 784-200-...-2 net
    p64, x64, eps64 = _problem(cfg, B=32, seed=1)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    x32, eps32 = x64.astype(np.float32), eps64.astype(np.float32)
    l64, g64, a64 = M.loss_and_grads(p64, x64, eps64, cfg)
    l32, g32, a32 = M.loss_and_grads(p32, x32, eps32, cfg)
    assert l32.dtype == np.float32 and all(g.dtype == np.float32 for g in g32.values())
    tol = TOL["f32_vs_f64"]
    np.testing.assert_allclose(l32, l64, rtol=tol)
    for key in ("objective", "kl", "rec", "s2"):
        np.testing.assert_allclose(a32[key], a64[key], rtol=tol, atol=tol, err_msg=key)
    for k in g64:  # entries relative to the tensor's largest: small entries carry absolute round-off
        assert np.abs(g32[k] - g64[k]).max() <= tol * np.abs(g64[k]).max(), k
    e32 = M.elbo_per_example(p32, x32, eps32, cfg)
    assert e32.dtype == np.float32
    np.testing.assert_allclose(e32, M.elbo_per_example(p64, x64, eps64, cfg), rtol=tol)


def test_learned_likelihood_divergence_gives_a_non_finite_loss_not_an_exception_sec5():
    """Sec. 5: learned T is unbounded; when its std underflows the loss must go non-finite, quietly."""
    cfg = M.ModelConfig(m=8, n=2, hidden=4, likelihood="gaussian-learned")
    params, x, eps = _problem(cfg, B=4, dtype=np.float32)
    params["dec_std_b"][:] = -200.0  # softplus(-200) underflows to 0 in float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grads, aux = M.loss_and_grads(params, x, eps, cfg)
        elbo = M.elbo_per_example(params, x, eps, cfg)
    assert not np.isfinite(loss) and not np.all(np.isfinite(elbo))


def test_arguments_are_checked_by_name():
    cfg = M.ModelConfig(m=8, n=2, hidden=4)
    params, x, eps = _problem(cfg, B=4, dtype=np.float32)
    with pytest.raises(ValueError, match="x must have shape"):
        M.loss_and_grads(params, x[:, :7], eps, cfg)
    with pytest.raises(ValueError, match="eps"):
        M.loss_and_grads(params, x, eps[:3], cfg)
    with pytest.raises(ValueError, match="dtype"):
        M.loss_and_grads(params, x.astype(np.float64), eps, cfg)
    with pytest.raises(ValueError, match="params lacks"):
        M.loss_and_grads(params, x, eps, dataclasses.replace(cfg, likelihood="gaussian-learned"))
    with pytest.raises(ValueError, match="T"):
        M.log_likelihood({"mean": x}, x, dataclasses.replace(cfg, likelihood="baggins"))
    for bad in (dict(posterior="fixed"), dict(likelihood="poisson"), dict(sigma2=0.0), dict(layers=0), dict(n=1.5)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            M.ModelConfig(**bad)


# ---------------------------------------------------------------------------
# Adam
# ---------------------------------------------------------------------------
def test_adam_two_steps_match_a_hand_computation():
    p = {"w": np.array([1.0, -2.0])}
    adam = Adam(p, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    g1, g2 = np.array([0.5, -1.0]), np.array([-0.2, 3.0])
    adam.step(p, {"w": g1})
    # step 1: m = 0.1 g1, v = 0.001 g1^2; bias-corrected m/(1-0.9) = g1, v/(1-0.999) = g1^2
    w1 = np.array([1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 * 1.0 / (1.0 + 1e-8)])
    np.testing.assert_allclose(p["w"], w1, rtol=TOL["identity_f64"])
    adam.step(p, {"w": g2})
    m = 0.9 * 0.1 * g1 + 0.1 * g2
    v = 0.999 * 0.001 * g1**2 + 0.001 * g2**2
    w2 = w1 - 0.1 * (m / (1 - 0.9**2)) / (np.sqrt(v / (1 - 0.999**2)) + 1e-8)
    # written out for the first coordinate: m = 0.09 * 0.5 - 0.02, v = 0.000999 * 0.25 + 0.001 * 0.04
    assert np.isclose(m[0], 0.025) and np.isclose(v[0], 0.00028975)
    np.testing.assert_allclose(p["w"], w2, rtol=TOL["identity_f64"])
    assert adam.t == 2


def test_adam_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    p0 = {"a": rng.standard_normal((3, 2)).astype(np.float32), "b": rng.standard_normal(2).astype(np.float32)}
    gs = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in p0.items()} for _ in range(4)]
    pa = {k: v.copy() for k, v in p0.items()}
    a = Adam(pa)
    for g in gs:
        a.step(pa, g)
    pb = {k: v.copy() for k, v in p0.items()}
    b = Adam(pb)
    for g in gs[:2]:
        b.step(pb, g)
    state = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in b.state_dict().items()}
    c = Adam(pb)
    c.load_state_dict(state)
    for g in gs[2:]:
        c.step(pb, g)
    for k in p0:
        np.testing.assert_array_equal(pa[k], pb[k])
    with pytest.raises(ValueError, match="keys"):
        c.load_state_dict({"step": 1})


# ---------------------------------------------------------------------------
# training trains
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "posterior,likelihood",
    [("learned", "bernoulli"), ("constant", "gaussian"), ("bilbo", "baggins"), ("learned", "gaussian-learned")],
)
def test_adam_steps_increase_the_objective_on_synthetic_data(posterior, likelihood):
    """A few hundred float32 Adam steps on low-rank synthetic data raise the held-fixed evaluation objective."""
    rng = np.random.default_rng(7)
    m, n, N = 12, 2, 240
    W = rng.standard_normal((2, m))
    data = 1 / (1 + np.exp(-(rng.standard_normal((N, 2)) @ W)))  # a 2-D manifold in [0, 1]^m
    data = data.astype(np.float32)
    cfg = M.ModelConfig(m=m, n=n, hidden=16, layers=3, posterior=posterior, likelihood=likelihood, t=0.1)
    params = M.init_params(cfg, np.random.default_rng(1))
    adam = Adam(params, lr=3e-3)
    eval_eps = rng.standard_normal((N, n)).astype(np.float32)

    def objective():
        return float(M.loss_and_grads(params, data, eval_eps, cfg)[2]["objective"])

    before = objective()
    grads = None
    for step in range(300):
        idx = rng.choice(N, 60, replace=False)
        eps = rng.standard_normal((60, n)).astype(np.float32)
        loss, grads, _ = M.loss_and_grads(params, data[idx], eps, cfg, grads=grads)
        assert np.isfinite(loss), step
        adam.step(params, grads)
    after = objective()
    if likelihood == "bernoulli":
        # the grayscale targets bound the objective by minus their entropy: close a quarter of that gap
        floor = -np.mean(np.sum(data * np.log(data) + (1 - data) * np.log1p(-data), axis=1))
        assert after - before > 0.25 * (-floor - before), (before, after, -floor)
    else:  # Gaussian likelihoods are unbounded above; measured gains are ~20-30 nats
        assert after - before > 5.0, (before, after)


# ---------------------------------------------------------------------------
# CuPy: the same source on the GPU
# ---------------------------------------------------------------------------


@needs_gpu
@pytest.mark.parametrize("posterior,likelihood", COMBOS)
def test_cupy_matches_numpy(posterior, likelihood):
    cp = CUPY
    cfg = M.ModelConfig(m=20, n=3, hidden=8, posterior=posterior, likelihood=likelihood)
    p, x, eps = _problem(cfg, B=11, seed=2)
    l_np, g_np, a_np = M.loss_and_grads(p, x, eps, cfg)
    to = lambda a: cp.asarray(a)  # noqa: E731
    l_cp, g_cp, a_cp = M.loss_and_grads({k: to(v) for k, v in p.items()}, to(x), to(eps), cfg)
    assert isinstance(l_cp, cp.ndarray) and isinstance(a_cp["s2"], cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(l_cp), l_np, rtol=TOL["identity_f64"])
    for k in g_np:
        np.testing.assert_allclose(
            cp.asnumpy(g_cp[k]), g_np[k], rtol=TOL["identity_f64"], atol=TOL["identity_f64"], err_msg=k
        )
    pc = {k: to(v) for k, v in p.items()}
    opt = Adam(pc)
    opt.step(pc, g_cp)
    assert all(isinstance(v, cp.ndarray) for v in opt.state_dict().values() if hasattr(v, "shape"))
