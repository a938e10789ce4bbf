"""Sec. 4.1: the optimal prior Eq. (4), the optimal decoder Eq. (6) and its Jacobian Eqs. (7)-(8).

The decoder is a posterior-weighted average of the data, nu(z) = sum_i w_i(z) x_i
with w_i(z) = N(z; mu_i, Sigma_i) / sum_j N(z; mu_j, Sigma_j).  The weights are
formed in log space (log-sum-exp), so tiny variances and far query points give
finite results: far from every posterior the weight concentrates on the
posterior with the largest log density, and nu(z) tends to that example's x.

This module is the float64 NumPy reference (the ``*_reference`` functions, any
Sigma, (chunk, N, max(n, m)) temporaries per chunk of query points).  The
public :func:`log_weights`, :func:`optimal_decoder` and
:func:`optimal_decoder_jacobian` dispatch diagonal Sigma (the VAE case, NumPy
or CuPy, float32 or float64) to the GEMM fast path of
:mod:`vaetheory.optimal_gemm` and full Sigma to the reference.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from vaetheory import validate as v
from vaetheory.covariance import Cov, posterior_var
from vaetheory.gaussian import LOG_2PI
from vaetheory.numerics import BLOCK_ELEMENTS, chunks
from vaetheory.optimal_gemm import gemm_inputs, gemm_kernel, log_densities_logspace


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
    var = posterior_var("var", var, dims)
    if full:
        S2 = var.matrix().mean(axis=0) + mu.T @ mu / mu.shape[0]
        return (S2 + S2.T) / 2
    return var.diagonal().mean(axis=0) + np.mean(mu * mu, axis=0)


def _require_x(x):
    if x is None:
        raise ValueError("x is required: the (N, m) data of Eq. (6), got None")


def decoder_args(z, mu, var, x, chunk, *, jacobian=False):
    """Validate the arguments of Eqs. (5)-(7) (z, mu, Sigma, x may be None) and choose the default chunk.

    Returns ``(z, mu, var (a Cov), x, chunk)``; the default chunk bounds the
    (chunk, N, n + m) temporaries of the reference path by ``BLOCK_ELEMENTS``.
    """
    dims: dict = {}
    mu = v.array("mu", mu, ("N", "n"), dims)
    z = v.array("z", z, ("M", "n"), dims)
    var = posterior_var("var", var, dims)
    if x is not None:
        x = v.array("x", x, ("N", "m"), dims)
    if chunk is None:
        # temporaries per query point: (N, n) offsets, plus (N, m) residuals for the Jacobian
        width = dims["n"] + (dims["m"] if jacobian else 0)
        chunk = max(1, BLOCK_ELEMENTS // (dims["N"] * width))
    chunk = v.scalar("chunk", chunk, positive=True, integer=True)
    return z, mu, var, x, chunk


def mixture_components(z: np.ndarray, mu: np.ndarray, var: Cov, whiten: np.ndarray | None):
    """The terms of Eqs. (6)-(7) at query points z (c, n).

    Returns the log densities log N(z_k; mu_i, Sigma_i) (c, N) and the scores
    Sigma_i^-1 (z_k - mu_i) (c, N, n).  ``var`` is validated (:func:`decoder_args`).

    ``whiten`` is the stack of L_i^-1 (Sigma_i = L_i L_i^T) for full Sigma, None for diagonal.
    """
    n = mu.shape[1]
    d = z[:, None, :] - mu[None, :, :]
    with np.errstate(over="ignore", invalid="ignore"):  # tiny Sigma: rows that overflow are redone below
        if whiten is None:
            g = d / var.a[None]
            maha = np.sum(d * g, axis=-1)
        else:
            y = np.einsum("nij,knj->kni", whiten, d)
            g = np.einsum("nji,knj->kni", whiten, y)
            maha = np.sum(y * y, axis=-1)
    logn = -0.5 * (n * LOG_2PI + var.logdet()[None, :] + maha)
    if whiten is None:
        # Rows where every Mahalanobis term overflowed (subnormal Sigma, far z): the log-space form.
        lost = np.nonzero(~np.isfinite(logn.max(axis=1)))[0]
        if len(lost):
            logn[lost] = log_densities_logspace(np, z[lost], mu, var.a)
    return logn, g


def log_weights(z, mu, var, *, chunk=None):
    """Log posterior responsibilities log w_i(z), the weights of Eqs. (6)-(7).

    w_i(z) = N(z; mu_i, Sigma_i) / sum_j N(z; mu_j, Sigma_j), normalised in
    log space so that logsumexp over i is 0 at every z.

    Diagonal Sigma accepts NumPy or CuPy arrays (same type out) and computes
    in float32 when every array is float32, else float64; full Sigma is NumPy
    and float64.

    Parameters
    ----------
    z : (M, n) query points.
    mu : (N, n) posterior means.
    var : Sigma, diagonal (N, n) / (n,) or full (N, n, n) / (1, n, n) / (n, n).
    chunk : query points per block.  Memory is bounded by chunk x N floats
        (at most three such arrays); the default keeps each near 32 MiB on
        NumPy, 256 MiB on CuPy.

    Returns
    -------
    (M, N) log weights.
    """
    fast = gemm_inputs(z, mu, var, None, chunk)
    if fast is not None:
        return gemm_kernel(*fast, "logw")
    return log_weights_reference(z, mu, var, chunk=chunk)


def log_weights_reference(z, mu, var, *, chunk=None):
    """The float64 reference of :func:`log_weights` (Eqs. (6)-(7)'s weights), any Sigma, NumPy only."""
    z, mu, var, _, chunk = decoder_args(z, mu, var, None, chunk)
    whiten = var.whitener()
    out = np.empty((z.shape[0], mu.shape[0]))
    for sl in chunks(z.shape[0], chunk):
        logn, _ = mixture_components(z[sl], mu, var, whiten)
        out[sl] = logn - logsumexp(logn, axis=1, keepdims=True)
    return out


def optimal_decoder(z, mu, var, x, *, chunk=None):
    """The optimal decoder, Eq. (6): nu(z) = sum_i N(z; mu_i, Sigma_i) x_i / sum_i N(z; mu_i, Sigma_i).

    Diagonal Sigma accepts NumPy or CuPy arrays (same type out) and computes
    in float32 when every array is float32, else float64; full Sigma is NumPy
    and float64.

    Parameters
    ----------
    z : (M, n) query points.
    mu : (N, n) posterior means.
    var : Sigma, diagonal (N, n) / (n,) or full (N, n, n) / (1, n, n) / (n, n).
    x : (N, m) data.
    chunk : query points per block.  Memory is bounded by chunk x N floats
        (at most three such arrays); the default keeps each near 32 MiB on
        NumPy, 256 MiB on CuPy.

    Returns
    -------
    nu : (M, m).  Finite for any finite z: far from every posterior it tends to
    the x of the posterior with the largest log density at z.
    """
    _require_x(x)
    fast = gemm_inputs(z, mu, var, x, chunk)
    if fast is not None:
        return gemm_kernel(*fast, "nu")
    return optimal_decoder_reference(z, mu, var, x, chunk=chunk)


def optimal_decoder_reference(z, mu, var, x, *, chunk=None):
    """The float64 reference of :func:`optimal_decoder`, Eq. (6), any Sigma, NumPy only."""
    _require_x(x)
    z, mu, var, x, chunk = decoder_args(z, mu, var, x, chunk)
    whiten = var.whitener()
    out = np.empty((z.shape[0], x.shape[1]))
    for sl in chunks(z.shape[0], chunk):
        logn, _ = mixture_components(z[sl], mu, var, whiten)
        out[sl] = np.exp(logn - logsumexp(logn, axis=1, keepdims=True)) @ x
    return out


def optimal_decoder_jacobian(z, mu, var, x, *, chunk=None):
    """The optimal decoder and its Jacobian, Eqs. (6)-(8).

    J(z) = sum_i w_i(z) (nu(z) - x_i) (z - mu_i)^T Sigma_i^-1, an (m, n) matrix
    (our reading of Eq. (7); it equals d nu / d z, which the tests check
    against central finite differences).  Eq. (8) is J(mu), i.e. pass
    z = mu.

    Parameters
    ----------
    z : (M, n) query points.
    mu : (N, n) posterior means.
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
    _require_x(x)
    fast = gemm_inputs(z, mu, var, x, chunk)
    # Subnormal Sigma on NumPy: the scores Sigma^-1 (z - mu) are formed from the differences in the reference.
    if fast is not None and not (fast[0] is np and bool((fast[3] < np.finfo(np.float64).tiny).any())):
        return gemm_kernel(*fast, "jac")
    return optimal_decoder_jacobian_reference(z, mu, var, x, chunk=chunk)


def optimal_decoder_jacobian_reference(z, mu, var, x, *, chunk=None):
    """The float64 reference of :func:`optimal_decoder_jacobian`, Eqs. (6)-(8), any Sigma, NumPy only."""
    _require_x(x)
    z, mu, var, x, chunk = decoder_args(z, mu, var, x, chunk, jacobian=True)
    whiten = var.whitener()
    M, n = z.shape
    m = x.shape[1]
    nu = np.empty((M, m))
    J = np.empty((M, m, n))
    for sl in chunks(M, chunk):
        logn, g = mixture_components(z[sl], mu, var, whiten)
        w = np.exp(logn - logsumexp(logn, axis=1, keepdims=True))
        nu[sl] = w @ x
        # Centred residuals nu - x_i keep J accurate when one weight dominates.
        wd = w[:, :, None] * (nu[sl][:, None, :] - x[None, :, :])
        # An underflowed weight contributes exactly nothing, even where Sigma_i^-1 (z - mu_i) is huge.
        g = np.where(w[:, :, None] > 0, g, 0.0)
        # Subnormal Sigma: a score may overflow where its factor nu - x_i is exactly 0 (one weight is 1);
        # that term is 0.  Where the factor is not 0, J itself is not representable.
        bad = ~np.isfinite(g).all(axis=-1)
        if bad.any():
            if np.any(wd[bad] != 0):
                raise ValueError("var is so small that the Jacobian Eq. (7) overflows float64")
            g = np.where(bad[:, :, None], 0.0, g)
        J[sl] = np.swapaxes(wd, 1, 2) @ g
    return nu, J
