"""Sec. 4.2 and Sec. 5: the exact log evidence Eq. (16), the ELBO gap Eq. (18), Eqs. (25)-(27).

Log-determinants go through Cholesky factors.  Sylvester's identity moves the
m x m determinant of Eq. (16) into latent space:
log|J S^2 J^T + I_m| = log|I_n + L^T J^T J L| with S^2 = L L^T.
"""

from __future__ import annotations

import numpy as np

from vaetheory import validate as v
from vaetheory.covariance import (
    Cov,
    jacobian_arg,
    posterior_var,
    precision_args,
    prior_var,
    variance_precision_args,
)
from vaetheory.gaussian import LOG_2PI
from vaetheory.numerics import inv_spd, logdet_spd, quad_form


def _evidence(x, z, nu_z, J, s2: Cov, T: Cov | None):
    """-1/2 (m log 2pi + |S^-1 z|^2 + r^T T^-1 r + log|J S^2 J^T + T|), T = I when None."""
    m, n = J.shape[1], J.shape[2]
    r = x - nu_z
    A = J @ s2.chol()[0]
    if T is None:
        logdet_T = 0.0
        maha = np.sum(r * r, axis=-1)
    elif T.full:
        LT = T.chol()
        Lr = np.linalg.solve(LT, r[..., None])[..., 0]
        A = np.linalg.solve(LT, A)
        logdet_T = T.logdet()
        maha = np.sum(Lr * Lr, axis=-1)
    else:
        A = A / np.sqrt(T.a)[..., None]
        logdet_T = T.logdet()
        maha = np.sum(r * r / T.a, axis=-1)
    # Sylvester: log|A A^T + I_m| = log|I_n + A^T A|.
    logdet = logdet_T + logdet_spd(np.eye(n) + np.swapaxes(A, -1, -2) @ A)
    return -0.5 * (m * LOG_2PI + quad_form(s2.inverse()[0], z) + maha + logdet)


def _evidence_args(x, z, nu_z, J, s2, zname):
    dims: dict = {}
    J = jacobian_arg("J", J, dims)
    x = v.array("x", x, ("N", "m"), dims)
    z = v.array(zname, z, ("N", "n"), dims)
    nu_z = v.array("nu_" + zname, nu_z, ("N", "m"), dims)
    s2 = prior_var("s2", s2, dims)
    return x, z, nu_z, J, s2, dims


def log_evidence(x, z, nu_z, J, s2):
    """The exact log evidence for unit-normal data noise, Eq. (16), per example.

    log p(x) = -1/2 (m log 2 pi + |S^-1 z|^2 + |x - nu(z)|^2 + log|J S^2 J^T + I|),
    with the determinant taken through Sylvester's identity in latent space.
    Evaluated at the posterior mode z (Eq. (11)) it is exact for a linear
    decoder nu(z) = W z + b (it then equals log N(x; b, W S^2 W^T + I)) and a
    second-order (Laplace) approximation otherwise.

    Parameters
    ----------
    x : (N, m) data.
    z : (N, n) latent points (the posterior modes).
    nu_z : (N, m) decoder means nu(z).
    J : (N, m, n) decoder Jacobians at z.
    s2 : S^2, diagonal (n,) or full (n, n).

    Returns
    -------
    (N,) log evidence (nats).
    """
    x, z, nu_z, J, s2, _ = _evidence_args(x, z, nu_z, J, s2, "z")
    return _evidence(x, z, nu_z, J, s2, None)


def _likelihood_var(T, dims) -> Cov:
    if np.ndim(np.asarray(T) if not hasattr(T, "shape") else T) == 0:
        t = v.scalar("T", T, positive=True)
        return Cov(np.full((dims["N"], dims["m"]), t), False)
    return posterior_var("T", T, dims, k="m")


def log_evidence_general(x, mu, nu_mu, J, s2, T):
    """The log evidence with Gaussian likelihood variance T, Eq. (26), per example.

    log p(x) = -1/2 (m log 2 pi + |S^-1 mu|^2 + (x - nu(mu))^T T^-1 (x - nu(mu))
    + log|J S^2 J^T + T|).  With T = I it is Eq. (16).  Exact for a linear
    decoder at the posterior mode, a Laplace approximation otherwise.

    Parameters
    ----------
    x : (N, m) data.
    mu : (N, n) posterior modes.
    nu_mu : (N, m) decoder means.
    J : (N, m, n) decoder Jacobians at mu.
    s2 : S^2, diagonal (n,) or full (n, n).
    T : likelihood variance: a positive scalar (T = t I), an (m,) diagonal,
        per-example diagonals (N, m), a shared full (m, m) / (1, m, m), or
        per-example full (N, m, m).  A 2-D T of shape (N, m) is read as
        diagonals even when N == m.

    Returns
    -------
    (N,) log evidence (nats).
    """
    x, mu, nu_mu, J, s2, dims = _evidence_args(x, mu, nu_mu, J, s2, "mu")
    T = _likelihood_var(T, dims)
    return _evidence(x, mu, nu_mu, J, s2, T)


def log_evidence_noiseless(mu, J, s2):
    """The noiseless (change of variables) log evidence, Eq. (27), the T -> 0 limit of Eq. (26), per example.

    log p(x) = -1/2 (m log 2 pi + |S^-1 mu|^2 + log|J S^2 J^T|) with n = m,
    where log|J S^2 J^T| = 2 log|det J| + log|S^2| (slogdet).  The residual
    term of Eq. (26) is dropped: the data are taken to be exactly decoded,
    x = nu(mu).  A singular J gives +inf (the unbounded likelihood of Sec. 5).

    Parameters
    ----------
    mu : (N, n) latent points.
    J : (N, n, n) square decoder Jacobians.
    s2 : S^2, diagonal (n,) or full (n, n).

    Returns
    -------
    (N,) log densities (nats); +inf where J is singular.
    """
    dims: dict = {}
    mu = v.array("mu", mu, ("N", "n"), dims)
    J = v.array("J", J, ("N", "n", "n"), dims)
    s2 = prior_var("s2", s2, dims)
    sign, logabs = np.linalg.slogdet(J)
    logdet = np.where(sign == 0, -np.inf, 2.0 * logabs) + s2.logdet()[0]
    return -0.5 * (dims["n"] * LOG_2PI + quad_form(s2.inverse()[0], mu) + logdet)


def _gap_eigenvalues(var: Cov, P: np.ndarray) -> np.ndarray:
    """Eigenvalues (N, n) of P Sigma, via the symmetric L^T Sigma L with P = L L^T."""
    L = np.linalg.cholesky(P)
    if var.full:
        A = np.swapaxes(L, -1, -2) @ var.a @ L
    else:
        A = np.swapaxes(L, -1, -2) @ (var.a[..., None] * L)
    return np.linalg.eigvalsh((A + np.swapaxes(A, -1, -2)) / 2)


def evidence_gap(var, s2, J):
    """The gap log p(x) - ELBO at z = mu, Eq. (18), per example.

    gap = 1/2 (tr(P Sigma) - log|e P Sigma|), P = S^-2 + J^T J.  Computed from
    the eigenvalues lambda of P Sigma as 1/2 sum(d - log1p(d)), d = lambda - 1,
    which keeps full relative accuracy near the optimum Sigma = P^-1, where the
    gap vanishes (Eq. (25)).  It is the KL divergence from the true posterior
    N(mu, P^-1) to N(mu, Sigma).

    Parameters
    ----------
    var : Sigma, diagonal (N, n) / (n,) or full (N, n, n) / (1, n, n) / (n, n).
    s2 : S^2, diagonal (n,) or full (n, n).
    J : (N, m, n) decoder Jacobians.

    Returns
    -------
    (N,) gaps (nats, >= 0).
    """
    var, P = variance_precision_args(var, s2, J)
    lam = _gap_eigenvalues(var, P)
    # Near 1 the log1p form keeps relative accuracy; far below 1, lambda - 1
    # rounds to -1 and log1p(d) would lose every digit (or give -inf), so
    # those terms take lambda - 1 - log(lambda) with the logs of the small
    # eigenvalues from the log-determinants: sum log(lambda) = log|P| + log|Sigma|
    # (each from its own Cholesky factor, accurate however small P Sigma is),
    # minus the logs of the other eigenvalues.
    small = lam < 0.5
    d = np.where(small, 0.0, lam - 1.0)
    near = np.sum(np.where(small, 0.0, d - np.log1p(d)), axis=-1)
    if not small.any():
        return 0.5 * near
    log_lam_small = (
        logdet_spd(P) + var.logdet() - np.sum(np.where(small, 0.0, np.log(np.where(small, 1.0, lam))), axis=-1)
    )
    # A small eigenvalue computed as <= 0 (it lies below the round-off of eigvalsh) adds nothing to the trace.
    far = np.sum(np.where(small, np.maximum(lam, 0.0) - 1.0, 0.0), axis=-1) - log_lam_small
    return 0.5 * (near + np.where(small.any(axis=-1), far, 0.0))


def true_posterior_covariance(s2, J):
    """The true posterior covariance, Eq. (25): (S^-2 + J^T J)^-1, per example.

    It is also the optimal posterior variance of Eq. (12) and the Sigma at
    which the gap Eq. (18) vanishes.

    Parameters
    ----------
    s2 : S^2, diagonal (n,) or full (n, n).
    J : (N, m, n) decoder Jacobians.

    Returns
    -------
    (N, n, n) symmetric positive definite matrices.
    """
    return inv_spd(precision_args(s2, J))
