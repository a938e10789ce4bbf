"""Fused, multithreaded element-wise kernels for the CPU step (Sec. 7 model; Numba, optional).

On the CPU each NumPy operation of a chain is one pass over memory on one
thread.  With Numba installed (the ``accel`` extra) the chains below run as
one pass each, split across threads, with the same float32 operations in the
same order as the NumPy code they replace, so the results are bit for bit the
NumPy reference's (tested):

* :func:`adam_`: the whole Adam update of one tensor (:class:`mlpvae.nn.adam.Adam`);
* :func:`bias_relu_`: ``relu(a + b)`` in place, the hidden layers' forward
  (:func:`mlpvae.nn.layers.trunk_forward`);
* :func:`relu_backward_`: ``g *= h > 0`` (:func:`mlpvae.nn.layers.relu_backward_`);
* :func:`bernoulli`: the Bernoulli log-likelihood and its gradient
  (:func:`mlpvae.nn.likelihoods.bernoulli`): NumPy's own ``exp`` and ``log1p``
  (split across threads, :func:`ufunc_`), the arithmetic between them fused.

The kernels use as many threads as BLAS is given (``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS``, else every core), at most ``NUMBA_NUM_THREADS``;
``VAETHEORY_CPU_THREADS`` sets their count apart from BLAS's (e.g. 1, to
compare with BLAS's threads left alone on the cores).  Without
Numba, or with ``VAETHEORY_FUSED=0``, the plain NumPy code runs.
"""

from __future__ import annotations

import contextlib
import os
import threading
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_KERNELS: dict = {}
_LOCAL = threading.local()  # serial(): this thread's kernels on one thread
PARALLEL_MIN = 1 << 15  # below this many elements one thread is faster than waking the pool


def available() -> bool:
    """Whether Numba can be imported (Not in the paper)."""
    if "numba" not in _KERNELS:
        try:
            import numba

            if not os.environ.get("NUMBA_THREADING_LAYER"):
                # Numba's OpenMP layer (libgomp) keeps its threads spinning after each kernel, on the cores
                # OpenBLAS's own threads then need for the next GEMM: with more than one BLAS thread the step
                # becomes an order of magnitude slower (docs/peers.md). The workqueue layer's threads sleep.
                numba.config.THREADING_LAYER = "workqueue"
            _KERNELS["numba"] = True
        except ImportError:
            _KERNELS["numba"] = False
    return _KERNELS["numba"]


def enabled(xp) -> bool:
    """Whether the Numba kernels serve ``xp``: NumPy with Numba importable, unless ``VAETHEORY_FUSED=0``
    (Not in the paper)."""
    return xp is np and os.environ.get("VAETHEORY_FUSED", "1") != "0" and available()


def threads() -> int:
    """The kernels' thread count (Not in the paper): ``VAETHEORY_CPU_THREADS`` when set, else BLAS's from the
    environment, at most Numba's pool."""
    import numba

    if getattr(_LOCAL, "serial", False):
        return 1
    own = os.environ.get("VAETHEORY_CPU_THREADS", "").strip()
    if own.isdigit() and int(own) > 0:
        return min(int(own), numba.config.NUMBA_NUM_THREADS)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        v = os.environ.get(var, "").split(",")[0].strip()
        if v.isdigit() and int(v) > 0:
            return min(int(v), numba.config.NUMBA_NUM_THREADS)
    return numba.config.NUMBA_NUM_THREADS


@contextlib.contextmanager
def serial():
    """Inside the block, this thread's kernels run on one thread (Not in the paper).

    For callers that already split the work across Python threads
    (:class:`mlpvae.nn.model.BatchSplit`): each keeps its kernels to itself, and
    no two threads call into the parallel pool at once (Numba's workqueue layer
    does not allow that).
    """
    before = getattr(_LOCAL, "serial", False)
    _LOCAL.serial = True
    try:
        yield
    finally:
        _LOCAL.serial = before


def _build():
    import numba
    from numba import prange

    opts = dict(cache=True, fastmath=False, nogil=True, error_model="numpy")

    def adam(p, g, m, v, b1, omb1, b2, omb2, eps, c2, lr_c1):
        for i in prange(p.size):
            gi = g[i]
            mi = m[i] * b1 + gi * omb1
            vi = v[i] * b2 + (gi * gi) * omb2
            m[i] = mi
            v[i] = vi
            p[i] -= (mi / (np.sqrt(vi / c2) + eps)) * lr_c1

    def bias_relu(a, b):
        for k in range(a.shape[0]):
            for r in prange(a.shape[1]):
                for j in range(a.shape[2]):
                    s = a[k, r, j] + b[k, j]
                    a[k, r, j] = s if (s > 0 or s != s) else 0

    def neg_abs(a, out):
        for i in prange(a.size):
            out[i] = -abs(a[i])

    def bernoulli_mid(l, x, sp, t, zero):
        for i in prange(l.size):
            li = l[i]
            s = sp[i] + (li if (li > 0 or li != li) else zero)  # a typed zero: an int would promote to float64
            ti = x[i] * li
            t[i] = ti - s
            sp[i] = li - s

    def bernoulli_grad(d, x, nscale):
        for i in prange(d.size):
            d[i] = (d[i] - x[i]) * nscale

    def relu_grad(g, h):
        for i in prange(g.size):
            g[i] = g[i] * (1 if h[i] > 0 else 0)

    out = {}
    kernels = (("adam", adam), ("bias_relu", bias_relu), ("relu_grad", relu_grad), ("neg_abs", neg_abs))
    for name, fn in kernels + (("bernoulli_mid", bernoulli_mid), ("bernoulli_grad", bernoulli_grad)):
        out[name] = numba.njit(parallel=True, **opts)(_named(fn, "_parallel"))
        out[name + "_serial"] = numba.njit(parallel=False, **opts)(_named(fn, "_serial"))
    _KERNELS["built"] = out
    return out


def _named(fn, suffix: str):
    """``fn`` under a name of its own: Numba's on-disk cache keys a kernel by its qualified name, source line and
    signature, not by ``parallel``, so the two variants of one function would share one entry and a process
    would load whichever was compiled first for both (numba/numba#6845)."""
    g = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    g.__qualname__ = fn.__qualname__ + suffix
    return g


def _kernel(name: str, size: int):
    import numba

    ks = _KERNELS.get("built") or _build()
    t = threads()
    if size < PARALLEL_MIN or t == 1:
        return ks[name + "_serial"]
    if numba.get_num_threads() != t:
        numba.set_num_threads(t)
    return ks[name]


def adam_(p, g, m, v, b1: float, b2: float, eps: float, lr_c1: float, c2: float) -> None:
    """One Adam update of ``p``, ``m``, ``v`` in place (Kingma & Ba, Algorithm 1; Sec. 7), one pass.

    Contiguous arrays of one float dtype; the scalars are rounded to it as NumPy
    rounds a Python float beside a float32 array, so the update is the NumPy
    reference's bit for bit: ``lr_c1 = lr / (1 - beta1^t)``, ``c2 = 1 - beta2^t``.
    """
    T = p.dtype.type
    k = _kernel("adam", p.size)
    k(
        p.reshape(-1),
        g.reshape(-1),
        m.reshape(-1),
        v.reshape(-1),
        T(b1),
        T(1.0 - b1),
        T(b2),
        T(1.0 - b2),
        T(eps),
        T(c2),
        T(lr_c1),
    )


def bias_relu_(a, b):
    """``a = relu(a + b)`` in place, ``b`` broadcast over the batch axis -2 (Sec. 7 hidden layers); returns ``a``.

    ``a ([K,] B, F)`` C-contiguous, ``b ([K,] F)``.  A NaN stays NaN, as with
    ``numpy.maximum``.
    """
    a3 = a.reshape((-1,) + a.shape[-2:])
    _kernel("bias_relu", a.size)(a3, b.reshape(a3.shape[0], -1))
    return a


def ufunc_(f, a):
    """``f(a, out=a)`` for a NumPy ufunc ``f``, the array split in contiguous chunks across the threads
    (element-wise, so bit for bit one call's result) (Not in the paper)."""
    flat = a.reshape(-1)
    t = threads()
    if t == 1 or flat.size < PARALLEL_MIN:
        f(flat, out=flat)
        return a
    pool = _KERNELS.get("pool")
    if pool is None or pool._max_workers != t:
        pool = _KERNELS["pool"] = ThreadPoolExecutor(max_workers=t)
    edges = [flat.size * i // t for i in range(t + 1)]
    parts = [flat[edges[i] : edges[i + 1]] for i in range(t)]
    for r in list(pool.map(lambda c: f(c, out=c), parts)):
        del r
    return a


def bernoulli(logits, x, scale=None):
    """Bernoulli log-likelihood per example and its gradient w.r.t. the logits (Sec. 7), in seven passes.

    The chain of :func:`mlpvae.nn.likelihoods.bernoulli` with the same float32
    operations in the same order: NumPy's ``exp``, ``log1p`` and row sums (split
    across threads where element-wise), the arithmetic between them fused.
    Returns ``(logp (..., B), d or None)``, ``d`` the gradient of ``scale * sum log p``.
    C-contiguous ``logits`` and ``x`` of one shape.
    """
    n = logits.size
    flat_l, flat_x = logits.reshape(-1), x.reshape(-1)
    sp = np.empty_like(logits)
    t = np.empty_like(logits)
    flat_sp, flat_t = sp.reshape(-1), t.reshape(-1)
    _kernel("neg_abs", n)(flat_l, flat_sp)
    ufunc_(np.exp, sp)
    ufunc_(np.log1p, sp)
    _kernel("bernoulli_mid", n)(
        flat_l, flat_x, flat_sp, flat_t, logits.dtype.type(0)
    )  # t = x l - softplus(l); sp = l - softplus(l)
    logp = t.sum(axis=-1)
    if scale is None:
        return logp, None
    ufunc_(np.exp, sp)
    _kernel("bernoulli_grad", n)(flat_sp, flat_x, logits.dtype.type(-scale))
    return logp, sp


def relu_backward_(g, h):
    """``g *= (h > 0)`` in place, one pass (backward of ReLU given its output ``h``); returns ``g``."""
    _kernel("relu_grad", g.size)(g.reshape(-1), h.reshape(-1))
    return g
