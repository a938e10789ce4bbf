"""mlpvae.accel.fused (one-launch element-wise chains) and the CUDA-graph training step, against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CUPY, TOL, needs_gpu
from tiny_runs import tiny

from mlpvae.accel import fused
from mlpvae.nn import adam
from mlpvae.nn import layers as Ly
from mlpvae.nn import likelihoods as Lk
from mlpvae.nn import model as M
from mlpvae.nn.stacking import stack
from mlpvae.training import checkpoint
from mlpvae.training import train as T
from mlpvae.training.step import TrainingStep, device_stream


# ---------------------------------------------------------------------------- everywhere
def test_fused_kernels_serve_cupy_only_and_can_be_turned_off(monkeypatch):
    assert not fused.enabled(np)

    class FakeCupy:  # any array module other than NumPy counts as the GPU's
        pass

    assert fused.enabled(FakeCupy)
    monkeypatch.setenv("VAETHEORY_FUSED", "0")
    assert not fused.enabled(FakeCupy)


def test_the_numpy_training_step_is_never_captured():
    cfg, params, x, eps = _numpy_step_problem()
    opt = adam.Adam(params)
    step = TrainingStep(np, params, opt, cfg, x, eps, np.zeros(()))
    for _ in range(3):
        step()
    assert step.graph is None and not step.use_graph and opt.t == 3 and np.isfinite(step.total)


def _numpy_step_problem():
    cfg = M.ModelConfig(m=6, n=2, hidden=4, layers=2)
    params = M.init_params(cfg, np.random.default_rng(0), dtype=np.float32)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (5, 6)).astype(np.float32)
    eps = rng.standard_normal((5, 2)).astype(np.float32)
    return cfg, params, x, eps


def test_a_failed_graph_capture_falls_back_to_eager_steps(capsys):
    import contextlib
    import types

    class Stream:
        ptr = 5

        def begin_capture(self):
            raise RuntimeError("operation not permitted when stream is capturing")

        def end_capture(self):
            raise RuntimeError("capture invalidated")

    cuda = types.SimpleNamespace(
        get_current_stream=Stream,
        MemoryPool=lambda: types.SimpleNamespace(malloc=None),
        using_allocator=lambda alloc: contextlib.nullcontext(),
    )
    fake_cupy = types.SimpleNamespace(cuda=cuda)  # an array module other than NumPy: graphs are tried
    cfg, params, x, eps = _numpy_step_problem()
    ref = {k: v.copy() for k, v in params.items()}
    opt, opt_ref = adam.Adam(params), adam.Adam(ref)
    step = TrainingStep(fake_cupy, params, opt, cfg, x, eps, np.zeros(()))
    assert step.use_graph
    for _ in range(3):
        step()
        _, g, _ = M.loss_and_grads(ref, x, eps, cfg)
        opt_ref.step(ref, g)
    assert "CUDA graph capture failed" in capsys.readouterr().err
    assert step.graph is None and not step.use_graph and opt.t == 3
    for k in ref:
        np.testing.assert_array_equal(params[k], ref[k], err_msg=k)


# ---------------------------------------------------------------------------- GPU only
def _pair(shape, seed, dtype, low=-30.0, high=30.0):
    rng = np.random.default_rng(seed)
    a = rng.uniform(low, high, shape).astype(dtype)
    return a, CUPY.asarray(a)


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_relu_backward_and_bernoulli_equal_the_numpy_chain(dtype, monkeypatch):
    tol = TOL["f32_vs_f64"] if dtype == np.float32 else TOL["identity_f64"]
    h, h_d = _pair((7, 300), 0, dtype)
    g, g_d = _pair((7, 300), 1, dtype)
    np.testing.assert_array_equal(CUPY.asnumpy(fused.relu_backward_(g_d.copy(), h_d)), Ly.relu_backward_(g.copy(), h))
    logits, logits_d = _pair((3, 5, 784), 2, dtype)  # stacked (K, B, m); logits up to |30|
    x, x_d = _pair((3, 5, 784), 3, dtype, 0.0, 1.0)
    lp, d = Lk.bernoulli(logits, x, -1.0 / 5)
    lp_d, d_d = fused.bernoulli(logits_d, x_d, -1.0 / 5)
    np.testing.assert_allclose(CUPY.asnumpy(lp_d), lp, rtol=tol)
    np.testing.assert_allclose(CUPY.asnumpy(d_d), d, rtol=tol, atol=tol)
    lp_only, none = fused.bernoulli(logits_d, x_d)
    assert none is None
    np.testing.assert_allclose(CUPY.asnumpy(lp_only), lp, rtol=tol)


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_reparameterisation_and_adam_equal_the_numpy_chain(dtype, monkeypatch):
    tol = TOL["f32_vs_f64"] if dtype == np.float32 else TOL["identity_f64"]
    s_raw, s_raw_d = _pair((4, 3), 4, dtype, -20, 20)
    eps, eps_d = _pair((4, 3), 5, dtype, -3, 3)
    mu, mu_d = _pair((4, 3), 6, dtype, -3, 3)
    std_d, z_d = fused.reparameterize(s_raw_d, eps_d, mu_d, 10.0)
    std = Ly.softplus(s_raw) * dtype(10.0)
    np.testing.assert_allclose(CUPY.asnumpy(std_d), std, rtol=tol)
    np.testing.assert_allclose(CUPY.asnumpy(z_d), eps * std + mu, rtol=tol, atol=tol)
    # three Adam steps, fused on the GPU vs the NumPy update
    p, p_d = _pair((50, 20), 7, dtype, -1, 1)
    ref, dev = {"w": p.copy()}, {"w": p_d.copy()}
    opt_ref, opt_dev = adam.Adam(ref), adam.Adam(dev)
    for s in range(3):
        g, g_d = _pair((50, 20), 10 + s, dtype, -1, 1)
        opt_ref.step(ref, {"w": g})
        opt_dev.step(dev, {"w": g_d})
    assert opt_dev.t == 3
    np.testing.assert_allclose(CUPY.asnumpy(dev["w"]), ref["w"], rtol=tol, atol=tol)
    np.testing.assert_allclose(CUPY.asnumpy(opt_dev.v["w"]), opt_ref.v["w"], rtol=tol, atol=1e-30)


@needs_gpu
@pytest.mark.parametrize(
    "posterior,likelihood",
    [("learned", "bernoulli"), ("bilbo", "bernoulli"), ("learned", "gaussian-learned"), ("constant", "baggins")],
)
def test_fused_loss_and_grads_equal_the_unfused_cupy_ones(posterior, likelihood, monkeypatch):
    cfg = M.ModelConfig(m=784, n=2, posterior=posterior, likelihood=likelihood, latent_scale=2.0)
    params = M.init_params(cfg, np.random.default_rng(0), xp=CUPY)
    rng = np.random.default_rng(1)
    x = CUPY.asarray(rng.uniform(0, 1, (3, 300, 784)).astype(np.float32))
    eps = CUPY.asarray(rng.standard_normal((3, 300, 2)).astype(np.float32))
    stacked = stack([params, params, params], CUPY)
    l1, g1, _ = M.loss_and_grads(stacked, x, eps, cfg)
    monkeypatch.setenv("VAETHEORY_FUSED", "0")
    l0, g0, _ = M.loss_and_grads(stacked, x, eps, cfg)
    np.testing.assert_allclose(CUPY.asnumpy(l1), CUPY.asnumpy(l0), rtol=TOL["f32_vs_f64"])
    for k in g0:
        np.testing.assert_allclose(
            CUPY.asnumpy(g1[k]), CUPY.asnumpy(g0[k]), rtol=TOL["f32_vs_f64"], atol=TOL["f32_vs_f64"], err_msg=k
        )


@needs_gpu
def test_cuda_graph_training_equals_eager_training(tmp_path, monkeypatch):
    kw = dict(device="gpu", epochs=2, m=784, posterior="learned", binarize="dynamic")
    info = T.train(tiny(**kw), tmp_path / "graph")
    monkeypatch.setenv("VAETHEORY_GRAPH", "0")
    T.train(tiny(**kw), tmp_path / "eager")
    assert info["status"] == "completed"
    a, b = checkpoint.load(tmp_path / "graph/checkpoint.npz"), checkpoint.load(tmp_path / "eager/checkpoint.npz")
    assert a["adam"]["step"] == b["adam"]["step"] == 6
    for k in a["params"]:
        # the same kernels in the same order: equal up to float32 round-off at most
        np.testing.assert_allclose(
            a["params"][k], b["params"][k], rtol=TOL["f32_vs_f64"], atol=TOL["f32_vs_f64"], err_msg=k
        )


@needs_gpu
def test_cuda_graph_step_replays_and_counts_steps():
    cfg = M.ModelConfig(m=20, n=2, hidden=8, layers=2)
    params = M.init_params(cfg, np.random.default_rng(0), xp=CUPY)
    x = CUPY.asarray(np.random.default_rng(1).uniform(0, 1, (10, 20)).astype(np.float32))
    eps = CUPY.zeros((10, 2), dtype=np.float32)
    opt = adam.Adam(params)
    with device_stream(CUPY):
        step = TrainingStep(CUPY, params, opt, cfg, x, eps, CUPY.zeros((), dtype=np.float64))
        losses = []
        for _ in range(5):
            before = float(step.total)
            step()
            losses.append(float(step.total) - before)
    assert step.graph is not None and opt.t == 5 and int(opt._t_dev) == 5
    assert losses[-1] < losses[0]  # the replays train: same batch, falling loss
