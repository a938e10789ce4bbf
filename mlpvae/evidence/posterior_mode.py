"""The posterior mode of a trained model, image by image, and Eq. (16)'s Laplace posterior centred there.

Eq. (16) is the Laplace approximation of log p(x) = log int p(x|z) N(z; 0, S^2) dz.  The paper
evaluates it at the encoder's mean mu; a Laplace approximation belongs at the mode z* of the log
joint ``log p(x|z) + log N(z; 0, S^2)``.  For the 2-D models the grid quadrature
(:mod:`mlpvae.evidence.grid`) found that Eq. (16) at the mode is log p(x) to a few tenths of a nat while
at mu it is up to hundreds of nats low, and that the IWAE bound with q(z|x) as proposal misses
images whose q sits away from the mode.  Here the mode is found in any latent dimension, by damped
Gauss-Newton (Levenberg-Marquardt) from mu and from the encoder's means of the most similar training
images (the encoder may aim at the wrong one of several modes), and the Laplace posterior N(z*, P^-1),
``P = S^-2 + J^T G J`` at z*, serves as an IWAE proposal: a lower bound on log p(x) (in expectation)
that does not depend on where the encoder aims.  Not in the paper.

The exact gradient of the log joint is ``J^T s - z / S^2`` with ``s = d log p(x|nu) / d nu`` at the
decoder output nu(z) (logits for Bernoulli), J the decoder's Jacobian
(:func:`mlpvae.nn.jacobian.decoder_jacobian`); Gauss-Newton's curvature is ``J^T G J`` with G minus the
Hessian of log p(x|nu) in nu (for BAGGINS its positive part).  BAGGINS' T of Eq. (29) depends on z
through the residual r = |x - nu|^2 (T = tau r / tr(Sigma^-1 S^2)), so its log p(x|z) is
``-m/2 log r`` plus a constant and ``s = m (x - nu) / r``.  A learned likelihood variance
(``gaussian-learned``) has a second decoder head that the Jacobian does not cover: refused.
"""

from __future__ import annotations

import numpy as np

from mlpvae.evidence.laplace import likelihood_at
from mlpvae.nn import jacobian as Jac
from mlpvae.nn import model as M
from mlpvae.nn.batched import chunks
from mlpvae.nn.layers import sigmoid
from mlpvae.nn.likelihoods import LOG_2PI
from vaetheory.xp import array_namespace, to_numpy

LIKELIHOODS = ("bernoulli", "gaussian", "baggins")
CREEP_STEPS, CREEP_NATS = 20, 1e-6  # an image whose log joint rose less than this in that many steps has stalled


def log_joint_at(params, x, z, mu, var, mc: M.ModelConfig, s2, baggins_s2, out=None):
    """log p(x|z) + log N(z; 0, S^2) per image (b,) (Eqs. (1), (26), (29))."""
    xp = array_namespace(z)
    ll, _ = likelihood_at(params, x, z, mu, var, mc, baggins_s2, out=out)
    return ll - 0.5 * xp.sum(z * z / s2 + xp.log(s2) + LOG_2PI, axis=-1)


def _curvature(out, x, mc: M.ModelConfig):
    """Gauss-Newton's G (b, m): minus the Hessian of log p(x|nu) in nu, its positive part for BAGGINS (m / r)."""
    xp = array_namespace(out)
    if mc.likelihood == "bernoulli":
        p = sigmoid(out)
        return p * (1.0 - p)
    if mc.likelihood == "gaussian":
        return xp.full(out.shape, 1.0 / mc.t)
    d = x - out
    return xp.broadcast_to((mc.m / xp.sum(d * d, axis=-1))[:, None], out.shape)


def score(out, x, mc: M.ModelConfig):
    """d log p(x|nu) / d nu (b, m) at the decoder output ``out`` (logits for Bernoulli; Eqs. (1), (29)).

    Bernoulli: x - sigmoid(out); Gaussian T = t I: (x - nu) / t; BAGGINS with
    T of Eq. (29): m (x - nu) / |x - nu|^2 (T follows the residual).
    """
    if mc.likelihood == "bernoulli":
        return x - sigmoid(out)
    d = x - out
    if mc.likelihood == "gaussian":
        return d / mc.t
    xp = array_namespace(out)
    return d * (mc.m / xp.sum(d * d, axis=-1))[:, None]


def gradient(params, x, z, mc: M.ModelConfig, s2):
    """The gradient of the log joint in z (b, n) and the decoder output and Jacobian there: ``J^T s - z / S^2``."""
    xp = array_namespace(z)
    out, J = Jac.decoder_jacobian(params, z, mc)
    return xp.einsum("bmn,bm->bn", J, score(out, x, mc)) - z / s2, out, J


def _relative_norm(xp, g, z, s2):
    """|S g| / (1 + |S J^T s|) per image: the whitened gradient against the size of its likelihood term."""
    S = xp.sqrt(s2)
    return to_numpy(xp.linalg.norm(g * S, axis=-1) / (1.0 + xp.linalg.norm((g + z / s2) * S, axis=-1)))


def posterior_mode(
    params,
    x,
    mu,
    var,
    mc: M.ModelConfig,
    s2,
    *,
    baggins_s2=None,
    starts=None,
    climbs: int | None = None,
    steps: int = 200,
    gtol: float = 1e-9,
    chunk: int = 256,
    keep_all: bool = False,
) -> dict:
    """The mode z* of log p(x|z) + log N(z; 0, S^2) per image, by Levenberg-Marquardt from ``mu`` (Not in the paper).

    Each iteration solves ``(H + lam diag H) dz = g`` with ``H = S^-2 + J^T G
    J`` (Gauss-Newton) and g the exact gradient, and keeps the step only where
    it raises the log joint (lam / 3 then, x 4 otherwise), image by image.  An
    image has converged when the whitened gradient |S g| is at most ``gtol``
    times 1 + |S J^T s| (its likelihood term: float64 rounds at that scale).
    It has stalled when lam exceeds 1e12 with the gradient larger (no step
    raises the log joint) or the log joint rose by less than
    :data:`CREEP_NATS` in :data:`CREEP_STEPS` iterations: a maximum on a kink
    of the ReLU decoder, or a ridge of kinks that Gauss-Newton can only
    zig-zag along (the log joint is smooth only within each linear region of
    the decoder, and the best point of a region may lie on its boundary), so
    a stalled image may lie slightly below its local maximum.  Otherwise it
    stops after ``steps`` iterations.  Each start finds a local maximum;
    the highest over mu and ``starts`` is kept (for the 2-D models the grid's
    global mode says how often that is the global one).

    Parameters
    ----------
    params : float64 parameters.
    x : (N, m) targets.
    mu, var : (N, n) the encoder's posteriors (the first start, and BAGGINS' T).
    s2 : (n,) prior variance.
    baggins_s2 : S^2 of Eq. (29) for BAGGINS' T (required for it).
    starts : (S, N, n) further starting points (e.g. :func:`neighbour_starts`).
    climbs : climb only from the ``climbs`` starts with the highest log joint
        (per image; default all), besides mu.
    steps : at most this many iterations.
    chunk : images per block.
    keep_all : also return where every climb ended (the local maxima of a multimodal posterior).

    Returns
    -------
    dict of host arrays: ``mode (N, n)``, ``log_joint (N,)`` at the mode,
    ``start_log_joint (N,)`` at mu, ``gradient_norm (N,)`` (|S g| / (1 + |S J^T s|) at the mode),
    ``iterations (N,)``, ``converged (N,)``, ``stalled (N,)`` of the kept climb,
    and ``start (N,)``, which start it was (0: mu, j: ``starts[j - 1]``).  With ``keep_all``:
    ``modes (K, N, n)`` and ``log_joints (K, N)``, the end of every climb (K = 1 + the climbs from
    ``starts``, the first from mu), and ``climb_converged (K, N)``.
    """
    if mc.likelihood not in LIKELIHOODS:
        raise ValueError(
            f"posterior_mode supports the likelihoods {LIKELIHOODS}, not {mc.likelihood!r} "
            "(a learned likelihood variance is a second decoder head)"
        )
    if mc.likelihood == "baggins" and baggins_s2 is None:
        raise ValueError("posterior_mode: BAGGINS needs baggins_s2, the S^2 of Eq. (29)")
    xp = array_namespace(x)
    N, n = mu.shape
    if x.shape != (N, mc.m) or var.shape != (N, n):
        raise ValueError(
            f"x, mu, var must have shapes (N, {mc.m}), (N, {n}), (N, {n}); got {x.shape}, {mu.shape}, {var.shape}"
        )
    s2 = xp.asarray(s2, dtype=xp.float64)
    if starts is not None and (starts.ndim != 3 or tuple(starts.shape[1:]) != (N, n)):
        raise ValueError(f"starts must have shape (S, {N}, {n}), got {tuple(starts.shape)}")
    res = _climb(params, x, mu, mu, var, mc, s2, baggins_s2, steps, gtol, chunk)
    res["start"] = np.zeros(N, dtype=int)
    ends = [(res["mode"].copy(), res["log_joint"].copy(), res["converged"].copy())]
    order = None
    if starts is not None and climbs is not None and climbs < len(starts):
        f0 = np.stack(
            [
                to_numpy(log_joint_at(params, x, xp.asarray(z0, dtype=xp.float64), mu, var, mc, s2, baggins_s2))
                for z0 in starts
            ]
        )  # (S, N)
        order = np.argsort(-f0, axis=0)[:climbs]  # (climbs, N): each image's best starts
    for j in range(0 if starts is None else len(starts) if order is None else len(order)):
        pick = j if order is None else order[j]
        z0 = starts[j] if order is None else starts[xp.asarray(pick), xp.arange(N)]
        r = _climb(params, x, z0, mu, var, mc, s2, baggins_s2, steps, gtol, chunk)
        ends.append((r["mode"], r["log_joint"], r["converged"]))
        better = r["log_joint"] > res["log_joint"]
        for key, v in r.items():
            if key != "start_log_joint":
                res[key][better] = v[better]
        res["start"][better] = pick + 1 if order is None else pick[better] + 1
    if keep_all:
        res["modes"] = np.stack([e[0] for e in ends])
        res["log_joints"] = np.stack([e[1] for e in ends])
        res["climb_converged"] = np.stack([e[2] for e in ends])
    return res


def neighbour_starts(x, x_train, mu_train, k: int, chunk: int = 1000):
    """Starting points (k, N, n): the encoder's means of each image's k nearest training images (Not in the paper).

    An amortised encoder can aim at the wrong one of a posterior's modes; the
    posteriors of images that look alike (Euclidean distance of the targets)
    offer other basins to climb from.
    """
    xp = array_namespace(x)
    sq = xp.sum(x_train * x_train, axis=1)
    idx = np.empty((len(x), k), dtype=np.int64)
    for sl in chunks(len(x), chunk):
        d2 = sq[None, :] - 2.0 * (x[sl] @ x_train.T)  # |x|^2 is the same for every candidate
        idx[sl] = to_numpy(xp.argsort(d2, axis=1)[:, :k])
    return mu_train[xp.asarray(idx.T)]


def _climb(params, x, z0, mu, var, mc: M.ModelConfig, s2, baggins_s2, steps: int, gtol: float, chunk: int) -> dict:
    """Levenberg-Marquardt from ``z0`` for each image (see :func:`posterior_mode`); host arrays."""
    xp = array_namespace(x)
    N, n = z0.shape
    res = {
        "mode": np.empty((N, n)),
        "log_joint": np.empty(N),
        "start_log_joint": np.empty(N),
        "gradient_norm": np.empty(N),
        "iterations": np.zeros(N, dtype=int),
        "converged": np.zeros(N, dtype=bool),
        "stalled": np.zeros(N, dtype=bool),
    }
    eye = np.eye(n)
    for sl in chunks(N, chunk):
        xb, mb, vb = x[sl], mu[sl], var[sl]
        z = xp.array(z0[sl], dtype=xp.float64)
        g, out, J = gradient(params, xb, z, mc, s2)
        f, G = log_joint_at(params, xb, z, mb, vb, mc, s2, baggins_s2, out=out), _curvature(out, xb, mc)
        res["start_log_joint"][sl] = to_numpy(f)
        b = len(f)
        lam = np.full(b, 1e-3)
        gnorm = _relative_norm(xp, g, z, s2)
        done = gnorm <= gtol
        iters = np.zeros(b, dtype=int)
        stuck = np.zeros(b, dtype=bool)
        f_before = to_numpy(f)
        for it in range(steps):
            if done.all():
                break
            H = to_numpy((J * G[:, :, None]).transpose(0, 2, 1) @ J) + np.diag(1.0 / to_numpy(s2))[None]
            H = (H + np.swapaxes(H, -1, -2)) / 2
            damped = H + lam[:, None, None] * (H * eye)
            dz = np.linalg.solve(damped, to_numpy(g)[:, :, None])[:, :, 0]
            dz[done] = 0.0
            z_new = z + xp.asarray(dz)
            g_new, out_new, J_new = gradient(params, xb, z_new, mc, s2)
            f_new = log_joint_at(params, xb, z_new, mb, vb, mc, s2, baggins_s2, out=out_new)
            G_new = _curvature(out_new, xb, mc)
            # Near the mode a step's rise is below the log joint's rounding; it is kept if the gradient shrinks
            rise, fh = to_numpy(f_new - f), to_numpy(f)
            gnorm_new = _relative_norm(xp, g_new, z_new, s2)
            flat = rise >= -16 * np.finfo(np.float64).eps * (1.0 + np.abs(fh))
            keep = ((rise > 0) | (flat & (gnorm_new < gnorm))) & ~done
            iters[~done] += 1
            gnorm = np.where(keep, gnorm_new, gnorm)
            lam = np.where(keep, lam / 3.0, lam * 4.0)
            k = xp.asarray(keep)
            z = xp.where(k[:, None], z_new, z)
            f = xp.where(k, f_new, f)
            g = xp.where(k[:, None], g_new, g)
            J = xp.where(k[:, None, None], J_new, J)
            G = xp.where(k[:, None], G_new, G)
            if (it + 1) % CREEP_STEPS == 0:  # zig-zagging along a ridge of kinks: rising, but by nothing
                fh = to_numpy(f)
                stuck |= fh - f_before < CREEP_NATS
                f_before = fh
            done |= (gnorm <= gtol) | (lam > 1e12) | stuck
        res["mode"][sl] = to_numpy(z)
        res["log_joint"][sl] = to_numpy(f)
        res["gradient_norm"][sl] = gnorm
        res["iterations"][sl] = iters
        res["converged"][sl] = gnorm <= gtol
        res["stalled"][sl] = ((lam > 1e12) | stuck) & (gnorm > gtol)
    return res
