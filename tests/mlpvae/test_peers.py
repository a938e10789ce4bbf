"""`vaetheory bench train`'s peers (mlpvae.experiments.peer_bench, peer_worker, peer_torch, peer_jax,
bench_profile): every peer trains the same model as ours (Sec. 7).

A peer is checked by its first three losses from the same weights, batch and
noise against ours (an independent implementation of the same objective: JAX
or PyTorch autograd and their Adam against our hand-written gradients and
Adam).  Tests needing an optional library skip, saying so, when it is absent.
No test measures speed.
"""

import importlib.util
import json
import os
import time

import numpy as np
import pytest
from conftest import TOL

from mlpvae.accel import gemm
from mlpvae.experiments import bench_profile, gemm_libraries, peer_bench, peer_torch, peer_worker
from mlpvae.experiments.bench_timing import problem, step_flops
from mlpvae.nn import model
from mlpvae.nn.stacking import stack
from vaetheory import cli

has = lambda name: importlib.util.find_spec(name) is not None  # noqa: E731
needs_torch = pytest.mark.skipif(not has("torch"), reason="torch is not importable (optional: pip install torch)")
needs_jax = pytest.mark.skipif(not has("jax"), reason="jax is not importable (optional: pip install jax optax)")


def _losses(peer, mc, params, x, eps_all):
    step, sync, note = peer_worker.build(peer, mc, params, x, eps_all, 1)
    out, first_s = peer_worker.first_losses(step, 3)
    sync()
    assert note and first_s > 0
    return out


def _check(mc, params, x, eps_all, peer):
    ours = _losses("ours", mc, params, x, eps_all)
    theirs = _losses(peer, mc, params, x, eps_all)
    assert ours[0] == pytest.approx(theirs[0], rel=TOL["peer_loss_f32"]), peer
    assert ours[1:] == pytest.approx(theirs[1:], rel=TOL["peer_loss_f32_later"]), peer
    assert peer_bench.loss_check(ours, theirs)["same_loss"]
    assert len(set(ours)) == 3  # the steps moved the weights


def _small(n, posterior, likelihood="bernoulli", B=40, **kw):
    mc = model.ModelConfig(n=n, posterior=posterior, likelihood=likelihood, **kw)
    rng = np.random.default_rng(5)
    params = model.init_params(mc, rng, dtype=np.float32)
    return mc, params, rng.random((B, mc.m), dtype=np.float32), rng.standard_normal((3, B, n), dtype=np.float32)


@needs_jax
@pytest.mark.parametrize("posterior", model.POSTERIORS)
@pytest.mark.parametrize("likelihood", model.LIKELIHOODS)
def test_jax_peer_trains_the_same_model_eq1_eq2_eq24_eq26_eq29(posterior, likelihood):
    _check(*_small(3, posterior, likelihood), "jax-jit")


@needs_jax
def test_jax_peer_without_optax_uses_the_same_adam(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "optax", None)  # import optax now raises ImportError
    mc, params, x, eps_all = _small(2, "learned", latent_scale=3.0)
    _check(mc, params, x, eps_all, "jax-jit")


@needs_torch
@pytest.mark.parametrize("peer", ["torch-eager", "torch-eager-fused"])
@pytest.mark.parametrize("posterior", model.POSTERIORS)
def test_torch_eager_peers_train_the_same_model_eq1_eq2_eq24(peer, posterior):
    _check(*_small(2, posterior), peer)


@needs_torch
@pytest.mark.parametrize("peer", ["torch-compile", "torch-compile-ro", "torch-graph"])
def test_torch_compiled_peers_train_the_same_model_eq2(peer):
    # One small network each: compilation, not the arithmetic, is what these add.
    _check(*_small(2, "constant", layers=2, hidden=16), peer)


def _models(K, posterior="learned", **kw):
    mc = model.ModelConfig(n=2, posterior=posterior, layers=2, hidden=16, **kw)
    rng = np.random.default_rng(9)
    dicts = [model.init_params(mc, rng, dtype=np.float32) for _ in range(K)]
    x = rng.random((K, 24, mc.m), dtype=np.float32)
    return mc, stack(dicts), x, rng.standard_normal((3, K, 24, 2), dtype=np.float32)


@pytest.mark.parametrize(
    "peer", [pytest.param("torch-vmap", marks=needs_torch), pytest.param("jax-vmap", marks=needs_jax)]
)
def test_vmap_ensembles_train_the_same_k_models_as_our_stack_eq1_eq2(peer):
    # K = 3 models with their own weights, data and noise: the ensemble's summed loss against our stack's, and
    # against the three models trained alone by ours; K = 1 is a stack of one
    mc, params, x, eps_all = _models(3)
    _check(mc, params, x, eps_all, peer)
    alone = [_losses("ours", mc, {k: v[i] for k, v in params.items()}, x[i], eps_all[:, i]) for i in range(3)]
    np.testing.assert_allclose(np.sum(alone, axis=0), _losses(peer, mc, params, x, eps_all), rtol=1e-5)
    one = {k: v[0] for k, v in params.items()}
    _check(mc, one, x[0], eps_all[:, 0], peer)


def test_build_refuses_a_stack_for_a_single_model_peer_and_an_unknown_device():
    mc, params, x, eps_all = _models(2)
    with pytest.raises(ValueError, match="trains one model"):
        peer_worker.build("torch-eager", mc, params, x, eps_all, 1)
    with pytest.raises(ValueError, match="device"):
        peer_worker.build("ours", mc, params, x, eps_all, 1, device="tpu")


def test_models_problem_stacks_the_single_problems_of_consecutive_seeds():
    mc, params, x, eps_all = peer_worker.models_problem(2, "bilbo", 8, 4, 3, "bernoulli", 2)
    for i in range(2):
        _, p_i, x_i, e_i = problem(np, 2, "bilbo", 8, 4, 3 + i)
        np.testing.assert_array_equal(x[i], x_i)
        np.testing.assert_array_equal(eps_all[:, i], e_i)
        assert all(np.array_equal(params[k][i], p_i[k]) for k in p_i)
    assert peer_worker.models_problem(2, "bilbo", 8, 4, 3, "bernoulli", 1)[2].shape == (8, mc.m)


def test_torch_peers_need_torch_only_when_built():
    assert callable(peer_torch.eager) and "torch" not in peer_torch.__dict__


def test_loss_check_accepts_round_off_and_rejects_a_different_loss():
    ours = [540.0, 539.0, 538.0]
    assert peer_bench.loss_check(ours, [540.0 * (1 + 2e-7), 539.0, 538.0 * (1 + 5e-5)])["same_loss"]
    assert not peer_bench.loss_check(ours, [540.0 * (1 + 3e-5), 539.0, 538.0])["same_loss"]
    assert not peer_bench.loss_check(ours, [540.0, 539.0 * (1 + 3e-4), 538.0])["same_loss"]
    assert peer_bench.loss_check(ours, ours)["step1_diff_f32_ulps"] == 0


def test_peer_and_thread_lists_parse_and_reject_bad_input():
    assert peer_bench.peer_list("none") == []
    assert peer_bench.peer_list("all") == list(peer_worker.PEERS)
    assert peer_bench.peer_list("jax-jit, ours") == ["jax-jit", "ours"]
    with pytest.raises(ValueError, match="--peers"):
        peer_bench.peer_list("tensorflow")
    assert peer_bench.thread_list(None, 3) == [3]
    assert peer_bench.thread_list("1,2", 3) == [1, 2]
    for bad in ("0", "a", "1,,2"):
        with pytest.raises(ValueError, match="--threads"):
            peer_bench.thread_list(bad, 1)
    with pytest.raises(ValueError, match="--models"):
        peer_bench.thread_list("0", 1, "--models")


def test_worker_cpus_pin_to_the_thread_count_or_leave_free():
    allowed = sorted(os.sched_getaffinity(0))
    assert peer_bench.worker_cpus(len(allowed)) is None
    assert peer_bench.worker_cpus(len(allowed) + 3) is None
    if len(allowed) > 1:
        assert peer_bench.worker_cpus(1) == allowed[:1]
    with pytest.raises(ValueError, match="threads"):
        peer_bench.worker_cpus(0)


def test_worker_env_sets_every_thread_count():
    env = peer_bench.worker_env(1, "ours-numpy")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        assert env[var] == "1"
    assert "--xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"]
    assert env["VAETHEORY_FUSED"] == "0"
    assert peer_bench.worker_env(2, "ours-serial-kernels")["VAETHEORY_CPU_THREADS"] == "1"
    assert peer_bench.worker_env(2, "ours-split")["VAETHEORY_BATCH_SPLIT"] == "2"
    assert (
        "VAETHEORY_FUSED" not in peer_bench.worker_env(2, "ours")
        or peer_bench.worker_env(2, "ours")["VAETHEORY_FUSED"] != "0"
    )


class _Missing:
    def __init__(self, spec):
        self.ready = {"missing": f"ImportError: No module named {spec['peer']!r}"}

    def close(self):
        pass


def test_a_missing_peer_is_reported_not_dropped(monkeypatch):
    monkeypatch.setattr(peer_bench, "Worker", _Missing)
    spec = dict(n=2, posterior="learned", likelihood="bernoulli", batch=8, threads=1)
    row = peer_bench.compare_config(spec, ["ours", "jax-jit"], rounds=1, steps=1, profile_reps=0, gemm=False)
    assert row["peers"]["jax-jit"] == {"status": "missing", "reason": "ImportError: No module named 'jax-jit'"}
    assert "missing" in peer_bench.format_peers(
        {"cpu_model": "x", "cpu_count": 1, "batch": 8, "rounds": 1, "threads": [1], "gemm": {}, "rows": [row]}
    )


def test_worker_answers_missing_when_the_library_is_absent(monkeypatch, capsys):
    def absent(*a, **k):
        raise ImportError("No module named 'jax'")

    monkeypatch.setattr(peer_worker, "build", absent)
    out = []
    spec = dict(
        peer="jax-jit", n=2, posterior="learned", likelihood="bernoulli", batch=4, seed=0, noise=2, warmup=0, threads=1
    )
    peer_worker.serve(spec, type("W", (), {"write": lambda self, s: out.append(s), "flush": lambda self: None})())
    assert json.loads(out[0]) == {"missing": "ImportError: No module named 'jax'"}


def test_side_by_side_run_in_processes_checks_times_and_profiles():
    rep = peer_bench.run_peers(
        [(2, "bilbo", "bernoulli")], ["ours-numpy"], threads=(1,), B=16, steps=2, warmup=1, rounds=2, profile_reps=1
    )
    row = rep["rows"][0]
    ours, ref = row["peers"]["ours"], row["peers"]["ours-numpy"]
    assert ours["status"] == ref["status"] == "timed"
    assert ref["losses"] == ours["losses"]  # the accelerated path is bit for bit the NumPy reference
    assert ref["check"]["same_loss"] and ours["ratio_to_ours"] == 1.0
    assert len(ours["ms_blocks"]) == 2 and ours["ms_per_step"] == min(ours["ms_blocks"])
    assert set(row["profile"]) >= {"step", "gemm", "elementwise", "adam", "python", "batch_gather"}
    assert row["gemm"]["gemm_large_gflop_s"] > 0 and rep["gemm"][1] == row["gemm"]
    assert any(p.get("internal_api") for p in ours["threadpools"])
    # a 1-thread worker may use one core only, whatever its libraries start
    if len(os.sched_getaffinity(0)) > 1:
        assert len(ours["cpus"]) == len(ref["cpus"]) == 1
    assert rep["cpu_model"] and len(row["load_before"]) == 3
    assert ours["step_gemms"]["library"] == ref["step_gemms"]["library"] == "numpy"
    assert ours["step_gemms"]["ms"] > 0
    json.dumps(rep)
    text = peer_bench.format_peers(rep)
    assert "ours-numpy" in text and "profile ms" in text and "each peer's library" in text


@needs_jax
def test_side_by_side_over_stack_sizes_runs_the_ensembles_and_lists_single_model_peers():
    rep = peer_bench.run_peers(
        [(2, "constant", "bernoulli")], ["jax-vmap", "ours-numpy"], B=16, steps=2, warmup=1, rounds=1, models=(1, 2)
    )
    assert [r["models"] for r in rep["rows"]] == [1, 2] and rep["models"] == [1, 2]
    one, two = (r["peers"] for r in rep["rows"])
    assert one["jax-vmap"]["check"]["same_loss"] and two["jax-vmap"]["check"]["same_loss"]
    assert one["ours-numpy"]["status"] == "timed" and two["ours-numpy"]["status"] == "single model"
    assert rep["rows"][1]["step_gflop"] == pytest.approx(2 * rep["rows"][0]["step_gflop"])
    assert "K = models" in peer_bench.format_peers(rep)
    with pytest.raises(ValueError, match="models"):
        peer_bench.run_peers([(2, "constant", "bernoulli")], [], models=(0,))


def test_profile_counts_the_time_inside_the_matrix_products(monkeypatch):
    mc, params, x, eps_all = problem(np, 2, "learned", 8, 2, 0)
    calls = [0]
    inner = gemm.matmul

    def slow(*a, **k):
        calls[0] += 1
        time.sleep(0.002)
        return inner(*a, **k)

    monkeypatch.setattr(gemm, "matmul", slow)
    spent = bench_profile.gemm_ms(mc, params, x, eps_all, reps=2)
    per_step = calls[0] / (1 + 3 * 2)  # one untimed call, then three repeats of two
    assert spent >= 2.0 * per_step
    assert gemm.matmul is slow  # put back as found


def test_bench_cli_runs_the_peers_it_is_asked_for(tmp_path, capsys):
    out = tmp_path / "b.json"
    args = ["bench", "train", "--device", "cpu", "--steps", "2", "--warmup", "1", "--rounds", "1", "--gemm-size", "128"]
    args += ["--eval-images", "0", "--posteriors", "bilbo", "--peers", "ours-numpy", "--threads", "1"]
    assert cli.main(args + ["--profile-reps", "0", "--json", str(out)]) == 0
    whole = json.loads(out.read_text())
    rep = whole["peers"]
    from mlpvae.training.runs import git_sha

    assert whole["git_sha"] == git_sha()  # the code that ran, named in what it wrote
    assert [(r["n"], r["posterior"], r["threads"]) for r in rep["rows"]] == [(2, "bilbo", 1), (100, "bilbo", 1)]
    assert all(set(r["peers"]) == {"ours", "ours-numpy"} and "profile" not in r for r in rep["rows"])
    assert "ours-numpy" in capsys.readouterr().out
    assert cli.main(args[:-4] + ["--peers", "tensorflow"]) == 2
    assert cli.main(args[:-2] + ["--threads", "0"]) == 2
    assert cli.main(args + ["--models", "0"]) == 2
    assert cli.main(args + ["--latents", "3"]) == 2
    assert cli.main(args + ["--profile-reps", "0", "--latents", "100", "--json", str(out)]) == 0
    assert [r["n"] for r in json.loads(out.read_text())["peers"]["rows"]] == [100]


@pytest.mark.parametrize(
    "n, posterior, likelihood",
    [
        (2, "learned", "bernoulli"),
        (3, "constant", "gaussian"),
        (2, "bilbo", "gaussian-learned"),
        (4, "learned", "baggins"),
    ],
)
def test_step_products_are_every_product_of_the_step(n, posterior, likelihood):
    """The recorded products' FLOPs are the count from the weight shapes (forward, dW, dh but the data's)."""
    mc, params, x, eps_all = _small(n, posterior, likelihood, B=12)
    products = gemm_libraries.step_products(mc, params, x, eps_all[0])
    assert gemm_libraries.flops(products) == step_flops(params, 12, mc.m)
    # a weight gradient h^T g reads the activations transposed; a forward product reads nothing transposed
    assert not products[0]["a_t"] and not products[0]["b_t"]
    assert products[-1]["a_t"] and products[-1]["a"] == (mc.m, 12)
    with pytest.raises(ValueError, match="stack"):
        gemm_libraries.step_products(mc, stack([params, params]), np.stack([x, x]), np.stack([eps_all[0]] * 2))


@pytest.mark.parametrize("library", ["torch", "jax"])
def test_each_library_computes_the_same_products_with_their_layouts(library):
    if not has(library):
        pytest.skip(f"{library} is not importable (optional: the bench extra)")
    mc, params, x, eps_all = _small(2, "learned", B=20)
    products = gemm_libraries.step_products(mc, params, x, eps_all[0])
    pairs = gemm_libraries.operands(products)
    ref = [a.astype(np.float64) @ b.astype(np.float64) for a, b in pairs]  # float64 reference, layouts aside
    for got, want in zip(gemm_libraries.runner(library, pairs)(), ref):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=TOL["f32_vs_f64"], atol=TOL["f32_gemm_abs"])
    assert gemm_libraries.products_ms(library, products, reps=1, repeats=1) > 0


def test_library_of_peers_and_unknown_names():
    assert [gemm_libraries.library_of(p) for p in ("ours-numpy", "torch-graph", "jax-vmap")] == [
        "numpy",
        "torch",
        "jax",
    ]
    with pytest.raises(ValueError, match="library"):
        gemm_libraries.library_of("tensorflow")
    with pytest.raises(ValueError, match="library"):
        gemm_libraries.runner("mkl", [])
