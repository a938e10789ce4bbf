"""Where our training step's time goes: a per-phase profile for ``vaetheory bench train`` (Sec. 7).

The phases, each in milliseconds per step, measured in the calling process at
its thread count:

* ``step``: the whole step as the trainer runs it (loss, gradients, running
  total, Adam);
* ``gemm``: the matrix products inside the loss and gradients (every call of
  :func:`mlpvae.accel.gemm.matmul` timed);
* ``adam``: the optimiser's update alone;
* ``python``: the interpreter's and the array library's fixed cost per step,
  read as the loss, gradients and Adam of a tiny model with the same layers,
  posterior and likelihood (``m = 8``, ``hidden = 4``, ``n = 2``, batch 2): the
  same sequence of calls on arrays too small for their size to matter;
* ``elementwise``: the rest of the loss and gradients (activations, the
  likelihood and KL chains, bias-gradient sums, copies), i.e. loss and
  gradients minus ``gemm`` minus the tiny model's loss and gradients;
* ``batch_gather``: what the trainer does before each step outside it, the
  gather of the batch's rows from a 60,000-row training set and the noise draw.

Each figure is the best of three repeats of ``reps`` calls.
"""

from __future__ import annotations

import time

import numpy as np

from mlpvae.accel import gemm
from mlpvae.experiments.bench_timing import our_stepper
from mlpvae.nn import adam, model


def best_ms(fn, reps: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` milliseconds per call of ``reps`` calls ``fn(i)`` (Not in the paper)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(reps):
            fn(i)
        best = min(best, (time.perf_counter() - t) / reps)
    return 1e3 * best


def _loss_adam(mc, params, x, eps_all):
    p = {k: v.copy() for k, v in params.items()}
    grads: dict = {}
    opt = adam.Adam(p, lr=1e-3)
    model.loss_and_grads(p, x, eps_all[0], mc, grads=grads)

    def loss(i):
        model.loss_and_grads(p, x, eps_all[i % len(eps_all)], mc, grads=grads)

    def update(i):
        opt.step(p, grads)

    return loss, update


def gemm_ms(mc, params, x, eps_all, reps: int) -> float:
    """Milliseconds per step spent in the loss's and gradients' matrix products (Not in the paper)."""
    loss, _ = _loss_adam(mc, params, x, eps_all)
    spent = [0.0]
    inner = gemm.matmul

    def timed_matmul(*a, **kw):
        t = time.perf_counter()
        r = inner(*a, **kw)
        spent[0] += time.perf_counter() - t
        return r

    best = float("inf")
    gemm.matmul = timed_matmul
    try:
        for _ in range(3):
            spent[0] = 0.0
            for i in range(reps):
                loss(i)
            best = min(best, spent[0] / reps)
    finally:
        gemm.matmul = inner
    return 1e3 * best


def profile(mc, params, x, eps_all, reps: int = 20, train_rows: int = 60000, seed: int = 0) -> dict:
    """The per-phase profile of our step on this problem (see the module docstring; Not in the paper)."""
    B = x.shape[-2]
    step = our_stepper(np, mc, params, x, eps_all)
    for _ in range(3):
        step()
    loss, update = _loss_adam(mc, params, x, eps_all)
    tiny = model.ModelConfig(
        m=8,
        n=2,
        hidden=4,
        layers=mc.layers,
        posterior=mc.posterior,
        likelihood=mc.likelihood,
        sigma2=mc.sigma2,
        t=mc.t,
        tau=mc.tau,
        latent_scale=mc.latent_scale,
    )
    rng = np.random.default_rng(seed)
    tp = model.init_params(tiny, rng, dtype=x.dtype)
    t_loss, t_update = _loss_adam(
        tiny, tp, rng.random((2, 8), dtype=x.dtype), rng.standard_normal((4, 2, 2), dtype=x.dtype)
    )
    rows = rng.random((train_rows, mc.m), dtype=x.dtype)
    perm = rng.permutation(train_rows)
    xb = np.empty((B, mc.m), dtype=x.dtype)
    eps = np.empty((B, mc.n), dtype=x.dtype)

    def gather(i):
        np.take(rows, perm[(i * B) % (train_rows - B) :][:B], axis=0, out=xb)
        rng.standard_normal(out=eps, dtype=eps.dtype)

    out = {
        "step": best_ms(lambda i: step(), reps),
        "loss_and_grads": best_ms(loss, reps),
        "gemm": gemm_ms(mc, params, x, eps_all, reps),
        "adam": best_ms(update, reps),
        "python": best_ms(t_loss, reps) + best_ms(t_update, reps),
        "batch_gather": best_ms(gather, reps),
    }
    out["elementwise"] = max(0.0, out["loss_and_grads"] - out["gemm"] - best_ms(t_loss, reps))
    out["adam_beyond_python"] = max(0.0, out["adam"] - best_ms(t_update, reps))
    out["reps"] = reps
    return out
