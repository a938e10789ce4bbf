"""The multimodal start of AIS: one Laplace Gaussian per distinct local maximum of the log joint (Not in the paper).

Known answers: p0's density against a sum of scipy Gaussians and its integral on a 2-D grid; a decoder
that is linear on each side of the kink z_1 = 0 (``nu = relu(z_1) w + relu(-z_1) b w``) with a Gaussian
likelihood has, for x = 2 w, a posterior that is two Gaussians (one per side, far from the kink) of
unequal mass, whose Laplace posteriors at the two maxima are those Gaussians and whose masses sum to
p(x); the exact log p(x) is the grid quadrature of :mod:`mlpvae.evidence.grid`.
"""

import numpy as np
import pytest
from conftest import TOL
from scipy.stats import multivariate_normal

from mlpvae.evidence import ais as A
from mlpvae.evidence import ais_target as AT
from mlpvae.evidence.grid import grid_log_px
from mlpvae.nn import model as M
from mlpvae.nn.batched import encode_all


def _p0_problem(chains=64, init="modes-mixture"):
    # three components of unequal masses and shapes in 2-D, one absent slot, one image; a trivial decoder
    mc = M.ModelConfig(m=3, n=2, hidden=2, layers=1, likelihood="gaussian", t=1.0, posterior="constant", sigma2=0.5)
    p = M.init_params(mc, np.random.default_rng(0), dtype=np.float64)
    x = np.zeros((1, 3))
    mu, var = encode_all(p, x, mc)
    s2 = np.array([4.0, 2.25])
    modes = np.array([[[1.0, -1.0], [-2.5, 2.0], [0.5, 3.0], [1.0, -1.0]]])
    A_ = np.array([[1.0, 0.3], [0.0, 0.7]])
    precs = np.stack([np.diag([4.0, 2.0]), A_ @ A_.T * 5.0, np.array([[3.0, -1.0], [-1.0, 2.0]]), np.eye(2)])[None]
    log_mass = np.array([[0.0, np.log(0.35), np.log(0.1), -np.inf]])
    target, _, _ = AT.setup(p, x, mc, s2, mu, var, None, chains, init, 0.5, laplace=(modes, precs, log_mass))
    return target, modes[0], precs[0], s2


def test_the_modes_mixture_density_is_the_sum_of_its_gaussians_and_the_prior_and_integrates_to_one():
    chains = 64
    target, modes, precs, s2 = _p0_problem(chains)
    counts = np.bincount(target.component[target.component >= 0], minlength=3)
    assert counts.sum() == chains // 2 and np.all(counts >= AT.MIN_CHAINS)
    # largest-remainder shares of 32 chains for masses 1 : 0.35 : 0.1 (0.69, 0.24, 0.07): 22, 8, 2
    assert counts.tolist() == [22, 8, 2]
    g = np.linspace(-12.0, 12.0, 601)
    Z = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
    ref = (chains - counts.sum()) / chains * multivariate_normal(np.zeros(2), np.diag(s2)).pdf(Z)
    for j in range(3):
        ref += counts[j] / chains * multivariate_normal(modes[j], np.linalg.inv(precs[j])).pdf(Z)
    # a target of 1 image and chains x 1 rows: evaluate p0 at grid points in blocks of `chains` rows
    lp = np.concatenate([target.initial(Z[i : i + chains])[0] for i in range(0, len(Z), chains)])
    np.testing.assert_allclose(np.exp(lp), ref, rtol=TOL["identity_f64"], atol=1e-300)
    h = g[1] - g[0]
    assert abs(np.exp(lp).sum() * h * h - 1.0) < 1e-3  # the grid covers all but ~1e-4 of the prior's mass
    # the gradient of log p0 against central differences
    z = np.random.default_rng(1).normal(0.0, 2.0, (chains, 2))
    _, grad = target.initial(z)
    d = 1e-6
    for k in range(2):
        e = np.zeros(2)
        e[k] = d
        fd = (target.initial(z + e)[0] - target.initial(z - e)[0]) / (2 * d)
        np.testing.assert_allclose(grad[:, k], fd, rtol=TOL["fd_grad_f64"], atol=TOL["fd_grad_f64"])


def test_chains_start_in_their_component():
    chains = 3000
    target, modes, precs, _ = _p0_problem(chains, init="modes")
    z = target.sample_initial(np.random.default_rng(2))
    for j in range(3):
        zj = z[target.component == j]
        cov = np.linalg.inv(precs[j])
        se = np.sqrt(np.diag(cov) / len(zj))
        assert np.all(np.abs(zj.mean(axis=0) - modes[j]) < TOL["mc_sigmas"] * se)
        np.testing.assert_allclose(np.cov(zj.T), cov, atol=0.15 * np.abs(cov).max())
    # the step-size start of each chain: its component's smallest standard deviation over S
    sd = np.sqrt(np.stack([np.diag(np.linalg.inv(P)) for P in precs]))
    expect = (sd / np.sqrt(target.s2)).min(axis=1)[target.component]
    np.testing.assert_allclose(target.start_step(), expect, rtol=1e-12)


@pytest.mark.parametrize(
    "masses, n_q, expect",
    [
        ([0.0, -np.inf], 32, [32, 0]),
        ([0.0, np.log(0.5), np.log(0.005)], 32, [21, 11, 0]),  # below MIN_MODE_SHARE: no component
        ([0.0, np.log(0.02)], 32, [30, 2]),  # 0.6 of a chain raised to MIN_CHAINS
        ([0.0, 0.0, 0.0, 0.0], 5, [3, 2, 0, 0]),  # at most n_q // MIN_CHAINS components
        ([0.0, 0.0], 1, [1, 0]),
    ],
)
def test_chain_counts_follow_the_masses(masses, n_q, expect):
    c = AT.chain_counts(np.array([masses]), n_q)
    assert c[0].tolist() == expect


def _bimodal(b=0.8):
    # nu(z) = relu(z_1) w + relu(-z_1) b w, x = 2 w: maxima near z_1 = 2 and z_1 = -2 / b, each posterior
    # Gaussian (linear decoder on its side, sd 0.09 and 0.11 in z_1, over 20 sd from the kink); the prior
    # favours z_1 = 2 and it holds about 71% of the mass.  z_2 does not reach the decoder.
    mc = M.ModelConfig(m=3, n=2, hidden=2, layers=2, likelihood="gaussian", t=0.01, posterior="constant", sigma2=0.01)
    p = M.init_params(mc, np.random.default_rng(0), dtype=np.float64)
    w = np.array([1.0, -0.5, 0.3])
    p["dec_W0"][:] = [[1.0, -1.0], [0.0, 0.0]]
    p["dec_b0"][:] = 0.0
    p["dec_W1"][:] = np.stack([w, b * w])
    p["dec_b1"][:] = 0.0
    p["enc_W1"][:] = 0.0
    p["enc_b1"][:] = 0.0
    return mc, p, 2.0 * w[None]


def test_the_multimodal_start_covers_both_modes_of_a_two_gaussian_posterior_and_the_single_mode_start_misses_one():
    mc, p, x = _bimodal()
    s2 = np.ones(2)
    exact = grid_log_px(p, x, mc, s2, tol=1e-6)["log_px"][0]
    mu, var = encode_all(p, x, mc)
    modes, precs, log_mass = AT.laplace_modes(p, x, mu, var, mc, s2)
    kept = np.isfinite(log_mass[0]) & (np.exp(log_mass[0] - exact) > AT.MIN_MODE_SHARE)
    assert kept.sum() == 2
    np.testing.assert_allclose(np.sort(modes[0, kept, 0]), [-2.0 / 0.8, 2.0], atol=0.05)
    # each Laplace posterior is its side's exact Gaussian, so the masses add up to p(x) (Eq. (16) exact)
    assert abs(np.logaddexp.reduce(log_mass[0, kept]) - exact) < 1e-6
    heavy = np.exp(log_mass[0].max() - exact)
    assert 0.65 < heavy < 0.75
    opts = dict(mu=mu, var=var, chains=64, steps=200, leapfrog=5)
    # p0 the two Laplace Gaussians alone, weighted by chain counts (23 : 9, not exactly the masses): a chain
    # in mode j has log weight log(p(x) pi_j / a_j) whatever it does, and the stratified mean is p(x)
    r = A.ais_log_px(p, x, mc, s2, np.random.default_rng(0), init="modes", **opts)
    assert set(np.unique(r["component"])) == {0, 1}
    assert abs(r["log_px"][0] - exact) < 1e-6
    # the single-mode Laplace start alone: every chain stays on the heavy mode, log p(x) + log pi_heavy,
    # confidently (its weights are all equal)
    r1 = A.ais_log_px(p, x, mc, s2, np.random.default_rng(0), init="laplace", **opts)
    assert abs(r1["log_px"][0] - (exact + np.log(heavy))) < 1e-6 and r1["se"][0] < 1e-6
    # with the prior (the default mixture): within a few standard errors
    r2 = A.ais_log_px(p, x, mc, s2, np.random.default_rng(1), init="modes-mixture", **opts)
    assert abs(r2["log_px"][0] - exact) < TOL["mc_sigmas"] * r2["se"][0] and r2["se"][0] < 0.1, (
        r2["log_px"][0] - exact,
        r2["se"][0],
    )


def test_the_stratified_standard_error_with_per_image_strata_is_the_per_image_formula():
    g = np.random.default_rng(3)
    logw = g.normal(0.0, 0.5, (12, 3))
    strata = np.array([[0] * 6 + [1] * 6, [0] * 10 + [1] * 2, [0] * 3 + [1] * 4 + [2] * 5]).T
    lp, se = A.log_mean_exp(logw, strata)
    for b in range(3):
        w = np.exp(logw[:, b])
        var = sum(
            (np.sum(strata[:, b] == k) / 12) ** 2 * w[strata[:, b] == k].var(ddof=1) / np.sum(strata[:, b] == k)
            for k in np.unique(strata[:, b])
        )
        np.testing.assert_allclose(lp[b], np.log(w.mean()), rtol=1e-13)
        np.testing.assert_allclose(se[b], np.sqrt(var) / w.mean(), rtol=1e-12)
    # a stratum of one chain: no standard error
    assert np.isinf(A.log_mean_exp(logw, np.array([[0] * 11 + [1]] * 3).T)[1]).all()


def test_laplace_modes_rejects_bad_input():
    mc, p, x = _bimodal()
    mu, var = encode_all(p, x, mc)
    for kw, match in ((dict(climbs=0), "climbs"), (dict(max_modes=1.5), "max_modes")):
        with pytest.raises(ValueError, match=match):
            AT.laplace_modes(p, x, mu, var, mc, np.ones(2), **kw)
    with pytest.raises(ValueError, match="mu and var"):
        AT.laplace_modes(p, x, mu[:, :1], var, mc, np.ones(2))
    with pytest.raises(ValueError, match="log_mass"):
        AT.chain_counts(np.full((1, 2), -np.inf), 4)
    with pytest.raises(ValueError, match="n_q"):
        AT.chain_counts(np.zeros((1, 2)), 0)


def test_laplace_log_mass_is_the_gaussian_integral():
    """exp(c - 1/2 z^T P z) integrates to exp(c) / N(0; 0, P^-1): scipy's density at the mean, batched over maxima."""
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(3)
    A = rng.standard_normal((4, 3, 5, 5))
    P = A @ np.swapaxes(A, -1, -2) + 0.5 * np.eye(5)
    c = rng.normal(-100.0, 30.0, size=(4, 3))
    want = np.array(
        [
            [c[i, j] - multivariate_normal(np.zeros(5), np.linalg.inv(P[i, j])).logpdf(np.zeros(5)) for j in range(3)]
            for i in range(4)
        ]
    )
    np.testing.assert_allclose(AT.laplace_log_mass(c, P), want, rtol=0, atol=1e-9)
