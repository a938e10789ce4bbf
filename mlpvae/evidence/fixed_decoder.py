"""Per-image Gaussian posteriors optimised on a fixed trained decoder: the gaps of Eqs. (18) and (22) on one decoder.

Not in the paper's experiments; it separates what the paper's Eqs. (18) and
(22) predict for one decoder from what training two decoders did.  With the
decoder held fixed, each image's ELBO, Eq. (2) with prior N(0, S^2),

    E_{N(m, L L^T)}[log p(x|z)] - KL(N(m, L L^T) | N(0, S^2)),

is maximised over its own Gaussian posterior, in float64, for three families:
``diagonal`` (per-image m and diagonal Sigma), ``constant`` (per-image m, one
diagonal Sigma shared by all images: the constant-variance method of Eq. (2)
on this decoder) and ``full`` (per-image m and full Sigma = L L^T, the best
Gaussian: the Laplace / Eq. (25) limit).  L is lower triangular with a
log-diagonal, so Sigma stays positive definite; n <= 2 keeps the
expectations affordable.

Two quadratures of the expectation:

* :func:`gaussian_elbo` / :func:`optimise_posteriors`: a tensor Gauss-Hermite
  rule of ``order`` nodes per axis that moves with (m, L), exact for a linear
  decoder with a Gaussian likelihood, its gradient from the decoder's
  vector-Jacobian product (:func:`mlpvae.nn.jacobian.decoder_vjp`).  A ReLU
  decoder's log p(x|z) has kinks where a unit switches; every node that
  crosses one puts a kink into this objective, so L-BFGS on it can stop with a
  gradient far from zero.
* :func:`grid_gaussian_elbo` / :func:`fit_posteriors`: log p(x|z) on a fixed
  trapezoid grid of nodes (a frame re-centred on q until it holds and resolves
  it), the expectation a q-weighted sum over the nodes: analytic in (m, L), so
  the optimum converges to a stated gradient, and re-finding it on every other
  node measures the quadrature's error.  The measured study uses this one.

Longer than 420 lines because both quadratures share the KL term and the packing of (m, L) for
the optimisers, and the converged one keeps its frame, Newton and certificate steps beside them.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.optimize import minimize
from tqdm import tqdm

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
    kl, k_m, k_L = _kl(m, L, s2)
    elbo = ll @ w - kl
    d_m = np.einsum("g,ngi->ni", w, g) - k_m
    d_L = np.einsum("g,ngi,gj->nij", w, g, nodes) - k_L
    return elbo, d_m, np.tril(d_L)


def _kl(m, L, s2):
    """KL(N(m, L L^T) | N(0, S^2)) per image and its gradients in m and L (lower triangular)."""
    n = m.shape[1]
    s2 = to_numpy(s2).astype(np.float64)
    dg = np.diagonal(L, axis1=1, axis2=2)
    kl = 0.5 * (np.einsum("nij,nij,i->n", L, L, 1.0 / s2) + np.sum(m * m / s2, axis=1) - n)
    kl += -np.sum(np.log(np.abs(dg)), axis=1) + 0.5 * np.sum(np.log(s2))
    d_L = L / s2[None, :, None]
    d_L[:, np.arange(n), np.arange(n)] -= 1.0 / dg
    return kl, m / s2, np.tril(d_L)


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


# The converged optimum: the expectation on a fixed grid, so the objective is smooth in (m, L).
#
# The Gauss-Hermite rule above moves its nodes with (m, L); a ReLU decoder's log p(x|z) has kinks
# where a unit switches, so every node that crosses one puts a kink into the objective, and L-BFGS
# stalls on them with a gradient far from zero.  Below, log p(x|z) is evaluated once on a grid of
# nodes that does not move (a "frame" z = c + A v, v on a tensor trapezoid grid of [-span, span]^n),
# and E_q[log p(x|z)] is the sum of q(z_k) log p(x|z_k) over the nodes, normalised by the sum of
# q(z_k) (so that q leaving the frame gains nothing).  That is an analytic function of (m, L): it
# converges to a gradient of round-off size.  A frame is replaced by one centred on the current q
# whenever q has come within ``INSIDE`` of its standard deviations of the frame's edge or become
# narrower than ``NODES_PER_SD`` node spacings, so at the optimum the frame holds q to e^-32 of its
# mass and resolves it.
#
# Between re-centrings the climb is a trust region: the normalised sum cannot see log p(x|z) beyond
# the frame, while the KL to a broad prior rewards a q that spreads past it, so an unconstrained climb
# runs off the frame to a "gain" that the true ELBO does not have, and the frames that follow chase it
# to a worse local optimum.  A penalty (zero while q's mean and ``TRUST`` of its standard deviations
# lie inside the frame, quadratic in the excess) keeps each climb where the nodes see all but e^-12.5
# of q; an optimum the penalty holds back fails the stricter frame test and is climbed again on a frame
# centred on it.  While q is still travelling that frame is ``WIDEN`` times q's extent (as coarse as
# ``NODES_PER_SD`` allows), so per round q's mean can move (span - TRUST / WIDEN) * WIDEN of its standard
# deviations (15 against 5) and they can grow span * WIDEN / TRUST-fold (4 against 2); a widened frame
# never certifies, so every optimum is checked on a frame of q's own extent.

INSIDE = 8.0  # q's mean plus this many of its standard deviations must lie inside the frame
NODES_PER_SD = 3.0  # and its narrowest standard deviation must span this many node spacings
TRUST = 5.0  # the trust region: q's mean plus this many of its standard deviations inside the frame
WIDEN = 2.0  # a frame re-centred on a q the trust region stopped spans this many times q's extent
LEAVE_PENALTY = 1e4  # nats per squared relative excess of q's extent beyond the trust region
SOFT = 1e-2  # the smoothing of |mean| in frame units, so the penalty is differentiable at a centred mean


def frame_nodes(c, A, points: int, span: float):
    """Nodes ``z = c + A v`` (N, K, n), v on a tensor grid of ``points`` per axis in [-span, span]^n, and the
    trapezoid rule's log weights (N, K) including the cell volume |det A| h^n (Not in the paper).

    ``c (N, n)``, ``A (N, n, n)`` invertible.
    """
    c, A = np.asarray(c, dtype=np.float64), np.asarray(A, dtype=np.float64)
    if c.ndim != 2 or A.shape != c.shape + (c.shape[1],):
        raise ValueError(f"c must be (N, n) and A (N, n, n), got {c.shape} and {A.shape}")
    if points < 5 or points % 2 == 0:
        raise ValueError(f"points must be odd and >= 5 (so the halved grid shares the frame), got {points}")
    if not span > 0:
        raise ValueError(f"span must be positive, got {span}")
    N, n = c.shape
    axis = np.linspace(-span, span, points)
    v = np.stack(np.meshgrid(*([axis] * n), indexing="ij"), axis=-1).reshape(-1, n)
    lw1 = np.zeros(points)
    lw1[[0, -1]] = np.log(0.5)
    lw = sum(np.meshgrid(*([lw1] * n), indexing="ij")).ravel()
    h = 2 * span / (points - 1)
    logdet = np.linalg.slogdet(A)[1]
    return c[:, None, :] + np.einsum("nij,kj->nki", A, v), lw[None, :] + (n * np.log(h) + logdet)[:, None]


def halve(a, points: int, n: int):
    """Every other node of a frame's per-node array ``a (N, K, ...)`` (K = points^n): the grid of half the
    resolution on the same frame (Not in the paper)."""
    shape = a.shape
    b = a.reshape((shape[0],) + (points,) * n + shape[2:])
    return b[(slice(None),) + (slice(None, None, 2),) * n].reshape((shape[0], -1) + shape[2:])


def grid_gaussian_elbo(f, z, logw, s2, m, L):
    """The ELBO of Eq. (2) per image for N(m, L L^T) with the expectation on fixed nodes, and its gradients
    (Not in the paper).

    ``f (N, K)`` is log p(x|z) at the nodes ``z (N, K, n)``, ``logw (N, K)`` their quadrature log weights.
    E_q[log p(x|z)] is sum_k w_k q(z_k) f_k / sum_k w_k q(z_k); the KL to N(0, S^2) is exact.  Returns
    host float64 ``(elbo (N,), d_m (N, n), d_L (N, n, n), mass (N,))``, ``mass`` = sum_k w_k q(z_k) (1 when
    the nodes hold and resolve q).
    """
    N, n = m.shape
    Li = np.linalg.inv(L)
    u = np.einsum("nij,nkj->nki", Li, z - m[:, None, :])
    logdet = np.sum(np.log(np.abs(np.diagonal(L, axis1=1, axis2=2))), axis=1)
    lq = logw - 0.5 * np.sum(u * u, axis=2) - (logdet + 0.5 * n * np.log(2 * np.pi))[:, None]
    top = lq.max(axis=1, keepdims=True)
    p = np.exp(lq - top)
    B = p.sum(axis=1, keepdims=True)
    p /= B
    E = np.sum(p * f, axis=1)
    a = p * (f - E[:, None])  # d E = sum_k a_k d log q(z_k): the normalisation's own term sums to zero
    au = np.einsum("nk,nki->ni", a, u)
    d_m = np.einsum("nij,ni->nj", Li, au)
    d_L = np.einsum("nij,nil->njl", Li, np.einsum("nk,nki,nkl->nil", a, u, u))
    kl, k_m, k_L = _kl(m, L, s2)
    return E - kl, d_m - k_m, np.tril(d_L) - k_L, np.exp(top[:, 0] + np.log(B[:, 0]))


def leave_penalty(m, L, c, A, span: float):
    """The trust region's penalty per image and its gradients in m and L (Not in the paper).

    With ``mv = A^-1 (m - c)`` and ``sd`` the standard deviations of q in frame units, the excess
    ``g_k = (|mv_k|_soft + TRUST sd_k) / span - 1`` of each axis is penalised by ``LEAVE_PENALTY g_k^2``
    where positive; ``|a|_soft = sqrt(a^2 + SOFT^2) - SOFT <= |a|`` and ``TRUST <= INSIDE``, so a
    penalised q always fails :func:`_frame_ok` and a q it holds is never penalised.  Returns host
    float64 ``(P (N,), d_m (N, n), d_L (N, n, n))``.
    """
    Ai = np.linalg.inv(A)
    mv = np.einsum("nij,nj->ni", Ai, m - c)
    Lv = Ai @ L
    sd = np.sqrt(np.sum(Lv * Lv, axis=2))
    soft = np.sqrt(mv * mv + SOFT**2)
    g = np.maximum((soft - SOFT + TRUST * sd) / span - 1.0, 0.0)
    P = LEAVE_PENALTY * np.sum(g * g, axis=1)
    dg = 2.0 * LEAVE_PENALTY * g / span  # dP / d(numerator of g_k)
    d_m = np.einsum("nij,ni->nj", Ai, dg * mv / soft)
    d_L = np.einsum("nij,nil->njl", Ai, (dg * TRUST / sd)[:, :, None] * Lv)
    return P, d_m, np.tril(d_L)


def _frame_ok(m, L, c, A, points: int, span: float):
    """Per image: does the frame (c, A) hold q = N(m, L L^T) (``INSIDE`` standard deviations) and resolve it?"""
    Ai = np.linalg.inv(A)
    mv = np.einsum("nij,nj->ni", Ai, m - c)
    Lv = Ai @ L
    cov = Lv @ np.swapaxes(Lv, 1, 2)
    sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    narrow = np.sqrt(np.linalg.eigvalsh(cov)[:, 0])
    h = 2 * span / (points - 1)
    return np.all(np.abs(mv) + INSIDE * sd <= span, axis=1) & (narrow >= NODES_PER_SD * h)


def _initial(family: str, m0, cov0):
    """Parameter vector of L-BFGS (m, then the log-diagonal / lower triangle of L) from means and covariances."""
    N, n = m0.shape
    L = np.linalg.cholesky(cov0)
    diag = np.arange(n)
    if family == "full":
        t = L.copy()
        t[:, diag, diag] = np.log(L[:, diag, diag])
        i, j = np.tril_indices(n)
        rest = t[:, i, j].ravel()
    else:
        logs = 0.5 * np.log(np.diagonal(cov0, axis1=1, axis2=2))
        rest = logs.ravel() if family == "diagonal" else logs.mean(axis=0)
    return np.concatenate([m0.ravel(), rest])


def _climb(f, z, logw, s2, family: str, v0, gtol: float, maxiter: int, frame):
    """L-BFGS on the fixed-node ELBO summed over the images from ``v0``, within the trust region of
    ``frame = (c, A, span)``; returns the final vector."""
    N, n = z.shape[0], z.shape[2]

    def obj(v):
        value, g = _objective(f, z, logw, s2, family, v, frame)
        return -value, -g

    # ftol 0 and a 1e-3 gtol margin let L-BFGS go on until the gradient is small; the bounds keep its
    # line search's trial points finite (L's diagonal within e^+-12 of the start, m within 1000 of its
    # standard deviations), far beyond the frame, which is re-centred on q after every climb anyway.
    m0, L0 = _unpack(v0, family, N, n)
    sd0 = np.sqrt(np.sum(L0 * L0, axis=2))  # (N, n): row norms of L, the marginal standard deviations
    lo, hi = np.full(v0.size, -np.inf), np.full(v0.size, np.inf)
    lo[: N * n], hi[: N * n] = v0[: N * n] - 1e3 * sd0.ravel(), v0[: N * n] + 1e3 * sd0.ravel()
    logs = np.zeros(v0.size, dtype=bool)
    if family == "full":
        i, j = np.tril_indices(n)
        logs[N * n :] = np.tile(i == j, N)
    else:
        logs[N * n :] = True
    lo[logs], hi[logs] = v0[logs] - 12.0, v0[logs] + 12.0
    r = minimize(
        obj,
        v0,
        jac=True,
        method="L-BFGS-B",
        bounds=list(zip(lo, hi, strict=True)),
        options=dict(maxiter=maxiter, gtol=1e-3 * gtol, ftol=0.0),
    )
    return r.x


def _gradients(f, z, logw, s2, family: str, v):
    """Per-image Euclidean norm of the ELBO's gradient in the image's own parameters, the shared gradient
    (the shared log standard deviations of ``constant``; zeros otherwise), the ELBO and the node mass."""
    N, n = z.shape[0], z.shape[2]
    m, L = _unpack(v, family, N, n)
    e, d_m, d_L, mass = grid_gaussian_elbo(f, z, logw, s2, m, L)
    g = _pack_grad(d_m, d_L, L, family, n)
    own = g[: N * n].reshape(N, n)
    if family == "constant":
        return np.linalg.norm(own, axis=1), g[N * n :], e, mass
    rest = g[N * n :].reshape(N, -1)
    return np.sqrt(np.sum(own**2, axis=1) + np.sum(rest**2, axis=1)), np.zeros(0), e, mass


def fit_posteriors(
    loglik,
    s2,
    family: str,
    starts,
    *,
    points: int = 129,
    span: float = 10.0,
    tol: float = 1e-9,
    gtol: float = 1e-6,
    maxiter: int = 500,
    max_frames: int = 20,
    progress: bool = False,
) -> dict:
    """Each image's best Gaussian posterior of ``family`` on a fixed decoder, converged (Eq. (2); Not in the paper).

    Maximises the ELBO, Eq. (2) with prior N(0, S^2), over N(m, Sigma) per image (``diagonal``: Sigma
    diagonal; ``full``; ``constant``: one diagonal Sigma shared by all images, jointly), with the
    expectation on a fixed frame of nodes (:func:`grid_gaussian_elbo`; the module's comment before
    ``INSIDE``), in float64: L-BFGS, then Newton steps (the Hessian by central differences of the
    analytic gradient) until the ELBO a further Newton step predicts is at most ``tol``, the frame
    re-centred on q until it holds and resolves q.

    Parameters
    ----------
    loglik : callable ``(i, z) -> (K,)``: log p(x_i|z) of image ``i`` at the nodes ``z (K, n)``.
    s2 : (n,) prior variance S^2.
    family : ``diagonal``, ``full`` or ``constant``.
    starts : list of ``(m0 (N, n), cov0 (N, n, n))``; each image keeps the start that ends highest
        (``constant``: one start per entry, the shared Sigma its images' geometric mean of the diagonals).
    points, span : nodes per axis (odd) over [-span, span] standard deviations of the frame.
    tol : the stopping test, in nats: per image, the gain 1/2 g^T (-H)^-1 g that a Newton step on its
        own parameters predicts (g, H the gradient and Hessian of its ELBO in m and the log-diagonal /
        lower triangle of L), and for ``constant`` also that of the joint step, must be at most ``tol``,
        at a point where -H is positive definite (a strict local maximum).  Scale-free where a gradient
        norm is not: a narrow posterior has a large gradient for a tiny distance from its optimum.
    gtol, maxiter : L-BFGS's own stopping gradient and iteration limit before the Newton steps.
    max_frames : rounds of optimisation; after each, a frame that fails to hold or resolve its q is
        centred on it for the next.  An image whose frame still fails after the last round is reported
        not converged.

    Returns
    -------
    dict of host arrays: ``m (N, n)``, ``cov (N, n, n)``, ``elbo (N,)``, ``gain (N,)`` and
    ``gain_joint (N,)`` (the predicted Newton gains above), ``gradient (N,)`` (the Euclidean norm of
    the image's gradient in its own parameters), ``gradient_shared`` (``constant``: the shared log
    standard deviations' gradient of the summed ELBO, (n,); else empty), ``converged (N,)`` (the
    stopping test holds and the frame holds q; ``constant``: every image's frame, since the shared Sigma
    is one optimum of all), ``frames (N,)`` (decoder grids evaluated), ``mass (N,)``
    (sum_k w_k q(z_k), 1 to round-off when the nodes hold q), ``start (N,)`` (index of the winning
    start), and ``elbo_halved (N,)``: the optimum re-found on every other node (twice the spacing),
    so ``elbo - elbo_halved`` measures the quadrature's resolution error at the optimum.
    ``progress``: a progress bar over the images (``diagonal``, ``full``) or, for ``constant``, over
    each start's rounds of frames.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if not starts:
        raise ValueError("starts must hold at least one (m0, cov0)")
    if not gtol > 0:
        raise ValueError(f"gtol must be positive, got {gtol}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    s2 = to_numpy(s2).astype(np.float64)
    best = None
    for k, (m0, cov0) in enumerate(starts):
        m0, cov0 = np.asarray(m0, dtype=np.float64), np.asarray(cov0, dtype=np.float64)
        if m0.ndim != 2 or cov0.shape != m0.shape + (m0.shape[1],):
            raise ValueError(f"starts[{k}] must be (m0 (N, n), cov0 (N, n, n)), got {m0.shape} and {cov0.shape}")
        if family == "constant":
            # one joint optimisation per start: the bar counts its rounds of frames (at most max_frames)
            with tqdm(
                total=max_frames,
                desc=f"shared Sigma, start {k + 1} of {len(starts)}: frame rounds",
                disable=not progress,
                leave=False,
                file=sys.stderr,
            ) as bar:

                def round_done(reframed: int) -> None:
                    bar.update(1)
                    bar.set_postfix_str(f"{reframed} of {len(m0)} images re-framed")

                r = _fit_shared(loglik, s2, m0, cov0, points, span, gtol, tol, maxiter, max_frames, report=round_done)
        else:
            parts = [
                _fit_shared(
                    loglik, s2, m0[i : i + 1], cov0[i : i + 1], points, span, gtol, tol, maxiter, max_frames, family, i
                )
                for i in tqdm(
                    range(len(m0)), desc=f"{family} posteriors", disable=not progress, leave=False, file=sys.stderr
                )
            ]
            r = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        r["start"] = np.full(len(m0), k)
        if best is None:
            best = r
        else:  # per image, the start that ended highest (``constant``: the whole set, its images are coupled)
            better = (
                r["elbo"] > best["elbo"]
                if family != "constant"
                else np.full(len(m0), r["elbo"].sum() > best["elbo"].sum())
            )
            for key in best:
                if key != "gradient_shared" and best[key].shape[:1] == better.shape:
                    best[key] = np.where(better.reshape((-1,) + (1,) * (best[key].ndim - 1)), r[key], best[key])
            if family == "constant" and better[0]:
                best["gradient_shared"] = r["gradient_shared"]
    return best


def _objective(f, z, logw, s2, family: str, v, frame):
    """The summed ELBO less the trust region's penalty (:func:`leave_penalty` on ``frame = (c, A, span)``),
    and its gradient (ascent) in the L-BFGS vector ``v``."""
    N, n = z.shape[0], z.shape[2]
    m, L = _unpack(v, family, N, n)
    e, d_m, d_L, _ = grid_gaussian_elbo(f, z, logw, s2, m, L)
    P, p_m, p_L = leave_penalty(m, L, *frame)
    return float(e.sum() - P.sum()), _pack_grad(d_m - p_m, d_L - p_L, L, family, n)


def _hessian(f, z, logw, s2, family: str, v, frame):
    """The summed ELBO's Hessian in ``v`` by central differences of its analytic gradient.

    Image i's gradient depends on its own parameters and the shared ones only, so for ``constant``
    the k-th mean coordinate of every image is perturbed at once (n + n gradient pairs in all).
    """
    N, n = z.shape[0], z.shape[2]
    m, L = _unpack(v, family, N, n)
    sd = np.sqrt(np.diagonal(L @ np.swapaxes(L, 1, 2), axis1=1, axis2=2))
    d = v.size
    step = np.full(d, 1e-5)
    step[: N * n] = 1e-5 * sd.ravel()  # a mean moves on the scale of its standard deviation
    if family == "full":  # off-diagonal entries of L on the scale of the narrowest standard deviation
        i, j = np.tril_indices(n)
        off = np.tile(i != j, N)
        step[N * n :][off] = 1e-5 * np.repeat(sd.min(axis=1), len(i))[off]
    if family == "constant" and N > 1:
        groups = [np.arange(k, N * n, n) for k in range(n)] + [[N * n + k] for k in range(n)]
    else:
        groups = [[k] for k in range(d)]
    H = np.zeros((d, d))
    for grp in groups:
        e = np.zeros(d)
        e[grp] = step[grp]
        grad = lambda u: _objective(f, z, logw, s2, family, u, frame)[1]  # noqa: E731
        dg = (grad(v + e) - grad(v - e)) / 2
        if len(grp) == 1:
            H[:, grp[0]] = dg / step[grp[0]]
        else:  # image i's own rows respond to its own coordinate only
            for col in grp:
                img = col // n
                H[img * n : (img + 1) * n, col] = dg[img * n : (img + 1) * n] / step[col]
    if family == "constant" and N > 1:  # the shared rows from the shared columns (the Hessian is symmetric)
        H[N * n :, : N * n] = H[: N * n, N * n :].T
    return 0.5 * (H + H.T)


def _newton(f, z, logw, s2, family: str, v, tol: float, frame, steps: int = 60):
    """Newton steps on the summed ELBO from ``v`` until the predicted gain 1/2 g^T (-H)^-1 g is <= ``tol``.

    Returns ``(v, gain, images, maximum)``: the joint predicted gain, each image's own (its block of
    the Hessian, the shared parameters held), and whether -H is positive definite (a strict local
    maximum) at the end.
    """
    N, n = z.shape[0], z.shape[2]
    for _ in range(steps + 1):
        value, g = _objective(f, z, logw, s2, family, v, frame)
        H = _hessian(f, z, logw, s2, family, v, frame)
        shift, scale = 0.0, float(np.max(np.abs(np.diag(H)))) or 1.0
        while True:  # where -H is not positive definite, a Levenberg shift towards a gradient step
            try:
                C = np.linalg.cholesky(-H + shift * np.eye(len(g)))
                break
            except np.linalg.LinAlgError:
                shift = max(2 * shift, 1e-8 * scale)
        delta = np.linalg.solve(C.T, np.linalg.solve(C, g))
        gain = 0.5 * float(g @ delta)
        if shift == 0.0 and gain <= tol:
            break
        t = 1.0
        while t > 1e-10:  # a Newton step, halved until the ELBO does not fall
            vt = v + t * delta
            try:
                with np.errstate(all="ignore"):
                    trial = _objective(f, z, logw, s2, family, vt, frame)[0]
            except np.linalg.LinAlgError:  # a step so long that L overflowed: shorten it
                trial = -np.inf
            if trial >= value:
                v = vt
                break
            t *= 0.5
        else:
            break
    maximum = bool(np.all(np.linalg.eigvalsh(-H) > 0))
    return v, gain if maximum else np.inf, own_gains(H, g, N, n, family), maximum


def own_gains(H, g, N: int, n: int, family: str) -> np.ndarray:
    """Each image's predicted Newton gain 1/2 g_i^T (-H_ii)^-1 g_i in its own parameters (Not in the paper).

    ``H (d, d)``, ``g (d,)``: the summed ELBO's Hessian and gradient in the vector ``v = [m (N n), rest]``
    (``constant``: the image's means only, the shared Sigma held; otherwise its means and its own
    ``rest``).  Infinite where -H_ii is not positive definite (singular included): no strict local
    maximum in the image's own parameters, so nothing is certified there.
    """
    own = np.empty(N)
    r = 0 if family == "constant" else (len(g) - N * n) // N
    for i in range(N):
        idx = np.concatenate([np.arange(i * n, (i + 1) * n), N * n + np.arange(i * r, (i + 1) * r)])
        try:
            C = np.linalg.cholesky(-H[np.ix_(idx, idx)])
        except np.linalg.LinAlgError:
            own[i] = np.inf
            continue
        w = np.linalg.solve(C, g[idx])
        own[i] = 0.5 * float(w @ w)
    return own


def _optimum(f, z, logw, s2, family, v, gtol, tol, maxiter, frame):
    """L-BFGS, then Newton to the stated predicted gain: the optimum on fixed nodes, within ``frame``'s trust region."""
    v = _climb(f, z, logw, s2, family, v, gtol, maxiter, frame)
    return _newton(f, z, logw, s2, family, v, tol, frame)


def _fit_shared(
    loglik, s2, m0, cov0, points, span, gtol, tol, maxiter, max_frames, family="constant", first=0, report=None
):
    """:func:`fit_posteriors` for one start on the images ``first, first + 1, ...`` of ``m0`` (jointly);
    ``report(reframed)`` is called after each round of frames with the number of images re-framed."""
    N, n = m0.shape
    v = _initial(family, m0, cov0)
    m, L = _unpack(v, family, N, n)
    c, A = m.copy(), L.copy()
    z, logw = frame_nodes(c, A, points, span)
    f = np.stack([loglik(first + i, z[i]) for i in range(N)])
    frames = np.ones(N, dtype=int)
    wide = np.zeros(N, dtype=bool)  # frames widened for a chase: they never certify
    widen = max(1.0, min(WIDEN, (points - 1) / (2 * span * NODES_PER_SD)))  # q stays resolved on a wide frame
    for k in range(max_frames):
        frame = (c, A, span)
        v = _climb(f, z, logw, s2, family, v, gtol, maxiter, frame)
        m, L = _unpack(v, family, N, n)
        ok = _frame_ok(m, L, c, A, points, span) & ~wide
        if ok.all() or k == max_frames - 1:  # Newton's certificate only where it can certify
            v, gain, own, maximum = _newton(f, z, logw, s2, family, v, tol, frame)
            m, L = _unpack(v, family, N, n)
            ok = _frame_ok(m, L, c, A, points, span) & ~wide
        held = leave_penalty(m, L, c, A, span)[0] > 0  # the trust region stopped q short
        if report is not None:
            report(int((~ok).sum()))
        # Out of rounds, the frames stay those the optimum was found on: a frame centred on q afterwards would
        # hold q by construction and certify an optimum that its own frame did not hold.
        if ok.all() or k == max_frames - 1:
            break
        for i in np.flatnonzero(~ok):  # a frame centred on the current q, wider while q is still travelling
            c[i], A[i], wide[i] = m[i], (widen if held[i] else 1.0) * L[i], held[i] and widen > 1
            zi, lwi = frame_nodes(c[i : i + 1], A[i : i + 1], points, span)
            z[i], logw[i], f[i] = zi[0], lwi[0], loglik(first + i, zi[0])
            frames[i] += 1
    gnorm, gshared, elbo, mass = _gradients(f, z, logw, s2, family, v)
    zh, lh, fh = halve(z, points, n), halve(logw, points, n) + n * np.log(2.0), halve(f, points, n)
    vh = _optimum(fh, zh, lh, s2, family, v, gtol, tol, maxiter, (c, A, span))[0]
    elbo_h = _gradients(fh, zh, lh, s2, family, vh)[2]
    return dict(
        m=m,
        cov=L @ np.swapaxes(L, 1, 2),
        elbo=elbo,
        gradient=gnorm,
        gradient_shared=gshared,
        gain=own,
        gain_joint=np.full(N, gain),
        # a shared Sigma is certified only if every image's frame holds its q: each image's ELBO depends on it
        converged=(own <= tol) & (gain <= tol) & (ok if family != "constant" else np.full(N, ok.all())) & maximum,
        frames=frames,
        mass=mass,
        elbo_halved=elbo_h,
    )
