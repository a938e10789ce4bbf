"""`vaetheory bench train` (mlpvae.experiments.bench, bench_timing): the PyTorch eager
side-by-side and the evaluation timing (Sec. 7).

PyTorch is optional: the tests that need it skip, saying so, when it is not
importable; the rest check the report's arithmetic and the no-torch path.
"""

import os

import numpy as np
import pytest
from conftest import TOL
from tiny_runs import random_problem

from mlpvae.experiments import bench, bench_timing
from mlpvae.nn import model
from mlpvae.nn import torch_reference as R
from mlpvae.nn.stacking import stack
from vaetheory import cli

needs_torch = pytest.mark.skipif(
    not R.available(),
    reason="torch is not importable; PyTorch is an optional "
    "comparison, never a dependency (pip install torch to run this test)",
)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _same_as_torch(mc, params, x, eps):
    loss, grads, _ = model.loss_and_grads(params, x, eps, mc)
    t_loss, t_grads = R.loss_and_grads(params, x, eps, mc)
    assert float(loss) == pytest.approx(t_loss, rel=TOL["torch_same_f64"])
    assert set(t_grads) == set(grads)
    for k in grads:
        assert _rel(grads[k], t_grads[k]) < TOL["torch_same_f64"], k


@needs_torch
@pytest.mark.parametrize("n", [2, 100])
@pytest.mark.parametrize("posterior", model.POSTERIORS)
@pytest.mark.parametrize("likelihood", model.LIKELIHOODS)
def test_torch_reference_loss_and_grads_equal_hand_written_eq1_eq2_eq24_eq26_eq29(n, posterior, likelihood):
    # autograd through an independent implementation checks every hand-written gradient at once
    _same_as_torch(*random_problem(n, posterior, likelihood=likelihood))


@needs_torch
@pytest.mark.parametrize("posterior", model.POSTERIORS)
@pytest.mark.parametrize(
    "kw",
    [
        dict(likelihood="baggins", baggins_stop_gradient=True, tau=0.05),
        dict(likelihood="gaussian", t=0.3, sigma2=0.2, latent_scale=10.0),
        dict(likelihood="bernoulli", latent_scale=0.1, layers=1),
        dict(likelihood="baggins", latent_scale=3.0, layers=2, hidden=17),
    ],
    ids=["baggins-stop", "gaussian-t-c10", "bernoulli-c0.1-L1", "baggins-c3-L2"],
)
def test_torch_reference_agrees_off_the_defaults(posterior, kw):
    _same_as_torch(*random_problem(3, posterior, B=40, **kw))


@needs_torch
@pytest.mark.parametrize("posterior", model.POSTERIORS)
def test_torch_and_our_training_steps_follow_the_same_trajectory_eq1_eq2_eq24(posterior):
    # Three steps of each optimiser (ours: mlpvae.nn.adam; theirs: torch.optim.Adam) from the same start, float64.
    mc, params, x, _ = random_problem(2, posterior, B=32)
    eps_all = np.random.default_rng(4).standard_normal((3, 32, 2))
    ours = bench_timing.our_stepper(np, mc, params, x, eps_all)
    theirs = R.stepper(params, x, eps_all, mc, threads=1, dtype=np.float64)
    for _ in range(3):
        ours()
        theirs()
    for k in params:
        moved = ours.params[k] - params[k]
        assert np.max(np.abs(moved)) > 0, k
        # Adam's step is ~lr wherever the gradient exceeds its eps, so compare the displacement.
        assert _rel(theirs.params[k].detach().numpy() - params[k], moved) < TOL["torch_adam_f64"], k


def test_blas_threads_reads_the_environment_like_openblas(monkeypatch):
    for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(v, raising=False)
    assert bench_timing.blas_threads() == (os.cpu_count() or 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert bench_timing.blas_threads() == 3
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert bench_timing.blas_threads() == 2


def _small_bench(**kw):
    return bench.bench(
        "cpu",
        steps=2,
        warmup=1,
        gemm_size=128,
        configs=[(2, "learned"), (2, "bilbo")],
        rounds=2,
        eval_images=50,
        iwae_k=40,
        iwae_images=5,
        **kw,
    )


def test_bench_without_torch_reports_ours_only_and_says_why(monkeypatch):
    monkeypatch.setattr(R, "available", lambda: False)
    rep = _small_bench()
    assert rep["torch"] == "torch is not importable"
    for r in rep["results"]:
        assert "torch_ms_per_step" not in r and "speedup_vs_torch" not in r
        assert len(r["ms_blocks"]) == 2 and r["ms_per_step"] == pytest.approx(np.median(r["ms_blocks"]))
    assert "torch ms" in bench.format_report(rep)
    assert _small_bench(torch=False)["torch"].startswith("not requested")


def test_bench_evaluation_timing_extrapolates_the_iwae_subset():
    rep = _small_bench(torch=False)
    (e,) = rep["evaluation"]  # one row per latent size
    assert (e["n"], e["images"], e["iwae_k"], e["iwae_images_timed"]) == (2, 50, 40, 5)
    assert e["elbo_s"] > 0 and e["iwae_s_extrapolated"] == pytest.approx(e["iwae_s_timed"] * 50 / 5)
    assert "IWAE k=40" in bench.format_report(rep)


@needs_torch
def test_bench_times_torch_side_by_side_and_reports_the_ratio():
    rep = _small_bench()
    assert rep["torch"].startswith("torch ") and f"set_num_threads({rep['blas_threads']})" in rep["torch"]
    for r in rep["results"]:
        assert len(r["torch_ms_blocks"]) == len(r["ms_blocks"]) == 2
        assert r["torch_ms_per_step"] == pytest.approx(np.median(r["torch_ms_blocks"]))
        assert r["speedup_vs_torch"] == pytest.approx(r["torch_ms_per_step"] / r["ms_per_step"])
    assert "speedup" in bench.format_report(rep)


def test_bench_times_a_stack_against_one_by_one():
    rep = _small_bench(torch=False, stack=3)
    assert [(r["n"], r["posterior"], r["models"]) for r in rep["stacked"]] == [(2, "learned", 3), (2, "bilbo", 3)]
    for r in rep["stacked"]:
        assert len(r["stack_ms_blocks"]) == len(r["one_by_one_ms_blocks"]) == 2
        assert r["speedup"] == pytest.approx(r["one_by_one_ms_per_step"] / r["stack_ms_per_step"])
        assert "apart_ms_per_step" not in r  # on NumPy a stack is each model's own product already
    assert "stack of 3" in bench.format_report(rep)
    assert _small_bench(torch=False)["stacked"] == []


def test_stacked_step_flops_are_k_times_one_models():
    cfg = model.ModelConfig(n=2)
    singles = [model.init_params(cfg, np.random.default_rng(k)) for k in range(4)]
    assert bench.step_flops(stack(singles), 300, 784) == 4 * bench.step_flops(singles[0], 300, 784)


def test_bench_times_every_likelihood_and_compares_torch_on_bernoulli_only(monkeypatch):
    monkeypatch.setattr(R, "available", lambda cuda=False: False)
    configs = bench.with_likelihoods([(2, "learned")], ["bernoulli", "baggins", "gaussian-learned"])
    assert configs == [(2, "learned", "bernoulli"), (2, "learned", "baggins"), (2, "learned", "gaussian-learned")]
    rep = bench.bench("cpu", steps=2, warmup=1, gemm_size=128, configs=configs, rounds=2, eval_images=0)
    assert [r["likelihood"] for r in rep["results"]] == ["bernoulli", "baggins", "gaussian-learned"]
    assert all(r["ms_per_step"] > 0 and r["fraction_of_gemm_rate"] > 0 for r in rep["results"])
    assert "gaussian-learned" in bench.format_report(rep)


def test_bench_cli_refuses_an_unknown_likelihood(capsys):
    assert cli.main(["bench", "train", "--device", "cpu", "--likelihoods", "poisson"]) == 2
    assert "--likelihoods must be one of" in capsys.readouterr().err
