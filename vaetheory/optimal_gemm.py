"""The GEMM fast path of Eqs. (6)-(7) for diagonal Sigma, on NumPy or CuPy arrays.

:mod:`vaetheory.optimal` is the float64 reference and dispatches here when
Sigma is diagonal; the tests compare the two.  Arrays come back in the input's
array type, in float32 when every input is float32, else float64.

The exponent -1/2 sum_k (z_k - mu_ik)^2 / Sigma_ik expands into
[z^2, z] @ [-1/(2 Sigma), mu / Sigma]^T plus a per-posterior constant: one GEMM
with inner dimension 2n; nu = W x is one GEMM per chunk of query points; the
Jacobian is n GEMMs per chunk.  The expanded square loses digits when
|z|^2 / Sigma is huge (far query points, tiny variances): rows whose estimated
log-weight error exceeds ``LOGW_TOL`` are recomputed from the differences
z - mu_i directly, so the log-space behaviour of the direct form is kept.
Every row subtracts its maximum log weight before ``exp``.

Memory is bounded by chunking over the query points M: a chunk holds at most
three (chunk, N) arrays plus its (chunk, m) and (chunk, m, n) outputs; the
default chunk keeps each (chunk, N) array near 32 MiB (NumPy) or 256 MiB
(CuPy); the ``chunk`` keyword overrides.
"""

from __future__ import annotations

import numpy as np

from vaetheory import validate as v
from vaetheory.covariance import posterior_var
from vaetheory.gaussian import LOG_2PI
from vaetheory.numerics import BLOCK_ELEMENTS, chunks
from vaetheory.xp import array_namespace, fused_enabled

# Largest tolerated error, in nats, of a log weight from the expanded-square GEMM
# form (always evaluated in float64: its inner dimension is only 2n); rows above
# it are recomputed directly.  1e-10 keeps the weights well inside the identity
# tolerance (1e-9) of the tests.
LOGW_TOL = 1e-10
# Bound on the elements of one (chunk, N) block on CuPy (float64: 256 MiB).
GPU_BLOCK_ELEMENTS = 1 << 25


def gemm_inputs(z, mu, var, x, chunk):
    """Validated inputs of :func:`gemm_kernel` (Eqs. (6)-(7)), or None when Sigma is full (the reference path).

    Returns ``(xp, z, mu, var (N, n), x, chunk, dtype)``: z, mu, var in
    float64 (the log weights), x in the compute dtype: float32 when every
    array input is float32, float64 otherwise.
    """
    xp = array_namespace(z, mu, var, x)
    dims: dict = {}
    if xp is np:
        if np.ndim(var) == 3 or (np.ndim(var) == 2 and np.shape(var) != np.shape(mu)):
            return None
        mu = v.array("mu", mu, ("N", "n"), dims)
        z = v.array("z", z, ("M", "n"), dims)
        var = posterior_var("var", var, dims).a
    else:
        mu = v.array("mu", mu, ("N", "n"), dims)
        z = v.array("z", z, ("M", "n"), dims)
        var = v.array("var", var, [("N", "n"), ("n",)], dims, positive=True)
        var = xp.broadcast_to(var, (dims["N"], dims["n"]))
    if x is not None:
        x = v.array("x", x, ("N", "m"), dims)
    f32 = np.dtype(np.float32)
    dt = f32 if all(a.dtype == f32 for a in (z, mu, var) + ((x,) if x is not None else ())) else np.dtype(np.float64)
    if chunk is None:
        block = BLOCK_ELEMENTS if xp is np else GPU_BLOCK_ELEMENTS
        chunk = max(1, block // dims["N"])
    chunk = v.scalar("chunk", chunk, positive=True, integer=True)
    f64 = lambda a: xp.ascontiguousarray(a, dtype=np.float64)
    x = None if x is None else xp.ascontiguousarray(x, dtype=dt)
    return xp, f64(z), f64(mu), f64(var), x, chunk, dt


def _direct_log_densities(xp, z, mu, var):
    """log N(z_k; mu_i, diag(Sigma_i)) (r, N) from the differences z_k - mu_i, (rows, N, n) bounded by chunking."""
    N, n = mu.shape
    out = xp.empty((z.shape[0], N), dtype=mu.dtype)
    logdet = xp.log(var).sum(axis=1)
    for sl in chunks(z.shape[0], max(1, BLOCK_ELEMENTS // (N * n))):
        d = z[sl, None, :] - mu[None]
        out[sl] = -0.5 * (n * LOG_2PI + logdet[None] + (d * d / var[None]).sum(axis=-1))
    return out


def log_densities_logspace(xp, z, mu, var):
    """log N(z_k; mu_i, diag(Sigma_i)) (r, N), the weights of Eqs. (6)-(7) up to a row constant, overflow-free.

    For subnormal Sigma (1 / Sigma overflows) or far query points the
    Mahalanobis terms q_i = sum_k (z_k - mu_ik)^2 / Sigma_ik overflow, every
    log density is -inf and the weights of Eq. (6) would be 0 / 0.  Here
    log q_i = logsumexp_k(2 log|z_k - mu_ik| - log Sigma_ik) is finite, and
    each row is returned as -1/2 ((q_i - q_min) + log|Sigma_i|), with
    q_i - q_min = q_min expm1(log q_i - log q_min) (exactly 0 for the
    nearest posterior, +inf where it overflows: a weight of exactly 0).
    Row-wise shifts cancel in the normalisation of Eqs. (6)-(7).  Not in the paper.
    """
    N, n = mu.shape
    out = xp.empty((z.shape[0], N), dtype=mu.dtype)
    log_var = xp.log(var)
    logdet = log_var.sum(axis=1)
    for sl in chunks(z.shape[0], max(1, BLOCK_ELEMENTS // (N * n))):
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            t = 2.0 * xp.log(xp.abs(z[sl, None, :] - mu[None])) - log_var[None]  # log of each term, -inf for 0
            top = t.max(axis=-1, keepdims=True)
            top = xp.where(xp.isfinite(top), top, 0.0)
            log_q = top[..., 0] + xp.log(xp.exp(t - top).sum(axis=-1))  # (rows, N), -inf where q = 0
            log_qmin = log_q.min(axis=1, keepdims=True)
            excess = xp.expm1(log_q - log_qmin)
            # q_min * excess without forming q_min (it may overflow); an exact 0 stays 0.
            diff = xp.where(excess > 0, xp.exp(log_qmin + xp.log(excess)), 0.0)
            diff = xp.where(log_qmin == -np.inf, xp.exp(log_q), diff)  # q_min = 0: the difference is q itself
        out[sl] = -0.5 * (diff + logdet[None])
    return out


_CUPY_KERNELS: dict = {}  # the CuPy kernels of the two helpers below, built on first use


def exp_shifted(xp, logn, top, dt):
    """exp(logn - top) in dtype ``dt``, the unnormalised weights of Eqs. (6)-(7), in as few passes as ``xp`` allows.

    NumPy: the shift in place, then exp written straight into ``dt``; CuPy:
    one fused kernel (read float64, write ``dt``).  Not in the paper.
    """
    if xp is np:
        logn -= top
        return np.exp(logn, out=logn if dt == logn.dtype else np.empty(logn.shape, dtype=dt))
    if not fused_enabled(xp):
        logn -= top
        w = xp.exp(logn, out=logn)
        return w if dt == w.dtype else w.astype(dt)
    if "exp_shifted" not in _CUPY_KERNELS:
        _CUPY_KERNELS["exp_shifted"] = xp.ElementwiseKernel(
            "float64 a, float64 t", "W w", "w = (W)exp(a - t)", "vaetheory_exp_shifted"
        )
    return _CUPY_KERNELS["exp_shifted"](logn, top, xp.empty(logn.shape, dtype=dt))


def weighted_score(xp, zk, ak, bk, w):
    """w_i Sigma_ik^-1 (z_k - mu_ik) = w (z_k a_ik - b_ik), the (chunk, N) factor of Eq. (7)'s k-th column.

    NumPy: three in-place passes; CuPy: one fused kernel, the same operations
    in the same order.  Not in the paper.
    """
    if not fused_enabled(xp):
        G = zk * ak
        G -= bk
        G *= w
        return G
    if "weighted_score" not in _CUPY_KERNELS:
        _CUPY_KERNELS["weighted_score"] = xp.ElementwiseKernel(
            "T zk, T ak, T bk, T w", "T g", "g = (zk * ak - bk) * w", "vaetheory_weighted_score"
        )
    return _CUPY_KERNELS["weighted_score"](zk, ak, bk, w)


def gemm_kernel(xp, z, mu, var, x, chunk, dt, want):
    """Eqs. (6)-(7) for diagonal Sigma as matrix products; ``want`` is "logw", "nu" or "jac".

    Takes the tuple :func:`gemm_inputs` returns, then ``want``.

    ``z, mu, var`` are float64: the log weights are formed in float64 (inner
    dimension 2n, a negligible share of the work); the weights are then cast
    to the compute dtype ``dt`` for the GEMMs with x.  Returns (M, N) log
    weights, (M, m) nu, or (nu (M, m), J (M, m, n)) in ``dt``.
    """
    M, n = z.shape
    with np.errstate(over="ignore"):  # 1 / Sigma overflows for subnormal Sigma: those rows are recomputed
        a = 1.0 / var
    # Centre on the mean posterior so the expanded square works with |z - c|, not |z|.
    c = mu.mean(axis=0)
    muc = mu - c
    b = muc * a
    q = (muc * b).sum(axis=1)
    const = -0.5 * (n * LOG_2PI + xp.log(var).sum(axis=1) + q)
    # The constant rides in the GEMM as a (2n+1)-th row, which saves a pass over the (chunk, N) block.
    coef = xp.ascontiguousarray(xp.concatenate([-0.5 * a, b, const[:, None]], axis=1).T)  # (2n + 1, N)
    ones = xp.ones((min(chunk, M), 1))
    zc = z - c
    # Round-off of the expanded square ~ eps times the largest term that cancels.
    size = 0.5 * (zc * zc) @ a.max(axis=0) + xp.abs(zc) @ xp.abs(b).max(axis=0) + 0.5 * float(q.max())
    exact = (n + 2) * np.finfo(np.float64).eps * size > LOGW_TOL
    # Subnormal Sigma: (z - mu)^2 and 1 / Sigma lose digits or overflow; every row takes the log-space form.
    subnormal = bool((var < np.finfo(np.float64).tiny).any())
    if subnormal:
        exact = xp.ones(M, dtype=bool)
    any_exact = bool(exact.any())
    if want == "logw":
        out = xp.empty((M, mu.shape[0]), dtype=dt)
    else:
        nu = xp.empty((M, x.shape[1]), dtype=dt)
        if want == "jac":
            J = xp.empty((M, x.shape[1], n), dtype=dt)
            a_dt, b_dt, zc_dt = a.astype(dt), b.astype(dt), zc.astype(dt)
    for sl in chunks(M, chunk):
        zk = zc[sl]
        with np.errstate(over="ignore", invalid="ignore"):  # rows that overflow are flagged exact and redone
            logn = xp.concatenate([zk * zk, zk, ones[: len(zk)]], axis=1) @ coef
        rows = xp.nonzero(exact[sl])[0] if any_exact else ()
        if len(rows):
            if subnormal:
                logn[rows] = log_densities_logspace(xp, z[sl][rows], mu, var)
            else:
                with np.errstate(over="ignore"):
                    logn[rows] = _direct_log_densities(xp, z[sl][rows], mu, var)
                # Rows where every log density overflowed to -inf (far z): the log-space form.
                lost = rows[~xp.isfinite(logn[rows].max(axis=1))]
                if len(lost):
                    logn[lost] = log_densities_logspace(xp, z[sl][lost], mu, var)
        top = logn.max(axis=1, keepdims=True)
        if want == "logw":
            logn -= top
            out[sl] = logn - xp.log(xp.exp(logn).sum(axis=1, keepdims=True))
            continue
        w = exp_shifted(xp, logn, top, dt)
        s = w.sum(axis=1, keepdims=True)
        nu_k = w @ x
        nu_k /= s
        nu[sl] = nu_k
        if want != "jac":
            continue
        for k in range(n):
            # w_i Sigma_ik^-1 (z_k - mu_ik): J[:, :, k] = sum_i G_i (nu - x_i) / s
            G = weighted_score(xp, zc_dt[sl, k : k + 1], a_dt[:, k], b_dt[:, k], w)
            if len(rows):  # an underflowed weight contributes nothing, even where Sigma_i^-1 (z - mu_i) overflows
                G[rows] = xp.where(w[rows] > 0, G[rows], 0.0)
            Jk = nu_k * G.sum(axis=1, keepdims=True)
            Jk -= G @ x
            Jk /= s
            J[sl, :, k] = Jk
    if want == "logw":
        return out
    return (nu, J) if want == "jac" else nu
