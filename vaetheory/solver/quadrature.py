"""Deterministic latent-space quadrature for the nonparametric VAE (n = 1 or 2).

Two rules, both deterministic so the objectives built on them are smooth:

* :func:`gauss_hermite`: a tensor-product Gauss-Hermite rule for expectations
  under a Gaussian posterior ``N(mu, diag(var))`` (the ELBO's expected log
  likelihood, Eq. (2)).
* :func:`latent_grid`: a fixed tensor-product trapezoid grid over the prior
  ``N(0, S^2)`` for the model's true log evidence
  ``log p(x) = log int N(z; 0, S^2) N(x; nu(z), I) dz`` and the true posterior
  ``p(z | x)`` (compared with Eqs. (16), (18) and (25)).  The trapezoid rule
  on a smooth, rapidly decaying integrand over a wide enough range converges
  geometrically; :func:`grid_log_evidence` also reports the change from
  halving the grid as an error estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from vaetheory.numerics import gauss_hermite_rule
from vaetheory.validate import array, scalar

__all__ = [
    "gauss_hermite",
    "latent_grid",
    "decoder_log_weights",
    "decoder_mean",
    "softmax_rows",
    "log_weights_unchecked",
    "GridEvidence",
    "grid_log_evidence",
]

_LOG2PI = np.log(2 * np.pi)


def gauss_hermite(n: int, order: int):
    """Tensor-product Gauss-Hermite rule for ``E_{N(0, I_n)} f(eps)``. Not in the paper (numerics).

    Exact for polynomials of degree ``2 order - 1`` in each coordinate.

    Parameters
    ----------
    n : latent dimension (1 or 2 here, any positive integer works).
    order : nodes per dimension.

    Returns
    -------
    eps : (Q, n) nodes, ``Q = order**n``.
    w : (Q,) positive weights summing to 1.
    """
    n = scalar("n", n, positive=True, integer=True)
    order = scalar("order", order, positive=True, integer=True)
    return gauss_hermite_rule(n, order)


def decoder_log_weights(z, mu, var):
    """Log of the unnormalised Eq. (6) weights ``log N(z; mu_j, Sigma_j)`` up to a constant.

    The ``-n/2 log 2 pi`` constant is dropped: it cancels in the
    normalisation of Eq. (6).  The square ``(z - mu_j)^2 / Sigma_j`` is
    expanded into matrix products after centring z and mu on the mean
    posterior mean, so narrow posteriors far from the origin keep their
    digits; rows whose expanded square would still err by more than
    ``LOGW_TOL`` nats (query points or posteriors far apart on the scale of
    the narrowest posterior) are recomputed from the differences directly.

    Parameters
    ----------
    z : (M, n) query points; mu : (N, n) posterior means, N >= 1; var :
        (N, n) diagonal posterior variances, or (n,) shared by all.

    Returns
    -------
    (M, N) log weights.
    """
    dims: dict = {}
    mu = array("mu", mu, ("N", "n"), dims)
    z = array("z", z, ("M", "n"), dims)
    var = array("var", var, [("N", "n"), ("n",)], dims, positive=True)
    _require_examples(dims)
    return log_weights_unchecked(z, mu, np.broadcast_to(var, mu.shape))


def _require_examples(dims: dict) -> None:
    if dims["N"] == 0:
        raise ValueError("mu must hold at least one posterior (N >= 1), got N = 0")


# Largest tolerated round-off, in nats, of a log weight from the expanded square;
# rows above it are recomputed from the differences (as vaetheory.optimal_gemm).
LOGW_TOL = 1e-10


def log_weights_unchecked(z, mu, var):
    """:func:`decoder_log_weights` without argument checks, for validated (M, n), (N, n), (N, n) float64 arrays."""
    n = mu.shape[1]
    inv = 1.0 / var
    c = mu.mean(axis=0)
    zc = z - c
    muc = mu - c
    b = muc * inv
    q = np.sum(muc * b, axis=1)
    # Expanded square as matrix products: (M, n) @ (n, N); no (M, N, n) temporary.
    quad = (zc * zc) @ inv.T - 2.0 * zc @ b.T + q
    out = -0.5 * (quad + np.sum(np.log(var), axis=1))
    # Round-off of the expanded square ~ eps times the largest term that cancels.
    size = (zc * zc) @ inv.max(axis=0) + 2.0 * np.abs(zc) @ np.abs(b).max(axis=0) + q.max()
    rows = np.nonzero((n + 2) * np.finfo(np.float64).eps * 0.5 * size > LOGW_TOL)[0]
    step = max(1, (1 << 22) // (mu.shape[0] * n))
    for s in range(0, len(rows), step):
        r = rows[s : s + step]
        d = z[r, None, :] - mu[None]
        out[r] = -0.5 * (np.sum(d * d * inv[None], axis=-1) + np.sum(np.log(var), axis=1))
    return out


def decoder_mean(z, mu, var, x):
    """The optimal decoder, Eq. (6), at query points, with its normalised weights.

    Parameters
    ----------
    z : (M, n); mu : (N, n), N >= 1; var : (N, n) or (n,); x : (N, m).

    Returns
    -------
    nu : (M, m) decoder means; a : (M, N) weights (rows sum to 1).
    """
    dims: dict = {}
    mu = array("mu", mu, ("N", "n"), dims)
    z = array("z", z, ("M", "n"), dims)
    var = array("var", var, [("N", "n"), ("n",)], dims, positive=True)
    x = array("x", x, ("N", "m"), dims)
    _require_examples(dims)
    a = softmax_rows(log_weights_unchecked(z, mu, np.broadcast_to(var, mu.shape)))
    return a @ x, a


# Log weight, relative to its row's largest, below which :func:`softmax_rows` returns an exact zero.
LOG_NEGLIGIBLE = -600.0


def softmax_rows(lw):
    """Row-normalised ``exp(lw)`` computed stably, in place. Not in the paper (numerics).

    Subtracting the row maximum keeps every exponent <= 0 (the log-sum-exp
    trick), so no weight overflows and the largest is exactly representable.
    A weight below ``exp(LOG_NEGLIGIBLE)`` (about 1e-261) times its row's
    largest is returned as exactly 0 (its share of the row sum is far below
    float64's resolution).

    Parameters
    ----------
    lw : (M, N) float64 log weights, N >= 1, no NaN and no +inf (a row may
        not be all -inf); overwritten with the weights.

    Returns
    -------
    (M, N) weights, the same array as ``lw``; rows sum to 1.
    """
    if not isinstance(lw, np.ndarray) or lw.dtype != np.float64:
        raise ValueError(f"lw must be a float64 NumPy array (it is normalised in place), got {type(lw).__name__}")
    lw = array("lw", lw, ("M", "N"), finite=False)
    if lw.shape[1] == 0:
        raise ValueError("lw must have at least one column (N >= 1), got shape " + str(lw.shape))
    top = lw.max(axis=1, keepdims=True)
    # The row maximum is NaN when the row holds a NaN, +inf when it holds +inf, -inf when all of it is -inf.
    if not np.isfinite(top).all():
        raise ValueError("lw contains NaN or +inf values, or a row of all -inf (no weight to normalise)")
    lw -= top
    # Weights below exp(LOG_NEGLIGIBLE) of the row's largest are set to exactly 0: over 200 orders of magnitude
    # below the row sum's float64 resolution, and exp is many times slower where its result would be subnormal.
    keep = lw > LOG_NEGLIGIBLE
    np.maximum(lw, LOG_NEGLIGIBLE, out=lw)
    np.exp(lw, out=lw)
    lw *= keep
    lw /= lw.sum(axis=1, keepdims=True)
    return lw


def latent_grid(s2, sd_min, *, width: float = 8.0, per_sd: float = 3.0, max_points: int = 4001):
    """Trapezoid grid over ``N(0, S^2)`` fine enough for the narrowest posterior. Not in the paper (numerics).

    Each axis spans ``[-width sqrt(s2_k), width sqrt(s2_k)]`` with spacing
    ``sd_min_k / per_sd`` (capped at ``max_points`` points per axis), so the
    prior mass outside is below ``exp(-width^2 / 2)`` and every posterior is
    resolved by several points per standard deviation.

    Parameters
    ----------
    s2 : (n,) prior variances.
    sd_min : (n,) smallest posterior standard deviation per axis.
    width : half-width in prior standard deviations.
    per_sd : grid points per smallest posterior standard deviation.
    max_points : cap on points per axis.

    Returns
    -------
    z : (G, n) grid points; log_h : float, log of the cell volume;
    points : tuple, points per axis.
    """
    s2 = array("s2", s2, ("n",), positive=True)
    sd_min = array("sd_min", sd_min, ("n",), {"n": s2.shape[0]}, positive=True)
    axes = []
    log_h = 0.0
    for k in range(s2.shape[0]):
        half = width * np.sqrt(s2[k])
        count = int(min(max_points, 2 * np.ceil(half * per_sd / sd_min[k]) + 1))
        axis, h = np.linspace(-half, half, count, retstep=True)
        axes.append(axis)
        log_h += np.log(h)
    grids = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1), float(log_h), tuple(len(a) for a in axes)


@dataclass
class GridEvidence:
    """True log evidence and posterior moments of the fitted model, by grid quadrature.

    Attributes
    ----------
    log_px : (N,) ``log p(x_i)``.
    error : (N,) change in ``log_px`` when the grid spacing is doubled (an
        upper-bound style error estimate for the trapezoid rule).
    mean : (N, n) true posterior means ``E[z | x_i]``.
    cov : (N, n, n) true posterior covariances.
    points : grid points per axis.
    width : half-width in prior standard deviations.
    """

    log_px: np.ndarray
    error: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    points: tuple
    width: float


def grid_log_evidence(x, mu, var, s2, *, width: float = 8.0, per_sd: float = 3.0, max_points=None, chunk: int = 20000):
    """True ``log p(x) = log int N(z; 0, S^2) N(x; nu(z), I) dz`` of the fitted model.
    Not in the paper (the reference that Eqs. (16), (18) approximate).

    ``nu`` is the optimal decoder, Eq. (6), built from every posterior
    ``N(mu_j, diag(var_j))``; the integral is a trapezoid sum on
    :func:`latent_grid`, accumulated in log space.  The same sums give the
    true posterior's mean and covariance (compared with Eq. (25)).

    Parameters
    ----------
    x : (N, m) data; mu : (N, n); var : (N, n) or (n,); s2 : (n,).
    width, per_sd : see :func:`latent_grid`.
    max_points : cap on points per axis (default 4001 for n = 1, 1201 for
        n = 2); a capped grid may under-resolve the narrowest posterior, which
        the returned ``error`` then shows.
    chunk : grid points per block (bounds memory at ``chunk * N`` floats).

    Returns
    -------
    GridEvidence
    """
    dims: dict = {}
    x = array("x", x, ("N", "m"), dims)
    mu = array("mu", mu, ("N", "n"), dims)
    var = np.broadcast_to(array("var", var, [("N", "n"), ("n",)], dims, positive=True), mu.shape)
    s2 = array("s2", s2, ("n",), dims, positive=True)
    N, n = mu.shape
    m = x.shape[1]
    if max_points is None:
        max_points = 4001 if n == 1 else 1201
    z, log_h, points = latent_grid(s2, np.sqrt(var.min(axis=0)), width=width, per_sd=per_sd, max_points=max_points)
    # A point is on the coarse (doubled-spacing) grid when every index is even.
    idx = np.stack(np.meshgrid(*[np.arange(p) for p in points], indexing="ij")).reshape(n, -1)
    coarse = np.all(idx % 2 == 0, axis=0)
    x2 = np.sum(x**2, axis=1)
    log_prior_const = -0.5 * (n * _LOG2PI + np.sum(np.log(s2)))
    fine_parts, coarse_parts, m1_parts = [], [], []
    for start in range(0, z.shape[0], chunk):
        zc = z[start : start + chunk]
        nu, _ = decoder_mean(zc, mu, var, x)
        log_prior = log_prior_const - 0.5 * np.sum(zc**2 / s2, axis=1)
        sq = np.maximum(np.sum(nu**2, axis=1)[:, None] - 2.0 * nu @ x.T + x2[None, :], 0.0)
        lf = log_prior[:, None] - 0.5 * (m * _LOG2PI + sq)  # (G, N)
        fine_parts.append(logsumexp(lf, axis=0))
        cc = coarse[start : start + chunk]
        coarse_parts.append(logsumexp(lf[cc], axis=0) if cc.any() else np.full(N, -np.inf))
        # Moments: shift by a per-example max taken within the chunk, recombined below.
        shift = lf.max(axis=0)
        e = np.exp(lf - shift)
        outer = (zc[:, :, None] * zc[:, None, :]).reshape(len(zc), n * n)
        m1_parts.append((shift, e.T @ zc, (e.T @ outer).reshape(N, n, n)))
    log_fine = logsumexp(np.stack(fine_parts), axis=0)
    log_coarse = logsumexp(np.stack(coarse_parts), axis=0)
    log_px = log_fine + log_h
    error = np.abs(log_px - (log_coarse + log_h + n * np.log(2.0)))
    # Combine the chunked first and second moments with their shifts.
    top = np.max(np.stack([p[0] for p in m1_parts]), axis=0)
    mass = np.exp(log_fine - top)
    s1 = sum(np.exp(p[0] - top)[:, None] * p[1] for p in m1_parts) / mass[:, None]
    s2m = sum(np.exp(p[0] - top)[:, None, None] * p[2] for p in m1_parts) / mass[:, None, None]
    cov = s2m - np.einsum("ik,il->ikl", s1, s1)
    return GridEvidence(log_px=log_px, error=error, mean=s1, cov=cov, points=points, width=width)
