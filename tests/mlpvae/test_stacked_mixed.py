"""Heterogeneous stacks: models that differ in seed, sigma2, t, tau, latent scale, data scale and learning rate
trained as one stack, each exactly as alone (mlpvae.nn.scalars, mlpvae.training.stacks, run_queue.batches)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import TOL, needs_gpu
from tiny_runs import assert_same_run, tiny

from mlpvae.experiments import reproduce as R
from mlpvae.experiments import run_queue as Q
from mlpvae.experiments.figure_schema import load_figure
from mlpvae.nn import adam
from mlpvae.nn import model as M
from mlpvae.nn.stacking import stack
from mlpvae.training import checkpoint, stacks
from mlpvae.training import train as T

FIGURES = Path(__file__).resolve().parents[2] / "validation" / "figures"
# values whose derived floats (sqrt, log, 1/tau, m log(2 pi t)) round otherwise when computed in float32
VALUES = dict(sigma2=(1.0, 0.45, 0.6), t=(1.0, 0.37, 2.9), tau=(0.2, 0.05, 1.3), latent_scale=(1.0, 0.1, 3.7))


def _stack_config(posterior, likelihood):
    vals = dict(VALUES)
    if likelihood == "baggins" and posterior != "learned":
        del vals["sigma2"]  # refused: see test_stack_config_refuses_sigma2_with_baggins_and_a_constant_sigma
    base = M.ModelConfig(m=20, n=3, hidden=8, layers=3, posterior=posterior, likelihood=likelihood)
    fields = {f: getattr(base, f) for f in M.ModelConfig.__dataclass_fields__}
    return M.StackConfig(**{**fields, **{k: v[0] for k, v in vals.items()}}, varied=tuple(vals.items()))


@pytest.mark.parametrize("posterior,likelihood", list(itertools.product(M.POSTERIORS, M.LIKELIHOODS)))
@pytest.mark.parametrize("apart", [False, True])
def test_mixed_stack_steps_are_each_models_own_bitwise_eq1_eq2_eq24_eq30(posterior, likelihood, apart):
    sc = _stack_config(posterior, likelihood)
    rng = np.random.default_rng(7)
    singles = [M.init_params(sc.model(k), np.random.default_rng(k)) for k in range(3)]
    x = rng.uniform(0, 1, (3, 12, sc.m)).astype(np.float32)
    eps = rng.standard_normal((3, 12, sc.n)).astype(np.float32)
    stacked, lrs = stack(singles), [1e-3, 3e-3, 7e-4]
    opt, opts = adam.Adam(stacked, lr=lrs), [adam.Adam(p, lr=lr) for p, lr in zip(singles, lrs)]
    for _ in range(3):
        with M.models_apart(apart):
            loss, g, aux = M.loss_and_grads(stacked, x, eps, sc)
        opt.step(stacked, g)
        for k, p in enumerate(singles):
            own = sc.model(k)  # a plain ModelConfig with model k's floats: the lone model's path
            assert type(own) is M.ModelConfig and own.latent_scale == VALUES["latent_scale"][k]
            loss_k, g_k, aux_k = M.loss_and_grads(p, x[k], eps[k], own)
            opts[k].step(p, g_k)
            np.testing.assert_array_equal(loss[k], loss_k)
            for name in g_k:
                np.testing.assert_array_equal(g[name][k], g_k[name], err_msg=name)
            for key in aux_k:
                np.testing.assert_array_equal(aux[key][k], aux_k[key], err_msg=key)
    for k, p in enumerate(singles):
        for name in p:
            np.testing.assert_array_equal(stacked[name][k], p[name], err_msg=name)


def test_mixed_bilbo_stack_where_m_b_overflows_is_each_models_own_bitwise_eq24():
    sc = _stack_config("bilbo", "bernoulli")
    singles = [M.init_params(sc.model(k), np.random.default_rng(k)) for k in range(3)]
    for p in singles[:2]:  # posterior means near 1e20: M_B = E_B[mu^2] overflows float32 (the log-space path)
        p["enc_b2"][:] = 1e20
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (3, 12, sc.m)).astype(np.float32)
    eps = rng.standard_normal((3, 12, sc.n)).astype(np.float32)
    loss, g, aux = M.loss_and_grads(stack(singles), x, eps, sc)
    for k, p in enumerate(singles):
        loss_k, g_k, _ = M.loss_and_grads(p, x[k], eps[k], sc.model(k))
        assert np.isfinite(loss_k) and np.isfinite(g_k["enc_b2"]).all()  # the safe path, not an inf
        np.testing.assert_array_equal(loss[k], loss_k)
        for name in g_k:
            np.testing.assert_array_equal(g[name][k], g_k[name], err_msg=name)


def test_stack_config_refuses_sigma2_with_baggins_and_a_constant_sigma():
    base = dict(m=20, n=3, hidden=8, layers=3, posterior="constant", likelihood="baggins")
    with pytest.raises(ValueError, match="sigma2 differs"):
        M.StackConfig(**base, varied=(("sigma2", (1.0, 2.0)),))
    with pytest.raises(ValueError, match="not 'hidden'"):
        M.StackConfig(**base, varied=(("hidden", (8, 16)),))
    with pytest.raises(ValueError, match="one value per model"):
        M.StackConfig(**base, varied=(("tau", (0.1, 0.2)), ("t", (1.0, 2.0, 3.0))))


def test_adam_takes_one_rate_per_model_and_refuses_a_mismatch():
    cfg = M.ModelConfig(m=6, n=2, hidden=4, layers=2)
    stacked = stack([M.init_params(cfg, np.random.default_rng(k)) for k in range(2)])
    with pytest.raises(ValueError, match="3 learning rates"):
        adam.Adam(stacked, lr=[1e-3, 2e-3, 3e-3])
    with pytest.raises(ValueError, match="lr"):
        adam.Adam(stacked, lr=[1e-3, -1.0])


MIXED = [
    # Fig. 8's kind of stack: BILBO at several sigma and c, with seeds, rates and data scales besides
    [dict(posterior="bilbo", seed=0), dict(posterior="bilbo", seed=0, sigma2=0.01, latent_scale=0.1, lr=3e-3),
     dict(posterior="bilbo", seed=5, sigma2=100.0, latent_scale=10.0, scale=0.5)],
    [dict(posterior="constant", likelihood="gaussian", seed=1), dict(posterior="constant", likelihood="gaussian",
     seed=2, t=0.3, sigma2=0.5, lr=2e-3), dict(posterior="constant", likelihood="gaussian", seed=3, t=4.0, scale=4.0)],
    [dict(likelihood="baggins", binarize="dynamic", seed=0), dict(likelihood="baggins", binarize="dynamic", seed=1,
     tau=0.05, latent_scale=0.1, scale=4.0), dict(likelihood="baggins", binarize="dynamic", seed=2, tau=5.0, lr=5e-4)],
    [dict(posterior="constant", likelihood="baggins", sigma2=0.5, seed=0), dict(posterior="constant",
     likelihood="baggins", sigma2=0.5, seed=0, tau=1.0), dict(posterior="constant", likelihood="baggins",
     sigma2=0.5, seed=4, tau=0.05, lr=2e-3, latent_scale=3.0)],
]  # fmt: skip


@pytest.mark.parametrize("kws", MIXED)
def test_mixed_train_many_writes_each_models_files_as_alone_bitwise(tmp_path, kws):
    cfgs = [tiny(epochs=2, **kw) for kw in kws]
    infos = T.train_many(cfgs, [tmp_path / f"stack{k}" for k in range(3)])
    for k, c in enumerate(cfgs):
        T.train(c, tmp_path / f"alone{k}")
        assert infos[k]["status"] == "completed"
        assert_same_run(tmp_path / f"stack{k}", tmp_path / f"alone{k}")  # parameters, Adam state, metrics
        a = checkpoint.load(tmp_path / f"stack{k}/checkpoint.npz")
        b = checkpoint.load(tmp_path / f"alone{k}/checkpoint.npz")
        assert a["config"] == b["config"] == c.to_dict() and a["epoch"] == b["epoch"] == 2
        saved = json.loads((tmp_path / f"stack{k}/run.json").read_text())
        alone = json.loads((tmp_path / f"alone{k}/run.json").read_text())
        assert saved["config"] == c.to_dict() and saved["targets"] == alone["targets"]
        # each model's differing settings, read back from the configs themselves
        dicts = [x.to_dict() for x in cfgs]
        want = {key for key in dicts[0] if key != "out" and len({repr(d[key]) for d in dicts}) > 1}
        assert set(saved["stacked"]["differing"]) == want
        for key, values in saved["stacked"]["differing"].items():
            assert values == [d[key] for d in dicts]


def test_train_many_names_the_setting_that_cannot_differ(tmp_path):
    with pytest.raises(ValueError, match=r"\['posterior'\] differ"):
        T.train_many([tiny(seed=0), tiny(seed=0, posterior="bilbo")], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match=r"\['epochs', 'n'\] differ"):
        T.train_many([tiny(seed=0), tiny(seed=1, n=3, epochs=2)], [tmp_path / "a", tmp_path / "b"])
    baggins = dict(posterior="constant", likelihood="baggins")
    with pytest.raises(ValueError, match=r"\['sigma2'\] differ"):
        T.train_many([tiny(**baggins), tiny(**baggins, sigma2=2.0)], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="the same model twice"):
        T.train_many([tiny(lr=2e-3), tiny(seed=1), tiny(lr=2e-3)], [tmp_path / "a", tmp_path / "b", tmp_path / "c"])
    assert not any(tmp_path.iterdir())  # nothing was started


def _plan(cfgs):
    return [(SimpleNamespace(name=f"m{i}"), c.seed, c) for i, c in enumerate(cfgs)]


def test_batches_group_runs_by_what_must_agree_not_by_method():
    cfgs = [
        tiny(seed=0),
        tiny(seed=0, posterior="bilbo", sigma2=0.01, latent_scale=0.1),
        tiny(seed=1, lr=2e-3),
        tiny(seed=0, posterior="bilbo", sigma2=100.0, latent_scale=10.0),
        tiny(seed=0, hidden=16),
        tiny(seed=2, scale=4.0),
    ]
    plan = _plan(cfgs)
    assert [[p[2] for p in b] for b in Q.batches(plan, stack=False)] == [[c] for c in cfgs]
    got = [[cfgs.index(p[2]) for p in b] for b in Q.batches(plan, stack=True, max_models=10)]
    assert got == [[0, 2, 5], [1, 3], [4]]  # learned; BILBO across sigma2 and c; another shape
    for b in Q.batches(plan, stack=True, max_models=10):
        stacks.check_together([p[2] for p in b], [f"/tmp/x{i}" for i in range(len(b))])
    assert [[cfgs.index(p[2]) for p in b] for b in Q.batches(plan, stack=True, max_models=2)] == [
        [0, 2],
        [5],
        [1, 3],
        [4],
    ]
    # two methods naming the same settings (in two folders) go to two stacks
    twice = _plan([tiny(seed=0), tiny(seed=0), tiny(seed=1)])
    assert [len(b) for b in Q.batches(twice, stack=True, max_models=10)] == [2, 1]
    # the memory cap of GPU runs, read where there is no GPU (e.g. to list or redraw): this machine's memory
    gpu = _plan([tiny(seed=0, device="gpu"), tiny(seed=1, device="gpu", sigma2=2.0)])
    assert stacks.memory_bytes("gpu") and [len(b) for b in Q.batches(gpu, stack=True)] == [2]


def test_batches_stack_fig8_across_sigma_and_scale_within_memory():
    plan = list(Q.plan_runs(load_figure(FIGURES / "fig8.toml"), None, {"device": "cpu"}))
    units = list(Q.batches(plan, stack=True, max_models=100))
    assert sorted(len(u) for u in units) == sorted(
        [sum(p[2].posterior == post for p in plan) for post in {p[2].posterior for p in plan}]
    )
    assert any(len({p[2].sigma2 for p in u}) > 1 and len({p[2].latent_scale for p in u}) > 1 for u in units)
    cfg = plan[0][2]
    cap = stacks.models_per_stack(cfg, have=2 * 7 * stacks.model_bytes(cfg))
    assert cap == 7 and max(len(u) for u in Q.batches(plan, stack=True, max_models=cap)) == 7
    assert stacks.models_per_stack(cfg, have=1) == 1
    params = sum(a.size for a in M.init_params(cfg.model_config(), np.random.default_rng(0)).values())
    assert stacks.model_bytes(cfg) > 4 * 4 * params + 4 * 70000 * 784  # moments and both data sets at least


def test_mixed_stack_resumes_exactly(tmp_path):
    kws = MIXED[0]
    T.train_many([tiny(epochs=2, **kw) for kw in kws], [tmp_path / f"straight{k}" for k in range(3)])
    T.train_many([tiny(epochs=1, **kw) for kw in kws], [tmp_path / f"resumed{k}" for k in range(3)])
    T.train_many([tiny(epochs=2, **kw) for kw in kws], [tmp_path / f"resumed{k}" for k in range(3)], resume=True)
    for k in range(3):
        assert_same_run(tmp_path / f"straight{k}", tmp_path / f"resumed{k}")


def test_reproduce_stack_trains_a_figures_sigma2_methods_as_one_stack_with_their_lone_results(tmp_path):
    sets = {"hidden": 8, "batch_size": 50, "dataset": "synthetic", "m": 16}
    quick = dict(seeds=[0], epochs=1, limit=200, test_limit=50, sets=sets, device="cpu", progress=False)
    names = ["bilbo_sigma2_0p01", "bilbo_sigma2_100"]
    fig = FIGURES / "fig2_3_5_9.toml"
    info = R.reproduce(fig, tmp_path / "stack", **quick, log=lambda s: None, stack=True, methods=names)
    assert [(r["method"], r["action"], r["stacked_with"]) for r in info["runs"]] == [(m, "trained", 2) for m in names]
    for m in names:  # each alone: the same files as in the stack of two methods
        R.reproduce(fig, tmp_path / m, **quick, log=lambda s: None, methods=[m])
        assert_same_run(tmp_path / m / "fig2_3_5_9" / m / "seed0", tmp_path / "stack/fig2_3_5_9" / m / "seed0")


@needs_gpu
@pytest.mark.parametrize("kws", MIXED[:2])
def test_gpu_mixed_stack_apart_is_each_model_alone_bitwise_and_batched_close(tmp_path, monkeypatch, kws):
    # VAETHEORY_STACK_EXACT=1: each model on arrays of its own, with its own floats (StackConfig.model)
    cfgs = [tiny(epochs=2, device="gpu", **kw) for kw in kws]
    monkeypatch.setenv("VAETHEORY_STACK_EXACT", "1")
    T.train_many(cfgs, [tmp_path / f"exact{k}" for k in range(3)])
    monkeypatch.delenv("VAETHEORY_STACK_EXACT")
    T.train_many(cfgs, [tmp_path / f"batched{k}" for k in range(3)])  # the batched kernels, CUDA graph and all
    for k, c in enumerate(cfgs):
        T.train(c, tmp_path / f"alone{k}")
        assert_same_run(tmp_path / f"exact{k}", tmp_path / f"alone{k}")
        # cuBLAS' batched GEMM may block the sums differently from its single GEMM: float32 round-off
        a = checkpoint.load(tmp_path / f"batched{k}/checkpoint.npz")
        b = checkpoint.load(tmp_path / f"alone{k}/checkpoint.npz")
        for name in a["params"]:
            np.testing.assert_allclose(
                a["params"][name], b["params"][name], rtol=TOL["f32_vs_f64"], atol=TOL["f32_vs_f64"], err_msg=name
            )
