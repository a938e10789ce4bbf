"""Sec. 4.1: the optimal prior Eq. (4), the optimal decoder Eq. (6) and its Jacobian Eqs. (7)-(8).

The decoder is a posterior-weighted average of the data, nu(z) = sum_i w_i(z) x_i
with w_i(z) = N(z; mu_i, Sigma_i) / sum_j N(z; mu_j, Sigma_j).  The weights are
formed in log space (log-sum-exp), so tiny variances and far query points give
finite results: far from every posterior the weight concentrates on the
posterior with the largest log density, and nu(z) tends to that example's x.

Work is chunked over the query points M so the (chunk, N, m) temporaries stay
bounded (about 32 MiB by default; the ``chunk`` keyword overrides).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from vaetheory import _validate as v
from vaetheory.gaussian import _BLOCK_ELEMENTS, LOG_2PI, _Cov, _posterior_var


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
    chunk : query points per block (default: keep blocks near 32 MiB).

    Returns
    -------
    (M, N) log weights.
    """
    z, mu, var, _, chunk = _decoder_args(z, mu, var, None, chunk)
    return _log_weights(z, mu, var, chunk, _whitener(var))


def optimal_decoder(z, mu, var, x, *, chunk=None):
    """The optimal decoder, Eq. (6): nu(z) = sum_i N(z; mu_i, Sigma_i) x_i / sum_i N(z; mu_i, Sigma_i).

    Parameters
    ----------
    z : (M, n) query points.  mu : (N, n) posterior means.
    var : Sigma, diagonal (N, n) / (n,) or full (N, n, n) / (1, n, n) / (n, n).
    x : (N, m) data.
    chunk : query points per block (default: keep blocks near 32 MiB).

    Returns
    -------
    nu : (M, m).  Finite for any finite z: far from every posterior it tends to
    the x of the posterior with the largest log density at z.
    """
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
    chunk : query points per block; temporaries are (chunk, N, max(m, n)).

    Returns
    -------
    nu : (M, m) decoder values, Eq. (6).
    J : (M, m, n) Jacobians, Eq. (7).
    """
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
