"""Per-image Gaussian posteriors on a fixed decoder in any n (mlpvae/evidence/fixed_decoder_saa.py), against
the closed form of a linear-Gaussian decoder and finite differences."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TOL
from scipy.stats import multivariate_normal

from mlpvae.evidence import fixed_decoder_saa as S
from mlpvae.nn import model as M


def _linear(seed, n=3, m=7, t=0.4, N=5):
    """A linear decoder z W + b with Gaussian noise t I, prior N(0, S^2): posterior precision P, exact log p(x)."""
    cfg = M.ModelConfig(m=m, n=n, hidden=4, layers=1, likelihood="gaussian", posterior="learned", t=t)
    rng = np.random.default_rng(seed)
    params = M.init_params(cfg, rng, dtype=np.float64)
    W, b = rng.standard_normal((n, m)), rng.standard_normal(m)
    params["dec_W0"], params["dec_b0"] = W, b
    s2 = np.exp(rng.uniform(-0.5, 1.0, n))
    x = b + (rng.standard_normal((N, n)) * np.sqrt(s2)) @ W + np.sqrt(t) * rng.standard_normal((N, m))
    P = np.diag(1 / s2) + W @ W.T / t
    mean = np.linalg.solve(P, W @ (x - b).T / t).T
    log_px = multivariate_normal(b, W.T @ np.diag(s2) @ W + t * np.eye(m)).logpdf(x)
    return cfg, params, x, s2, P, mean, log_px


def _exact_elbo(x, params, t, s2, m, logs):
    """The ELBO of N(m, diag s^2) under the linear-Gaussian decoder, in closed form."""
    W, b = params["dec_W0"], params["dec_b0"]
    s2q = np.exp(2 * logs)
    r = x - b - m @ W
    ell = -0.5 * (np.sum(r * r, axis=1) + s2q @ np.sum(W * W, axis=1)) / t - 0.5 * x.shape[1] * np.log(2 * np.pi * t)
    kl = 0.5 * np.sum(s2q / s2 + m * m / s2 - 1 - 2 * logs + np.log(s2), axis=1)
    return ell - kl


def test_draws_are_antithetic_and_whitened_and_refuse_too_few():
    eps = S.draws(64, 5, np.random.default_rng(0))
    np.testing.assert_allclose(eps.mean(axis=0), 0, atol=1e-14)
    np.testing.assert_allclose(eps.T @ eps / 64, np.eye(5), atol=1e-12)
    plain = S.draws(64, 5, np.random.default_rng(0), whiten=False)
    np.testing.assert_array_equal(plain[:32], -plain[32:])
    with pytest.raises(ValueError, match="K >= 2 n"):
        S.draws(8, 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="even"):
        S.draws(7, 2, np.random.default_rng(0), whiten=False)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_sample_average_is_the_exact_elbo_of_a_linear_gaussian_decoder(seed):
    cfg, params, x, s2, *_ = _linear(seed)
    rng = np.random.default_rng(seed + 10)
    m, logs = rng.standard_normal((5, 3)), rng.uniform(-1, 0.5, (5, 3))
    e = S.sample_elbo(params, x, cfg, s2, m, logs, S.draws(8, 3, rng))[0]  # 8 draws: moments match exactly
    np.testing.assert_allclose(e, _exact_elbo(x, params, cfg.t, s2, m, logs), rtol=0, atol=TOL["identity_f64"])


@pytest.mark.parametrize("seed", [0, 1])
def test_the_best_diagonal_gaussian_of_a_linear_gaussian_decoder_is_the_closed_form(seed):
    # KL(q | p) over diagonal q: the posterior mean, variances 1 / diag(P); ELBO = log p(x) - KL(q* | p)
    cfg, params, x, s2, P, mean, log_px = _linear(seed)
    rng = np.random.default_rng(seed)
    r = S.optimise(params, x, cfg, s2, "diagonal", np.zeros_like(mean), np.zeros_like(mean), S.draws(16, 3, rng), 1e-7)
    assert r["converged"]
    np.testing.assert_allclose(r["m"], mean, atol=1e-7)
    np.testing.assert_allclose(np.exp(2 * r["logs"]), np.broadcast_to(1 / np.diag(P), mean.shape), rtol=1e-7)
    kl = 0.5 * (np.sum(np.log(np.diag(P))) - np.linalg.slogdet(P)[1])
    np.testing.assert_allclose(r["elbo"], log_px - kl, atol=1e-8)
    # one Jacobian for every image, so one shared Sigma is every image's best: the constant family agrees
    c = S.optimise(params, x, cfg, s2, "constant", r["m"], np.zeros_like(mean), S.draws(16, 3, rng), 1e-7)
    assert c["converged"] and np.abs(c["gradient_shared"]).max() < 1e-6
    np.testing.assert_allclose(np.exp(2 * c["logs"][0]), 1 / np.diag(P), rtol=1e-7)
    fresh, se = S.fresh_elbo(params, x, cfg, s2, r["m"], r["logs"], 20000, np.random.default_rng(5))
    assert np.all(se > 0) and np.all(np.abs(fresh - (log_px - kl)) < 5 * se)


def _mlp(seed, N=4, n=3):
    cfg = M.ModelConfig(m=9, n=n, hidden=6, layers=2, likelihood="bernoulli", posterior="constant")
    rng = np.random.default_rng(seed)
    params = M.init_params(cfg, rng, dtype=np.float64)
    for k in params:
        params[k] = params[k] + 0.3 * rng.standard_normal(params[k].shape)
    return cfg, params, rng.uniform(0, 1, (N, 9)), np.exp(rng.uniform(-0.5, 0.5, n)), rng


def _baggins(cfg, rng, N=4):
    """The same network read as BAGGINS (Eq. (29), tau 0.3), with Sigma per image and S^2 fixing its T."""
    bag = M.ModelConfig(m=cfg.m, n=cfg.n, hidden=6, layers=2, likelihood="baggins", posterior="bilbo", tau=0.3)
    return bag, (np.exp(rng.uniform(-1, 0.5, (N, cfg.n))), np.exp(rng.uniform(-0.5, 1.0, cfg.n)))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("likelihood", ["bernoulli", "baggins"])
def test_the_sample_average_gradients_match_finite_differences(seed, likelihood):
    cfg, params, x, s2, rng = _mlp(seed)
    bag = None
    if likelihood == "baggins":
        cfg, bag = _baggins(cfg, rng)
    m, logs = rng.standard_normal((4, 3)), rng.uniform(-1, 0, (4, 3))
    eps = S.draws(32, 3, rng)
    _, d_m, d_s = S.sample_elbo(params, x, cfg, s2, m, logs, eps, baggins=bag)
    h = 1e-6
    for i, j in [(0, 0), (1, 2), (3, 1)]:
        for arr, d in ((m, d_m), (logs, d_s)):
            up, dn = arr.copy(), arr.copy()
            up[i, j] += h
            dn[i, j] -= h
            args = (m, up) if arr is logs else (up, logs)
            argd = (m, dn) if arr is logs else (dn, logs)
            e_up = S.sample_elbo(params, x, cfg, s2, *args, eps, baggins=bag)[0]
            fd = e_up - S.sample_elbo(params, x, cfg, s2, *argd, eps, baggins=bag)[0]
            assert fd[i] / (2 * h) == pytest.approx(d[i, j], rel=1e-5, abs=1e-6)


def test_a_shared_sigma_is_a_constrained_optimum_below_the_per_image_one():
    cfg, params, x, s2, rng = _mlp(3, N=6)
    eps = S.draws(64, 3, rng)
    m0, l0 = np.zeros((6, 3)), np.full((6, 3), -0.5)
    d = S.optimise(params, x, cfg, s2, "diagonal", m0, l0, eps, 1e-8)
    c = S.optimise(params, x, cfg, s2, "constant", d["m"], d["logs"], eps, 1e-8)
    # ReLU kinks: the optimum is certified by what a restarted L-BFGS still gains, not by a zero gradient
    assert d["converged"] and c["converged"] and max(d["restart_gain"], c["restart_gain"]) <= 1e-6
    assert np.allclose(c["logs"], c["logs"][0])
    # on the same draws the per-image family contains the shared one: its summed optimum is no lower
    assert d["elbo"].sum() >= c["elbo"].sum() - 1e-9
    with pytest.raises(ValueError, match="family"):
        S.optimise(params, x, cfg, s2, "full", m0, l0, eps)


def test_an_unsupported_likelihood_is_refused_and_baggins_needs_its_T():
    cfg, params, x, s2, rng = _mlp(0)
    learned = M.ModelConfig(m=9, n=3, hidden=6, layers=2, likelihood="gaussian-learned", posterior="bilbo")
    with pytest.raises(ValueError, match="supports the likelihoods"):
        S.sample_elbo(params, x, learned, s2, np.zeros((4, 3)), np.zeros((4, 3)), S.draws(8, 3, rng))
    bag, (var, s2_b) = _baggins(cfg, rng)
    with pytest.raises(ValueError, match="baggins=\\(var, s2\\)"):
        S.sample_elbo(params, x, bag, s2, np.zeros((4, 3)), np.zeros((4, 3)), S.draws(8, 3, rng))
    with pytest.raises(ValueError, match="shapes"):
        S.fresh_elbo(params, x, bag, s2, np.zeros((4, 3)), np.zeros((4, 3)), 8, rng, baggins=(var[:2], s2_b))


def test_the_baggins_elbo_is_the_models_own_at_the_encoders_posterior():
    # T held by the encoder's Sigma and the training S^2: the ELBO the model reports (mlpvae.nn.model), same draws
    cfg, params, x, s2, rng = _mlp(4)
    bag, (_, s2_b) = _baggins(cfg, rng)
    mu, var = M.encode(params, x, bag)
    var = np.broadcast_to(var, mu.shape)
    eps = S.draws(4000, 3, rng, whiten=False)
    own = np.mean([M.elbo_per_example(params, x, np.broadcast_to(e, mu.shape), bag, s2=s2_b) for e in eps], axis=0)
    saa, _, _ = S.sample_elbo(params, x, bag, s2_b, mu, 0.5 * np.log(var), eps, baggins=(var, s2_b))
    np.testing.assert_allclose(saa, own, rtol=1e-10)


@pytest.mark.parametrize("likelihood", ["bernoulli", "baggins"])
def test_the_fixed_decoder_command_at_n_3_needs_ais_and_separates_the_gaps(tmp_path, likelihood, capsys):
    from tiny_runs import train_synthetic

    from vaetheory.cli import main

    run = tmp_path / "run"
    extra = dict(posterior="bilbo", likelihood="baggins", binarize="none") if likelihood == "baggins" else {}
    train_synthetic(run, n=3, **extra)
    fd = ["analyze", str(run), "--fixed-decoder-images", "4", "--fixed-decoder-draws", "64"]
    assert main(fd) == 2  # no AIS log p(x) to compare with yet: said, not a traceback
    ais = ["analyze", str(run), "--ais", "--ais-images", "3", "--chains", "8", "--steps", "40", "--bdmc-images", "2"]
    assert main(ais + ["--iwae-k", "50", "--no-progress"]) == 0
    assert main(fd) == 2  # AIS covers 3 images, 4 asked for
    assert main(fd[:3] + ["3", "--fixed-decoder-method", "grid"]) == 2  # no grid beyond n = 2: said
    capsys.readouterr()
    assert main(fd[:3] + ["3"] + fd[4:]) == 0
    err = capsys.readouterr().err  # the long fits show their progress
    assert "K = 64: diagonal posteriors, start 1 of" in err and "K = 128: shared Sigma" in err
    r = json.loads((run / "fixed_decoder.json").read_text())
    per = np.load(run / "fixed_decoder_per_image.npz")
    assert r["n"] == 3 and r["images"] == 3 and r["K"] == 64
    for k in (64, 128):
        for f in ("diagonal", "constant"):
            assert r[f"{f}_K{k}_converged"]
    # evaluated on the same fresh draws: each image's own optimum beats the encoder's posterior and the shared
    # Sigma, up to the sample average's shortfall (a few Monte Carlo standard errors here)
    slack = 5 * r["fresh_se_max"]
    assert np.all(per["elbo_diagonal"] >= per["elbo_encoder"] - slack)
    assert np.all(per["elbo_diagonal"] >= per["elbo_constant"] - slack)
    assert np.all(per["log_px"] >= per["elbo_diagonal"] - slack - 3 * per["log_px_se"])
    c = r["comparisons"]
    assert r["eq22"] >= 0 and r["likelihood"] == likelihood
    if "eq18_at_diagonal" in c:  # BAGGINS: where its own precision is positive definite
        assert c["eq18_at_diagonal"]["mean"] >= 0 and r["eq18_defined_images"] >= 1
    assert ("own Hessian" in r["curvature"]) == (likelihood == "baggins")
    assert (run / "fixed_decoder.md").read_text().startswith("# The gaps on one decoder")
    # the medians beside the means, recomputed from the per-image file
    cost = per["elbo_diagonal"] - per["elbo_constant"]
    assert r["medians"]["constant_cost_minus_eq22"]["median"] == pytest.approx(np.median(cost - per["eq22_terms"]))
    assert r["medians"]["eq22"]["median"] == pytest.approx(np.median(per["eq22_terms"]))
    assert "medians over the images" in (run / "fixed_decoder.md").read_text()


def test_best_of_keeps_each_images_highest_optimum():
    a = {"m": np.zeros((3, 2)), "logs": np.zeros((3, 2)), "elbo": np.array([1.0, 5.0, 2.0]), "gradient": np.zeros(3)}
    b = {k: v + 1 for k, v in a.items()} | {"elbo": np.array([3.0, 4.0, 2.5])}
    for r in (a, b):
        r.update(iterations=4, restart_gain=0.0, converged=True)
    best = S.best_of([a, b])
    np.testing.assert_array_equal(best["start"], [1, 0, 1])
    np.testing.assert_array_equal(best["elbo"], [3.0, 5.0, 2.5])
    np.testing.assert_array_equal(best["m"][:, 0], [1.0, 0.0, 1.0])
    assert best["iterations"] == 8 and best["converged"]


@pytest.mark.parametrize("family", ["diagonal", "constant"])
def test_a_progress_bar_changes_nothing_in_the_optimum(family, capsys):
    cfg, params, x, s2, _, mean, _ = _linear(0)
    rng = np.random.default_rng(3)
    m0, logs0 = rng.standard_normal(mean.shape), rng.uniform(-1, 0, mean.shape)
    eps = S.draws(16, 3, np.random.default_rng(4))
    quiet = S.optimise(params, x, cfg, s2, family, m0, logs0, eps, 1e-7)
    assert "sample-average test" not in capsys.readouterr().err
    shown = S.optimise(params, x, cfg, s2, family, m0, logs0, eps, 1e-7, progress=True, desc="sample-average test")
    err = capsys.readouterr().err
    assert "sample-average test" in err and ("images" if family == "diagonal" else "iterations") in err
    for k in ("m", "logs", "elbo", "gradient"):
        np.testing.assert_array_equal(shown[k], quiet[k])
    assert shown["iterations"] == quiet["iterations"]


def test_the_draws_method_at_n_2_needs_no_ais_and_finds_the_grid_studys_optima(tmp_path):
    # two independent ways to the same per-image optima on one 2-D decoder: quadrature on frames of nodes
    # (the grid study) and a sample average over fixed draws (this one), both against the exact log p(x)
    from tiny_runs import train_synthetic

    from vaetheory.cli import main

    run = tmp_path / "run"
    train_synthetic(run)
    fd = ["analyze", str(run), "--fixed-decoder-images", "6", "--no-progress"]
    assert main(fd) == 0
    grid = dict(np.load(run / "fixed_decoder_per_image.npz"))
    assert main(fd + ["--fixed-decoder-method", "draws", "--fixed-decoder-draws", "512"]) == 0  # no --ais run
    r = json.loads((run / "fixed_decoder.json").read_text())
    per = np.load(run / "fixed_decoder_per_image.npz")
    assert r["log_px_reference"] == "grid" and r["log_px_se_max"] == 0.0
    np.testing.assert_array_equal(per["log_px"], grid["log_px"])
    for f in ("diagonal", "constant"):
        # the fresh-draw ELBO of the draws optimum against the grid optimum's ELBO: within its Monte Carlo
        # error and the shortfall of a 1,024-draw optimum (the 2K-minus-K row bounds it)
        slack = 5 * per[f"se_{f}_K1024"] + 2 * np.abs(per[f"elbo_{f}_K1024"] - per[f"elbo_{f}_K512"]) + 0.02
        assert np.all(np.abs(per[f"elbo_{f}"] - grid[f"elbo_{f}"]) <= slack), f
    assert "log p(x) (exact quadrature)" in (run / "fixed_decoder.md").read_text()
    with pytest.raises(SystemExit):  # argparse names the choices
        main(["analyze", str(run), "--fixed-decoder-images", "2", "--fixed-decoder-method", "nothing"])


def test_the_2k_draw_fit_also_starts_from_the_k_draw_optimum(tmp_path, monkeypatch):
    # from the same starts alone a 2K-draw climb can end in a lesser basin than the K-draw one (one 2-D image:
    # 10 nats); the K optimum is one of the 2K fit's starts, and the best of them is kept
    from tiny_runs import train_synthetic

    from mlpvae.experiments import fixed_decoder_saa_report as R
    from vaetheory.cli import main

    calls = []
    real = S.optimise

    def spy(params, x, mc, s2, family, m0, logs0, eps, *a, **k):
        r = real(params, x, mc, s2, family, m0, logs0, eps, *a, **k)
        calls.append((family, len(eps), np.array(m0), np.array(logs0), r))
        return r

    monkeypatch.setattr(R.S, "optimise", spy)
    run = tmp_path / "run"
    train_synthetic(run)
    fd = ["analyze", str(run), "--fixed-decoder-images", "4", "--no-progress", "--fixed-decoder-method", "draws"]
    assert main(fd + ["--fixed-decoder-draws", "64"]) == 0
    diag = [c for c in calls if c[0] == "diagonal"]
    at_k = [c for c in diag if c[1] == 64]
    at_2k = [c for c in diag if c[1] == 128]
    assert len(at_2k) == len(at_k) + 1
    best_k = S.best_of([c[4] for c in at_k])
    m0, logs0 = at_2k[-1][2], at_2k[-1][3]
    np.testing.assert_array_equal(m0, best_k["m"])
    np.testing.assert_array_equal(logs0, best_k["logs"])
    per = np.load(run / "fixed_decoder_per_image.npz")
    np.testing.assert_array_equal(per["start_diagonal_K128"], S.best_of([c[4] for c in at_2k])["start"])


def test_an_optimum_beyond_the_log_s_range_is_not_certified():
    # a decoder that ignores z: the posterior is the prior, whose standard deviations are far (in log s) from a
    # start of e^-40 times them; the bound keeps every trial step finite and the optimum on it is not certified
    cfg, params, x, s2, *_ = _linear(0)
    params = dict(params, dec_W0=np.zeros_like(params["dec_W0"]))
    eps = S.draws(16, 3, np.random.default_rng(1))
    near = 0.5 * np.log(s2) - 5.0
    r = S.optimise(params, x, cfg, s2, "diagonal", np.zeros((5, 3)), np.broadcast_to(near, (5, 3)).copy(), eps, 1e-7)
    assert r["converged"]
    np.testing.assert_allclose(np.exp(2 * r["logs"]), np.broadcast_to(s2, (5, 3)), rtol=1e-6)
    far = np.broadcast_to(0.5 * np.log(s2) - 40.0, (5, 3)).copy()
    for family in ("diagonal", "constant"):
        f = S.optimise(params, x, cfg, s2, family, np.zeros((5, 3)), far, eps, 1e-7)
        assert not f["converged"] and np.all(np.isfinite(f["elbo"]))
        np.testing.assert_allclose(f["logs"], far + S.LOG_S_RANGE, rtol=0, atol=1e-9)
