"""Sec. 3: Gaussian building blocks and the ELBO of a Gaussian VAE, Eqs. (1)-(2) and (17).

Float64 NumPy/SciPy reference.  Shapes use the letters of :mod:`vaetheory`:
``x (N, m)``, ``mu (N, n)``, posterior variances ``var`` (Sigma) as diagonals
``(N, n)`` / ``(n,)`` or full matrices ``(N, n, n)`` / ``(1, n, n)`` / ``(n, n)``,
prior variance ``s2`` (S^2) as a diagonal ``(n,)`` or a full ``(n, n)``.

Reading fixed here (docs/conventions.md): a 2-D ``var`` whose shape is
``(N, n)`` is a stack of diagonals, even when ``N == n``; pass a shared full
Sigma as ``(1, n, n)`` (or ``(N, n, n)``) when ``N == n`` to avoid the reading.

:mod:`vaetheory.covariance` validates and normalises Sigma, S^2 and J for
every module of Secs. 3-5, so the readings live in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular

from vaetheory import validate as v
from vaetheory.covariance import Cov, jacobian_arg, posterior_precision, posterior_var, prior_var
from vaetheory.numerics import BLOCK_ELEMENTS, gauss_hermite_rule, quad_form, trace

LOG_2PI = float(np.log(2.0 * np.pi))
METHODS = ("auto", "exact", "quadrature", "mc")


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------
def log_normal(x, mean, cov):
    """Gaussian log density log N(x; mean, C), the building block of Eq. (2).

    Parameters
    ----------
    x : (..., m) points.
    mean : (..., m) means, broadcast against ``x``.
    cov : C, shared by all points: a positive scalar (C = c I), an (m,)
        positive diagonal, or an (m, m) symmetric positive definite matrix
        (evaluated through its Cholesky factor, never a determinant).

    Returns
    -------
    (...) log densities, the broadcast batch shape of ``x`` and ``mean``.
    """
    x = v.array("x", x)
    if x.ndim < 1:
        raise ValueError(f"x must have shape (..., m), got {tuple(x.shape)}")
    m = x.shape[-1]
    mean = v.array("mean", mean)
    if mean.ndim < 1 or mean.shape[-1] != m:
        raise ValueError(f"mean must have shape (..., m) with m={m} (the last axis of x), got {tuple(mean.shape)}")
    try:
        d = x - mean
    except ValueError:
        raise ValueError(f"mean of shape {mean.shape} does not broadcast against x of shape {x.shape}") from None
    cov_a = np.asarray(cov) if not hasattr(cov, "shape") else cov
    if np.ndim(cov_a) == 0:
        c = v.scalar("cov", cov, positive=True)
        return -0.5 * (m * LOG_2PI + m * np.log(c) + np.sum(d * d, axis=-1) / c)
    if np.ndim(cov_a) == 1:
        c = v.array("cov", cov, (m,), positive=True)
        return -0.5 * (m * LOG_2PI + np.sum(np.log(c)) + np.sum(d * d / c, axis=-1))
    C = v.spd("cov", cov, (m, m))
    L = np.linalg.cholesky(C)
    flat = d.reshape(-1, m)
    y = solve_triangular(L, flat.T, lower=True).T.reshape(d.shape)
    return -0.5 * (m * LOG_2PI + 2.0 * np.sum(np.log(np.diag(L))) + np.sum(y * y, axis=-1))


@dataclass(frozen=True)
class LinearDecoder:
    """Affine decoder nu(z) = W z + b, the linear case of Sec. 3's decoder nu (exact in Eqs. (2), (16), (17)).

    Parameters
    ----------
    W : (m, n) decoder matrix (its Jacobian J everywhere).
    b : (m,) offset.

    Notes
    -----
    Calling ``dec(z)`` with z (..., n) returns nu(z) (..., m).
    """

    W: np.ndarray
    b: np.ndarray

    def __post_init__(self):
        dims: dict = {}
        W = v.array("W", self.W, ("m", "n"), dims, dtype=np.float64)
        b = v.array("b", self.b, ("m",), dims, dtype=np.float64)
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "b", b)

    @property
    def n(self) -> int:
        """Latent dimension n."""
        return self.W.shape[1]

    @property
    def m(self) -> int:
        """Data dimension m."""
        return self.W.shape[0]

    def __call__(self, z):
        z = v.array("z", z)
        if z.ndim < 1 or z.shape[-1] != self.n:
            raise ValueError(f"z must have shape (..., n) with n={self.n}, got {tuple(z.shape)}")
        return z @ self.W.T + self.b

    def jacobian(self, N: int) -> np.ndarray:
        """J = W repeated for N examples, (N, m, n)."""
        return np.broadcast_to(self.W, (N,) + self.W.shape).copy()


def _kl(mu: np.ndarray, var: Cov, s2: Cov) -> np.ndarray:
    prec = s2.inverse()[0]
    n = mu.shape[-1]
    if var.full:
        tr = trace(prec @ var.a)
    else:
        tr = var.a @ np.diagonal(prec)
    return 0.5 * (tr + quad_form(prec, mu) - n + s2.logdet()[0] - var.logdet())


def kl_gaussian(mu, var, s2):
    """KL(N(mu, Sigma) || N(0, S^2)) per example; the ELBO's first term in Eq. (2) is -KL.

    KL = 1/2 (tr(S^-2 Sigma) + |S^-1 mu|^2 - n + log|S^2| - log|Sigma|),
    so -KL = 1/2 (log|e S^-2 Sigma| - tr S^-2 Sigma - |S^-1 mu|^2) as in Eq. (2).

    Parameters
    ----------
    mu : (N, n) posterior means.
    var : Sigma, diagonal (N, n) / (n,) or full (N, n, n) / (1, n, n) / (n, n).
    s2 : S^2, prior variance, diagonal (n,) or full (n, n).

    Returns
    -------
    (N,) KL divergences (nats, >= 0).
    """
    dims: dict = {}
    mu = v.array("mu", mu, ("N", "n"), dims)
    var = posterior_var("var", var, dims)
    s2 = prior_var("s2", s2, dims)
    return _kl(mu, var, s2)


def _decoded(decoder: Callable, z: np.ndarray, m: int) -> np.ndarray:
    """nu(z) for z (..., n); the decoder is called once on a flat (K, n) batch, so a
    decoder that only takes 2-D input works too."""
    flat = z.reshape(-1, z.shape[-1])
    out = np.asarray(decoder(flat), dtype=np.float64)
    if out.shape != (flat.shape[0], m):
        raise ValueError(f"decoder must map (K, n) to (K, m) with m={m}; for {flat.shape} it returned {out.shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError("decoder returned NaN or infinite values")
    return out.reshape(z.shape[:-1] + (m,))


def _loglik_unit(x: np.ndarray, nu: np.ndarray) -> np.ndarray:
    """log N(x; nu, I) with x (N, 1, m) broadcast against nu (N, K, m) -> (N, K)."""
    r = x - nu
    return -0.5 * (x.shape[-1] * LOG_2PI + np.sum(r * r, axis=-1))


def _ell_samples(x, mu, L, decoder, eps):
    """log N(x; nu(mu + L eps), I) for eps (N, K, n) -> (N, K)."""
    z = mu[:, None, :] + np.einsum("nij,nkj->nki", L, eps)
    return _loglik_unit(x[:, None, :], _decoded(decoder, z, x.shape[-1]))


def _ell_mc(x, mu, var: Cov, decoder, rng, n_samples):
    """Monte Carlo values (N, n_samples) of log N(x; nu(z), I), z ~ N(mu, Sigma), chunked over N."""
    N, n = mu.shape
    L = var.chol()
    per = max(1, BLOCK_ELEMENTS // max(1, n_samples * max(n, x.shape[-1])))
    out = np.empty((N, n_samples))
    for s in range(0, N, per):
        sl = slice(s, min(N, s + per))
        eps = rng.standard_normal((sl.stop - sl.start, n_samples, n))
        out[sl] = _ell_samples(x[sl], mu[sl], L[sl], decoder, eps)
    return out


def _expected_loglik(x, mu, var: Cov, decoder, method, rng, n_samples, order):
    N, n = mu.shape
    m = x.shape[-1]
    if method == "auto":
        if isinstance(decoder, LinearDecoder):
            method = "exact"
        elif n <= 2:
            method = "quadrature"
        else:
            method = "mc"
    if method == "exact":
        if not isinstance(decoder, LinearDecoder):
            raise ValueError("method='exact' needs decoder to be a LinearDecoder")
        if decoder.n != n or decoder.m != m:
            raise ValueError(f"decoder must map n={n} to m={m}, got W of shape {decoder.W.shape}")
        r = x - decoder(mu)
        WtW = decoder.W.T @ decoder.W
        tr = trace(WtW @ var.a) if var.full else var.a @ np.diag(WtW)
        return -0.5 * (m * LOG_2PI + np.sum(r * r, axis=-1) + tr)
    if method == "quadrature":
        if n > 2:
            raise ValueError(f"method='quadrature' needs n <= 2 (a tensor grid), got n={n}")
        nodes, weights = gauss_hermite_rule(n, order)
        L = var.chol()
        out = np.empty(N)
        per = max(1, BLOCK_ELEMENTS // max(1, len(weights) * max(n, m)))
        for s in range(0, N, per):
            sl = slice(s, min(N, s + per))
            eps = np.broadcast_to(nodes, (sl.stop - sl.start,) + nodes.shape)
            out[sl] = _ell_samples(x[sl], mu[sl], L[sl], decoder, eps) @ weights
        return out
    if rng is None:
        raise ValueError("rng is required for method='mc' (and for method='auto' with n > 2 and a nonlinear decoder)")
    rng = v.rng("rng", rng)
    return _ell_mc(x, mu, var, decoder, rng, n_samples).mean(axis=1)


def _ell_args(x, mu, var, decoder, method, n_samples, order, dims):
    mu = v.array("mu", mu, ("N", "n"), dims)
    x = v.array("x", x, ("N", "m"), dims)
    var = posterior_var("var", var, dims)
    if not callable(decoder):
        raise ValueError(f"decoder must be callable (z (..., n) -> (..., m)), got {type(decoder).__name__}")
    method = v.choice("method", method, METHODS)
    n_samples = v.scalar("n_samples", n_samples, positive=True, integer=True)
    order = v.scalar("order", order, positive=True, integer=True)
    return x, mu, var, method, n_samples, order


def expected_log_likelihood(x, mu, var, decoder, *, method="auto", rng=None, n_samples=1000, order=20):
    """E_{N(z; mu, Sigma)}[log N(x; nu(z), I)] per example, the second term of Eq. (2).

    Parameters
    ----------
    x : (N, m) data.
    mu : (N, n) posterior means.
    var : Sigma, diagonal (N, n) / (n,) or full (N, n, n) / (1, n, n) / (n, n).
    decoder : nu, any callable mapping a (K, n) batch of latent points to
        (K, m) means (it is called on flattened batches); a
        :class:`LinearDecoder` allows the closed form.
    method : "exact" (LinearDecoder only: -1/2 (m log 2 pi + |x - W mu - b|^2
        + tr(W^T W Sigma))), "quadrature" (tensor Gauss-Hermite grid, n <= 2,
        ``order`` nodes per dimension: exact for polynomial decoders of degree
        < order; for a decoder whose analytic continuation has singularities
        close to the real axis on the scale of the posterior's sd, e.g. a steep
        tanh, convergence is slow: compare two orders), "mc" (``n_samples``
        draws from ``rng``), or "auto" (exact for a LinearDecoder, quadrature
        for n <= 2, else mc).
    rng : numpy.random.Generator, required for "mc".

    Returns
    -------
    (N,) expected log-likelihoods (nats).
    """
    dims: dict = {}
    x, mu, var, method, n_samples, order = _ell_args(x, mu, var, decoder, method, n_samples, order, dims)
    return _expected_loglik(x, mu, var, decoder, method, rng, n_samples, order)


def expected_log_likelihood_draws(x, mu, var, decoder, *, rng, n_samples=1000):
    """Monte Carlo draws of Eq. (2)'s expected log likelihood: log N(x; nu(z), I) with z ~ N(mu, Sigma).

    Parameters
    ----------
    x, mu, var, decoder : as in :func:`expected_log_likelihood`.
    rng : numpy.random.Generator.
    n_samples : draws per example.

    Returns
    -------
    (N, n_samples) log-likelihoods (nats); their mean over the draws is
    :func:`expected_log_likelihood` with ``method="mc"`` and the same generator.
    """
    dims: dict = {}
    x, mu, var, _, n_samples, _ = _ell_args(x, mu, var, decoder, "mc", n_samples, 20, dims)
    return _ell_mc(x, mu, var, decoder, v.rng("rng", rng), n_samples)


def elbo(x, mu, var, s2, decoder, *, method="auto", rng=None, n_samples=1000, order=20):
    """The ELBO of a Gaussian VAE with unit-normal likelihood, Eq. (2), per example.

    ELBO = 1/2 (log|e S^-2 Sigma| - tr S^-2 Sigma - |S^-1 mu|^2)
    + E_{N(z; mu, Sigma)}[log N(x; nu(z), I)].

    Parameters
    ----------
    x, mu, var, decoder, method, rng, n_samples, order :
        as in :func:`expected_log_likelihood`.
    s2 : S^2, prior variance, diagonal (n,) or full (n, n).

    Returns
    -------
    (N,) ELBO values (nats).
    """
    dims: dict = {}
    x, mu, var, method, n_samples, order = _ell_args(x, mu, var, decoder, method, n_samples, order, dims)
    s2 = prior_var("s2", s2, dims)
    return _expected_loglik(x, mu, var, decoder, method, rng, n_samples, order) - _kl(mu, var, s2)


def elbo_local_linear(x, mu, var, s2, nu_mu, J):
    """The locally linear ELBO, Eq. (17), per example.

    ELBO ~= -1/2 (m log 2 pi + |S^-1 mu|^2 + |x - nu(mu)|^2
    + tr((S^-2 + J^T J) Sigma) - log|e S^-2 Sigma|);
    exact (equal to Eq. (2)) for a linear decoder.

    Parameters
    ----------
    x : (N, m) data.
    mu : (N, n) posterior means.
    var : Sigma, diagonal (N, n) / (n,) or full (N, n, n) / (1, n, n) / (n, n).
    s2 : S^2, diagonal (n,) or full (n, n).
    nu_mu : (N, m) decoder means nu(mu).
    J : (N, m, n) decoder Jacobians at mu.

    Returns
    -------
    (N,) values (nats).
    """
    dims: dict = {}
    mu = v.array("mu", mu, ("N", "n"), dims)
    x = v.array("x", x, ("N", "m"), dims)
    var = posterior_var("var", var, dims)
    s2 = prior_var("s2", s2, dims)
    nu_mu = v.array("nu_mu", nu_mu, ("N", "m"), dims)
    J = jacobian_arg("J", J, dims)
    n, m = dims["n"], dims["m"]
    prec = s2.inverse()[0]
    r = x - nu_mu
    tr = trace(posterior_precision(s2, J) @ var.matrix())
    log_e_ratio = n + var.logdet() - s2.logdet()[0]
    return -0.5 * (m * LOG_2PI + quad_form(prec, mu) + np.sum(r * r, axis=-1) + tr - log_e_ratio)
