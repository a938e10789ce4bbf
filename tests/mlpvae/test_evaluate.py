"""mlpvae.evidence.iwae and mlpvae.experiments.evaluate: IWAE against the exact
linear-Gaussian evidence, active units, entropy floor, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TOL
from linear_models import linear_gaussian

from mlpvae.evidence.iwae import active_units, entropy_floor, iwae_log_px
from mlpvae.nn import model
from mlpvae.nn.batched import elbo_mean
from mlpvae.training import config as C
from mlpvae.training import train as T
from vaetheory.cli import main

SHARED = os.environ.get("VAETHEORY_DATA")
HAVE_MNIST = bool(SHARED) and (Path(SHARED) / "mnist").is_dir()


@pytest.mark.parametrize("posterior", ["learned", "constant"])
@pytest.mark.parametrize("k, rows", [(1, 100), (3, 20), (300, 64)])
def test_iwae_equals_exact_evidence_when_q_is_the_true_posterior_eq25_eq26(posterior, k, rows):
    # With q(z|x) = p(z|x) every importance weight equals p(x), so the bound is exact for any k
    # and any chunking (rows < k forces chunks over samples, rows < 9 k chunks over images).
    params, mc, x, s2, exact = linear_gaussian(posterior)
    got = iwae_log_px(params, x, mc, np.random.default_rng(1), k=k, s2=s2, rows=rows)
    np.testing.assert_allclose(got, exact, rtol=TOL["identity_f64"])


def test_iwae_is_a_lower_bound_that_tightens_with_k(tmp_path):
    # A mismatched posterior (std scaled by 3): the bound is below log p(x) and rises with k.
    params, mc, x, s2, exact = linear_gaussian("learned", seed=2)
    params = dict(params, enc_std_b=params["enc_std_b"] + 2.0)
    lo = iwae_log_px(params, x, mc, np.random.default_rng(0), k=2, s2=s2).mean()
    hi = iwae_log_px(params, x, mc, np.random.default_rng(0), k=2000, s2=s2, rows=500).mean()
    assert lo < hi < exact.mean()


def test_elbo_mean_averages_the_models_elbo_over_k_samples_eq1():
    params, mc, x, s2, exact = linear_gaussian("learned")
    got = elbo_mean(params, x, mc, np.random.default_rng(3), k=4, chunk=4)
    rng = np.random.default_rng(3)
    want = []
    for sl in (slice(0, 4), slice(4, 8), slice(8, 9)):
        for _ in range(4):
            want.append(model.elbo_per_example(params, x[sl], rng.standard_normal((len(x[sl]), 2)), mc))
    assert got == pytest.approx(np.concatenate(want).mean(), rel=TOL["identity_f64"])


def test_elbo_of_the_exact_posterior_averages_to_log_evidence_eq1_eq25():
    # KL(q | p(z|x)) = 0, so E_eps[ELBO] = log p(x) exactly; the single-sample values scatter.
    params, mc, x, s2, exact = linear_gaussian("learned")
    k = 400
    eps = np.random.default_rng(4).standard_normal((k, len(x), 2))
    vals = np.stack([model.elbo_per_example(params, x, e, mc) for e in eps])  # (k, B)
    err = vals.mean(axis=0) - exact
    se = vals.std(axis=0, ddof=1) / np.sqrt(k)
    assert np.all(np.abs(err) < TOL["mc_sigmas"] * se)


def test_active_units_burda_criterion():
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((4000, 4)) * np.sqrt([1.0, 1e-3, 0.05, 1e-4])
    count, v = active_units(mu)
    assert count == 2 and v.shape == (4,)


def test_entropy_floor_known_answers():
    m = 10
    assert entropy_floor(np.full((3, m), 0.5)) == pytest.approx(m * np.log(2), rel=1e-14)
    assert entropy_floor(np.array([[0.0, 1.0, 1.0]])) == 0.0
    p = 0.2
    assert entropy_floor(np.array([[p, 0.0]])) == pytest.approx(-(p * np.log(p) + (1 - p) * np.log(1 - p)))


@pytest.mark.skipif(not HAVE_MNIST, reason="needs MNIST under $VAETHEORY_DATA (CI sets it)")
def test_mnist_grayscale_entropy_floor_is_about_45_5_nats():
    from mlpvae.training import data as D

    ds = D.load("mnist")
    floor = entropy_floor(D.targets(ds.test_images))
    assert 45.4 < floor < 45.7  # measured 45.534 nats per test image (docs/conventions.md: ~45.5)


@pytest.mark.parametrize("posterior", ["learned", "bilbo"])
def test_evaluate_cli_writes_eval_json_and_plots(tmp_path, posterior):
    cfg = C.TrainConfig(
        dataset="synthetic",
        m=784,
        n=2,
        hidden=16,
        layers=2,
        limit=120,
        test_limit=40,
        batch_size=40,
        epochs=2,
        device="cpu",
        progress=False,
        posterior=posterior,
    )
    T.train(cfg, tmp_path)
    T.train(C.TrainConfig(**(cfg.to_dict() | dict(epochs=3, eval_every=2, out=None))), tmp_path / "other")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "vaetheory",
            "evaluate",
            str(tmp_path),
            "--k",
            "3",
            "--iwae-k",
            "50",
            "--plots",
            "--compare",
            str(tmp_path / "other"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    res = json.loads((tmp_path / "eval.json").read_text())
    elbos = ["test_elbo_s2_train", "test_elbo_s2_test"] if posterior == "bilbo" else ["test_elbo"]
    for key in elbos + ["iwae_log_px", "entropy_floor"]:
        assert np.isfinite(res[key]), key
        assert key in p.stdout
    # a Bernoulli model cannot beat the grayscale entropy floor; IWAE (k=50) is above the ELBO here
    assert res["iwae_log_px"] < -res["entropy_floor"]
    assert res[elbos[0]] < res["iwae_log_px"]
    assert res["active_units"] in (0, 1, 2) and res["iwae_k"] == 50
    listed = [line.strip() for line in p.stdout.split("wrote ", 1)[1].splitlines()[1:]]
    assert listed == [str(tmp_path / "eval.json"), *res["plots"]] and len(listed) > 5
    assert all(Path(f).is_file() for f in listed)
    names = {Path(f).name for f in res["plots"]}
    assert {
        "latent_means.png",
        "variance_vs_mean.png",
        "training_curves.png",
        "samples_standard_prior.png",
        "samples_fitted_prior.png",
        "reconstructions.png",
        "manifold.png",
        "latent_samples.png",
    } == names
    assert all((tmp_path / f).stat().st_size > 1000 for f in names)


def test_evaluate_says_what_is_missing_in_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"vaetheory evaluate: {tmp_path} is not a run directory (no run.json): "
        f"make one with `vaetheory train --out {tmp_path}`"
    )
    # a recorded run of a figure: run.json and metrics, no checkpoint; the figure's run.json names its config
    run = tmp_path / "fig8" / "c1_learned" / "seed0"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    (tmp_path / "fig8" / "run.json").write_text(json.dumps({"config_path": "validation/figures/fig8.toml"}))
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vaetheory evaluate: {run} has no checkpoint.npz: checkpoints of recorded results are not")
    assert "`vaetheory reproduce validation/figures/fig8.toml`" in err and "\n" not in err
    (run / "checkpoint.npz").write_bytes(b"")
    assert main(["evaluate", str(run), "--compare", str(tmp_path / "other")]) == 2
    assert "other is not a run directory (no run.json)" in capsys.readouterr().err
