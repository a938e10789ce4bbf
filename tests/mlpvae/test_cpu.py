"""mlpvae.accel.cpu: the Numba kernels of the CPU step equal the NumPy reference bit for bit (Sec. 7).

The kernels are an optional accelerated path; every test compares them with
the plain NumPy code (``VAETHEORY_FUSED=0``) on the same inputs, special
values (NaN, infinities, signed zeros, logits of +-100) included, at one and
two threads, above and below the size where they split across threads.
"""

import os

import numpy as np
import pytest

from mlpvae.accel import cpu
from mlpvae.experiments.bench_timing import our_stepper, problem
from mlpvae.nn import adam, layers, likelihoods, model
from mlpvae.nn.stacking import stack

needs_numba = pytest.mark.skipif(
    not cpu.available(), reason="numba is not importable; the accelerated CPU path is optional (pip install numba)"
)
SHAPES = [(7, 13), (300, 200), (2, 150, 250)]  # small, above PARALLEL_MIN, a stack of two models


def _same(a, b):
    return (
        a.shape == b.shape
        and a.dtype == b.dtype
        and np.array_equal(a, b, equal_nan=True)
        and np.array_equal(np.signbit(a), np.signbit(b))
    )


def _both(monkeypatch, fn):
    with np.errstate(all="ignore"):  # the special values make NumPy warn; the model runs under the same errstate
        monkeypatch.setenv("VAETHEORY_FUSED", "0")
        ref = fn()
        monkeypatch.setenv("VAETHEORY_FUSED", "1")
        return ref, fn()


def _data(shape, dtype, seed, special=True):
    a = np.random.default_rng(seed).standard_normal(shape).astype(dtype) * 3
    if special:
        flat = a.reshape(-1)
        flat[:6] = [np.nan, np.inf, -np.inf, -0.0, 0.0, 100.0]
        flat[-1] = -100.0
    return a


@pytest.fixture(params=["1", "2"], ids=["1thread", "2threads"])
def threads(request, monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", request.param)
    return int(request.param)


def test_disabled_without_the_switch_or_off_numpy(monkeypatch):
    monkeypatch.setenv("VAETHEORY_FUSED", "0")
    assert not cpu.enabled(np)
    monkeypatch.setenv("VAETHEORY_FUSED", "1")
    assert cpu.enabled(np) == cpu.available()
    assert not cpu.enabled(object())


@needs_numba
def test_parallel_kernels_run_on_the_workqueue_layer_not_openmp(monkeypatch):
    # libgomp's spinning threads take the cores from OpenBLAS's: with two BLAS threads the whole step ran
    # more than ten times slower on the OpenMP layer (docs/peers.md). A user's own choice is kept.
    import subprocess
    import sys

    code = (
        "import os, numpy as np, numba; from mlpvae.accel import cpu; assert cpu.available();"
        "a = np.random.default_rng(0).standard_normal((1, 256, 256)).astype(np.float32);"
        "cpu.bias_relu_(a, np.zeros((1, 256), np.float32)); print(numba.threading_layer())"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    env.update(VAETHEORY_CPU_THREADS="2", NUMBA_NUM_THREADS="2")
    run = lambda e: subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, check=True)
    assert run(env).stdout.split()[-1] == "workqueue"
    assert run({**env, "NUMBA_THREADING_LAYER": "omp"}).stdout.split()[-1] == "omp"


@needs_numba
def test_kernel_threads_follow_blas_or_their_own_setting(monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("VAETHEORY_CPU_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu.threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "4096")
    import numba

    assert cpu.threads() == numba.config.NUMBA_NUM_THREADS  # never more than Numba's pool
    monkeypatch.setenv("VAETHEORY_CPU_THREADS", "1")
    assert cpu.threads() == 1


@needs_numba
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bernoulli_kernel_equals_numpy_bit_for_bit(monkeypatch, threads, shape, dtype):
    logits, x = _data(shape, dtype, 1), np.abs(_data(shape, dtype, 2, special=False)) % 1
    ref, got = _both(monkeypatch, lambda: likelihoods.bernoulli(logits, x, -1.0 / 300))
    assert cpu.threads() == threads
    assert _same(ref[0], got[0]) and _same(ref[1], got[1])
    ref, got = _both(monkeypatch, lambda: likelihoods.bernoulli(logits, x))
    assert _same(ref[0], got[0]) and got[1] is None


@needs_numba
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_kernels_equal_numpy_bit_for_bit(monkeypatch, threads, shape, dtype):
    g, h = _data(shape, dtype, 3), _data(shape, dtype, 4)
    ref, got = _both(monkeypatch, lambda: layers.relu_backward_(g.copy(), h))
    assert _same(ref, got)
    a, b = _data(shape, dtype, 5), _data(shape[:-2] + shape[-1:], dtype, 6, special=False)
    with np.errstate(all="ignore"):
        assert _same(layers.relu_(a + b[..., None, :]), cpu.bias_relu_(a.copy(), b))


@needs_numba
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_kernel_equals_numpy_bit_for_bit(monkeypatch, threads, shape, dtype):
    rng = np.random.default_rng(7)

    def run():
        p = {"w": rng.standard_normal(shape).astype(dtype)}
        opt = adam.Adam(p, lr=3e-3)
        for _ in range(4):
            opt.step(p, {"w": rng.standard_normal(shape).astype(dtype)})
        return p["w"], opt.m["w"], opt.v["w"]

    state = rng.bit_generator.state
    monkeypatch.setenv("VAETHEORY_FUSED", "0")
    ref = run()
    rng.bit_generator.state = state
    monkeypatch.setenv("VAETHEORY_FUSED", "1")
    got = run()
    assert all(_same(r, g) for r, g in zip(ref, got))


@needs_numba
@pytest.mark.parametrize("posterior", model.POSTERIORS)
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_training_steps_equal_numpy_bit_for_bit_eq1_eq2_eq24(monkeypatch, threads, posterior, likelihood):
    # Three whole steps (loss, hand-written gradients, Adam), a lone model and a stack of two.
    def run():
        mc, params, x, eps = problem(np, 2, posterior, 40, 3, 0, likelihood)
        _, p2, x2, e2 = problem(np, 2, posterior, 40, 3, 1, likelihood)
        out = []
        for args in ((params, x, eps), (stack([params, p2]), np.stack([x, x2]), np.stack([eps, e2], axis=1))):
            st = our_stepper(np, mc, *args)
            for _ in range(3):
                st()
            out.append(({k: v.copy() for k, v in st.params.items()}, st.total.copy()))
        return out

    ref, got = _both(monkeypatch, run)
    for (p_ref, t_ref), (p_got, t_got) in zip(ref, got):
        assert _same(t_ref, t_got)
        assert all(_same(p_ref[k], p_got[k]) for k in p_ref)


@needs_numba
def test_the_serial_and_parallel_variants_keep_their_own_cache_entries(tmp_path):
    # Numba's disk cache keys a kernel by name, source line and signature, not by ``parallel``: with one function
    # under both variants, a process loaded whichever variant an earlier process compiled first, for both
    # (numba/numba#6845). Then the "serial" kernel was the parallel one, and two threads calling it at once (as
    # mlpvae.nn.model.BatchSplit's do) aborted the process; or the "parallel" one was serial. Each order of first
    # compilation, then a second process reading that cache.
    import subprocess
    import sys

    head = (
        "import threading, numpy as np, numba; from mlpvae.accel import cpu; cpu.available(); ks = cpu._build();"
        "a = np.ones((1, 256, 256), np.float32); b = np.zeros((1, 256), np.float32);"
    )
    parallel_first = head + "ks['bias_relu'](a, b); ks['bias_relu_serial'](a, b)"
    serial_first = head + "ks['bias_relu_serial'](a, b); ks['bias_relu'](a, b)"
    check = head + (
        "run = lambda: [ks['bias_relu_serial'](np.ones((1, 256, 256), np.float32), b) for _ in range(200)];"
        "ts = [threading.Thread(target=run) for _ in range(2)]; [t.start() for t in ts]; [t.join() for t in ts];"
        "ks['bias_relu'](a, b); print(numba.threading_layer())"
    )
    for name, first in (("parallel-first", parallel_first), ("serial-first", serial_first)):
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
        env.update(NUMBA_CACHE_DIR=str(tmp_path / name), NUMBA_NUM_THREADS="2", VAETHEORY_CPU_THREADS="2")
        subprocess.run([sys.executable, "-c", first], env=env, check=True, capture_output=True)
        got = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True)
        assert got.returncode == 0, (name, got.stderr[-2000:])
        assert got.stdout.split()[-1] == "workqueue", name  # the parallel variant ran on the thread pool
