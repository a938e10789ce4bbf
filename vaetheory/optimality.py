"""Sec. 4.1: gradients of the expected ELBO, Eqs. (3), (5), (9), (10), and the conditions Eqs. (11)-(12).

Gradients are of E_x[ELBO] = (1/N) sum_i ELBO_i (Eq. (2) with the unit-normal
likelihood).  The paper writes them as row vectors (derivatives of a scalar by a
column vector); here they are returned batch-first as arrays of the argument's
shape.  Matrix derivatives (w.r.t. S^-2 and Sigma) treat the entries as
independent, so for a symmetric perturbation E the directional derivative is
tr(G E); the tests check exactly this against finite differences.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from vaetheory import validate as v
from vaetheory.covariance import jacobian_arg, posterior_var, prior_var, variance_precision_args
from vaetheory.numerics import chunks
from vaetheory.optimal import decoder_args, mixture_components


def prior_gradient(mu, var, s2):
    """Gradient of E_x[ELBO] w.r.t. the prior precision S^-2, Eq. (3): 1/2 E_x[S^2 - Sigma - mu mu^T].

    Parameters
    ----------
    mu : (N, n) posterior means.
    var : Sigma, diagonal (N, n) / (n,) or full (N, n, n) / (1, n, n) / (n, n).
    s2 : S^2, diagonal (n,) or full (n, n).

    Returns
    -------
    (n,) when ``s2`` is diagonal (the gradient w.r.t. the diagonal of S^-2,
    i.e. the diagonal of Eq. (3)); (n, n) when ``s2`` is full.  Zero at Eq. (4).
    """
    dims: dict = {}
    mu = v.array("mu", mu, ("N", "n"), dims)
    var = posterior_var("var", var, dims)
    s2 = prior_var("s2", s2, dims)
    if not s2.full:
        return 0.5 * (s2.a[0] - var.diagonal().mean(axis=0) - np.mean(mu * mu, axis=0))
    G = 0.5 * (s2.a[0] - var.matrix().mean(axis=0) - mu.T @ mu / mu.shape[0])
    return (G + G.T) / 2


def decoder_functional_gradient(z, mu, var, x, nu_z, *, chunk=None):
    """Functional derivative of E_x[ELBO] w.r.t. the decoder value nu(z), Eq. (5).

    -1/N sum_i N(z; mu_i, Sigma_i) (nu(z) - x_i), evaluated as
    -1/N (sum_i N(z; mu_i, Sigma_i)) (nu(z) - nu*(z)) with nu* of Eq. (6), so it is
    zero at the optimal decoder up to round-off and never overflows.

    Parameters
    ----------
    z : (M, n) query points.
    mu : (N, n) posterior means.
    var : Sigma, diagonal (N, n) / (n,) or full (N, n, n) / (1, n, n) / (n, n).
    x : (N, m) data.
    nu_z : (M, m) the decoder's values at z.
    chunk : query points per block.

    Returns
    -------
    (M, m) gradient densities (per unit latent volume).
    """
    if x is None:
        raise ValueError("x is required: the (N, m) data of Eq. (5), got None")
    z, mu, var, x, chunk = decoder_args(z, mu, var, x, chunk)
    nu_z = v.array("nu_z", nu_z, (z.shape[0], x.shape[1]))
    whiten = var.whitener()
    out = np.empty_like(nu_z)
    N = mu.shape[0]
    for sl in chunks(z.shape[0], chunk):
        logn, _ = mixture_components(z[sl], mu, var, whiten)
        lse = logsumexp(logn, axis=1, keepdims=True)
        nu_star = np.exp(logn - lse) @ x
        out[sl] = -np.exp(lse) / N * (nu_z[sl] - nu_star)
    return out


def _mean_args(mu, s2, nu_mu, x, J):
    dims: dict = {}
    mu = v.array("mu", mu, ("N", "n"), dims)
    s2 = prior_var("s2", s2, dims)
    x = v.array("x", x, ("N", "m"), dims)
    nu_mu = v.array("nu_mu", nu_mu, ("N", "m"), dims)
    J = jacobian_arg("J", J, dims)
    return mu, s2, nu_mu, x, J


def mean_gradient(mu, s2, nu_mu, x, J):
    """Gradient of E_x[ELBO] w.r.t. each posterior mean, Eq. (9): -1/N (S^-2 mu + J^T (nu(mu) - x)).

    Exact for a linear decoder (J its matrix); a local-linear approximation
    otherwise (Appendix A).  Includes the paper's 1/N factor.

    Parameters
    ----------
    mu : (N, n) posterior means.
    s2 : S^2, (n,) or (n, n).
    nu_mu : (N, m) decoder means nu(mu).
    x : (N, m) data.
    J : (N, m, n) decoder Jacobians at mu.

    Returns
    -------
    (N, n), row i the gradient w.r.t. mu_i.
    """
    mu, s2, nu_mu, x, J = _mean_args(mu, s2, nu_mu, x, J)
    prec = s2.inverse()[0]
    return -(mu @ prec + np.einsum("kmn,km->kn", J, nu_mu - x)) / mu.shape[0]


def mean_condition_residual(mu, s2, nu_mu, x, J):
    """Residual of the posterior-mean condition, Eq. (11): r = mu - S^2 J^T (x - nu(mu)).

    Zero where Eq. (9) is zero (r = -N S^2 times Eq. (9)).

    Parameters
    ----------
    mu : (N, n) posterior means.
    s2 : S^2, (n,) or (n, n).
    nu_mu : (N, m) decoder means nu(mu).
    x : (N, m) data.
    J : (N, m, n) decoder Jacobians at mu.

    Returns
    -------
    (N, n) residuals (units of mu).
    """
    mu, s2, nu_mu, x, J = _mean_args(mu, s2, nu_mu, x, J)
    return mu - np.einsum("kmn,km->kn", J, x - nu_mu) @ s2.matrix()[0].T


def windowed_jacobian(nu_nodes, nu_mu, eps, w, var):
    """The posterior-windowed Jacobian J of Appendices A-B, Eqs. (32)-(33): a local linear fit over the posterior.

    Appendix A defines J by ``nu(mu + sqrt(Sigma) eps) ~= nu(mu) + J sqrt(Sigma) eps``
    over ``eps ~ N(0, I)``.  The least-squares fit (with ``E[eps eps^T] = I``)
    is ``J sqrt(Sigma) = E[(nu(mu + sqrt(Sigma) eps) - nu(mu)) eps^T]``; by
    Stein's lemma this is ``E_q[d nu / dz]``, the decoder's Jacobian averaged
    over the posterior, which equals the point Jacobian of Eq. (8) only for a
    locally linear decoder.  Evaluated with the caller's quadrature rule.

    Parameters
    ----------
    nu_nodes : (N, Q, m) decoder means at ``z_iq = mu_i + sqrt(var_i) eps_q``.
    nu_mu : (N, m) decoder means at mu.
    eps : (Q, n) standard-normal nodes.
    w : (Q,) weights summing to 1.
    var : (N, n) diagonal posterior variances Sigma.

    Returns
    -------
    J : (N, m, n).
    """
    dims: dict = {}
    nu_nodes = v.array("nu_nodes", nu_nodes, ("N", "Q", "m"), dims)
    nu_mu = v.array("nu_mu", nu_mu, ("N", "m"), dims)
    eps = v.array("eps", eps, ("Q", "n"), dims)
    w = v.array("w", w, ("Q",), dims, nonnegative=True)
    var = v.array("var", var, ("N", "n"), dims, positive=True)
    fit = np.einsum("iqm,q,qk->imk", nu_nodes - nu_mu[:, None, :], w, eps)
    return fit / np.sqrt(var)[:, None, :]


def variance_gradient(var, s2, J):
    """Gradient of E_x[ELBO] w.r.t. each posterior variance, Eq. (10): 1/(2N) (Sigma^-1 - S^-2 - J^T J).

    Exact for a linear decoder; a local-linear approximation otherwise
    (Appendix B).  Includes the paper's 1/N factor.

    Parameters
    ----------
    var : Sigma, diagonal (N, n) / (n,) or full (N, n, n) / (1, n, n) / (n, n).
    s2 : S^2, (n,) or (n, n).
    J : (N, m, n) decoder Jacobians at mu.

    Returns
    -------
    (N, n, n) symmetric matrices (for a diagonal Sigma, the gradient w.r.t.
    its diagonal is the diagonal of this).
    """
    var, P = variance_precision_args(var, s2, J)
    return (var.inverse() - P) / (2 * P.shape[0])


def variance_condition_residual(var, s2, J, *, relative=False):
    """Residual of the posterior-variance condition, Eq. (12): Sigma^-1 - (S^-2 + J^T J).

    Parameters
    ----------
    var : Sigma, diagonal (N, n) / (n,) or full (N, n, n) / (1, n, n) / (n, n).
    s2 : S^2, (n,) or (n, n).
    J : (N, m, n) decoder Jacobians at mu.
    relative : return instead the scale-free size ||Sigma P - I||_F per example,
        P = S^-2 + J^T J: zero exactly when Eq. (12) holds, unchanged by a
        rotation or isotropic rescaling of the latent space, and equal to the
        relative error ||(Sigma - P^-1) P||_F of Sigma as an estimate of P^-1
        (the measure the claims report uses).

    Returns
    -------
    (N, n, n) residual matrices, or (N,) when ``relative``.
    """
    var, P = variance_precision_args(var, s2, J)
    if relative:
        E = var.matrix() @ P - np.eye(P.shape[-1])
        return np.sqrt(np.sum(E * E, axis=(-2, -1)))
    return var.inverse() - P
