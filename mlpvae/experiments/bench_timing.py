"""Timing primitives of ``vaetheory bench train``: GEMM rate, BLAS threads, our step, interleaved blocks.

:func:`gemm_rate` measures the machine's matrix-multiply rate;
:func:`our_stepper` builds one of our training steps (the trainer's
:class:`mlpvae.training.step.TrainingStep`: forward, hand-written backward,
Adam; on CuPy, fused kernels replayed as one CUDA graph) on a random problem
(:func:`problem`); :func:`interleaved` times several steppers in blocks taken in
turn, so a change in machine load hits each alike; :func:`time_stack` times K
models as one stack against one by one.  Every GPU timing is taken
after a device synchronisation.
"""

from __future__ import annotations

import os
import time

import numpy as np

from mlpvae.accel import device as dev
from mlpvae.evidence.iwae import iwae_log_px
from mlpvae.nn import adam, model
from mlpvae.nn.batched import elbo_mean
from mlpvae.nn.stacking import stack
from mlpvae.training.step import TrainingStep
from mlpvae.training.streams import STREAM_TEST, generator


def gemm_rate(xp, size: int, dtype=np.float32, repeats: int = 3, shape=None) -> float:
    """Best-of-``repeats`` FLOP/s of ``A @ B`` in ``dtype`` (Not in the paper).

    The product is square of side ``size``, or ``shape = (M, K, N)``.
    """
    M, K, N = shape or (size, size, size)
    rng = np.random.default_rng(0)
    A = xp.asarray(rng.standard_normal((M, K)).astype(dtype))
    Bm = xp.asarray(rng.standard_normal((K, N)).astype(dtype))
    out = xp.empty((M, N), dtype=dtype)
    xp.matmul(A, Bm, out=out)
    dev.synchronize(xp)
    inner = max(1, int(2e9 // (2 * M * K * N)))  # ~2 GFLOP per timing, so small shapes are timed reliably
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            xp.matmul(A, Bm, out=out)
        dev.synchronize(xp)
        best = min(best, (time.perf_counter() - t) / inner)
    return 2 * M * K * N / best


def blas_threads() -> int:
    """The BLAS thread count our NumPy side uses, read as OpenBLAS does from the environment (Not in the paper).

    ``OPENBLAS_NUM_THREADS``, then ``OMP_NUM_THREADS``, then ``MKL_NUM_THREADS``;
    with none set, every core (``os.cpu_count()``).
    """
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        v = os.environ.get(var, "").split(",")[0].strip()
        if v.isdigit() and int(v) > 0:
            return int(v)
    return os.cpu_count() or 1


def step_flops(params, B: int, m: int) -> int:
    """Matrix-multiply FLOPs of one training step of batch ``B`` (Not in the paper).

    Forward + backward, counted from the weight shapes (see :mod:`mlpvae.experiments.bench`'s docstring).
    """
    total = 0
    for name, W in params.items():
        if "_W" not in name:  # biases; a stack's are (K, fan_out)
            continue
        fi, fo = W.shape[-2:]
        per_model = int(np.prod(W.shape[:-2]))
        per = 2 * B * fi * fo * per_model
        total += 3 * per if fi != m else 2 * per  # forward, dW, dh (no dh for the data input)
    return total


def problem(xp, n: int, posterior: str, B: int, count: int, seed: int, likelihood: str = "bernoulli"):
    """A random problem from ``seed``: config, float32 parameters, data and noise (Not in the paper).

    The parameters are the model's initial ones (NumPy), the data ``x (B, m)``
    uniform, the noise ``(count, B, n)`` standard normal.
    """
    mc = model.ModelConfig(n=n, posterior=posterior, likelihood=likelihood)
    rng = np.random.default_rng(seed)
    params = model.init_params(mc, rng, dtype=np.float32)
    x = rng.random((B, mc.m), dtype=np.float32)
    eps_all = rng.standard_normal((count, B, n), dtype=np.float32)
    return mc, params, x, eps_all


def our_stepper(xp, mc, params, x, eps_all):
    """A closure doing one of our training steps (forward, hand-written backward, Adam) per call (Not in the paper).

    The parameters are copied; the closure's ``params`` attribute holds the copies it updates, its
    ``total`` the running sum of the losses (a float64 0-d array).  Call ``k`` uses the noise
    ``eps_all[k % len(eps_all)]``.
    """
    params = {k: xp.asarray(v.copy()) for k, v in params.items()}
    x, eps_all = xp.asarray(x), xp.asarray(eps_all)
    opt = adam.Adam(params, lr=1e-3)
    eps = xp.empty_like(eps_all[0])
    # the trainer's step (a CUDA graph on CuPy); the noise is copied in before it, as the trainer draws it
    one = TrainingStep(xp, params, opt, mc, x, eps, xp.zeros(x.shape[:-2], dtype=xp.float64))
    count = [0]

    def step():
        eps[...] = eps_all[count[0] % len(eps_all)]
        one()
        count[0] += 1

    step.params = params
    step.total = one.total
    return step


def _seconds_per_step(step, sync, count: int) -> float:
    """Mean seconds of ``count`` calls of ``step``, between two ``sync()`` calls."""
    sync()
    t = time.perf_counter()
    for _ in range(count):
        step()
    sync()
    return (time.perf_counter() - t) / count


def back_to_back_ms(step, rounds: int, steps: int, warmup: int = 5) -> float:
    """Minimum milliseconds per call of ``step`` over ``rounds`` blocks of ``steps`` calls run back to back, after
    ``warmup`` untimed calls (NumPy: no device to synchronise) (Not in the paper)."""
    for _ in range(warmup):
        step()
    return min(_seconds_per_step(step, lambda: None, steps) for _ in range(rounds)) * 1e3


def interleaved(runners: dict, steps: int, warmup: int, rounds: int) -> dict:
    """Milliseconds per call of each ``name -> (step, sync)``, one list of blocks each (Not in the paper).

    After ``warmup`` untimed calls each, ``steps`` calls each are timed in
    ``rounds`` blocks taken in turn.
    """
    for step, _sync in runners.values():
        for _ in range(warmup):
            step()
    rounds = max(1, min(rounds, steps))
    per = max(1, steps // rounds)
    blocks: dict = {k: [] for k in runners}
    for _ in range(rounds):
        for k, (step, sync) in runners.items():
            blocks[k].append(1e3 * _seconds_per_step(step, sync, per))
    return blocks


def models_apart(on: bool, step) -> None:
    """One call of ``step``, its stack computed one model at a time when ``on`` (Not in the paper).

    What a CUDA graph captures stays as captured.
    """
    with model.models_apart(on):
        step()


def time_stack(
    xp,
    n: int,
    posterior: str,
    K: int,
    B: int = 300,
    steps: int = 30,
    warmup: int = 5,
    rounds: int = 3,
    likelihood: str = "bernoulli",
) -> dict:
    """K models' training steps as one stack (:func:`mlpvae.training.train.train_many`) vs one by one (Sec. 7).

    The K models start from seeds 0..K-1 and see their own data and noise;
    blocks of stacked steps and of K single steps alternate.  ``speedup`` is
    one-by-one time / stacked time for the same K model-steps.  On a GPU a
    third runner times the stack computed one model at a time
    (:func:`mlpvae.nn.model.models_apart`, ``VAETHEORY_STACK_EXACT=1``), which
    computes each model bit for bit as alone: ``apart_ms_per_step``.
    """
    probs = [problem(xp, n, posterior, B, warmup + steps, seed, likelihood) for seed in range(K)]
    mc = probs[0][0]
    singles = [our_stepper(xp, mc, p, x, e) for _, p, x, e in probs]

    def stacked_stepper():
        return our_stepper(
            xp,
            mc,
            stack([p for _, p, _, _ in probs]),
            np.stack([x for _, _, x, _ in probs]),
            np.stack([e for *_, e in probs], axis=1),
        )

    def one_by_one():
        for step in singles:
            step()

    sync = lambda: dev.synchronize(xp)  # noqa: E731
    batched = stacked_stepper()
    runners = {"stack": (lambda: models_apart(False, batched), sync)}
    if xp is not np:  # NumPy's matmul is already each model's own product
        apart = stacked_stepper()
        runners["apart"] = (lambda: models_apart(True, apart), sync)
    runners["one_by_one"] = (one_by_one, sync)
    blocks = interleaved(runners, steps, warmup, rounds)
    ms = {k: float(np.median(v)) for k, v in blocks.items()}
    out = {
        "n": n,
        "posterior": posterior,
        "likelihood": likelihood,
        "models": K,
        "batch": B,
        "stack_ms_per_step": ms["stack"],
        "one_by_one_ms_per_step": ms["one_by_one"],
        "speedup": ms["one_by_one"] / ms["stack"],
        "stack_ms_blocks": blocks["stack"],
        "one_by_one_ms_blocks": blocks["one_by_one"],
    }
    if "apart" in ms:
        out |= {
            "apart_ms_per_step": ms["apart"],
            "apart_speedup": ms["one_by_one"] / ms["apart"],
            "apart_ms_blocks": blocks["apart"],
        }
    return out


def time_eval(
    xp,
    n: int,
    posterior: str = "learned",
    images: int = 10000,
    iwae_k: int = 5000,
    iwae_images: int = 20,
    seed: int = 0,
) -> dict:
    """Wall time of the evaluation of Sec. 7 on ``images`` random images (Sec. 7; IWAE is Not in the paper).

    The single-sample test ELBO (:func:`mlpvae.experiments.evaluate.elbo_mean`, chunks of
    2,000 images) is timed on all ``images``; the IWAE bound with ``iwae_k``
    samples (:func:`mlpvae.evidence.iwae.iwae_log_px`, at most 20,000 (image, sample)
    pairs decoded at once, so memory is bounded whatever k is) on the first
    ``iwae_images`` and extrapolated linearly to ``images`` (its cost is the
    same per image).
    """
    mc, params, _, _ = problem(xp, n, posterior, 1, 1, seed)
    params = {k: xp.asarray(v) for k, v in params.items()}
    x = xp.asarray(np.random.default_rng(seed + 1).random((images, mc.m), dtype=np.float32))
    rng = generator(seed, STREAM_TEST, 0, xp)  # the noise is drawn where the arrays live
    dev.synchronize(xp)
    t = time.perf_counter()
    elbo_mean(params, x, mc, rng)
    dev.synchronize(xp)
    elbo_s = time.perf_counter() - t
    iwae_images = min(iwae_images, images)
    t = time.perf_counter()
    iwae_log_px(params, x[:iwae_images], mc, rng, k=iwae_k)
    dev.synchronize(xp)
    iwae_s = time.perf_counter() - t
    return {
        "n": n,
        "posterior": posterior,
        "images": images,
        "elbo_s": elbo_s,
        "iwae_k": iwae_k,
        "iwae_images_timed": iwae_images,
        "iwae_s_timed": iwae_s,
        "iwae_s_extrapolated": iwae_s * images / iwae_images,
        "iwae_rows_per_chunk": 20000,
    }
