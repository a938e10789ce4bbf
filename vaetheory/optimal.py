"""Sec. 4.1: the optimal prior Eq. (4), the optimal decoder Eq. (6) and its Jacobian Eqs. (7)-(8).

The decoder is a posterior-weighted average of the data, nu(z) = sum_i w_i(z) x_i
with w_i(z) = N(z; mu_i, Sigma_i) / sum_j N(z; mu_j, Sigma_j).  The weights are
formed in log space (log-sum-exp), so tiny variances and far query points give
finite results: far from every posterior the weight concentrates on the
posterior with the largest log density, and nu(z) tends to that example's x.

Diagonal Sigma (the VAE case) runs as matrix products, on NumPy or CuPy
arrays (same type out), in float64, or in float32 when every input is float32:
the exponent -1/2 sum_k (z_k - mu_ik)^2 / Sigma_ik expands into
[z^2, z] @ [-1/(2 Sigma), mu / Sigma]^T plus a per-posterior constant, one GEMM
with inner dimension 2n; nu = W x is one GEMM per chunk of query points; the
Jacobian is n GEMMs per chunk.  The expanded square loses digits when
|z|^2 / Sigma is huge (far query points, tiny variances): rows whose estimated
log-weight error exceeds ``_LOGW_TOL`` are recomputed from the differences
z - mu_i directly, so the log-space behaviour of the direct form is kept.
Every row subtracts its maximum log weight before ``exp``.

Memory is bounded by chunking over the query points M: a chunk holds at most
three (chunk, N) arrays plus its (chunk, m) and (chunk, m, n) outputs; the
default chunk keeps each (chunk, N) array near 32 MiB (NumPy) or 256 MiB
(CuPy); the ``chunk`` keyword overrides.  Full (N, n, n) Sigma takes the direct
NumPy path with (chunk, N, max(n, m)) temporaries.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from vaetheory import validate as v
from vaetheory.xp import array_namespace, fused_enabled, is_cupy_array
from vaetheory.gaussian import _BLOCK_ELEMENTS, LOG_2PI, _Cov, _posterior_var

# Largest tolerated error, in nats, of a log weight from the expanded-square GEMM
# form (always evaluated in float64: its inner dimension is only 2n); rows above
# it are recomputed directly.  1e-10 keeps the weights well inside the identity tolerance (1e-9)
# of the tests.
_LOGW_TOL = 1e-10
_GPU_BLOCK_ELEMENTS = 1 << 25


def optimal_prior(mu, var, *, full=False):
    """The optimal prior variance S^2 = E_x[Sigma + mu mu^T], Eq. (4).

    Parameters
    ----------
    mu : (N, n) posterior means (the expectation E_x is the mean over N).
    var : Sigma, diagonal (N, n) / (n,) or full (N, n, n) / (1, n, n) / (n, n).
    full : return the full (n, n) matrix; by default only its diagonal (n,),
        the paper's diagonal S.

    Returns
    -------
    s2 : (n,) or (n, n).
    """
    dims: dict = {}
    mu = v.array("mu", mu, ("N", "n"), dims)
    var = _posterior_var("var", var, dims)
    if full:
        S2 = var.matrix().mean(axis=0) + mu.T @ mu / mu.shape[0]
        return (S2 + S2.T) / 2
    return var.diagonal().mean(axis=0) + np.mean(mu * mu, axis=0)


def _decoder_args(z, mu, var, x, chunk, *, jacobian=False):
    dims: dict = {}
    mu = v.array("mu", mu, ("N", "n"), dims)
    z = v.array("z", z, ("M", "n"), dims)
    var = _posterior_var("var", var, dims)
    if x is not None:
        x = v.array("x", x, ("N", "m"), dims)
    if chunk is None:
        # temporaries per query point: (N, n) offsets, plus (N, m) residuals for the Jacobian
        width = dims["n"] + (dims["m"] if jacobian else 0)
        chunk = max(1, _BLOCK_ELEMENTS // (dims["N"] * width))
    chunk = v.scalar("chunk", chunk, positive=True, integer=True)
    return z, mu, var, x, chunk


def _components(z: np.ndarray, mu: np.ndarray, var: _Cov, whiten: np.ndarray | None):
    """Log densities log N(z_k; mu_i, Sigma_i) (c, N) and Sigma_i^-1 (z_k - mu_i) (c, N, n).

    ``whiten`` is the stack of L_i^-1 (Sigma_i = L_i L_i^T) for full Sigma, None for diagonal.
    """
    n = mu.shape[1]
    d = z[:, None, :] - mu[None, :, :]
    if whiten is None:
        g = d / var.a[None]
        maha = np.sum(d * g, axis=-1)
    else:
        y = np.einsum("nij,knj->kni", whiten, d)
        g = np.einsum("nji,knj->kni", whiten, y)
        maha = np.sum(y * y, axis=-1)
    logn = -0.5 * (n * LOG_2PI + var.logdet()[None, :] + maha)
    return logn, g


def _whitener(var: _Cov):
    if not var.full:
        return None
    L = var.chol()
    return np.linalg.solve(L, np.broadcast_to(np.eye(L.shape[-1]), L.shape))


def _chunks(M: int, chunk: int):
    for s in range(0, M, chunk):
        yield slice(s, min(M, s + chunk))


def _gemm_args(z, mu, var, x, chunk):
    """Validated inputs of the GEMM path, or None when Sigma is full (the direct NumPy path).

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
        var = _posterior_var("var", var, dims).a
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
        block = _BLOCK_ELEMENTS if xp is np else _GPU_BLOCK_ELEMENTS
        chunk = max(1, block // dims["N"])
    chunk = v.scalar("chunk", chunk, positive=True, integer=True)
    f64 = (lambda a: xp.ascontiguousarray(a, dtype=np.float64))
    x = None if x is None else xp.ascontiguousarray(x, dtype=dt)
    return xp, f64(z), f64(mu), f64(var), x, chunk, dt


def _direct_log_densities(xp, z, mu, var):
    """log N(z_k; mu_i, diag(Sigma_i)) (r, N) from the differences z_k - mu_i, (rows, N, n) bounded by chunking."""
    N, n = mu.shape
    out = xp.empty((z.shape[0], N), dtype=mu.dtype)
    logdet = xp.log(var).sum(axis=1)
    for sl in _chunks(z.shape[0], max(1, _BLOCK_ELEMENTS // (N * n))):
        d = z[sl, None, :] - mu[None]
        out[sl] = -0.5 * (n * LOG_2PI + logdet[None] + (d * d / var[None]).sum(axis=-1))
    return out


_CUPY_KERNELS: dict = {}  # the CuPy kernels of the two helpers below, built on first use


def _exp_shifted(xp, logn, top, dt):
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
        _CUPY_KERNELS["exp_shifted"] = xp.ElementwiseKernel("float64 a, float64 t", "W w", "w = (W)exp(a - t)",
                                                 "vaetheory_exp_shifted")
    return _CUPY_KERNELS["exp_shifted"](logn, top, xp.empty(logn.shape, dtype=dt))


def _weighted_score(xp, zk, ak, bk, w):
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
        _CUPY_KERNELS["weighted_score"] = xp.ElementwiseKernel("T zk, T ak, T bk, T w", "T g", "g = (zk * ak - bk) * w",
                                                 "vaetheory_weighted_score")
    return _CUPY_KERNELS["weighted_score"](zk, ak, bk, w)


def _gemm_kernel(xp, z, mu, var, x, chunk, dt, want):
    """Eqs. (6)-(7) for diagonal Sigma as matrix products; ``want`` is "logw", "nu" or "jac".

    ``z, mu, var`` are float64: the log weights are formed in float64 (inner
    dimension 2n, a negligible share of the work); the weights are then cast
    to the compute dtype ``dt`` for the GEMMs with x.  Returns (M, N) log
    weights, (M, m) nu, or (nu (M, m), J (M, m, n)) in ``dt``.
    """
    M, n = z.shape
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
    exact = (n + 2) * np.finfo(np.float64).eps * size > _LOGW_TOL
    any_exact = bool(exact.any())
    if want == "logw":
        out = xp.empty((M, mu.shape[0]), dtype=dt)
    else:
        nu = xp.empty((M, x.shape[1]), dtype=dt)
        if want == "jac":
            J = xp.empty((M, x.shape[1], n), dtype=dt)
            a_dt, b_dt, zc_dt = a.astype(dt), b.astype(dt), zc.astype(dt)
    for sl in _chunks(M, chunk):
        zk = zc[sl]
        logn = xp.concatenate([zk * zk, zk, ones[: len(zk)]], axis=1) @ coef
        rows = xp.nonzero(exact[sl])[0] if any_exact else ()
        if len(rows):
            logn[rows] = _direct_log_densities(xp, z[sl][rows], mu, var)
        top = logn.max(axis=1, keepdims=True)
        if want == "logw":
            logn -= top
            out[sl] = logn - xp.log(xp.exp(logn).sum(axis=1, keepdims=True))
            continue
        w = _exp_shifted(xp, logn, top, dt)
        s = w.sum(axis=1, keepdims=True)
        nu_k = w @ x
        nu_k /= s
        nu[sl] = nu_k
        if want != "jac":
            continue
        for k in range(n):
            # w_i Sigma_ik^-1 (z_k - mu_ik): J[:, :, k] = sum_i G_i (nu - x_i) / s
            G = _weighted_score(xp, zc_dt[sl, k : k + 1], a_dt[:, k], b_dt[:, k], w)
            if len(rows):  # an underflowed weight contributes nothing, even where Sigma_i^-1 (z - mu_i) overflows
                G[rows] = xp.where(w[rows] > 0, G[rows], 0.0)
            Jk = nu_k * G.sum(axis=1, keepdims=True)
            Jk -= G @ x
            Jk /= s
            J[sl, :, k] = Jk
    if want == "logw":
        return out
    return (nu, J) if want == "jac" else nu


def _log_weights(z, mu, var, chunk, whiten):
    out = np.empty((z.shape[0], mu.shape[0]))
    for sl in _chunks(z.shape[0], chunk):
        logn, _ = _components(z[sl], mu, var, whiten)
        out[sl] = logn - logsumexp(logn, axis=1, keepdims=True)
    return out


def log_weights(z, mu, var, *, chunk=None):
    """Log posterior responsibilities log w_i(z), the weights of Eqs. (6)-(7).

    w_i(z) = N(z; mu_i, Sigma_i) / sum_j N(z; mu_j, Sigma_j), normalised in
    log space so that logsumexp over i is 0 at every z.

    Parameters
    ----------
    z : (M, n) query points.  mu : (N, n) posterior means.
    var : Sigma, diagonal (N, n) / (n,) or full (N, n, n) / (1, n, n) / (n, n).
    chunk : query points per block.  Memory is bounded by chunk x N floats
        (at most three such arrays); the default keeps each near 32 MiB on
        NumPy, 256 MiB on CuPy.

    Diagonal Sigma accepts NumPy or CuPy arrays (same type out) and computes
    in float32 when every array is float32, else float64; full Sigma is NumPy
    and float64.

    Returns
    -------
    (M, N) log weights.
    """
    fast = _gemm_args(z, mu, var, None, chunk)
    if fast is not None:
        return _gemm_kernel(*fast, "logw")
    z, mu, var, _, chunk = _decoder_args(z, mu, var, None, chunk)
    return _log_weights(z, mu, var, chunk, _whitener(var))


def optimal_decoder(z, mu, var, x, *, chunk=None):
    """The optimal decoder, Eq. (6): nu(z) = sum_i N(z; mu_i, Sigma_i) x_i / sum_i N(z; mu_i, Sigma_i).

    Parameters
    ----------
    z : (M, n) query points.  mu : (N, n) posterior means.
    var : Sigma, diagonal (N, n) / (n,) or full (N, n, n) / (1, n, n) / (n, n).
    x : (N, m) data.
    chunk : query points per block.  Memory is bounded by chunk x N floats
        (at most three such arrays); the default keeps each near 32 MiB on
        NumPy, 256 MiB on CuPy.

    Diagonal Sigma accepts NumPy or CuPy arrays (same type out) and computes
    in float32 when every array is float32, else float64; full Sigma is NumPy
    and float64.

    Returns
    -------
    nu : (M, m).  Finite for any finite z: far from every posterior it tends to
    the x of the posterior with the largest log density at z.
    """
    fast = _gemm_args(z, mu, var, x, chunk)
    if fast is not None:
        return _gemm_kernel(*fast, "nu")
    z, mu, var, x, chunk = _decoder_args(z, mu, var, x, chunk)
    whiten = _whitener(var)
    out = np.empty((z.shape[0], x.shape[1]))
    for sl in _chunks(z.shape[0], chunk):
        logn, _ = _components(z[sl], mu, var, whiten)
        out[sl] = np.exp(logn - logsumexp(logn, axis=1, keepdims=True)) @ x
    return out


def optimal_decoder_jacobian(z, mu, var, x, *, chunk=None):
    """The optimal decoder and its Jacobian, Eqs. (6)-(8).

    J(z) = sum_i w_i(z) (nu(z) - x_i) (z - mu_i)^T Sigma_i^-1, an (m, n) matrix
    (DESIGN.md's reading of Eq. (7); it equals d nu / d z, which the tests
    check against central finite differences).  Eq. (8) is J(mu), i.e. pass
    z = mu.

    Parameters
    ----------
    z : (M, n) query points.  mu : (N, n) posterior means.
    var : Sigma, diagonal (N, n) / (n,) or full (N, n, n) / (1, n, n) / (n, n).
    x : (N, m) data.
    chunk : query points per block.  Diagonal Sigma: memory is bounded by
        chunk x N floats (at most three such arrays) plus the (chunk, m, n)
        output block, and J is n GEMMs per chunk; NumPy or CuPy arrays (same
        type out), float32 when every array is float32, else float64.  Full
        Sigma (NumPy, float64): temporaries are (chunk, N, max(m, n)).

    Returns
    -------
    nu : (M, m) decoder values, Eq. (6).
    J : (M, m, n) Jacobians, Eq. (7).
    """
    fast = _gemm_args(z, mu, var, x, chunk)
    if fast is not None:
        return _gemm_kernel(*fast, "jac")
    z, mu, var, x, chunk = _decoder_args(z, mu, var, x, chunk, jacobian=True)
    whiten = _whitener(var)
    M, n = z.shape
    m = x.shape[1]
    nu = np.empty((M, m))
    J = np.empty((M, m, n))
    for sl in _chunks(M, chunk):
        logn, g = _components(z[sl], mu, var, whiten)
        w = np.exp(logn - logsumexp(logn, axis=1, keepdims=True))
        nu[sl] = w @ x
        # Centred residuals nu - x_i keep J accurate when one weight dominates.
        wd = w[:, :, None] * (nu[sl][:, None, :] - x[None, :, :])
        # An underflowed weight contributes exactly nothing, even where Sigma_i^-1 (z - mu_i) is huge.
        g = np.where(w[:, :, None] > 0, g, 0.0)
        J[sl] = np.swapaxes(wd, 1, 2) @ g
    return nu, J
