"""Stacked training (mlpvae.training.train.train_many): K models as one batched computation, identical to one by one."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from conftest import CUPY, TOL, needs_gpu
from tiny_runs import assert_same_run, rows, tiny

from mlpvae.nn import adam
from mlpvae.nn import model as M
from mlpvae.nn.stacking import model_view, stack
from mlpvae.training import checkpoint
from mlpvae.training import config as C
from mlpvae.training import train as T

COMBOS = list(itertools.product(M.POSTERIORS, M.LIKELIHOODS))


def _stacked_problem(cfg, K, B=12, dtype=np.float32):
    rng = np.random.default_rng(7)
    singles = [M.init_params(cfg, np.random.default_rng(k), dtype=dtype) for k in range(K)]
    x = rng.uniform(0, 1, (K, B, cfg.m)).astype(dtype)
    eps = rng.standard_normal((K, B, cfg.n)).astype(dtype)
    return singles, x, eps


def _assert_each_model_is(stacked: dict, singles: list[dict]) -> None:
    for k, single in enumerate(singles):
        for name, a in single.items():
            np.testing.assert_array_equal(stacked[name][k], a, err_msg=name)  # bitwise


@pytest.mark.parametrize("posterior,likelihood", COMBOS)
@pytest.mark.parametrize("latent_scale", [1.0, 3.0])
@pytest.mark.parametrize("apart", [False, True])
def test_stacked_loss_and_grads_are_each_models_own_bitwise_eq1_eq2_eq24_eq30(
    posterior, likelihood, latent_scale, apart
):
    cfg = M.ModelConfig(
        m=20, n=3, hidden=8, layers=3, posterior=posterior, likelihood=likelihood, latent_scale=latent_scale
    )
    singles, x, eps = _stacked_problem(cfg, K=3)
    with M.models_apart(apart):
        loss, grads, aux = M.loss_and_grads(stack(singles), x, eps, cfg)
    assert loss.shape == (3,) and aux["s2"].shape == (3, cfg.n)
    alone = [M.loss_and_grads(p, x[k], eps[k], cfg) for k, p in enumerate(singles)]
    _assert_each_model_is({"loss": loss, **aux, **grads}, [{"loss": l1, **a1, **g1} for l1, g1, a1 in alone])


def test_models_apart_is_scoped_and_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("VAETHEORY_STACK_EXACT", raising=False)
    assert not M.apart()
    with M.models_apart():
        assert M.apart()
        with M.models_apart(False):
            assert not M.apart()
        assert M.apart()
    assert not M.apart()
    monkeypatch.setenv("VAETHEORY_STACK_EXACT", "1")
    assert M.apart()


def test_stacked_adam_step_is_each_models_own_step():
    cfg = M.ModelConfig(m=20, n=2, hidden=8, layers=2)
    singles, x, eps = _stacked_problem(cfg, K=2)
    stacked = stack(singles)
    opt = adam.Adam(stacked)
    opts = [adam.Adam(p) for p in singles]
    for _ in range(3):
        _, g, _ = M.loss_and_grads(stacked, x, eps, cfg)
        opt.step(stacked, g)
        for k, p in enumerate(singles):
            _, gk, _ = M.loss_and_grads(p, x[k], eps[k], cfg)
            opts[k].step(p, gk)
    _assert_each_model_is(stacked, singles)


def test_stacked_model_rejects_mismatched_shapes_by_name():
    cfg = M.ModelConfig(m=20, n=2, hidden=8, layers=2)
    singles, x, eps = _stacked_problem(cfg, K=2)
    stacked = stack(singles)
    with pytest.raises(ValueError, match="x must have shape"):
        M.loss_and_grads(stacked, x[0], eps, cfg)  # one model's batch for a stack of two
    with pytest.raises(ValueError, match="eps must have shape"):
        M.loss_and_grads(stacked, x, eps[:1], cfg)
    broken = dict(stacked, dec_b0=stacked["dec_b0"][:1])
    with pytest.raises(ValueError, match=r"params\['dec_b0'\] must have shape \(2, 8\)"):
        M.loss_and_grads(broken, x, eps, cfg)


def _train_both(tmp_path, seeds, **kw):
    cfgs = [tiny(seed=s, **kw) for s in seeds]
    infos = T.train_many(cfgs, [tmp_path / f"stack/seed{s}" for s in seeds])
    for c in cfgs:
        T.train(c, tmp_path / f"alone/seed{c.seed}")
    return infos


@pytest.mark.parametrize(
    "kw",
    [
        dict(posterior="learned"),
        dict(posterior="constant"),
        dict(posterior="bilbo", binarize="dynamic"),
        dict(posterior="bilbo", likelihood="baggins", scale=0.5),
        dict(posterior="learned", likelihood="gaussian-learned", scale=0.5, latent_scale=10.0),
    ],
)
def test_train_many_equals_training_each_model_alone_bitwise(tmp_path, kw):
    seeds = [0, 3, 11]
    infos = _train_both(tmp_path, seeds, epochs=3, **kw)
    for s, info in zip(seeds, infos):
        assert info["status"] == "completed" and info["stacked"]["seeds"] == seeds
        assert_same_run(tmp_path / f"stack/seed{s}", tmp_path / f"alone/seed{s}")
        saved = json.loads((tmp_path / f"stack/seed{s}/run.json").read_text())
        assert saved["config"]["seed"] == s and saved["epochs_done"] == 3
        assert saved["stacked"]["computed"] == "batched"


def test_train_many_resumes_exactly(tmp_path):
    seeds = [1, 2]
    T.train_many([tiny(seed=s, epochs=2) for s in seeds], [tmp_path / f"straight{s}" for s in seeds])
    T.train_many([tiny(seed=s, epochs=1) for s in seeds], [tmp_path / f"resumed{s}" for s in seeds])
    T.train_many([tiny(seed=s, epochs=2) for s in seeds], [tmp_path / f"resumed{s}" for s in seeds], resume=True)
    for s in seeds:
        assert_same_run(tmp_path / f"straight{s}", tmp_path / f"resumed{s}")
    # a stack resumed from single runs is the same too: the checkpoint format is one model's
    T.train(tiny(seed=1, epochs=1), tmp_path / "one")
    T.train(tiny(seed=2, epochs=1), tmp_path / "two")
    T.train_many([tiny(seed=1, epochs=2), tiny(seed=2, epochs=2)], [tmp_path / "one", tmp_path / "two"], resume=True)
    assert_same_run(tmp_path / "straight1", tmp_path / "one")
    assert_same_run(tmp_path / "straight2", tmp_path / "two")


def test_one_model_diverging_stops_alone_and_the_others_are_unaffected(tmp_path, monkeypatch):
    real = M.loss_and_grads
    calls = {"n": 0}

    def diverging(params, x, eps, config, grads=None):
        calls["n"] += 1
        loss, g, aux = real(params, x, eps, config, grads=grads)
        if calls["n"] == 5 and loss.ndim == 1:  # epoch 2, step 2, in the stack: model 1 turns NaN
            g = {k: v.copy() for k, v in g.items()}
            for v in g.values():
                v[1] = np.nan
            loss = loss.copy()
            loss[1] = np.nan
        return loss, g, aux

    monkeypatch.setattr(M, "loss_and_grads", diverging)
    infos = T.train_many([tiny(seed=s, epochs=3) for s in (0, 1, 2)], [tmp_path / f"s{s}" for s in (0, 1, 2)])
    monkeypatch.setattr(M, "loss_and_grads", real)
    assert [i["status"] for i in infos] == ["completed", "diverged", "completed"]
    assert infos[1]["diverged"] == {"epoch": 2, "step": 2}
    assert [x["status"] for x in rows(tmp_path / "s1/metrics.csv")] == ["ok", "diverged at step 2"]
    assert checkpoint.load(tmp_path / "s1/checkpoint.npz")["epoch"] == 1
    for s in (0, 2):
        T.train(tiny(seed=s, epochs=3), tmp_path / f"alone{s}")
        assert_same_run(tmp_path / f"s{s}", tmp_path / f"alone{s}")


def test_train_many_refuses_what_cannot_be_stacked(tmp_path):
    with pytest.raises(ValueError, match=r"\['hidden'\] differ"):
        T.train_many([tiny(seed=0), tiny(seed=1, hidden=16)], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="the same model twice"):
        T.train_many([tiny(seed=0), tiny(seed=0)], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="own directory"):
        T.train_many([tiny(seed=0), tiny(seed=1)], [tmp_path / "a", tmp_path / "a"])
    with pytest.raises(ValueError, match="one run directory per config"):
        T.train_many([tiny(seed=0)], [])
    with pytest.raises(ValueError, match="TrainConfig"):
        T.train_many([dict(seed=0)], [tmp_path / "a"])
    T.train(tiny(seed=0, epochs=1), tmp_path / "e1")
    T.train(tiny(seed=1, epochs=2), tmp_path / "e2")
    with pytest.raises(ValueError, match="different epochs"):
        T.train_many([tiny(seed=0, epochs=3), tiny(seed=1, epochs=3)], [tmp_path / "e1", tmp_path / "e2"], resume=True)


def test_stack_and_model_view_round_trip():
    cfg = M.ModelConfig(m=6, n=2, hidden=4, layers=2)
    singles = [M.init_params(cfg, np.random.default_rng(k)) for k in range(3)]
    stacked = stack(singles)
    assert all(stacked[k].shape == (3,) + singles[0][k].shape for k in singles[0])
    for k, p in enumerate(singles):
        view = model_view(stacked, k)
        assert all(np.shares_memory(view[n], stacked[n]) and np.array_equal(view[n], p[n]) for n in p)


@needs_gpu
@pytest.mark.parametrize("posterior", C.POSTERIORS)
def test_gpu_stack_matches_gpu_models_alone(tmp_path, posterior):
    # cuBLAS' batched GEMM may block the sums differently from its single GEMM: float32 round-off
    kw = dict(posterior=posterior, device="gpu", epochs=2)
    seeds = [0, 1, 2]
    T.train_many([tiny(seed=s, **kw) for s in seeds], [tmp_path / f"stack{s}" for s in seeds])
    for s in seeds:
        T.train(tiny(seed=s, **kw), tmp_path / f"alone{s}")
        a = checkpoint.load(tmp_path / f"stack{s}/checkpoint.npz")
        b = checkpoint.load(tmp_path / f"alone{s}/checkpoint.npz")
        for k in a["params"]:
            np.testing.assert_allclose(
                a["params"][k], b["params"][k], rtol=TOL["f32_vs_f64"], atol=TOL["f32_vs_f64"], err_msg=k
            )
    assert CUPY is not None


@needs_gpu
@pytest.mark.parametrize("posterior", C.POSTERIORS)
def test_gpu_stack_apart_is_each_model_alone_bitwise(tmp_path, monkeypatch, posterior):
    # VAETHEORY_STACK_EXACT=1: the stack is computed one model at a time (mlpvae.nn.model.models_apart)
    monkeypatch.setenv("VAETHEORY_STACK_EXACT", "1")
    kw = dict(posterior=posterior, device="gpu", epochs=2)
    seeds = [0, 1, 2]
    T.train_many([tiny(seed=s, **kw) for s in seeds], [tmp_path / f"stack{s}" for s in seeds])
    monkeypatch.delenv("VAETHEORY_STACK_EXACT")
    for s in seeds:
        T.train(tiny(seed=s, **kw), tmp_path / f"alone{s}")
        assert_same_run(tmp_path / f"stack{s}", tmp_path / f"alone{s}")
        assert json.loads((tmp_path / f"stack{s}/run.json").read_text())["stacked"]["computed"] == "one model at a time"


@needs_gpu
@pytest.mark.parametrize(
    "posterior,likelihood", [("learned", "bernoulli"), ("constant", "baggins"), ("bilbo", "gaussian-learned")]
)
def test_gpu_stack_apart_at_the_papers_sizes_is_each_model_alone_bitwise(posterior, likelihood):
    # Fig. 4's sizes (batch 300, n = 2): where CuPy's batched reductions part from a lone model's
    cfg = M.ModelConfig(posterior=posterior, likelihood=likelihood)
    singles, x, eps = _stacked_problem(cfg, K=5, B=300)
    to_gpu = lambda d: {k: CUPY.asarray(v) for k, v in d.items()}  # noqa: E731
    with M.models_apart():
        loss, grads, aux = M.loss_and_grads(to_gpu(stack(singles)), CUPY.asarray(x), CUPY.asarray(eps), cfg)
    got = {"loss": loss, **aux, **grads}
    for k, p in enumerate(singles):
        one = M.loss_and_grads(
            {n: CUPY.asarray(v[None]) for n, v in p.items()},
            CUPY.asarray(x[k : k + 1]),
            CUPY.asarray(eps[k : k + 1]),
            cfg,
        )
        want = {"loss": one[0], **one[2], **one[1]}
        for name, a in want.items():
            np.testing.assert_array_equal(CUPY.asnumpy(got[name][k]), CUPY.asnumpy(a[0]), err_msg=name)
