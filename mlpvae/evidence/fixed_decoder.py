"""Per-image Gaussian posteriors optimised on a fixed trained decoder: the gaps of Eqs. (18) and (22) on one decoder.

Not in the paper's experiments; it separates what the paper's Eqs. (18) and
(22) predict for one decoder from what training two decoders did.  With the
decoder held fixed, each image's ELBO, Eq. (2) with prior N(0, S^2),

    E_{N(m, L L^T)}[log p(x|z)] - KL(N(m, L L^T) | N(0, S^2)),

is maximised over its own Gaussian posterior, in float64, for three families:
``diagonal`` (per-image m and diagonal Sigma), ``constant`` (per-image m, one
diagonal Sigma shared by all images: the constant-variance method of Eq. (2)
on this decoder) and ``full`` (per-image m and full Sigma = L L^T, the best
Gaussian: the Laplace / Eq. (25) limit).  The expectation is a tensor
Gauss-Hermite rule of ``order`` nodes per axis (n <= 2 keeps it affordable),
exact for a linear decoder with a Gaussian likelihood; its gradient in m and
L comes from the decoder's vector-Jacobian product
(:func:`mlpvae.nn.jacobian.decoder_vjp`) at the nodes, and L-BFGS
(SciPy) climbs the sum over images, which is separable except for the
shared Sigma.  L is lower triangular with a log-diagonal, so Sigma stays
positive definite.  A ReLU decoder makes log p(x|z) piecewise smooth, so
the rule is then approximate: compare two orders (on a small trained model
the best full Gaussian's ELBO came out 0.002 nats above the exact log p(x)
at order 10).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from mlpvae.evidence.posterior_mode import LIKELIHOODS, score
from mlpvae.nn import jacobian as Jac
from mlpvae.nn import model as M
from vaetheory.numerics import gauss_hermite_rule
from vaetheory.xp import array_namespace, to_numpy

FAMILIES = ("diagonal", "constant", "full")


def gaussian_elbo(params, x, mc: M.ModelConfig, s2, m, L, order: int = 10, baggins_s2=None, mu=None, var=None):
    """The ELBO of Eq. (2) per image for posteriors N(m, L L^T), and its gradients in m and L (Not in the paper).

    ``x (N, mc.m)``; ``m (N, n)``; ``L (N, n, n)`` lower triangular; ``s2 (n,)``.
    The expectation of log p(x|z) is a Gauss-Hermite rule of ``order`` nodes
    per axis.  BAGGINS' T of Eq. (29) uses ``mu, var`` (the encoder's) with
    S^2 = ``baggins_s2``.  Returns host float64 ``(elbo (N,), d_m (N, n), d_L (N, n, n))``.
    """
    if mc.likelihood not in LIKELIHOODS:
        raise ValueError(f"gaussian_elbo supports the likelihoods {LIKELIHOODS}, not {mc.likelihood!r}")
    xp = array_namespace(x)
    N, n = m.shape
    nodes, w = gauss_hermite_rule(n, order)
    G = len(w)
    z = m[:, None, :] + np.einsum("nij,gj->ngi", L, nodes)  # (N, G, n)
    rows = lambda a: xp.asarray(np.broadcast_to(a[:, None], (N, G) + a.shape[1:]).reshape(N * G, -1))  # noqa: E731
    xr = xp.broadcast_to(x[:, None], (N, G, x.shape[1])).reshape(N * G, -1)
    out, vjp = Jac.decoder_vjp(params, xp.asarray(z.reshape(N * G, n)), mc)
    dec = {"logits" if mc.likelihood == "bernoulli" else "mean": out}
    T = None
    if mc.likelihood == "baggins":
        T = M.likelihood_T(xr, out, rows(to_numpy(mu)), rows(to_numpy(var)), mc, baggins_s2)
    ll = to_numpy(M.log_likelihood(dec, xr, mc, T=T)).reshape(N, G)
    g = to_numpy(vjp(score(out, xr, mc))).reshape(N, G, n)
    s2 = to_numpy(s2).astype(np.float64)
    dg = np.diagonal(L, axis1=1, axis2=2)
    kl = 0.5 * (np.einsum("nij,nij,i->n", L, L, 1.0 / s2) + np.sum(m * m / s2, axis=1) - n)
    kl += -np.sum(np.log(np.abs(dg)), axis=1) + 0.5 * np.sum(np.log(s2))
    elbo = ll @ w - kl
    d_m = np.einsum("g,ngi->ni", w, g) - m / s2
    d_L = np.einsum("g,ngi,gj->nij", w, g, nodes) - L / s2[None, :, None]
    d_L[:, np.arange(n), np.arange(n)] += 1.0 / dg
    return elbo, d_m, np.tril(d_L)


def _unpack(v, family: str, N: int, n: int):
    m = v[: N * n].reshape(N, n)
    rest = v[N * n :]
    L = np.zeros((N, n, n))
    if family == "full":
        t = rest.reshape(N, n * (n + 1) // 2)
        i, j = np.tril_indices(n)
        L[:, i, j] = t
        L[:, np.arange(n), np.arange(n)] = np.exp(L[:, np.arange(n), np.arange(n)])
    else:
        logs = rest.reshape(N, n) if family == "diagonal" else np.broadcast_to(rest, (N, n))
        L[:, np.arange(n), np.arange(n)] = np.exp(logs)
    return m, L


def _pack_grad(d_m, d_L, L, family: str, n: int):
    diag = np.arange(n)
    dlog = d_L[:, diag, diag] * L[:, diag, diag]  # chain rule through L_kk = exp(l_k)
    if family == "full":
        i, j = np.tril_indices(n)
        dl = d_L.copy()
        dl[:, diag, diag] = dlog
        return np.concatenate([d_m.ravel(), dl[:, i, j].ravel()])
    return np.concatenate([d_m.ravel(), (dlog if family == "diagonal" else dlog.sum(axis=0)).ravel()])


def optimise_posteriors(
    params,
    x,
    mc: M.ModelConfig,
    s2,
    family: str,
    m0,
    var0,
    *,
    order: int = 10,
    baggins_s2=None,
    mu=None,
    var=None,
    maxiter: int = 2000,
    gtol: float = 1e-7,
) -> dict:
    """Each image's best Gaussian posterior of ``family`` on the fixed decoder, by L-BFGS in float64 (Not in the paper).

    Starts at ``m0 (N, n)`` and the diagonal ``var0 (N, n)`` (for ``constant``
    their mean over the images).  Returns host arrays ``m (N, n)``, ``cov (N, n, n)``
    (L L^T), ``elbo (N,)``, and ``converged`` (L-BFGS's own verdict), ``iterations``,
    ``gradient_max`` (the largest |gradient| of the summed ELBO at the end).
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    m0, var0 = to_numpy(m0).astype(np.float64), to_numpy(var0).astype(np.float64)
    N, n = m0.shape
    half = 0.5 * np.log(var0)
    if family == "full":
        t = np.zeros((N, n, n))
        t[:, np.arange(n), np.arange(n)] = half
        i, j = np.tril_indices(n)
        rest = t[:, i, j].ravel()
    else:
        rest = half.ravel() if family == "diagonal" else half.mean(axis=0)
    v0 = np.concatenate([m0.ravel(), rest])

    def f(v):
        m, L = _unpack(v, family, N, n)
        e, d_m, d_L = gaussian_elbo(params, x, mc, s2, m, L, order, baggins_s2, mu, var)
        return -float(e.sum()), -_pack_grad(d_m, d_L, L, family, n)

    r = minimize(f, v0, jac=True, method="L-BFGS-B", options=dict(maxiter=maxiter, gtol=gtol, ftol=1e-15, maxcor=30))
    m, L = _unpack(r.x, family, N, n)
    e, d_m, d_L = gaussian_elbo(params, x, mc, s2, m, L, order, baggins_s2, mu, var)
    grad = _pack_grad(d_m, d_L, L, family, n)
    return dict(
        m=m,
        cov=L @ np.swapaxes(L, 1, 2),
        elbo=e,
        converged=bool(r.success),
        iterations=int(r.nit),
        gradient_max=float(np.abs(grad).max()),
    )
