"""The matrix products of our training step, timed in each peer's own library (Sec. 7; ``vaetheory bench train``).

The per-phase profile (:mod:`mlpvae.experiments.bench_profile`) says how much of
our step is spent in matrix products; this module says how fast the same
products run in the library a peer multiplies with, so a peer's lead can be
split into the part its GEMM library gives and the part its fusion and
compilation give.  :func:`step_products` records every product of one of our
loss-and-gradient evaluations (shapes, and which operand is a transposed view,
as the backward passes them); :func:`products_ms` replays that list in NumPy
(our OpenBLAS), PyTorch (``torch.matmul``: MKL or oneDNN on the CPU) or JAX
(one ``jax.jit`` function of every product, the XLA CPU dot) and returns the
best milliseconds per step over repeats.  Each peer's worker process calls it
at its own thread count (:mod:`mlpvae.experiments.peer_worker`, ``gemms``).
"""

from __future__ import annotations

import numpy as np

from mlpvae.accel import gemm
from mlpvae.experiments.bench_profile import best_ms
from mlpvae.nn import model

LIBRARIES = ("numpy", "torch", "jax")


def step_products(mc, params, x, eps) -> list[dict]:
    """Every matrix product of one loss-and-gradient evaluation of ours, in order (Not in the paper).

    Each is ``{"a": (M, K), "b": (K, N), "a_t": bool, "b_t": bool}``: ``a @ b``
    with ``a_t`` (``b_t``) true where that operand is a transposed view of a
    C-contiguous matrix (unit stride on its first axis), as in
    :func:`mlpvae.nn.layers.dense_backward`.  One model (2-D operands) only.
    """
    seen: list[dict] = []
    inner = gemm.matmul

    def record(a, b, *args, **kw):
        if a.ndim != 2 or b.ndim != 2:
            raise ValueError("step_products records one model's 2-D products; got a stack")
        seen.append(
            {
                "a": tuple(a.shape),
                "b": tuple(b.shape),
                "a_t": bool(a.strides[-1] != a.itemsize),
                "b_t": bool(b.strides[-1] != b.itemsize),
            }
        )
        return inner(a, b, *args, **kw)

    gemm.matmul = record
    try:
        model.loss_and_grads({k: v.copy() for k, v in params.items()}, x, eps, mc, grads={})
    finally:
        gemm.matmul = inner
    return seen


def operands(products: list[dict], seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Float32 NumPy operands of ``products`` with their layouts: a transposed operand is the ``.T`` of a
    C-contiguous array (Not in the paper)."""
    rng = np.random.default_rng(seed)

    def one(shape, t):
        if t:
            return rng.standard_normal(shape[::-1], dtype=np.float32).T
        return rng.standard_normal(shape, dtype=np.float32)

    return [(one(p["a"], p["a_t"]), one(p["b"], p["b_t"])) for p in products]


def flops(products: list[dict]) -> int:
    """Multiply-add FLOPs of the products, ``2 M K N`` each (Not in the paper)."""
    return sum(2 * p["a"][0] * p["a"][1] * p["b"][1] for p in products)


def _numpy(pairs):
    outs = [np.empty((a.shape[0], b.shape[1]), dtype=np.float32) for a, b in pairs]

    def run():
        for (a, b), o in zip(pairs, outs):
            np.matmul(a, b, out=o)
        return outs

    return run


def _torch(pairs):
    import torch

    tp = [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in pairs]  # the same strides: views stay views
    outs = [torch.empty(a.shape[0], b.shape[1]) for a, b in tp]

    def timed():
        for (a, b), o in zip(tp, outs):
            torch.matmul(a, b, out=o)

    def run():
        timed()
        return [o.numpy() for o in outs]

    run.timed = timed
    return run


def _jax(pairs):
    import jax
    import jax.numpy as jnp

    # the transposed operands enter as their C-contiguous storage and are transposed inside the graph, as a
    # compiled step's backward transposes its activations
    store = [(np.ascontiguousarray(a.T) if not a.flags.c_contiguous else a,
              np.ascontiguousarray(b.T) if not b.flags.c_contiguous else b) for a, b in pairs]  # fmt: skip
    flags = [(not a.flags.c_contiguous, not b.flags.c_contiguous) for a, b in pairs]
    dev = [(jnp.asarray(a), jnp.asarray(b)) for a, b in store]

    @jax.jit
    def all_products(ops):
        return [(a.T if ta else a) @ (b.T if tb else b) for (a, b), (ta, tb) in zip(ops, flags)]

    def run():
        outs = all_products(dev)
        jax.block_until_ready(outs)
        return [np.asarray(o) for o in outs]

    run.timed = lambda: jax.block_until_ready(all_products(dev))
    return run


def runner(library: str, pairs):
    """A closure computing every product of ``pairs`` in ``library`` and returning them as NumPy arrays; its
    ``timed`` attribute (where present) computes them without the copy back (Not in the paper)."""
    if library not in LIBRARIES:
        raise ValueError(f"library must be one of {LIBRARIES}, got {library!r}")
    return {"numpy": _numpy, "torch": _torch, "jax": _jax}[library](pairs)


def products_ms(library: str, products: list[dict], reps: int = 20, repeats: int = 3) -> float:
    """Best-of-``repeats`` milliseconds per step of ``reps`` passes over the step's products in ``library``
    (Not in the paper)."""
    run = runner(library, operands(products))
    call = getattr(run, "timed", run)
    call()  # compiles (JAX) and warms the library's buffers
    return best_ms(lambda i: call(), reps, repeats)


def library_of(peer: str) -> str:
    """The library a peer multiplies with: ``numpy`` for ours, ``torch`` or ``jax`` (Not in the paper)."""
    if peer.startswith("ours"):
        return "numpy"
    if peer.startswith("torch"):
        return "torch"
    if peer.startswith("jax"):
        return "jax"
    raise ValueError(f"no library known for peer {peer!r}")
