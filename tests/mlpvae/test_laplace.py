"""The paper's claims measured on trained models (mlpvae.evidence.laplace,
mlpvae.evidence.decoder, mlpvae.experiments.analyze): Eqs. (6), (16), (18), (22), (26)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TOL
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import multivariate_normal
from strategies import SEEDS

from mlpvae.evidence import laplace as L
from mlpvae.evidence.decoder import optimal_decoder_comparison
from mlpvae.evidence.iwae import iwae_log_px
from mlpvae.experiments import analyze as A
from mlpvae.experiments import analyze_summary as AS
from mlpvae.experiments import diagnostics
from mlpvae.experiments.report import natural_key
from mlpvae.nn import jacobian as Jac
from mlpvae.nn import model as M
from mlpvae.nn.layers import sigmoid
from vaetheory import constant_variance as CV
from vaetheory import evidence as EV
from vaetheory.cli import main


def _net(seed, likelihood="gaussian", posterior="learned", n=2, m=6, layers=2, hidden=5, B=12):
    cfg = M.ModelConfig(m=m, n=n, hidden=hidden, layers=layers, likelihood=likelihood, posterior=posterior, t=0.7)
    rng = np.random.default_rng(seed)
    params = M.init_params(cfg, rng, dtype=np.float64)
    for k in params:
        if "_b" in k:
            params[k] = rng.uniform(-0.5, 0.5, params[k].shape)
    x = rng.uniform(0, 1, (B, m))
    mu, var = M.encode(params, x, cfg)
    return cfg, params, x, mu, np.broadcast_to(var, mu.shape).copy(), np.exp(rng.uniform(-0.5, 0.5, n))


@given(SEEDS, st.sampled_from(["gaussian", "gaussian-learned"]), st.integers(1, 3))
def test_laplace_evidence_is_eq26_for_gaussian_likelihoods(seed, likelihood, layers):
    cfg, params, x, mu, var, s2 = _net(seed, likelihood, layers=layers)
    lap = L.laplace_evidence(params, x, mu, var, cfg, s2, keep=len(x))
    nu, J = Jac.decoder_jacobian(params, mu, cfg)
    T = cfg.t if likelihood == "gaussian" else M.decode(params, mu, cfg)["var"]
    want = EV.log_evidence_general(x, mu, nu, J, s2, T)
    np.testing.assert_allclose(lap["log_evidence"], want, rtol=TOL["identity_f64"], atol=TOL["identity_f64"])
    Jw = J / np.sqrt(T if np.ndim(T) == 0 else T[:, :, None])
    np.testing.assert_allclose(
        lap["gap_eq18"], EV.evidence_gap(var, s2, Jw), rtol=TOL["identity_f64"], atol=TOL["gap_roundoff_abs"]
    )
    np.testing.assert_allclose(
        L.cv2_penalty(lap["grams"], s2)["cv2_penalty"],
        CV.cv2_penalty(s2, Jw),
        rtol=TOL["identity_f64"],
        atol=TOL["gap_roundoff_abs"],
    )


@given(SEEDS)
def test_bernoulli_metric_is_the_hessian_of_the_negative_log_likelihood_in_the_logits_eq16(seed):
    cfg, params, x, mu, var, s2 = _net(seed, "bernoulli")
    _, G = L.likelihood_at(params, x, mu, mu, var, cfg, s2)
    logits = M.decode(params, mu, cfg)["logits"]
    h = 1e-4  # second central difference of the per-pixel log-likelihood x l - softplus(l)
    f = lambda l: x * l - np.logaddexp(0, l)  # noqa: E731
    hess = -(f(logits + h) - 2 * f(logits) + f(logits - h)) / h**2
    np.testing.assert_allclose(G, hess, rtol=0, atol=TOL["fd_second_diff"])


def _linear_gaussian_model(seed, n=2, m=5, t=0.5):
    """A linear decoder (one layer) with the exact posterior-mean encoder: Eq. (16) is then exact."""
    cfg = M.ModelConfig(m=m, n=n, hidden=4, layers=1, likelihood="gaussian", posterior="learned", t=t)
    rng = np.random.default_rng(seed)
    params = M.init_params(cfg, rng, dtype=np.float64)
    W, b = rng.standard_normal((n, m)), rng.standard_normal(m)
    P = np.eye(n) + W @ W.T / t  # posterior precision with prior N(0, I)
    C = np.linalg.inv(P)
    params["dec_W0"], params["dec_b0"] = W, b
    params["enc_W0"] = W.T @ C / t
    params["enc_b0"] = -b @ params["enc_W0"]
    params["enc_std_W"] = np.zeros((m, n))
    params["enc_std_b"] = np.log(np.expm1(np.sqrt(1.0 / np.diag(P))))  # softplus^-1 of the conditional sd
    x = b + rng.standard_normal((40, n)) @ W + np.sqrt(t) * rng.standard_normal((40, m))
    exact = multivariate_normal(b, W.T @ W + t * np.eye(m)).logpdf(x)
    return cfg, params, x, exact


@given(SEEDS)
def test_eq16_at_the_posterior_mean_is_the_exact_log_evidence_of_a_linear_decoder_eq16(seed):
    cfg, params, x, exact = _linear_gaussian_model(seed)
    mu, var = M.encode(params, x, cfg)
    lap = L.laplace_evidence(params, x, mu, var, cfg, np.ones(cfg.n))
    np.testing.assert_allclose(lap["log_evidence"], exact, rtol=TOL["identity_f64"], atol=TOL["identity_f64"])


def test_eq16_matches_the_importance_sampled_log_px_of_a_linear_decoder_eq16():
    cfg, params, x, exact = _linear_gaussian_model(7)
    mu, var = M.encode(params, x, cfg)
    lap = L.laplace_evidence(params, x, mu, var, cfg, np.ones(cfg.n))
    lp = iwae_log_px(params, x, cfg, np.random.default_rng(0), k=4000)
    # IWAE with the diagonal (not the full) conditional as proposal: a lower bound in expectation, within
    # ~1e-2 nats of log p(x) per image at k = 4000 (measured ~5e-3 here)
    np.testing.assert_allclose(lp, lap["log_evidence"], rtol=0, atol=TOL["iwae_nats"])
    assert lp.mean() <= exact.mean() + 1e-3


@given(SEEDS)
def test_the_laplace_proposal_of_a_linear_decoder_is_its_posterior_so_every_weight_is_px_eq16(seed):
    cfg, params, x, exact = _linear_gaussian_model(seed)
    mu, var = M.encode(params, x, cfg)
    prop = L.laplace_proposal(params, x, mu, var, cfg, np.ones(cfg.n))
    for k in (1, 7):  # one sample already gives log p(x): the proposal is the exact posterior
        lp = iwae_log_px(params, x, cfg, np.random.default_rng(seed), k=k, proposal=prop)
        np.testing.assert_allclose(lp, exact, rtol=TOL["identity_f64"], atol=TOL["identity_f64"])


@given(SEEDS, st.sampled_from(["bernoulli", "gaussian"]), st.sampled_from(["learned", "constant"]))
def test_optimal_decoder_from_encoder_posteriors_is_eq6(seed, likelihood, posterior):
    cfg, params, x, mu, var, s2 = _net(seed, likelihood, posterior, B=30)
    xt, mut, vart = x[:7], mu[:7], var[:7]
    res = optimal_decoder_comparison(
        params, cfg, x, mu, var, xt, mut, vart, s2, np.random.default_rng(seed), 2, chunk=3
    )
    logd = np.stack([multivariate_normal(mi, np.diag(vi)).logpdf(mut) for mi, vi in zip(mu, var)], axis=1)
    w = np.exp(logd - logd.max(axis=1, keepdims=True))
    nu = w @ x / w.sum(axis=1, keepdims=True)
    out = M.decode(params, mut, cfg)
    net = sigmoid(out["logits"]) if likelihood == "bernoulli" else out["mean"]
    np.testing.assert_allclose(
        res["per_image_sq_difference"],
        ((net - nu) ** 2).sum(axis=1),
        rtol=TOL["identity_f64"],
        atol=TOL["identity_f64"],
    )
    np.testing.assert_allclose(res["opt_sq_error"], ((xt - nu) ** 2).sum(axis=1).mean(), rtol=TOL["identity_f64"])


def _trained(out, posterior: str, **settings) -> None:
    from mlpvae.training import config as C
    from mlpvae.training import train as T

    T.train(
        C.make_config(
            dataset="synthetic",
            m=16,
            n=2,
            hidden=8,
            posterior=posterior,
            epochs=3,
            limit=120,
            test_limit=40,
            batch_size=40,
            device="cpu",
            progress=False,
            **settings,
        ),
        out,
    )


def test_analyze_run_writes_the_report_and_compares_runs_eq16_eq22(tmp_path):
    runs = {}
    for post in ("learned", "constant"):
        _trained(tmp_path / post, post)
        runs[post] = A.analyze_run(tmp_path / post, iwae_k=200, elbo_k=4, plots=True)
    for post, res in runs.items():
        saved = json.loads((tmp_path / post / "analysis.json").read_text())
        assert saved["elbo"]["mean"] == res["elbo"]["mean"]
        assert (tmp_path / post / "analysis.md").read_text().startswith("# Analysis")
        assert (tmp_path / post / "analysis_evidence.png").stat().st_size > 0
        per_image = np.load(tmp_path / post / "analysis_per_image.npz")
        np.testing.assert_allclose(per_image["elbo"].mean(), saved["elbo"]["mean"], rtol=TOL["known_answer_f64"])
        assert saved["jacobian_fd_max_rel_error"] < TOL["fd_grad_f64"]
        assert saved["iwae_log_px"]["mean"] >= saved["elbo"]["mean"] - 3 * saved["elbo"]["sem"]
        assert saved["cv2_penalty_eq22"] >= 0 and saved["gap_eq18"]["min"] >= 0
        assert np.isfinite(saved["log_evidence_eq16"]["mean"])
        assert AS.group_key(saved) == f"n=2, {post}" and saved["scale"] == 1.0
    cmp = AS.compare_runs(tmp_path / "constant", tmp_path / "learned")
    assert cmp["measured_elbo_difference"] == runs["constant"]["elbo"]["mean"] - runs["learned"]["elbo"]["mean"]
    assert cmp["cv2_penalty_learned_model"] == runs["learned"]["cv2_penalty_eq22"]
    assert cmp["paired_sem_elbo_difference"] > 0


def test_analyze_command_lists_every_file_it_wrote_and_asks_for_the_other_analysis_first(tmp_path, capsys):
    for post in ("learned", "constant"):
        _trained(tmp_path / post, post)
    argv = ["analyze", str(tmp_path / "constant"), "--versus", str(tmp_path / "learned"), "--iwae-k", "20"]
    assert main(argv + ["--elbo-k", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'learned'} has no analysis.json: analyze it first with `vaetheory analyze" in err
    assert not (tmp_path / "constant" / "analysis.json").exists()  # said before the long analysis
    A.analyze_run(tmp_path / "learned", iwae_k=20, elbo_k=2, plots=False)
    assert main(argv + ["--elbo-k", "2", "--no-progress"]) == 0
    listed = capsys.readouterr().out.split("wrote ", 1)[1].splitlines()[1:]
    names = {"analysis.json", "analysis.md", "analysis_per_image.npz", "analysis_evidence.png", "comparison.json"}
    names.add("analysis_optimal_decoder.png")  # m = 16: square images
    assert {Path(f.strip()).name for f in listed} == names
    assert all(Path(f.strip()).is_file() for f in listed)


def test_analyze_plots_only_redraws_the_evidence_figure_from_the_recorded_arrays(tmp_path, capsys, monkeypatch):
    # the figure is drawn from analysis_per_image.npz, with no checkpoint: the arrays it is given must be the
    # ones the full analysis drew from (the IWAE gap = log p(x) - ELBO per image)
    from mlpvae.experiments import analysis_report as AR
    from mlpvae.experiments import plots as P

    _trained(tmp_path / "run", "constant")
    A.analyze_run(tmp_path / "run", iwae_k=20, elbo_k=2, plots=False)
    (tmp_path / "run" / "checkpoint.npz").unlink()
    seen = {}

    def spy(lp, log_evidence, gap_iwae, gap_eq18, cv_terms, res, path, **kw):
        seen.update(lp=lp, gap=gap_iwae, terms=cv_terms, k=res["iwae_k"])
        return path

    monkeypatch.setattr(AR, "analysis_evidence", spy)
    assert main(["analyze", str(tmp_path / "run"), "--plots-only"]) == 0
    z = np.load(tmp_path / "run" / "analysis_per_image.npz")
    np.testing.assert_array_equal(seen["lp"], z["iwae_log_px"])
    np.testing.assert_array_equal(seen["gap"], z["iwae_log_px"] - z["elbo"])
    np.testing.assert_array_equal(seen["terms"], z["cv2_terms"])
    assert seen["k"] == 20 and "analysis_evidence.png" in capsys.readouterr().out
    monkeypatch.setattr(AR, "analysis_evidence", P.analysis_evidence)
    assert main(["analyze", str(tmp_path / "run"), "--plots-only"]) == 0
    assert (tmp_path / "run" / "analysis_evidence.png").stat().st_size > 0
    (tmp_path / "run" / "analysis_per_image.npz").unlink()
    assert main(["analyze", str(tmp_path / "run"), "--plots-only"]) == 2
    assert "has no analysis_per_image.npz" in capsys.readouterr().err


@pytest.mark.parametrize("option", [[], ["--grid-images", "3"], ["--mode-images", "3"]])
def test_analyze_says_what_is_missing_in_one_line(tmp_path, capsys, option):
    assert main(["analyze", str(tmp_path / "nowhere"), *option]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"vaetheory analyze: {tmp_path / 'nowhere'} is not a run directory (no run.json): "
        f"make one with `vaetheory train --out {tmp_path / 'nowhere'}`"
    )


def test_learned_t_pixels_reports_the_collapsed_pixels_of_a_learned_likelihood_variance(tmp_path):
    from mlpvae.training import checkpoint
    from mlpvae.training import config as C
    from mlpvae.training import train as T

    cfg = C.make_config(
        dataset="synthetic",
        m=16,
        n=2,
        hidden=8,
        likelihood="gaussian-learned",
        epochs=1,
        limit=120,
        test_limit=40,
        batch_size=40,
        device="cpu",
        progress=False,
    )
    T.train(cfg, tmp_path / "run")
    # force a known answer: the std head's bias sets T; pixels 0-4 get T = softplus(-20)^2 ~ 4e-18
    ck = checkpoint.load(tmp_path / "run" / "checkpoint.npz")
    ck["params"]["dec_std_W"][...] = 0.0
    ck["params"]["dec_std_b"][...] = 1.0
    ck["params"]["dec_std_b"][..., :5] = -20.0
    checkpoint.save(tmp_path / "run" / "checkpoint.npz", ck)
    r = diagnostics.learned_t_pixels(tmp_path / "run", images=40)
    assert r["collapsed_pixels"] == 5 and r["pixels"] == 16 and r["images"] == 40
    t_small = np.log1p(np.exp(-20.0)) ** 2
    assert abs(r["collapsed_log_lik_where_blank"] - 5 * (-0.5 * np.log(2 * np.pi * t_small))) < 1e-3
    assert abs(r["other_pixels_median_T"] - np.log1p(np.e) ** 2) < 1e-5
    with pytest.raises(ValueError, match="no learned T"):
        cfg2 = C.make_config(
            dataset="synthetic",
            m=16,
            n=2,
            hidden=8,
            epochs=1,
            limit=120,
            test_limit=40,
            batch_size=40,
            device="cpu",
            progress=False,
        )
        T.train(cfg2, tmp_path / "bern")
        diagnostics.learned_t_pixels(tmp_path / "bern")


def test_the_summary_over_seeds_groups_by_latent_size_and_posterior(tmp_path, capsys):
    from vaetheory.cli import main

    def stat(v):
        return {"mean": v, "std": 0.0, "sem": 0.0, "min": v, "max": v}

    def analysed(folder, n, posterior, elbo, iwae):
        folder.mkdir(parents=True)
        a = {
            "run": str(folder),
            "n": n,
            "posterior": posterior,
            "test_images": 100,
            "elbo": stat(elbo),
            "iwae_log_px": stat(iwae),
            "gap_iwae_minus_elbo": stat(iwae - elbo),
            "gap_eq18": stat(0.5),
            "log_evidence_eq16": stat(elbo),
            "eq16_minus_iwae": stat(elbo - iwae),
            "cv2_penalty_eq22": 0.25,
            "optimal_decoder_eq6": {"opt_elbo": elbo - 1, "net_elbo": elbo},
        }
        (folder / "analysis.json").write_text(json.dumps(a))

    for seed, (e_l, e_c) in enumerate([(-10.0, -9.0), (-12.0, -10.0)]):
        analysed(tmp_path / "learned" / f"seed{seed}", 2, "learned", e_l, e_l + 3)
        analysed(tmp_path / "constant" / f"seed{seed}", 2, "constant", e_c, e_c + 4)
        (tmp_path / "constant" / f"seed{seed}" / "comparison.json").write_text(
            json.dumps(
                {
                    "measured_elbo_difference": e_c - e_l,
                    "measured_log_px_difference": e_c - e_l + 1,
                    "measured_gap_difference": 1.0,
                    "predicted_elbo_difference_same_decoder": 0.25,
                }
            )
        )
    s = AS.summarize(tmp_path)
    learned = s["groups"]["n=2, learned"]
    assert learned["ELBO"]["mean"] == -11.0 and learned["ELBO"]["n"] == 2
    assert abs(learned["ELBO"]["std"] - np.std([-10.0, -12.0], ddof=1)) < 1e-12
    assert s["groups"]["n=2, constant"]["measured gap log p - ELBO"]["mean"] == 4.0
    diff = s["comparisons"]["n=2, constant - learned"]["measured ELBO difference"]
    assert diff["values"] == [1.0, 2.0]
    assert main(["analyze", str(tmp_path), "--summarize"]) == 0
    assert "| measured ELBO difference | 1.50 +- 0.71 (n=2) |" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["analyze", str(tmp_path / "nothing-here"), "--summarize"]) == 2


def test_summary_groups_gaussian_family_runs_by_likelihood_and_scale():
    base = {"n": 2, "posterior": "bilbo"}
    assert AS.group_key(base) == AS.group_key(base | {"likelihood": "bernoulli", "scale": 1.0}) == "n=2, bilbo"
    assert (
        AS.group_key(base | {"likelihood": "gaussian", "t": 1.0, "scale": 4.0}) == "n=2, bilbo, gaussian t 1, lambda 4"
    )
    keys = {
        AS.group_key(base | {"likelihood": "baggins", "tau": tau, "scale": lam})
        for tau in (0.2, 1.0)
        for lam in (1.0, 16.0)
    }
    assert len(keys) == 4 and "n=2, bilbo, baggins tau 0.2, lambda 16" in keys
    order = sorted(["n=100, learned", "n=2, x, lambda 16", "n=2, x, lambda 4", "n=2, x, lambda 1"], key=natural_key)
    assert order == ["n=2, x, lambda 1", "n=2, x, lambda 4", "n=2, x, lambda 16", "n=100, learned"]


def test_iwae_convergence_rises_from_the_one_sample_bound(tmp_path):
    _trained(tmp_path / "run", "constant")
    r = diagnostics.iwae_convergence(tmp_path / "run", images=30, ks=(1, 300))
    assert r["images"] == 30 and list(r["iwae"]) == list(r["iwae_laplace"]) == [1, 300]
    assert r["iwae_laplace"][300] > r["iwae_laplace"][1]
    # k = 1 is a one-sample ELBO estimate; the k = 300 bound is above it by about the gap log p - ELBO
    res = A.analyze_run(tmp_path / "run", iwae_k=300, elbo_k=50, test_limit=30, plots=False)
    assert r["iwae"][300] > r["iwae"][1]
    assert abs(r["iwae"][300] - res["iwae_log_px"]["mean"]) < 5 * res["iwae_log_px"]["sem"]


def _second_differences(f, z, h=1e-3):
    """The Hessian (B, n, n) of a batched f (B,) at z (B, n) by central second differences."""
    n = z.shape[1]
    H = np.empty((len(z), n, n))
    for i in range(n):
        for j in range(n):
            e_i, e_j = np.eye(n)[i] * h, np.eye(n)[j] * h
            v = [f(z + a * e_i + b * e_j) for a, b in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
            H[:, i, j] = (v[0] - v[1] - v[2] + v[3]) / (4 * h * h)
    return H


def test_baggins_hessian_gram_is_the_second_difference_of_its_log_likelihood_in_z():
    # log p(x|z) with T of Eq. (29) at each z's own residual, differenced twice in z, against the closed form
    cfg, params, x, mu, var, s2 = _net(4, likelihood="baggins", posterior="bilbo", n=3, m=7, B=3)
    z = mu + 0.3

    def loglik(w):
        nu = M.decode(params, w, cfg)["mean"]
        return M.log_likelihood({"mean": nu}, x, cfg, T=M.likelihood_T(x, nu, mu, var, cfg, s2))

    H = _second_differences(loglik, z)
    gram = L.baggins_hessian_gram(params, x, z, cfg)
    np.testing.assert_allclose(gram, -H, rtol=1e-5, atol=1e-6 * np.abs(H).max())
    # the fixed-T metric is a multiple of its first term only: it misses the residual direction
    out, J = Jac.decoder_jacobian(params, z, cfg)
    _, G = L.likelihood_at(params, x, z, mu, var, cfg, s2, out=out)
    fixed = np.einsum("bmi,bm,bmj->bij", J, G, J)
    assert np.abs(fixed - gram).max() > 1e-3 * np.abs(gram).max()
    with pytest.raises(ValueError, match="baggins"):
        L.baggins_hessian_gram(params, x, z, _net(4)[0])


def test_baggins_laplace_is_the_laplace_value_and_gaussian_kl_of_its_own_hessian():
    # Eq. (16) against the Laplace formula with the precision inverted, Eq. (18) against the KL between
    # N(mu, Sigma) and N(mu, P^-1) computed from P^-1, both from the second differences' Hessian
    cfg, params, x, mu, var, s2 = _net(6, likelihood="baggins", posterior="bilbo", n=3, m=7, B=4)
    r = L.baggins_laplace(params, x, mu, mu, var, cfg, s2, s2, chunk=3)
    H = L.baggins_hessian_gram(params, x, mu, cfg)
    nu = M.decode(params, mu, cfg)["mean"]
    ll = M.log_likelihood({"mean": nu}, x, cfg, T=M.likelihood_T(x, nu, mu, var, cfg, s2))
    for b in range(len(x)):
        P = np.diag(1 / s2) + H[b]
        if np.linalg.eigvalsh(P).min() <= 0:
            assert np.isnan(r["gap_eq18"][b])
            continue
        C = np.linalg.inv(P)
        laplace = ll[b] - 0.5 * np.sum(mu[b] ** 2 / s2) + 0.5 * np.linalg.slogdet(C)[1] - 0.5 * np.sum(np.log(s2))
        assert r["log_evidence"][b] == pytest.approx(laplace, rel=1e-10, abs=1e-9)
        kl = 0.5 * (
            np.trace(np.linalg.solve(C, np.diag(var[b]))) - cfg.n + np.linalg.slogdet(C)[1] - np.log(var[b]).sum()
        )
        assert r["gap_eq18"][b] == pytest.approx(kl, rel=1e-10, abs=1e-9)
    assert np.isfinite(r["gap_eq18"]).any()
    # another Gaussian's variance in Eq. (18): T (and so Eq. (16)) still from the encoder's var
    sigma = var * np.linspace(0.5, 2.0, cfg.n)
    r2 = L.baggins_laplace(params, x, mu, mu, var, cfg, s2, s2, sigma=sigma)
    np.testing.assert_array_equal(r2["log_evidence"], r["log_evidence"])
    for b in np.flatnonzero(np.isfinite(r2["gap_eq18"])):
        C = np.linalg.inv(np.diag(1 / s2) + H[b])
        kl = 0.5 * (np.trace(np.linalg.solve(C, np.diag(sigma[b]))) - cfg.n + np.linalg.slogdet(C)[1])
        assert r2["gap_eq18"][b] == pytest.approx(kl - 0.5 * np.log(sigma[b]).sum(), rel=1e-10, abs=1e-9)


def test_baggins_cv2_penalty_is_the_relative_variance_of_the_second_difference_precisions_eq22():
    # Eq. (22) with P_x = S^-2 - (Hessian of log p(x|z) by second differences), whitened by Pbar^-1/2
    cfg, params, x, mu, var, s2 = _net(7, likelihood="baggins", posterior="bilbo", n=3, m=7, B=6)

    def loglik(w):
        nu = M.decode(params, w, cfg)["mean"]
        return M.log_likelihood({"mean": nu}, x, cfg, T=M.likelihood_T(x, nu, mu, var, cfg, s2))

    P = np.diag(1 / s2) - _second_differences(loglik, mu)
    P = (P + np.swapaxes(P, 1, 2)) / 2
    lam, V = np.linalg.eigh(P.mean(axis=0))
    R = V @ np.diag(lam**-0.5) @ V.T
    W = R @ P @ R - np.eye(cfg.n)
    r = L.baggins_cv2_penalty(params, x, mu, cfg, s2, chunk=4)
    np.testing.assert_allclose(r["terms"], 0.25 * (W * W).sum(axis=(1, 2)), rtol=1e-4)
    assert r["cv2_penalty"] == pytest.approx(np.mean(r["terms"])) and r["images"] == 6
    assert r["indefinite"] == int(np.sum(np.linalg.eigvalsh(P).min(axis=1) <= 0))


def test_analyze_reports_baggins_eq16_eq18_under_its_own_hessian_too(tmp_path):
    from mlpvae.nn.batched import encode_all
    from mlpvae.training.runs import load_run

    _trained(tmp_path / "run", "bilbo", likelihood="baggins", binarize="none")
    res = A.analyze_run(tmp_path / "run", iwae_k=50, elbo_k=2, plots=False)
    run = load_run(tmp_path / "run", float64=True)
    _, _, s2, s2_train = L.training_priors(run)
    mu, var = encode_all(run.params, run.x_test, run.mc)
    own = L.baggins_laplace(run.params, run.x_test, mu, mu, var, run.mc, s2, s2_train)["gap_eq18"]
    ok = np.isfinite(own)
    assert ok.sum() > 0 and res["gap_eq18_own_hessian"]["undefined"] == int((~ok).sum())
    assert res["gap_eq18_own_hessian"]["mean"] == pytest.approx(own[ok].mean(), rel=1e-12)
    assert "gap_eq18, BAGGINS' own Hessian" in (tmp_path / "run" / "analysis.md").read_text()
    assert "following the residual" in res["metric"]
