"""mlpvae.evidence.ais and mlpvae.evidence.bdmc: log p(x) by AIS with HMC transitions, and the BDMC sandwich
(Not in the paper).

Known answers: a one-layer (linear) decoder with a Gaussian likelihood has
p(x) = N(x; b, t I + W^T S^2 W) in closed form, and its Laplace posterior is
the exact posterior; an n = 2 trained model has the
exact grid value (:mod:`mlpvae.evidence.grid`); a decoder that depends on |z_1|
through two branches of different slopes has a posterior with two modes of
known mass ratio, q(z|x) placed on the lighter one.
"""

import json

import numpy as np
import pytest
from conftest import CUPY, TOL, needs_gpu
from scipy.stats import multivariate_normal
from tiny_runs import train_synthetic

from mlpvae.evidence import ais as A
from mlpvae.evidence import ais_target as AT
from mlpvae.evidence import bdmc as BD
from mlpvae.evidence.grid import grid_log_px
from mlpvae.evidence.laplace import training_priors
from mlpvae.nn import model as M
from mlpvae.nn.batched import encode_all
from mlpvae.training.runs import load_run


@pytest.mark.parametrize("kind", A.SCHEDULES)
def test_schedules_rise_from_zero_to_one(kind):
    b = A.schedule(kind, 50)
    assert b[0] == 0.0 and b[-1] == 1.0 and len(b) == 51 and np.all(np.diff(b) > 0)
    if kind == "sigmoid":  # fine steps at both ends, coarse in the middle
        d = np.diff(b)
        assert d[0] < d[25] and d[-1] < d[25]


def _linear(seed=0, n=3, m=6, t=0.3):
    mc = M.ModelConfig(m=m, n=n, hidden=4, layers=1, likelihood="gaussian", t=t, posterior="constant", sigma2=0.5)
    rng = np.random.default_rng(seed)
    p = M.init_params(mc, rng, dtype=np.float64)
    p["dec_W0"] *= 2.0
    p["dec_b0"] += rng.standard_normal(m)
    s2 = rng.uniform(0.3, 4.0, n)
    cov = t * np.eye(m) + p["dec_W0"].T @ np.diag(s2) @ p["dec_W0"]
    return mc, p, s2, multivariate_normal(p["dec_b0"], cov)


def test_hmc_leaves_the_linear_gaussian_posterior_invariant():
    # exact posterior samples stay exact: mean and covariance after 30 transitions at beta = 1
    mc, p, s2, _ = _linear()
    W, t = p["dec_W0"], mc.t
    x = np.random.default_rng(1).standard_normal((1, mc.m))
    C = np.linalg.inv(np.diag(1 / s2) + W @ W.T / t)
    mean = C @ W @ (x[0] - p["dec_b0"]) / t
    R = 4000
    mu, var = encode_all(p, x, mc)
    target, _, _ = A.setup(p, x, mc, s2, mu, var, None, R, "prior", 0.5)
    g = np.random.default_rng(2)
    eps = np.full(R, 0.5 * np.min(np.sqrt(np.diag(C) / s2)))  # half the narrowest whitened posterior sd
    z = np.random.default_rng(3).multivariate_normal(mean, C, size=R)
    state = [z, *target.joint(z), *target.initial(z)]
    for _ in range(30):
        state, acc = A.hmc(target, state, 1.0, eps, 5, g)
    assert 0.3 < acc.mean() < 1.0
    sd = np.sqrt(np.diag(C))
    assert np.all(np.abs(state[0].mean(axis=0) - mean) < TOL["mc_sigmas"] * sd / np.sqrt(R) * 3)
    np.testing.assert_allclose(np.cov(state[0].T), C, rtol=0, atol=0.1 * np.abs(C).max())


@pytest.mark.parametrize("init", ["prior", "mixture"])
def test_ais_equals_the_linear_gaussian_closed_form(init):
    mc, p, s2, dist = _linear()
    x = dist.rvs(size=4, random_state=5)
    mu, var = encode_all(p, x, mc)
    r = A.ais_log_px(
        p, x, mc, s2, np.random.default_rng(1), mu=mu, var=var, chains=64, steps=1000, leapfrog=2, init=init
    )
    err = r["log_px"] - dist.logpdf(x)
    assert np.all(np.abs(err) <= TOL["mc_sigmas"] * r["se"]), (err, r["se"])
    assert np.all(r["se"] < 0.15)


def test_bdmc_brackets_the_linear_gaussian_closed_form():
    mc, p, s2, dist = _linear(seed=2)
    x, z = BD.simulate(p, mc, s2, 4, np.random.default_rng(3))
    mu, var = encode_all(p, x, mc)
    # p0 the prior: the untrained encoder's q sits away from the posterior, where no reverse chain arrives
    r = BD.bdmc(
        p, x, z, mc, s2, np.random.default_rng(4), mu=mu, var=var, chains=64, steps=1000, leapfrog=2, init="prior"
    )
    exact = dist.logpdf(x)
    k = TOL["mc_sigmas"]
    assert np.all(r["lower"] - k * r["lower_se"] <= exact) and np.all(exact <= r["upper"] + k * r["upper_se"])
    assert np.all(r["width"] > -k * (r["lower_se"] + r["upper_se"])) and np.abs(r["width"]).mean() < 0.15


def test_bdmc_of_a_mixture_start_uses_its_posterior_component_alone():
    # The Laplace component of a linear-Gaussian decoder is the exact posterior: annealed from it alone every
    # forward weight is p(x) and every reverse weight 1 / p(x), to round-off; from the mixture with the prior
    # they would scatter, and a reverse chain that cannot reach the prior's part reads -log(q_fraction) high.
    mc, p, s2, dist = _linear(seed=2)
    x, z = BD.simulate(p, mc, s2, 3, np.random.default_rng(3))
    mu, var = encode_all(p, x, mc)
    r = BD.bdmc(p, x, z, mc, s2, np.random.default_rng(4), mu=mu, var=var, chains=8, steps=50, init="laplace-mixture")
    exact = dist.logpdf(x)
    np.testing.assert_allclose(r["lower"], exact, rtol=0, atol=1e-6)
    np.testing.assert_allclose(r["upper"], exact, rtol=0, atol=1e-6)


def test_ais_agrees_with_the_exact_grid_on_every_image_of_a_trained_2d_model(tmp_path):
    train_synthetic(tmp_path / "run")
    run = load_run(tmp_path / "run", float64=True)
    _, _, s2, s2b = training_priors(run)
    x = run.x_test
    mu, var = encode_all(run.params, x, run.mc)
    exact = grid_log_px(run.params, x, run.mc, s2, baggins_s2=s2b, tol=1e-4)["log_px"]
    r = A.ais_log_px(run.params, x, run.mc, s2, np.random.default_rng(0), mu=mu, var=var)  # the defaults
    assert np.abs(r["log_px"] - exact).max() < 0.1


def _two_modes():
    # nu(z) = relu(z_1) w + relu(-z_1) w / 2: x = 2 w is fitted at z_1 = 2 and at z_1 = -4.  The prior density is
    # e^6 larger at z_1 = 2 and that mode is half as wide, so it holds e^6 / 2 ~ 200 times the other's mass.
    # The encoder puts a narrow q(z|x) on the light mode, z_1 = -4.
    mc = M.ModelConfig(m=3, n=2, hidden=2, layers=2, likelihood="gaussian", t=0.01, posterior="constant", sigma2=0.01)
    p = M.init_params(mc, np.random.default_rng(0), dtype=np.float64)
    w = np.array([1.0, -0.5, 0.3])
    p["dec_W0"][:] = [[1.0, -1.0], [0.0, 0.0]]
    p["dec_b0"][:] = 0.0
    p["dec_W1"][:] = np.stack([w, w / 2])
    p["dec_b1"][:] = 0.0
    p["enc_W1"][:] = 0.0
    p["enc_b1"][:] = [-4.0, 0.0]
    return mc, p, 2.0 * w[None]


def test_chains_from_q_alone_miss_the_heavy_mode_and_the_mixture_finds_it():
    mc, p, x = _two_modes()
    s2 = np.ones(2)
    exact = grid_log_px(p, x, mc, s2, tol=1e-6)["log_px"][0]
    mu, var = encode_all(p, x, mc)
    assert mu[0, 0] == -4.0
    opts = dict(mu=mu, var=var, chains=256, steps=200, leapfrog=5)
    from_q = A.ais_log_px(p, x, mc, s2, np.random.default_rng(0), init="q", **opts)
    # log(1 + e^6 / 2) = 5.3 nats low, stuck on q's mode, and confidently so: its standard error is small
    assert exact - from_q["log_px"][0] > max(4.0, TOL["mc_sigmas"] * from_q["se"][0])
    for init in ("modes-mixture", "laplace-mixture", "mixture", "prior"):
        # Chains pick a mode while beta is small and stay there: the weights carry the modes' masses, so the
        # estimate's spread is the spread of how many chains each mode got (it shrinks with chains, not with T)
        r = A.ais_log_px(p, x, mc, s2, np.random.default_rng(1), init=init, **opts)
        assert abs(r["log_px"][0] - exact) < TOL["mc_sigmas"] * r["se"][0] and r["se"][0] < 0.25, (
            init
        )  # the miss is 20 se
    # the default p0 (modes-mixture): the mode search climbs from the prior's points as well as from q's mean,
    # so a Laplace component sits on the heavy mode; the light one holds under MIN_MODE_SHARE of the Laplace
    # mass, gets no component, and the prior's chains find it.  The chains still change
    # modes rarely once beta has grown, so the weights spread (standard error 0.07 at 64 chains, 0.03 at 256):
    # with 256 chains the estimate is within 0.1 nat, over three standard errors
    mode, _ = AT.laplace_posterior(p, x, mu, var, mc, s2)
    assert abs(mode[0, 0] - 2.0) < 0.1
    r = A.ais_log_px(p, x, mc, s2, np.random.default_rng(2), mu=mu, var=var, chains=256)
    assert abs(r["log_px"][0] - exact) < 0.1, (r["log_px"][0] - exact, r["se"][0])


def test_the_laplace_posterior_of_a_linear_gaussian_decoder_is_its_posterior_and_every_weight_is_p_x():
    mc, p, s2, dist = _linear()
    x = dist.rvs(size=3, random_state=7)
    W, t = p["dec_W0"], mc.t
    P = np.diag(1 / s2) + W @ W.T / t
    mean = np.linalg.solve(P, W @ (x - p["dec_b0"]).T / t).T
    mu, var = encode_all(p, x, mc)
    mode, prec = AT.laplace_posterior(p, x, mu, var, mc, s2)
    np.testing.assert_allclose(mode, mean, rtol=0, atol=1e-8)
    np.testing.assert_allclose(prec, np.broadcast_to(P, prec.shape), rtol=1e-12)
    # p0 = the exact posterior: log p(x, z) - log p0(z) = log p(x) at every z, so every chain's weight is p(x)
    r = A.ais_log_px(p, x, mc, s2, np.random.default_rng(0), mu=mu, var=var, chains=4, steps=20, init="laplace")
    np.testing.assert_allclose(r["log_w"], np.broadcast_to(dist.logpdf(x), r["log_w"].shape), rtol=0, atol=1e-8)


def component_kernel_errors():
    """AIS minus the exact log p(x) (and its standard error) with one step size for every chain and with
    step sizes by starting component, on a linear-Gaussian decoder with a q/prior mixture start."""
    # q a narrow Gaussian at the posterior mean, half the chains in it.  One step size for every chain: exact
    # within its standard error.  Step sizes by component (q's chains frozen, the prior's moving): the
    # kernel depends on a label the weight does not see, and the estimate falls many standard errors low.
    mc, p, s2, dist = _linear(n=2, m=4, t=1.0)
    x = dist.rvs(size=1, random_state=5)[None]
    exact = dist.logpdf(x[0])
    W = p["dec_W0"]
    C = np.linalg.inv(np.diag(1 / s2) + W @ W.T / mc.t)
    mean = C @ W @ (x[0] - p["dec_b0"]) / mc.t
    chains, T, sd = 4000, 20, np.sqrt(np.diag(C))
    target, groups, _ = A.setup(p, x, mc, s2, mean[None], (0.3 * sd)[None] ** 2, None, chains, "mixture", 0.5)
    betas = A.schedule("linear", T)
    err = {}
    for name, e_q in (("shared", 0.5), ("by component", 1e-4)):
        eps = np.broadcast_to(np.where(target.in_q, e_q, 0.5) * sd.min(), (T + 1, chains))
        g = np.random.default_rng(1)
        logw, _ = A.anneal(target, target.sample_initial(g), betas, eps, 10, g)
        lp, se = A.log_mean_exp(logw.reshape(chains, 1), target.in_q)
        err[name] = (lp[0] - exact, se[0])
    return err


def test_a_kernel_that_depends_on_the_starting_component_biases_the_mixture_and_a_shared_one_does_not():
    err = component_kernel_errors()
    k = TOL["mc_sigmas"]
    assert abs(err["shared"][0]) < k * err["shared"][1], err
    assert err["by component"][0] < -k * err["by component"][1], err


def test_every_chain_of_an_image_gets_the_same_step_sizes(monkeypatch):
    # the pilot tunes one schedule per image; a component-dependent one would bias the weights (test above)
    mc, p, x = _two_modes()
    x = np.concatenate([x, x + 0.1])
    mu, var = encode_all(p, x, mc)
    seen = []
    anneal = A.anneal

    def spy(target, z0, betas, eps, *a, **kw):
        seen.append((np.asarray(eps), np.asarray(target.in_q)))
        return anneal(target, z0, betas, eps, *a, **kw)

    monkeypatch.setattr(A, "anneal", spy)
    for init in ("modes-mixture", "laplace-mixture", "mixture"):
        A.ais_log_px(p, x, mc, np.ones(2), np.random.default_rng(0), mu=mu, var=var, chains=8, steps=30, init=init)
    for eps, in_q in seen:
        assert in_q.any() and not in_q.all()
        by_image = eps.reshape(len(eps), 8, 2)  # rows are chain-major
        assert np.all(by_image == by_image[:, :1])


def test_the_stratified_standard_error_matches_the_spread_of_the_stratified_mean():
    # two strata of unequal size, level and spread: the predicted standard error of log(mean weight) against
    # the standard deviation of the estimate over independent repetitions.  Ignoring the strata would count
    # the difference of their levels as noise, which the stratified mean does not have.
    g = np.random.default_rng(0)
    strata = np.r_[np.ones(48, bool), np.zeros(16, bool)]
    reps = 4000
    logw = np.where(strata[:, None], g.normal(0.0, 0.3, (64, reps)), g.normal(1.0, 0.2, (64, reps)))
    lp, se = A.log_mean_exp(logw, strata)
    spread = lp.std(ddof=1)
    assert abs(np.median(se) / spread - 1) < 0.05, (np.median(se), spread)
    _, plain = A.log_mean_exp(logw)
    assert np.median(plain) > 2 * spread
    # one stratum: the ordinary delta-method standard error
    lp1, se1 = A.log_mean_exp(logw[:, :1])
    w = np.exp(logw[:, 0])
    np.testing.assert_allclose(se1[0], w.std(ddof=1) / np.sqrt(64) / w.mean(), rtol=1e-12)
    np.testing.assert_allclose(A.effective_sample_size(np.zeros((5, 2))), 5.0)


def test_ais_rejects_bad_input():
    mc, p, s2, dist = _linear()
    x = dist.rvs(size=2, random_state=0)
    mu, var = encode_all(p, x, mc)
    rng = np.random.default_rng(0)
    for kw, match in (
        (dict(chains=1), "chains"),
        (dict(steps=0), "steps"),
        (dict(schedule_kind="cosine"), "schedule"),
        (dict(init="posterior"), "init"),
        (dict(init="laplace-mixture", chains=4, q_fraction=0.05), "q_fraction"),
        (dict(q_fraction=1.0), "q_fraction"),
        (dict(target_accept=0.0), "target_accept"),
    ):
        with pytest.raises(ValueError, match=match):
            A.ais_log_px(p, x, mc, s2, rng, mu=mu, var=var, **kw)
    with pytest.raises(ValueError, match="s2"):
        A.ais_log_px(p, x, mc, -s2, rng, mu=mu, var=var)
    with pytest.raises(ValueError, match="strata"):
        A.log_mean_exp(np.zeros((4, 2)), np.zeros(3, bool))
    for f in (A.log_mean_exp, A.effective_sample_size):
        with pytest.raises(ValueError, match="logw"):
            f(np.zeros(4))
    with pytest.raises(ValueError, match="mu and var"):
        AT.laplace_posterior(p, x, mu[:1], var, mc, s2)
    with pytest.raises(ValueError, match="init"):
        AT.setup(p, x, mc, s2, mu, var, None, 4, "posterior", 0.5)
    mcl = M.ModelConfig(m=6, n=3, hidden=4, layers=1, likelihood="gaussian-learned")
    with pytest.raises(ValueError, match="likelihoods"):
        A.ais_log_px(M.init_params(mcl, rng, dtype=np.float64), x, mcl, s2, rng, mu=mu, var=var)
    mcb = M.ModelConfig(m=6, n=3, hidden=4, layers=1, likelihood="baggins")
    with pytest.raises(ValueError, match="baggins_s2"):
        A.ais_log_px(p, x, mcb, s2, rng, mu=mu, var=var)
    with pytest.raises(ValueError, match="bernoulli and gaussian"):
        BD.simulate(p, mcb, s2, 2, rng)


def test_the_ais_command_measures_a_trained_run(tmp_path, capsys):
    from vaetheory.cli import main

    train_synthetic(tmp_path / "run")
    args = ["analyze", str(tmp_path / "run"), "--ais", "--ais-images", "6", "--chains", "8", "--steps", "50"]
    args += ["--leapfrog", "3", "--bdmc-images", "3", "--iwae-k", "200", "--q-fraction", "0.75", "--no-progress"]
    assert main(args) == 0
    saved = json.loads((tmp_path / "run" / "ais_evidence.json").read_text())
    assert saved["images"] == 6 and saved["steps"] == 50 and saved["bdmc_images"] == 3
    assert saved["init"] == "modes-mixture" and saved["q_fraction"] == 0.75
    assert saved["bdmc_init"] == "modes"  # the sandwich anneals the posterior components alone
    assert "git_sha" in saved  # the code that computed it (None outside a git checkout)
    per = np.load(tmp_path / "run" / "ais_evidence_per_image.npz")
    assert len(per["ais_log_px"]) == 6 and len(per["bdmc_width"]) == 3
    assert np.abs(per["ais_minus_grid"]).max() < 0.5  # a short chain, yet near the exact value
    # the mixture's forward run on the simulated images: the same images (one stream), near their exact values
    from mlpvae.experiments.ais_report import simulated_images

    run = load_run(tmp_path / "run", test_limit=6, float64=True)
    _, _, s2, _ = training_priors(run)
    mu, _ = encode_all(run.params, run.x_test, run.mc)
    _, xs, _, _, _ = simulated_images(run, run.x_test, mu, s2, 3)
    exact = grid_log_px(run.params, xs, run.mc, s2, tol=1e-4)["log_px"]
    assert np.abs(per["bdmc_mixture_lower"] - exact).max() < 0.5
    np.testing.assert_allclose(per["bdmc_mixture_width"], per["bdmc_upper"] - per["bdmc_mixture_lower"])
    assert saved["bdmc_mixture_width"] == pytest.approx(per["bdmc_mixture_width"].mean())
    # each bound's Monte Carlo error is kept per image, and the mean width carries its interval over the images
    assert np.all(per["bdmc_lower_se"] > 0) and np.all(per["bdmc_upper_se"] > 0)
    se = np.hypot(per["bdmc_lower_se"], per["bdmc_upper_se"])
    assert saved["bdmc_width_se_max"] == pytest.approx(se.max())
    assert per["bdmc_width"].min() <= saved["bdmc_width_lo"] <= saved["bdmc_width"] <= saved["bdmc_width_hi"]
    assert saved["bdmc_width_hi"] <= per["bdmc_width"].max()
    assert main(["analyze", str(tmp_path / "run"), "--ais", "--ais-images", "0"]) == 2
    # with progress on, each long step shows a bar: AIS on the test images, BDMC, the mixture's forward AIS
    capsys.readouterr()
    short = ["analyze", str(tmp_path / "run"), "--ais", "--ais-images", "2", "--chains", "4", "--steps", "50"]
    assert main(short + ["--leapfrog", "2", "--bdmc-images", "2", "--iwae-k", "20"]) == 0
    err = capsys.readouterr().err
    assert err.count("AIS T=50:") >= 2 and "BDMC T=50:" in err
    assert err.index("BDMC T=50:") < err.rindex("AIS T=50:")


def test_the_width_interval_is_the_t_interval_of_a_large_sample_and_collapses_on_equal_widths():
    from scipy import stats

    from mlpvae.experiments.ais_report import width_interval

    w = np.random.default_rng(3).normal(0.3, 1.0, 400)
    r = width_interval(w, np.full(400, 0.05))
    half = stats.t.ppf(0.975, 399) * w.std(ddof=1) / np.sqrt(400)  # the closed-form interval it must approach
    assert r["bdmc_width_lo"] == pytest.approx(w.mean() - half, abs=0.15 * half)
    assert r["bdmc_width_hi"] == pytest.approx(w.mean() + half, abs=0.15 * half)
    assert r["bdmc_width_se_max"] == 0.05
    r = width_interval(np.full(8, 0.12))
    assert r["bdmc_width_lo"] == pytest.approx(0.12) and r["bdmc_width_hi"] == pytest.approx(0.12)
    assert "bdmc_width_se_max" not in r
    assert width_interval(np.array([0.4])) == {}  # one image has no interval over images


def _fd_grad(f, z, h=1e-6):
    g = np.zeros_like(z)
    for j in range(z.shape[1]):
        e = np.zeros_like(z)
        e[0, j] = h
        g[0, j] = (f(z + e) - f(z - e)) / (2 * h)
    return g


def test_the_gaussian_twin_has_baggins_gradient_at_its_point_and_not_elsewhere():
    from mlpvae.evidence.laplace import likelihood_at

    mc = M.ModelConfig(m=7, n=3, hidden=5, layers=2, likelihood="baggins", tau=0.3, posterior="bilbo")
    rng = np.random.default_rng(5)
    p = M.init_params(mc, rng, dtype=np.float64)
    x, z = rng.standard_normal((1, 7)), rng.standard_normal((1, 3))
    mu, var, s2 = rng.standard_normal((1, 3)), np.full((1, 3), 0.4), rng.uniform(0.5, 2.0, 3)
    twin = BD.gaussian_twin(p, x, z, mc)
    assert twin.likelihood == "gaussian" and twin.n == mc.n
    nu = M.decode(p, z, mc)["mean"]
    assert twin.t == pytest.approx(((x - nu) ** 2).sum() / mc.m, rel=1e-12)

    def grads(at):
        return [_fd_grad(lambda w, c=c: likelihood_at(p, x, w, mu, var, c, s2)[0][0], at) for c in (mc, twin)]

    gb, gg = grads(z)
    np.testing.assert_allclose(gg, gb, rtol=1e-6, atol=1e-8)  # -m/2 grad r^2 / r^2 = -grad r^2 / (2 t) at t = r^2/m
    gb, gg = grads(z + 1.5)  # elsewhere r^2 differs and so does BAGGINS' effective t
    assert np.abs(gg - gb).max() > 1e-3 * np.abs(gb).max()
    with pytest.raises(ValueError, match="baggins"):
        BD.gaussian_twin(p, x, z, twin)


def test_the_ais_command_certifies_baggins_on_its_gaussian_twin(tmp_path):
    from vaetheory.cli import main

    train_synthetic(tmp_path / "run", likelihood="baggins", binarize="none", posterior="bilbo")
    args = ["analyze", str(tmp_path / "run"), "--ais", "--ais-images", "4", "--chains", "8", "--steps", "50"]
    assert main(args + ["--bdmc-images", "3", "--iwae-k", "100", "--no-progress"]) == 0
    saved = json.loads((tmp_path / "run" / "ais_evidence.json").read_text())
    assert saved["bdmc_target"] == "gaussian twin" and saved["bdmc_images"] == 3
    run = load_run(tmp_path / "run", test_limit=4, float64=True)
    mu, _ = encode_all(run.params, run.x_test, run.mc)
    assert saved["bdmc_twin_t"] == pytest.approx(BD.gaussian_twin(run.params, run.x_test, mu, run.mc).t, rel=1e-9)
    per = np.load(tmp_path / "run" / "ais_evidence_per_image.npz")
    assert len(per["bdmc_width"]) == 3 and np.all(np.isfinite(per["bdmc_width"]))


@needs_gpu
def test_ais_on_cupy_agrees_with_the_exact_grid():
    cp = CUPY
    mc, p, x = _two_modes()
    s2 = np.ones(2)
    exact = grid_log_px(p, x, mc, s2, tol=1e-6)["log_px"]
    pg, xg = {k: cp.asarray(v) for k, v in p.items()}, cp.asarray(x)
    mu, var = encode_all(pg, xg, mc)
    r = A.ais_log_px(
        pg, xg, mc, cp.asarray(s2), cp.random.default_rng(0), mu=mu, var=var, chains=256, steps=500
    )  # the default p0 (Laplace and prior); 256 chains as in the NumPy test of the same case
    assert isinstance(r["log_px"], np.ndarray) and abs(r["log_px"][0] - exact[0]) < 0.1


@needs_gpu
def test_bdmc_on_cupy_brackets_the_linear_gaussian_closed_form():
    cp = CUPY
    mc, p, s2, dist = _linear(seed=2)
    x, z = BD.simulate(p, mc, s2, 4, np.random.default_rng(3))
    pg = {k: cp.asarray(v) for k, v in p.items()}
    mu, var = encode_all(pg, cp.asarray(x), mc)
    r = BD.bdmc(
        pg,
        cp.asarray(x),
        cp.asarray(z),
        mc,
        cp.asarray(s2),
        cp.random.default_rng(4),
        mu=mu,
        var=var,
        chains=64,
        steps=1000,
        leapfrog=2,
        init="prior",
    )  # the NumPy test's case on the device
    exact = dist.logpdf(x)
    k = TOL["mc_sigmas"]
    assert isinstance(r["lower"], np.ndarray) and isinstance(r["upper"], np.ndarray)
    assert np.all(r["lower"] - k * r["lower_se"] <= exact) and np.all(exact <= r["upper"] + k * r["upper_se"])
    assert np.abs(r["width"]).mean() < 0.15
