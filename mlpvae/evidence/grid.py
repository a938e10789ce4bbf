"""log p(x) of a trained model with n <= 2 latent dimensions, by adaptive latent-grid quadrature (Not in the paper).

The paper's gap log p(x) - ELBO (Eq. (18)) and Eq. (16)'s error need log p(x)
itself.  The importance-sampled bound (IWAE, :func:`mlpvae.evidence.iwae.iwae_log_px`)
is only a lower bound, and it does not converge where the proposal is far
from the posterior (docs/findings.md, "Is k = 5000 enough?").  With one or two
latent dimensions the integral

    log p(x) = log int p(x|z) N(z; 0, S^2) dz

can be computed instead.  Per image, a tensor-product trapezoid grid of
``points`` nodes per axis starts on a box holding both the prior (+- ``span``
prior standard deviations) and the encoder's posterior (+- ``span`` posterior
standard deviations).  Each level keeps the nodes whose log joint is within
``drop`` nats of the best point seen, shrinks the box to them (one node of
margin) and evaluates again; when the box no longer shrinks the node count per
axis is doubled.  A box is widened, never shrunk, on a side where the kept
nodes reach its edge, so the first box need not hold the posterior.

A coarse grid can step over a narrow peak and shrink onto a broader, lower
one, and then settle far below the true log p(x).  So each image also has ``probes``: the encoder's mean, samples of
q(z|x) (where an importance sampler looks) and samples of the prior.  Every
box holds the probes within ``drop`` nats of the best point seen, and an image
is not done until the nodes come within 1 nat of the best probe.

The error estimate of a level is the change from halving its grid (every
other node, the same box); an image is done when that change and the change
from the previous level are both below ``tol``.  The trapezoid rule converges
geometrically on a smooth, fast-decaying integrand; a ReLU decoder puts kinks
in the log joint (where a unit switches), which makes it second order, and
then the halving change is about three times the error.  Either way this is
log p(x) to about ``tol`` unless the integrand has mass that neither the nodes
nor the probes saw (a mode narrower than a node spacing, far from q and the
bulk of the prior): ``err`` is an estimate, not a bound.
"""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

from mlpvae.nn import model as M
from mlpvae.nn.batched import encode_all
from mlpvae.nn.likelihoods import LOG_2PI
from vaetheory import validate as V
from vaetheory.xp import array_namespace, to_numpy


def log_joint(params, x, z, mu, var, mc: M.ModelConfig, s2, baggins_s2=None, rows: int = 20000):
    """log p(x|z) + log N(z; 0, S^2) (P,) of one image ``x (m,)`` at the points ``z (P, n)`` (Eqs. (1), (26), (29)).

    ``mu, var (n,)`` are the image's posterior (BAGGINS' T of Eq. (29) uses
    them, with S^2 = ``baggins_s2``, as in :func:`mlpvae.evidence.iwae.iwae_log_px`).
    At most ``rows`` points are decoded at once.
    """
    xp = array_namespace(z)
    P = z.shape[0]
    out = xp.empty(P, dtype=xp.float64)
    for a in range(0, P, rows):
        zc = z[a : a + rows]
        c = zc.shape[0]
        xr = xp.broadcast_to(x, (c, x.shape[-1]))
        dec = M.decode(params, zc, mc)
        T = M.likelihood_T(
            xr, dec.get("mean"), xp.broadcast_to(mu, zc.shape), xp.broadcast_to(var, zc.shape), mc, baggins_s2
        )
        ll = M.log_likelihood(dec, xr, mc, T=T)
        out[a : a + c] = ll - 0.5 * xp.sum(zc * zc / s2 + xp.log(s2) + LOG_2PI, axis=-1)
    return out


def _trapezoid(f: np.ndarray, g: int, n: int, log_cell: float) -> float:
    """log of the trapezoid sum of exp(f) on a g^n grid (f flattened in C order) with log cell volume ``log_cell``."""
    w = np.ones(g)
    w[[0, -1]] = 0.5
    logw = np.log(w)
    lw = sum(np.meshgrid(*([logw] * n), indexing="ij")).ravel() if n > 1 else logw
    a = f + lw
    top = a.max()
    if not np.isfinite(top):
        return float(top)
    return float(top + np.log(np.exp(a - top).sum()) + log_cell)


def _nodes(xp, lo, hi, g: int):
    axes = [np.linspace(lo[k], hi[k], g) for k in range(len(lo))]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(lo))
    return axes, xp.asarray(grid)


def _finite(f):
    if not np.all(np.isfinite(f) | (f == -np.inf)):
        raise FloatingPointError("the log joint is NaN or +inf on the grid: the model's decoder is not finite there")
    return f


def _next_box(f, near, axes, lo, hi, drop: float, best: float):
    """The box around the nodes within ``drop`` nats of ``best`` (one node of margin) and the probes ``near``.

    A side where the kept nodes reach the box's edge is widened by the box's width instead (``edge``).
    """
    n, g = len(axes), len(axes[0])
    keep = (f >= best - drop).reshape((g,) * n)
    new_lo, new_hi, edge = np.full(n, np.inf), np.full(n, -np.inf), False
    for k in range(n):
        idx = np.flatnonzero(keep.any(axis=tuple(j for j in range(n) if j != k)))
        if idx.size:
            new_lo[k], new_hi[k] = axes[k][max(idx[0] - 1, 0)], axes[k][min(idx[-1] + 1, g - 1)]
            if idx[0] == 0:
                new_lo[k], edge = lo[k] - (hi[k] - lo[k]), True
            if idx[-1] == g - 1:
                new_hi[k], edge = hi[k] + (hi[k] - lo[k]), True
    if near.size:
        h = (hi - lo) / (g - 1)
        new_lo = np.minimum(new_lo, near.min(axis=0) - h)
        new_hi = np.maximum(new_hi, near.max(axis=0) + h)
    return new_lo, new_hi, edge


def _one_image(params, x, mu, var, mc, s2, baggins_s2, probes, opt):
    xp = array_namespace(x)
    n = mc.n
    s, sd = np.sqrt(to_numpy(s2)), np.sqrt(to_numpy(var))
    mu_h = to_numpy(mu)
    lo = np.minimum(-opt["span"] * s, mu_h - opt["span"] * sd)
    hi = np.maximum(opt["span"] * s, mu_h + opt["span"] * sd)
    # probes: the encoder's mean, samples of q(z|x) (where an importance sampler looks) and of the prior; a
    # peak they find stays inside every box and must be seen by the nodes before the image is done
    zp = np.vstack([mu_h[None], mu_h + sd * probes[0], s * probes[1]])
    fp = _finite(to_numpy(log_joint(params, x, xp.asarray(zp), mu, var, mc, s2, baggins_s2, opt["rows"])))
    g, prev, evaluated = opt["points"], None, len(zp)
    tol, drop = opt["tol"], opt["drop"]
    for level in range(1, opt["max_levels"] + 1):
        axes, z = _nodes(xp, lo, hi, g)
        f = _finite(to_numpy(log_joint(params, x, z, mu, var, mc, s2, baggins_s2, opt["rows"])))
        evaluated += f.size
        h = (hi - lo) / (g - 1)
        value = _trapezoid(f, g, n, float(np.sum(np.log(h))))
        half = f.reshape((g,) * n)[(slice(None, None, 2),) * n].ravel()
        err = abs(value - _trapezoid(half, (g + 1) // 2, n, float(np.sum(np.log(2 * h)))))
        mode = to_numpy(z[int(np.argmax(f))])
        best = max(f.max(), fp.max())
        new_lo, new_hi, edge = _next_box(f, zp[fp >= best - drop], axes, lo, hi, drop, best)
        seen = f.max() >= fp.max() - 1.0  # the nodes resolve the best probe's peak
        if not edge and seen and err < tol and prev is not None and abs(value - prev) < tol:
            return value, err, level, evaluated, mode, h, heaviest_region_mode(f, to_numpy(z), g, n, drop)
        prev = value
        if not edge and np.all(new_hi - new_lo > 0.5 * (hi - lo)):  # the box hardly shrinks: resolve it finer
            if g == opt["max_points"] and np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
                break  # nothing left to change
            g = min(2 * (g - 1) + 1, opt["max_points"])
        lo, hi = new_lo, new_hi
    heaviest = heaviest_region_mode(f, to_numpy(z), g, n, drop)
    return value, max(err, 0.0 if seen else np.inf), level, evaluated, mode, h, heaviest


def heaviest_region_mode(f, z, g: int, n: int, drop: float) -> np.ndarray:
    """The node with the largest log joint in the connected region of nodes within ``drop`` nats of the grid's
    best that holds the most posterior mass (Not in the paper).

    ``f (g^n,)``: the log joint at the nodes ``z (g^n, n)`` of a ``g``-per-axis grid.  On a multimodal
    posterior the highest node can sit on a sharp mode that holds little of the mass, beside a broader, lower
    one that holds most of it; with one region this is the grid's mode.
    """
    from scipy import ndimage

    F = np.asarray(f).reshape((g,) * n)
    top = F.max()
    labels, k = ndimage.label(F >= top - drop, structure=np.ones((3,) * n))
    if k > 1:  # each region's mass in one pass; its nodes are within drop nats of the top, so exp cannot underflow
        mass = np.bincount(labels.ravel(), weights=np.exp(np.where(labels > 0, F, top) - top).ravel(), minlength=k + 1)
        F = np.where(labels == 1 + int(np.argmax(mass[1:])), F, -np.inf)
    return np.asarray(z)[int(np.argmax(F))]


def grid_log_px(
    params,
    x,
    mc: M.ModelConfig,
    s2,
    *,
    baggins_s2=None,
    points: int = 65,
    drop: float = 25.0,
    tol: float = 0.01,
    span: float = 8.0,
    probes: int = 2000,
    seed: int = 0,
    max_levels: int = 30,
    max_points: int = 513,
    rows: int = 20000,
    progress: bool = False,
) -> dict:
    """log p(x) = log int p(x|z) N(z; 0, S^2) dz per image by adaptive grid quadrature, n <= 2 (Not in the paper).

    Parameters
    ----------
    params, mc : a trained model (:mod:`mlpvae.nn.model`); float64 parameters recommended.
    x : (N, m) targets, the parameters' dtype.
    s2 : (n,) prior variance S^2 (ones for learned posteriors, Eq. (1); Eq. (4) otherwise).
    baggins_s2 : (n,) S^2 of BAGGINS' T (Eq. (29)); required for ``baggins``.
    points : nodes per axis of the first grid (odd, >= 5); ``max_points`` the most it grows to.
    drop : nodes this many nats below the largest log joint are left out of the next box (25: at most
        513^2 e^-25 ~ 4e-6 of the mass).
    probes : samples of q(z|x) and as many of the prior (and q's mean) that steer the boxes (see the
        module docstring), drawn from ``numpy.random.default_rng(seed)``.
    tol : the change (from halving the grid and from the previous level) below which an image is done.
    span : the first box is +- ``span`` standard deviations of prior and posterior.

    Returns
    -------
    dict of host arrays (N,): ``log_px``, ``err`` (the last level's
        halving change; inf where the nodes never came within 1 nat of the best
        probe), ``levels``, ``evaluations`` (decoder calls), ``converged``
        (``err < tol``), ``mode (N, n)``, the node of the last grid with the
        largest log joint (the posterior mode to a node spacing), ``spacing (N, n)``,
        that grid's node spacing per axis, and ``mass_mode (N, n)``, the best node of the region of that
        grid holding the most mass (:func:`heaviest_region_mode`; ``mode`` unless the posterior has
        separate modes).

    Notes
    -----
    See the module docstring for the method.
    """
    if not isinstance(mc, M.ModelConfig):
        raise ValueError(f"mc must be a mlpvae.nn.model.ModelConfig, got {type(mc).__name__}")
    if mc.n > 2:
        raise ValueError(
            f"grid quadrature is for n <= 2 latent dimensions (got n = {mc.n}); use the IWAE bound "
            "(mlpvae.evidence.iwae.iwae_log_px)"
        )
    points = V.scalar("points", points, positive=True, integer=True)
    if points < 5 or points % 2 == 0:
        raise ValueError(f"points must be odd and >= 5 (so the halved grid shares the box), got {points}")
    max_points = max(points, V.scalar("max_points", max_points, positive=True, integer=True))
    probes = V.scalar("probes", probes, integer=True)
    if probes < 0:
        raise ValueError(f"probes must be >= 0, got {probes}")
    for name, v in (("drop", drop), ("tol", tol), ("span", span)):
        V.scalar(name, v, positive=True)
    if mc.likelihood == "baggins" and baggins_s2 is None:
        raise ValueError("baggins_s2 (the S^2 of Eq. (29)) is required for the baggins likelihood")
    xp = array_namespace(x)
    x = V.array("x", x, ("N", "m"), {"m": mc.m}, finite=True)
    s2 = xp.asarray(V.array("s2", s2, ("n",), {"n": mc.n}, finite=True), dtype=xp.float64)
    if bool(xp.any(s2 <= 0)):
        raise ValueError("s2 must be positive")
    mu, var = encode_all(params, x, mc)
    var = xp.broadcast_to(var, mu.shape)
    N = len(x)
    res = {k: np.empty(N) for k in ("log_px", "err")}
    res.update(levels=np.empty(N, dtype=int), evaluations=np.empty(N, dtype=int))
    res.update(mode=np.empty((N, mc.n)), spacing=np.empty((N, mc.n)), mass_mode=np.empty((N, mc.n)))
    opt = dict(
        points=points,
        drop=float(drop),
        tol=float(tol),
        span=float(span),
        max_levels=int(max_levels),
        max_points=max_points,
        rows=int(rows),
    )
    rng = np.random.default_rng(seed)
    for i in tqdm(range(N), desc="grid log p(x)", disable=not progress, leave=False, file=sys.stderr):
        found = _one_image(params, x[i], mu[i], var[i], mc, s2, baggins_s2, rng.standard_normal((2, probes, mc.n)), opt)
        for key, value in zip(("log_px", "err", "levels", "evaluations", "mode", "spacing", "mass_mode"), found):
            res[key][i] = value
    res["converged"] = res["err"] < tol
    return res
