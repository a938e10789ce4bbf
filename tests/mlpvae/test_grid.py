"""mlpvae.evidence.grid and mlpvae.experiments.grid_report: log p(x) of an n <= 2 model
by adaptive grid quadrature (Not in the paper).

Known answers: a one-layer (linear) decoder with a Gaussian likelihood has
p(x) = N(x; b, t I + W^T S^2 W / c^2) in closed form; nonlinear decoders and the
other likelihoods are compared with a brute-force fine grid, one of them with
a posterior made bimodal on purpose (two modes the encoder cannot both cover).
"""

import json

import numpy as np
import pytest
from conftest import CUPY, TOL, needs_gpu
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from tiny_runs import train_synthetic

from mlpvae.evidence import grid as G
from mlpvae.experiments import grid_report
from mlpvae.nn import model as M
from mlpvae.nn.batched import encode_all


def _linear(n, t, w_scale, c, posterior, seed, m=6, N=3):
    mc = M.ModelConfig(
        m=m, n=n, hidden=4, layers=1, likelihood="gaussian", t=t, posterior=posterior, sigma2=0.5, latent_scale=c
    )
    rng = np.random.default_rng(seed)
    p = M.init_params(mc, rng, dtype=np.float64)
    p["dec_W0"] *= w_scale
    p["dec_b0"] += rng.standard_normal(m)
    s2 = rng.uniform(0.3, 4.0, n)
    x = 2.0 * rng.standard_normal((N, m))
    W = p["dec_W0"] / c  # out = (z / c) W + b
    cov = t * np.eye(m) + W.T @ np.diag(s2) @ W
    return mc, p, s2, x, multivariate_normal(p["dec_b0"], cov).logpdf(x), W, cov


@given(
    n=st.sampled_from([1, 2]),
    t=st.floats(1e-3, 10.0),
    w_scale=st.floats(0.1, 5.0),
    c=st.sampled_from([0.1, 1.0, 10.0]),
    posterior=st.sampled_from(["learned", "constant"]),
    seed=st.integers(0, 2**16),
)
def test_grid_log_px_equals_the_linear_gaussian_closed_form(n, t, w_scale, c, posterior, seed):
    mc, p, s2, x, exact, W, cov = _linear(n, t, w_scale, c, posterior, seed)
    r = G.grid_log_px(p, x, mc, s2, tol=1e-8)
    assert np.all(r["converged"])
    np.testing.assert_allclose(r["log_px"], exact, rtol=0, atol=TOL["grid_nats"])
    # the mode it reports is the posterior mean S^2 W C^-1 (x - b) to within a node spacing
    post_mean = (s2[:, None] * W) @ np.linalg.solve(cov, (x - p["dec_b0"]).T)
    post_sd = np.sqrt(np.diag(np.linalg.inv(np.diag(1 / s2) + W @ W.T / t)))
    assert np.all(np.abs(r["mode"] - post_mean.T) <= 0.5 * post_sd)
    # and to within its grid's node spacing, which resolves the posterior
    assert np.all(np.abs(r["mode"] - post_mean.T) <= r["spacing"]) and np.all(r["spacing"] < post_sd.T)


def _tiny(likelihood, posterior="learned", seed=0):
    mc = M.ModelConfig(m=3, n=2, hidden=5, layers=2, likelihood=likelihood, posterior=posterior, t=0.2)
    p = M.init_params(mc, np.random.default_rng(seed), dtype=np.float64)
    x = np.random.default_rng(seed + 1).random((2, 3))
    return mc, p, x


def _brute(p, x, mc, s2, baggins_s2=None, half=10.0, g=1201):
    mu, var = encode_all(p, x, mc)
    var = np.broadcast_to(var, mu.shape)
    a = np.linspace(-half, half, g)
    Z = np.stack(np.meshgrid(a, a, indexing="ij"), -1).reshape(-1, 2)
    w = np.ones(g)
    w[[0, -1]] = 0.5
    lw = np.log(np.outer(w, w)).ravel() + 2 * np.log(a[1] - a[0])
    return np.array([logsumexp(G.log_joint(p, x[i], Z, mu[i], var[i], mc, s2, baggins_s2) + lw) for i in range(len(x))])


@pytest.mark.parametrize(
    "likelihood,posterior",
    [("bernoulli", "learned"), ("gaussian-learned", "constant"), ("baggins", "learned"), ("baggins", "bilbo")],
)
def test_grid_log_px_equals_a_brute_force_grid_for_nonlinear_decoders(likelihood, posterior):
    mc, p, x = _tiny(likelihood, posterior)
    s2 = np.array([1.0, 2.0])
    bs2 = np.array([1.5, 0.7]) if likelihood == "baggins" else None
    r = G.grid_log_px(p, x, mc, s2, baggins_s2=bs2, tol=1e-4)
    diff = np.abs(r["log_px"] - _brute(p, x, mc, s2, bs2))
    assert np.all(diff < TOL["grid_relu_nats"])
    assert np.all(diff <= r["err"] + 1e-6)  # the reported error estimate is not optimistic


def test_grid_log_px_finds_both_modes_of_a_bimodal_posterior():
    # nu(z) depends on |z_1| only: relu(z_1) and relu(-z_1) feed the same output weights, so the posterior
    # of an image that wants |z_1| ~ 2 has two mirrored modes; the encoder's posterior sits at one point.
    mc = M.ModelConfig(m=3, n=2, hidden=2, layers=2, likelihood="gaussian", t=0.01, posterior="constant", sigma2=0.01)
    p = M.init_params(mc, np.random.default_rng(0), dtype=np.float64)
    p["dec_W0"][:] = [[1.0, -1.0], [0.0, 0.0]]
    p["dec_b0"][:] = 0.0
    p["dec_W1"][:] = [[1.0, -0.5, 0.3], [1.0, -0.5, 0.3]]
    x = np.array([[2.0, -1.0, 0.6]])  # nu = |z_1| (1, -0.5, 0.3): |z_1| = 2
    s2 = np.ones(2)
    r = G.grid_log_px(p, x, mc, s2, tol=1e-8)
    brute = _brute(p, x, mc, s2, g=2001)
    np.testing.assert_allclose(r["log_px"], brute, rtol=0, atol=TOL["grid_nats"])
    # one mode holds half the mass: leaving one out would cost log 2
    a = np.linspace(0.0, 10.0, 1001)
    Z = np.stack(np.meshgrid(a, np.linspace(-10, 10, 2001), indexing="ij"), -1).reshape(-1, 2)
    one = logsumexp(G.log_joint(p, x[0], Z, np.zeros(2), np.full(2, 0.01), mc, s2)) + np.log(0.01 * 0.01)
    assert r["log_px"][0] - one == pytest.approx(np.log(2.0), abs=1e-3)


def test_the_heaviest_region_mode_is_the_mode_that_holds_the_mass_not_the_highest():
    # a sharp component with 4% of the mass, 2.8 nats higher at its peak than a broad one with 96%, the two
    # separated by a valley far more than drop nats deep: the grid's best node is the sharp peak, the heaviest
    # region's best node the broad one's
    a = np.linspace(-2.0, 14.0, 1601)
    z = np.stack(np.meshgrid(a, a, indexing="ij"), -1).reshape(-1, 2)
    sharp = np.log(0.04) - 0.5 * np.sum((z / 0.05) ** 2, axis=1) - 2 * np.log(0.05)
    broad = np.log(0.96) - 0.5 * ((z[:, 0] - 10.0) ** 2 + z[:, 1] ** 2)
    f = logsumexp([sharp, broad], axis=0)
    np.testing.assert_allclose(z[np.argmax(f)], [0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(G.heaviest_region_mode(f, z, 1601, 2, 25.0), [10.0, 0.0], atol=1e-9)
    # one region (the valley shallower than drop): the grid's mode
    np.testing.assert_allclose(G.heaviest_region_mode(f, z, 1601, 2, 1e4), [0.0, 0.0], atol=1e-9)


def _needle(a=0.3, w=0.01, t=1.0 / 30.0):
    # nu(z) = (1, 1) tri(z_1) / w with tri a ReLU triangle of half-width w at z_1 = a, and x = (1, 1): the
    # likelihood is a needle (sd ~ w / sqrt(60)) 30 nats above a flat floor, which no node of the coarse
    # grids (spacing 0.25 ... 0.03) lands on
    mc = M.ModelConfig(m=2, n=2, hidden=3, layers=2, likelihood="gaussian", t=t, posterior="constant")
    p = M.init_params(mc, np.random.default_rng(0), dtype=np.float64)
    p["dec_W0"][:] = [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    p["dec_b0"][:] = [-(a - w), -a, -(a + w)]
    p["dec_W1"][:] = np.array([[1.0], [-2.0], [1.0]]) / w * np.ones((1, 2))
    p["dec_b1"][:] = 0.0
    return mc, p, np.ones((1, 2))


def test_probes_keep_a_needle_that_the_coarse_grids_step_over():
    mc, p, x = _needle()
    s2 = np.ones(2)
    # exact: the decoder ignores z_2, so log p(x) is a 1-D integral over z_1 (fine trapezoid on [-10, 10])
    z1 = np.linspace(-10.0, 10.0, 2_000_001)
    Z = np.stack([z1, np.zeros_like(z1)], -1)
    f = G.log_joint(p, x[0], Z, np.zeros(2), np.ones(2), mc, s2) + 0.5 * np.log(2 * np.pi)  # drop N(0; 0, 1)
    exact = logsumexp(f) + np.log(z1[1] - z1[0])
    r = G.grid_log_px(p, x, mc, s2, tol=1e-4)
    assert r["converged"][0] and abs(r["log_px"][0] - exact) < TOL["grid_relu_nats"]
    assert abs(r["mode"][0, 0] - 0.3) < 1e-3
    blind = G.grid_log_px(p, x, mc, s2, tol=1e-4, probes=0)  # q's mean alone, far from the needle
    assert exact - blind["log_px"][0] > 10.0


def test_an_unresolved_grid_says_so():
    mc, p, s2, x, exact, *_ = _linear(2, 1e-3, 3.0, 1.0, "constant", 1)
    r = G.grid_log_px(p, x, mc, s2, tol=1e-8, max_levels=1)
    assert not np.any(r["converged"]) and np.all(r["levels"] == 1)


def test_grid_log_px_rejects_bad_input():
    mc, p, x = _tiny("bernoulli")
    s2 = np.ones(2)
    with pytest.raises(ValueError, match="n <= 2"):
        mc3 = M.ModelConfig(m=3, n=3, hidden=5, layers=2)
        G.grid_log_px(M.init_params(mc3, np.random.default_rng(0), dtype=np.float64), x, mc3, np.ones(3))
    with pytest.raises(ValueError, match="odd"):
        G.grid_log_px(p, x, mc, s2, points=64)
    with pytest.raises(ValueError, match="s2"):
        G.grid_log_px(p, x, mc, np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="baggins_s2"):
        mcb, pb, xb = _tiny("baggins")
        G.grid_log_px(pb, xb, mcb, s2)
    with pytest.raises(ValueError, match="ModelConfig"):
        G.grid_log_px(p, x, object(), s2)
    with pytest.raises(ValueError):
        G.grid_log_px(p, np.full((1, 3), np.nan), mc, s2)
    bad = dict(p, dec_b1=np.full(3, np.nan))
    with pytest.raises(FloatingPointError, match="NaN"):
        G.grid_log_px(bad, x, mc, s2)


def test_the_validation_script_measures_a_trained_run(tmp_path):
    # validation/scripts/grid_log_px.py on a small synthetic run: the grid is log p(x), so the IWAE bound is below it
    # (up to its spread) and the ELBO below both; Eq. (16) at the mode the grid found is a Laplace value.
    import importlib.util
    from pathlib import Path

    train_synthetic(tmp_path / "run")
    path = Path(__file__).resolve().parents[2] / "validation" / "scripts" / "grid_log_px.py"
    spec = importlib.util.spec_from_file_location("grid_log_px", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "g.json"
    per = tmp_path / "per"
    assert mod.main(["--images", "12", "--json", str(out), "--per-image", str(per), str(tmp_path / "run")]) == 0
    (npz,) = per.glob("*.npz")
    assert len(np.load(npz)["grid_log_px"]) == 12
    (r,) = json.loads(out.read_text()).values()
    assert r["images"] == 12 and r["grid_unconverged"] == 0 and r["grid_err_max"] < 0.01
    assert r["grid_minus_iwae_min"] > -0.1  # IWAE k = 5000 is a lower bound: never far above the grid
    assert r["elbo"] < r["iwae"] < r["grid_log_px"] + 0.1 and r["gap"] > 0 and r["gap_eq18"] >= 0
    assert 0 <= r["missed"] <= 12 and (r["missed"] > 0) == (r["grid_minus_iwae_max"] > grid_report.MISSED)
    assert np.isfinite(r["eq16_at_mode_minus_log_px"])
    assert mod.main(["--table", str(out), "--seeds"]) == 0
    assert mod.main(["--plot", str(tmp_path / "g.png"), "--per-image", str(per)]) == 0
    assert (tmp_path / "g.png").stat().st_size > 0
    # the same for one run from the command line
    from vaetheory.cli import main

    assert main(["analyze", str(tmp_path / "run"), "--grid-images", "5", "--iwae-k", "300"]) == 0
    saved = json.loads((tmp_path / "run" / "grid_evidence.json").read_text())
    assert saved["images"] == 5 and saved["iwae_k"] == 300
    assert len(np.load(tmp_path / "run" / "grid_evidence_per_image.npz")["grid_log_px"]) == 5
    assert main(["analyze", str(tmp_path / "run"), "--grid-images", "0"]) == 2


def test_the_command_refuses_a_run_with_more_than_two_latent_dimensions(tmp_path, capsys):
    from mlpvae.training import config as C
    from mlpvae.training import train as T
    from vaetheory.cli import main

    T.train(
        C.make_config(
            dataset="synthetic",
            m=16,
            n=3,
            hidden=8,
            epochs=1,
            limit=40,
            test_limit=10,
            batch_size=20,
            device="cpu",
            progress=False,
        ),
        tmp_path / "run",
    )
    assert main(["analyze", str(tmp_path / "run"), "--grid-images", "5"]) == 2
    assert "n <= 2" in capsys.readouterr().err


@needs_gpu
def test_grid_log_px_on_cupy_equals_numpy():
    mc, p, x = _tiny("baggins", "learned")
    s2, bs2 = np.array([1.0, 2.0]), np.array([1.5, 0.7])
    host = G.grid_log_px(p, x, mc, s2, baggins_s2=bs2, tol=1e-4)
    cp = CUPY
    dev = G.grid_log_px(
        {k: cp.asarray(v) for k, v in p.items()},
        cp.asarray(x),
        mc,
        cp.asarray(s2),
        baggins_s2=cp.asarray(bs2),
        tol=1e-4,
    )
    assert isinstance(dev["log_px"], np.ndarray) and np.all(dev["converged"])
    np.testing.assert_allclose(dev["log_px"], host["log_px"], rtol=0, atol=TOL["grid_relu_nats"])
