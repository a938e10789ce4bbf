"""mlpvae.evidence.fixed_decoder and the --fixed-decoder-images report (Not in the paper).

Both the Gauss-Hermite objective (gaussian_elbo, optimise_posteriors) and the fixed-node one that converges
(grid_gaussian_elbo, fit_posteriors) are checked against the closed form below and central differences.

Known answers: for a linear decoder with a Gaussian likelihood the posterior is N(P^-1 W (x - b) / t, P^-1),
P = S^-2 + W W^T / t; the best full Gaussian is it (ELBO = log p(x)), and the best diagonal one has
Sigma = 1 / diag(P) and the posterior mean, its gap being Eq. (18) at that Sigma
(vaetheory.evidence.evidence_gap, an independent closed form).
"""

import json

import numpy as np
import pytest
from conftest import TOL
from scipy.stats import multivariate_normal
from tiny_runs import train_synthetic

from mlpvae.evidence import fixed_decoder as F
from mlpvae.nn import model as M
from vaetheory.evidence import evidence_gap


def _linear(likelihood="gaussian", seed=0, n=2, m=6, t=0.3, N=4):
    mc = M.ModelConfig(m=m, n=n, hidden=4, layers=1, likelihood=likelihood, t=t, posterior="constant")
    rng = np.random.default_rng(seed)
    p = M.init_params(mc, rng, dtype=np.float64)
    p["dec_W0"] *= 2.0
    p["dec_b0"] += rng.standard_normal(m)
    s2 = rng.uniform(0.3, 4.0, n)
    x = rng.random((N, m)) if likelihood == "bernoulli" else 2.0 * rng.standard_normal((N, m))
    return mc, p, s2, x


def test_the_gaussian_elbo_gradients_match_central_differences():
    mc, p, s2, x = _linear("bernoulli")  # a smooth, non-Gaussian log joint
    rng = np.random.default_rng(1)
    m0 = rng.standard_normal((4, 2))
    L0 = np.tril(rng.standard_normal((4, 2, 2)))
    L0[:, [0, 1], [0, 1]] = np.abs(L0[:, [0, 1], [0, 1]]) + 0.5
    _, d_m, d_L = F.gaussian_elbo(p, x, mc, s2, m0, L0, order=8)
    h = 1e-6
    for k in range(2):
        a, b = m0.copy(), m0.copy()
        a[:, k] += h
        b[:, k] -= h
        fd = (F.gaussian_elbo(p, x, mc, s2, a, L0, 8)[0] - F.gaussian_elbo(p, x, mc, s2, b, L0, 8)[0]) / (2 * h)
        np.testing.assert_allclose(d_m[:, k], fd, rtol=0, atol=TOL["fd_grad_f64"] * (1 + np.abs(d_m).max()))
    for i, j in ((0, 0), (1, 0), (1, 1)):
        a, b = L0.copy(), L0.copy()
        a[:, i, j] += h
        b[:, i, j] -= h
        fd = (F.gaussian_elbo(p, x, mc, s2, m0, a, 8)[0] - F.gaussian_elbo(p, x, mc, s2, m0, b, 8)[0]) / (2 * h)
        np.testing.assert_allclose(d_L[:, i, j], fd, rtol=0, atol=TOL["fd_grad_f64"] * (1 + np.abs(d_L).max()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_optimal_posteriors_of_a_linear_gaussian_decoder_are_the_closed_form_eq18_eq25(seed):
    mc, p, s2, x = _linear(seed=seed)
    P, C, mean, exact, gap = _linear_posterior(mc, p, s2, x)
    start = np.zeros_like(mean), np.ones_like(mean)
    full = F.optimise_posteriors(p, x, mc, s2, "full", *start, order=4)
    np.testing.assert_allclose(full["elbo"], exact, rtol=0, atol=1e-8)
    np.testing.assert_allclose(full["cov"], np.broadcast_to(C, full["cov"].shape), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(full["m"], mean, rtol=0, atol=1e-6)
    for family in ("diagonal", "constant"):  # P is the same for every image: the shared optimum is the same
        r = F.optimise_posteriors(p, x, mc, s2, family, *start, order=4)
        np.testing.assert_allclose(r["elbo"], exact - gap, rtol=0, atol=1e-8)
        np.testing.assert_allclose(
            np.diagonal(r["cov"], axis1=1, axis2=2), 1 / np.diag(P)[None].repeat(4, 0), rtol=1e-6
        )
        np.testing.assert_allclose(r["m"], mean, rtol=0, atol=1e-6)


def _linear_posterior(mc, p, s2, x):
    """The closed forms of a linear-Gaussian decoder: posterior precision P and covariance C, posterior
    means, exact log p(x), and Eq. (18)'s gap of the diagonal optimum Sigma = 1 / diag(P)."""
    W, t = p["dec_W0"], mc.t
    P = np.diag(1 / s2) + W @ W.T / t
    C = np.linalg.inv(P)
    mean = (C @ W @ (x - p["dec_b0"]).T / t).T
    exact = multivariate_normal(p["dec_b0"], t * np.eye(mc.m) + W.T @ np.diag(s2) @ W).logpdf(x)
    J = np.broadcast_to(W.T / np.sqrt(t), (len(x), mc.m, len(s2)))
    gap = evidence_gap(np.broadcast_to(1 / np.diag(P), mean.shape), s2, J)
    return P, C, mean, exact, gap


def _linear_loglik(mc, p, x):
    W, b, t = p["dec_W0"], p["dec_b0"], mc.t
    return lambda i, z: -0.5 * np.sum((x[i] - z @ W - b) ** 2 / t + np.log(2 * np.pi * t), axis=1)


def test_the_fixed_node_elbo_gradients_match_central_differences():
    mc, p, s2, x = _linear("bernoulli")  # a smooth, non-Gaussian log joint
    rng = np.random.default_rng(2)
    m0 = rng.standard_normal((4, 2))
    L0 = np.tril(rng.standard_normal((4, 2, 2)))
    L0[:, [0, 1], [0, 1]] = np.abs(L0[:, [0, 1], [0, 1]]) + 0.5
    # a frame that is not centred on q, so the normalisation of the node weights matters
    z, logw = F.frame_nodes(m0 + 0.3, 1.3 * L0, 33, 9.0)
    lj = np.stack(
        [M.log_likelihood(M.decode(p, z[i], mc), np.broadcast_to(x[i], (len(z[i]), 6)), mc) for i in range(4)]
    )
    elbo = lambda m, L: F.grid_gaussian_elbo(lj, z, logw, s2, m, L)[0]  # noqa: E731
    _, d_m, d_L, _ = F.grid_gaussian_elbo(lj, z, logw, s2, m0, L0)
    h = 1e-6
    for k in range(2):
        a, b = m0.copy(), m0.copy()
        a[:, k] += h
        b[:, k] -= h
        fd = (elbo(a, L0) - elbo(b, L0)) / (2 * h)
        np.testing.assert_allclose(d_m[:, k], fd, rtol=0, atol=TOL["fd_grad_f64"] * (1 + np.abs(d_m).max()))
    for i, j in ((0, 0), (1, 0), (1, 1)):
        a, b = L0.copy(), L0.copy()
        a[:, i, j] += h
        b[:, i, j] -= h
        fd = (elbo(m0, a) - elbo(m0, b)) / (2 * h)
        np.testing.assert_allclose(d_L[:, i, j], fd, rtol=0, atol=TOL["fd_grad_f64"] * (1 + np.abs(d_L).max()))


@pytest.mark.parametrize("seed", [0, 1])
def test_the_converged_optima_of_a_linear_gaussian_decoder_are_the_closed_form_eq18_eq25(seed):
    mc, p, s2, x = _linear(seed=seed)
    P, C, mean, exact, gap = _linear_posterior(mc, p, s2, x)
    # a start far from the posterior and much wider than it: the frame has to follow q
    start = [(np.full((4, 2), 3.0), np.broadcast_to(25 * np.eye(2), (4, 2, 2)).copy())]
    loglik = _linear_loglik(mc, p, x)
    for family, want in (("full", exact), ("diagonal", exact - gap), ("constant", exact - gap)):
        r = F.fit_posteriors(loglik, s2, family, start)
        assert r["converged"].all() and r["gain"].max() <= 1e-9 and r["gradient"].max() <= 1e-6
        np.testing.assert_allclose(r["elbo"], want, rtol=0, atol=1e-8)
        np.testing.assert_allclose(r["elbo_halved"], want, rtol=0, atol=1e-8)  # Gaussian x quadratic: exact
        np.testing.assert_allclose(r["m"], mean, rtol=0, atol=1e-6)
        np.testing.assert_allclose(r["mass"], 1.0, rtol=0, atol=1e-9)
        cov = C if family == "full" else np.diag(1 / np.diag(P))
        np.testing.assert_allclose(r["cov"], np.broadcast_to(cov, r["cov"].shape), rtol=1e-6, atol=1e-9)


def test_the_shared_sigma_fit_shows_its_rounds_of_frames_and_gives_the_same_optimum(capsys):
    # the joint fit can run for a long time: with progress it says so on stderr, and the bar changes nothing
    mc, p, s2, x = _linear(seed=0)
    start = [(np.full((4, 2), 3.0), np.broadcast_to(25 * np.eye(2), (4, 2, 2)).copy())]
    loglik = _linear_loglik(mc, p, x)
    quiet = F.fit_posteriors(loglik, s2, "constant", start)
    capsys.readouterr()
    shown = F.fit_posteriors(loglik, s2, "constant", start, progress=True)
    err = capsys.readouterr().err
    assert "shared Sigma, start 1 of 1: frame rounds" in err and "images re-framed" in err
    assert quiet["frames"].max() > 1  # the start is far off: the frames had to follow q
    for key in ("m", "cov", "elbo", "frames"):
        np.testing.assert_array_equal(shown[key], quiet[key])


@pytest.mark.parametrize("family", ["diagonal", "full", "constant"])
def test_an_optimum_its_frame_does_not_hold_is_not_certified_when_the_rounds_run_out(family):
    # from a start far off, one round of frames cannot hold the optimum: the optimiser reaches the frame's
    # edge, where the fixed nodes no longer see q.  Re-centring a frame on q after the last round would make
    # every check pass on a point that is not the optimum; it must be reported as not converged.
    mc, p, s2, x = _linear(seed=0)
    P, C, mean, exact, gap = _linear_posterior(mc, p, s2, x)
    start = [(np.full((4, 2), 3.0), np.broadcast_to(25 * np.eye(2), (4, 2, 2)).copy())]
    loglik = _linear_loglik(mc, p, x)
    one = F.fit_posteriors(loglik, s2, family, start, max_frames=1)
    far = np.abs(one["m"] - mean).max(axis=1) > 1e-3  # not at the closed-form optimum
    assert far.any() and not one["converged"][far].any()
    assert one["frames"].max() == 1  # and its values are those of the frame it was found on
    full = F.fit_posteriors(loglik, s2, family, start)
    assert full["converged"].all() and full["frames"].max() > 1
    np.testing.assert_allclose(full["m"], mean, rtol=0, atol=1e-6)


def test_fixed_decoder_rejects_bad_input():
    mc, p, s2, x = _linear()
    with pytest.raises(ValueError, match="family"):
        F.optimise_posteriors(p, x, mc, s2, "mixture", np.zeros((4, 2)), np.ones((4, 2)))
    mcl = M.ModelConfig(m=6, n=2, hidden=4, layers=1, likelihood="gaussian-learned")
    with pytest.raises(ValueError, match="likelihoods"):
        F.gaussian_elbo(p, x, mcl, s2, np.zeros((4, 2)), np.ones((4, 2, 2)))
    start = [(np.zeros((4, 2)), np.broadcast_to(np.eye(2), (4, 2, 2)))]
    with pytest.raises(ValueError, match="family"):
        F.fit_posteriors(_linear_loglik(mc, p, x), s2, "mixture", start)
    with pytest.raises(ValueError, match="starts"):
        F.fit_posteriors(_linear_loglik(mc, p, x), s2, "diagonal", [])
    with pytest.raises(ValueError, match=r"starts\[0\]"):
        F.fit_posteriors(_linear_loglik(mc, p, x), s2, "diagonal", [(np.zeros((4, 2)), np.ones((4, 2)))])
    with pytest.raises(ValueError, match="tol must"):
        F.fit_posteriors(_linear_loglik(mc, p, x), s2, "diagonal", start, tol=-1.0)
    with pytest.raises(ValueError, match="gtol"):
        F.fit_posteriors(_linear_loglik(mc, p, x), s2, "diagonal", start, gtol=0.0)
    with pytest.raises(ValueError, match="max_frames"):
        F.fit_posteriors(_linear_loglik(mc, p, x), s2, "diagonal", start, max_frames=0)
    with pytest.raises(ValueError, match="points"):
        F.frame_nodes(np.zeros((1, 2)), np.eye(2)[None], 32, 8.0)
    with pytest.raises(ValueError, match="span"):
        F.frame_nodes(np.zeros((1, 2)), np.eye(2)[None], 33, 0.0)
    with pytest.raises(ValueError, match="c must be"):
        F.frame_nodes(np.zeros(2), np.eye(2), 33, 8.0)


def test_the_fixed_decoder_command_converges_and_separates_the_gaps(tmp_path):
    from mlpvae.experiments.fixed_decoder_report import TOL
    from vaetheory.cli import main

    train_synthetic(tmp_path / "run")
    assert main(["analyze", str(tmp_path / "run"), "--fixed-decoder-images", "8", "--no-progress"]) == 0
    r = json.loads((tmp_path / "run" / "fixed_decoder.json").read_text())
    assert r["images"] == 8
    per = np.load(tmp_path / "run" / "fixed_decoder_per_image.npz")
    for f in ("diagonal", "constant", "full"):  # the stopping test holds on every image
        assert r[f"converged_{f}"] == 8 and r[f"gain_max_{f}"] <= TOL
        assert per[f"gain_{f}"].max() <= TOL and np.abs(per[f"mass_{f}"] - 1).max() < 1e-9
    slack = 1e-9  # converged optima: nesting holds to round-off
    # nested families per image: full >= diagonal >= shared Sigma, and the optimum beats the encoder's posterior
    assert np.all(per["elbo_full"] >= per["elbo_diagonal"] - slack)
    assert np.all(per["elbo_diagonal"] >= per["elbo_constant"] - slack)
    assert np.all(per["elbo_diagonal"] >= per["elbo_encoder"] - slack)
    # the best Gaussian is below the exact log p(x) up to the two quadratures' errors
    assert r["full_above_log_px_max"] < 0.01
    # the images far from log p(x) are named, recomputed here from the per-image file
    gap = per["log_px"] - per["elbo_full"]
    assert [i for i, _ in r["far_from_log_px"]] == sorted(np.flatnonzero(gap > 1.0).tolist(), key=lambda i: -gap[i])
    assert "more than 1 nat below log p(x)" in (tmp_path / "run" / "fixed_decoder.md").read_text()
    # the medians beside the means, recomputed from the per-image file
    cost = per["elbo_diagonal"] - per["elbo_constant"]
    med = r["medians"]
    assert med["constant_cost"]["median"] == pytest.approx(np.median(cost), abs=1e-12)
    assert med["eq22"]["median"] == pytest.approx(np.median(per["eq22_terms"]), abs=1e-12)
    assert med["constant_cost_minus_eq22"]["median"] == pytest.approx(np.median(cost - per["eq22_terms"]), abs=1e-12)
    assert all(v["lo"] <= v["median"] <= v["hi"] and v["n"] == 8 for v in med.values())
    assert "medians over the images" in (tmp_path / "run" / "fixed_decoder.md").read_text()
    c = r["comparisons"]
    assert c["amortization_gap"]["lo"] <= c["amortization_gap"]["mean"] <= c["amortization_gap"]["hi"]
    assert c["eq18_at_diagonal"]["mean"] >= 0 and r["eq22"] >= 0
    assert len(per["log_px"]) == 8 and (tmp_path / "run" / "fixed_decoder.md").exists()
    assert main(["analyze", str(tmp_path / "run"), "--fixed-decoder-images", "0"]) == 2


def test_the_fixed_decoder_command_on_baggins_scores_one_likelihood_and_uses_its_own_curvature(tmp_path):
    # T of Eq. (29) held at the trained model's: the optima are scored against the log p(x|z) the grid integrates,
    # so the best full Gaussian stays below the exact log p(x); Eqs. (18) and (22) by BAGGINS' own Hessian
    from mlpvae.evidence.laplace import baggins_laplace, training_priors
    from mlpvae.nn.batched import encode_all
    from mlpvae.training.runs import load_run
    from vaetheory.cli import main

    run = tmp_path / "run"
    train_synthetic(run, posterior="bilbo", likelihood="baggins", binarize="none")
    assert main(["analyze", str(run), "--fixed-decoder-images", "5", "--no-progress"]) == 0
    r = json.loads((run / "fixed_decoder.json").read_text())
    per = np.load(run / "fixed_decoder_per_image.npz")
    assert r["converged_diagonal"] == r["converged_full"] == 5
    assert np.all(per["elbo_full"] >= per["elbo_diagonal"] - 1e-9)
    assert r["full_above_log_px_max"] < 0.01
    assert "own Hessian" in r["curvature"] and "own Hessian" in (run / "fixed_decoder.md").read_text()
    loaded = load_run(run, test_limit=5, float64=True)
    _, _, s2, s2_train = training_priors(loaded)
    mu, var = encode_all(loaded.params, loaded.x_test, loaded.mc)
    eq18 = baggins_laplace(
        loaded.params, loaded.x_test, per["mean_diagonal"], mu, var, loaded.mc, s2, s2_train, sigma=per["var_diagonal"]
    )["gap_eq18"]
    np.testing.assert_array_equal(per["eq18_at_diagonal"], eq18)
    assert r["eq18_defined_images"] == int(np.isfinite(eq18).sum())


def test_own_gains_are_the_newton_gain_per_image_and_infinite_without_a_strict_maximum():
    # v = [m (N n), rest (N r)]: each image's block of -H solved against its gradient; a singular block (a
    # parameter the ELBO does not move, e.g. a standard deviation whose curvature underflowed) or an indefinite
    # one certifies nothing
    from mlpvae.evidence.fixed_decoder import own_gains

    rng = np.random.default_rng(4)
    N, n, r = 3, 2, 2
    d = N * (n + r)
    B = rng.standard_normal((d, d))
    H = -(B @ B.T + d * np.eye(d))
    g = rng.standard_normal(d)
    idx = [np.r_[i * n : (i + 1) * n, N * n + i * r : N * n + (i + 1) * r] for i in range(N)]
    want = [0.5 * g[k] @ np.linalg.solve(-H[np.ix_(k, k)], g[k]) for k in idx]
    np.testing.assert_allclose(own_gains(H, g, N, n, "diagonal"), want, rtol=1e-12)
    H[N * n + 2, :] = H[:, N * n + 2] = 0.0  # image 1's first rest coordinate: an exactly singular block
    H[0, 0] = 5.0  # image 0's block indefinite
    got = own_gains(H, g, N, n, "diagonal")
    assert got[0] == got[1] == np.inf and got[2] == pytest.approx(want[2], rel=1e-12)
    Hc = -(B[: N * n + n] @ B[: N * n + n].T + d * np.eye(N * n + n))  # constant: means only, the shared held
    gc = g[: N * n + n]
    np.testing.assert_allclose(
        own_gains(Hc, gc, N, n, "constant"),
        [
            0.5 * gc[k] @ np.linalg.solve(-Hc[np.ix_(k, k)], gc[k])
            for k in (np.arange(i * n, (i + 1) * n) for i in range(N))
        ],
        rtol=1e-12,
    )


def test_the_trust_regions_penalty_has_its_gradients_and_vanishes_where_the_frame_holds_q():
    # leave_penalty is zero on every q the frame test passes (so a certified optimum is the ELBO's own) and
    # positive on q reaching past TRUST standard deviations; its gradients against central differences
    rng = np.random.default_rng(7)
    N, n, span = 400, 2, 10.0
    c = rng.standard_normal((N, n))
    A = np.tril(rng.standard_normal((N, n, n))) + 2 * np.eye(n)
    m = c + np.einsum("nij,nj->ni", A, rng.uniform(-span, span, (N, n)))
    L = A @ (np.tril(rng.standard_normal((N, n, n))) * 0.3 + np.eye(n) * rng.uniform(0.05, 2.5, (N, 1, 1)))
    P, d_m, d_L = F.leave_penalty(m, L, c, A, span)
    ok = F._frame_ok(m, L, c, A, 129, span)
    assert ok.any() and (P > 0).any() and (~ok & (P == 0)).any()  # all three cases drawn
    assert np.all(P[ok] == 0)
    Ai = np.linalg.inv(A)
    mv, Lv = np.einsum("nij,nj->ni", Ai, m - c), Ai @ L
    reach = np.max(np.abs(mv) + F.TRUST * np.sqrt(np.sum(Lv * Lv, axis=2)), axis=1)
    assert np.all(P[reach > span * 1.001] > 0)
    h = 1e-7
    for k in range(n):
        a, b = m.copy(), m.copy()
        a[:, k] += h
        b[:, k] -= h
        fd = (F.leave_penalty(a, L, c, A, span)[0] - F.leave_penalty(b, L, c, A, span)[0]) / (2 * h)
        np.testing.assert_allclose(d_m[:, k], fd, rtol=1e-5, atol=1e-4)
    for i, j in ((0, 0), (1, 0), (1, 1)):
        a, b = L.copy(), L.copy()
        a[:, i, j] += h
        b[:, i, j] -= h
        fd = (F.leave_penalty(m, a, c, A, span)[0] - F.leave_penalty(m, b, c, A, span)[0]) / (2 * h)
        np.testing.assert_allclose(d_L[:, i, j], fd, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("family", ["diagonal", "full", "constant"])
def test_a_round_of_frames_climbs_only_where_its_nodes_see_q(family):
    # log p(x|z) = -|z - b|^2 / (2 r^2) under a prior much broader than r, from a q far narrower than the
    # posterior: on the start's frame log p(x|z) is almost flat, and the KL rewards widening q beyond it.  A
    # climb that leaves the frame claims an ELBO the nodes cannot see; each round must stay where they see q
    # (its value then is the true ELBO), and the rounds reach the closed form.
    r2, s2 = 4.0, np.full(2, 1e4)
    b = np.array([[0.5, -0.3], [1.0, 2.0]])
    loglik = lambda i, z: -0.5 * np.sum((z - b[i]) ** 2, axis=1) / r2  # noqa: E731
    start = [(b + 0.01, np.broadcast_to(1e-4 * np.eye(2), (2, 2, 2)).copy())]

    def true_elbo(m, cov):  # E_q[log p(x|z)] and the KL to N(0, S^2), in closed form
        tr = np.trace(cov, axis1=1, axis2=2)
        kl = 0.5 * (tr / s2[0] + np.sum(m * m, axis=1) / s2[0] - 2 + 2 * np.log(s2[0]) - np.linalg.slogdet(cov)[1])
        return -0.5 * (np.sum((m - b) ** 2, axis=1) + tr) / r2 - kl

    one = F.fit_posteriors(loglik, s2, family, start, max_frames=1)
    np.testing.assert_allclose(one["mass"], 1.0, rtol=0, atol=1e-5)  # all but the tails past TRUST sds
    assert np.all(one["elbo"] <= true_elbo(one["m"], one["cov"]) + 1e-6)
    assert not one["converged"].any()  # the optimum is far wider than one round can reach
    done = F.fit_posteriors(loglik, s2, family, start)
    assert done["converged"].all()
    # sd 0.01 -> 2: frames WIDEN-fold wider than a travelling q let it grow faster (9 frames without)
    assert done["frames"].max() < 9
    for rounds in range(1, done["frames"].max()):  # never certified on a frame before its last, wide ones included
        early = F.fit_posteriors(loglik, s2, family, start, max_frames=rounds)["converged"]
        assert not early[done["frames"] > rounds].any()
    post = 1 / (1 / r2 + 1 / s2[0])  # the posterior's variance; its mean is b shrunk towards 0
    np.testing.assert_allclose(done["m"], b * post / r2, rtol=0, atol=1e-6)
    np.testing.assert_allclose(done["cov"], np.broadcast_to(post * np.eye(2), (2, 2, 2)), rtol=1e-6, atol=1e-9)


def test_a_shared_sigma_is_certified_only_when_every_images_frame_holds_its_q():
    # nine images start at their posterior means, one away from its own: after one round its frame cannot
    # hold its q while the other nine hold theirs.  The shared Sigma is fitted to all ten, so none of them
    # is certified (the nine were, before)
    mc, p, s2, x = _linear(seed=0, N=10)
    P, C, mean, exact, gap = _linear_posterior(mc, p, s2, x)
    m0 = mean.copy()
    m0[9] += 2.0
    start = [(m0, np.broadcast_to(np.diag(1 / np.diag(P)), (10, 2, 2)).copy())]
    loglik = _linear_loglik(mc, p, x)
    one = F.fit_posteriors(loglik, s2, "constant", start, max_frames=1)
    assert np.abs(one["m"][9] - mean[9]).max() > 0.1 and one["frames"].max() == 1
    assert not one["converged"].any()
    done = F.fit_posteriors(loglik, s2, "constant", start)
    assert done["converged"].all()
    np.testing.assert_allclose(done["m"], mean, rtol=0, atol=1e-6)


def _sharp_and_broad(w, b):
    """log p(x|z) of a two-component posterior (under a broad prior): a sharp component (sd 0.05) at 0 holding
    ``w`` of the mass and a broad one (sd 1) at (``b``, 0) holding the rest, each normalised alike."""
    from scipy.special import logsumexp

    def loglik(i, z):
        sharp = np.log(w) - 0.5 * np.sum((z / 0.05) ** 2, axis=1) - 2 * np.log(0.05)
        broad = np.log(1 - w) - 0.5 * ((z[:, 0] - b) ** 2 + z[:, 1] ** 2)
        return logsumexp([sharp, broad], axis=0)

    return loglik


def test_a_narrow_start_at_the_grid_mode_finds_a_sharp_main_mode_a_broad_start_misses():
    """A posterior with a sharp mode of 90% of the mass beside a broad one of 10%: from starts as broad as the
    encoder's q the climb settles in the broad, lesser basin; the narrow start at the grid's mode finds the
    sharp one, and the image keeps it."""
    from mlpvae.experiments.fixed_decoder_report import diagonal_starts

    loglik = _sharp_and_broad(0.9, 1.5)
    s2 = np.array([100.0, 100.0])
    grid = {"mode": np.zeros((1, 2)), "spacing": np.full((1, 2), 0.01)}
    starts = diagonal_starts(np.array([[0.8, 0.3]]), np.ones((1, 2)), grid)
    assert len(starts) == 3 and np.allclose(starts[2][1], 1e-4 * np.eye(2))
    broad = F.fit_posteriors(loglik, s2, "diagonal", starts[:2], points=65)
    best = F.fit_posteriors(loglik, s2, "diagonal", starts, points=65)
    assert best["converged"][0] and best["start"][0] == 2
    # the sharp component as q, its ELBO by brute-force quadrature: the optimum can be no lower
    h = 0.05 / 40
    ax = np.arange(-0.4, 0.4 + h / 2, h)
    z = np.stack(np.meshgrid(ax, ax, indexing="ij"), -1).reshape(-1, 2)
    logq = multivariate_normal(np.zeros(2), 0.05**2 * np.eye(2)).logpdf(z)
    logprior = multivariate_normal(np.zeros(2), np.diag(s2)).logpdf(z)
    q = np.exp(logq) * h * h
    candidate = float(q @ (loglik(0, z) + logprior - logq))
    assert best["elbo"][0] >= candidate - 1e-6
    assert best["elbo"][0] > broad["elbo"][0] + 2.0  # log(0.9 / 0.1) apart, less the broad mode's better fit
    assert np.all(np.abs(best["m"][0]) < 0.01) and np.all(np.abs(broad["m"][0] - [1.5, 0.0]) < 0.2)


def test_far_from_log_px_names_the_images_a_gaussian_misses_largest_first():
    from mlpvae.experiments.fixed_decoder_report import far_from_log_px

    assert far_from_log_px([0.0, -1.0, 5.0, 2.0], [-0.5, -3.0, 0.0, 1.5]) == [[2, 5.0], [1, 2.0]]
    assert far_from_log_px([0.0], [-0.2]) == []


def test_a_start_at_the_heaviest_mode_finds_the_mass_a_higher_sharp_mode_lacks():
    """A sharp mode holding 4% of the mass, higher than a broad one holding 96% and far from it: every start
    near the grid's (highest) mode ends in the sharp one; the start at the heaviest region's best node ends in
    the broad one, about log(0.96 / 0.04) higher, and the image keeps it."""
    from mlpvae.experiments.fixed_decoder_report import diagonal_starts

    loglik = _sharp_and_broad(0.04, 10.0)
    s2 = np.array([1e4, 1e4])
    grid = {"mode": np.zeros((1, 2)), "spacing": np.full((1, 2), 0.01)}
    mu, var = np.array([[0.2, 0.1]]), np.full((1, 2), 0.01)
    assert len(diagonal_starts(mu, var, grid)) == 3  # one region: no fourth start
    starts = diagonal_starts(mu, var, grid | {"mass_mode": np.array([[10.0, 0.0]])})
    assert len(starts) == 4 and np.allclose(starts[3][0], [[10.0, 0.0]])
    near = F.fit_posteriors(loglik, s2, "diagonal", starts[:3], points=65)
    best = F.fit_posteriors(loglik, s2, "diagonal", starts, points=65)
    assert best["converged"][0] and best["start"][0] == 3
    assert np.all(np.abs(near["m"][0]) < 0.01) and np.all(np.abs(best["m"][0] - [10.0, 0.0]) < 0.01)
    # each optimum is (almost) its normalised component, whose ELBO is log(its mass) + E_q[log N(z; 0, S^2)]:
    # they differ by log(0.96 / 0.04) and the prior's -(10^2 + 2) / (2 S^2) at the broad one
    expected = np.log(0.96 / 0.04) - 0.5 * (10.0**2 + 2.0) / s2[0]
    assert best["elbo"][0] - near["elbo"][0] == pytest.approx(expected, abs=1e-3)
