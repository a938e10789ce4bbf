"""log p(x) of a trained model with n <= 2 latent dimensions, by adaptive latent-grid quadrature (Not in the paper).

The paper's gap log p(x) - ELBO (Eq. (18)) and Eq. (16)'s error need log p(x)
itself.  The importance-sampled bound (IWAE, :func:`mlpvae.experiments.evaluate.iwae_log_px`)
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
one (measured: a BAGGINS model whose grid settled 38 nats below the true
log p(x)).  So each image also has ``probes``: the encoder's mean, samples of
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

import math
import sys

import numpy as np

from mlpvae.nn import model as M
from vaetheory.xp import array_namespace, to_numpy

_LOG_2PI = math.log(2.0 * math.pi)


def log_joint(params, x, z, mu, var, mc: M.ModelConfig, s2, baggins_s2=None, rows: int = 20000):
    """log p(x|z) + log N(z; 0, S^2) (P,) of one image ``x (m,)`` at the points ``z (P, n)`` (Eqs. (1), (26), (29)).

    ``mu, var (n,)`` are the image's posterior (BAGGINS' T of Eq. (29) uses
    them, with S^2 = ``baggins_s2``, as in :func:`mlpvae.experiments.evaluate.iwae_log_px`).
    At most ``rows`` points are decoded at once.
    """
    from vaetheory.objectives import baggins_T

    xp = array_namespace(z)
    P = z.shape[0]
    out = xp.empty(P, dtype=xp.float64)
    for a in range(0, P, rows):
        zc = z[a:a + rows]
        c = zc.shape[0]
        xr = xp.broadcast_to(x, (c, x.shape[-1]))
        dec = M.decode(params, zc, mc)
        T = None
        if mc.likelihood == "baggins":
            T = baggins_T(xr, dec["mean"], xp.broadcast_to(mu, zc.shape), xp.broadcast_to(var, zc.shape), mc.tau,
                          baggins_s2)
        ll = M.log_likelihood(dec, xr, mc, T=T)
        out[a:a + c] = ll - 0.5 * xp.sum(zc * zc / s2 + xp.log(s2) + _LOG_2PI, axis=-1)
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
            return value, err, level, evaluated, mode
        prev = value
        if not edge and np.all(new_hi - new_lo > 0.5 * (hi - lo)):  # the box hardly shrinks: resolve it finer
            if g == opt["max_points"] and np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
                break  # nothing left to change
            g = min(2 * (g - 1) + 1, opt["max_points"])
        lo, hi = new_lo, new_hi
    return value, max(err, 0.0 if seen else np.inf), level, evaluated, mode


def grid_log_px(params, x, mc: M.ModelConfig, s2, *, baggins_s2=None, points: int = 65, drop: float = 25.0,
                tol: float = 0.01, span: float = 8.0, probes: int = 2000, seed: int = 0, max_levels: int = 30,
                max_points: int = 513, rows: int = 20000, progress: bool = False) -> dict:
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

    Returns a dict of host arrays (N,): ``log_px``, ``err`` (the last level's
    halving change; inf where the nodes never came within 1 nat of the best
    probe), ``levels``, ``evaluations`` (decoder calls), ``converged``
    (``err < tol``), and ``mode (N, n)``, the node of the last grid with the
    largest log joint (the posterior mode to a node spacing).
    See the module docstring for the method.
    """
    from mlpvae.experiments import evaluate as E
    from vaetheory import validate as V

    if not isinstance(mc, M.ModelConfig):
        raise ValueError(f"mc must be a mlpvae.nn.model.ModelConfig, got {type(mc).__name__}")
    if mc.n > 2:
        raise ValueError(f"grid quadrature is for n <= 2 latent dimensions (got n = {mc.n}); use the IWAE bound "
                         "(mlpvae.experiments.evaluate.iwae_log_px)")
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
    mu, var = E.encode_all(params, x, mc)
    var = xp.broadcast_to(var, mu.shape)
    N = len(x)
    res = {k: np.empty(N) for k in ("log_px", "err")}
    res.update(levels=np.empty(N, dtype=int), evaluations=np.empty(N, dtype=int), mode=np.empty((N, mc.n)))
    opt = dict(points=points, drop=float(drop), tol=float(tol), span=float(span), max_levels=int(max_levels),
               max_points=max_points, rows=int(rows))
    rng = np.random.default_rng(seed)
    from tqdm import tqdm

    for i in tqdm(range(N), desc="grid log p(x)", disable=not progress, leave=False, file=sys.stderr):
        res["log_px"][i], res["err"][i], res["levels"][i], res["evaluations"][i], res["mode"][i] = _one_image(
            params, x[i], mu[i], var[i], mc, s2, baggins_s2, rng.standard_normal((2, probes, mc.n)), opt)
    res["converged"] = res["err"] < tol
    return res


MISSED = 1.0  # nats of grid log p(x) above the IWAE bound that mark an image as missed by the encoder's q(z|x)


def evaluate_run(run_dir, images: int = 200, *, iwae_k: int = 5000, elbo_k: int = 10, device: str | None = None,
                 progress: bool = False) -> tuple[dict, dict]:
    """The exact log p(x) of a trained n <= 2 run against the IWAE bound and Eqs. (16), (18) (Not in the paper).

    On the first ``images`` test images: log p(x) by :func:`grid_log_px`, the
    IWAE bound (k = ``iwae_k``, the encoder's q(z|x) as proposal), the ELBO
    (``elbo_k`` samples), Eq. (16) at the encoder's mean and at the posterior
    mode the grid found, and Eq. (18)'s gap for the model's own Sigma, each as
    :func:`mlpvae.experiments.analyze.analyze_run` computes it (prior, metric G, BAGGINS' S^2).
    An image is "missed" where log p(x) is more than :data:`MISSED` nats
    above the IWAE bound: the encoder's q(z|x) sits away from the posterior's mass.

    ``device``: ``cpu``, ``gpu`` or ``auto``; default the run's own.  Returns
    ``(summary, per_image)``: means over the images (nats per image) and the
    per-image host arrays.
    """
    import time

    from mlpvae.experiments import analyze as A
    from mlpvae.experiments import evaluate as E
    from mlpvae.training import train as T

    t0 = time.perf_counter()
    run = A.load_run(run_dir, device=device, test_limit=images)
    mc, params, x = run.mc, run.params, run.x_test
    if mc.n > 2:
        raise ValueError(f"{run_dir}: grid quadrature is for n <= 2 latent dimensions, this run has n = {mc.n}")
    _, _, s2, s2_train = A.training_priors(run)
    floating = mc.posterior in E.FLOATING
    mu, var = E.encode_all(params, x, mc)
    var = run.xp.broadcast_to(var, mu.shape)
    grid = grid_log_px(params, x, mc, s2, baggins_s2=s2_train, progress=progress)
    t_grid = time.perf_counter() - t0
    rng = T.generator(run.cfg.seed, A.STREAM_ANALYSIS, run.epoch, run.xp)
    elbo = A.elbo_per_example(params, x, mc, rng, elbo_k, s2 if floating else None)
    iwae = E.iwae_log_px(params, x, mc, rng, iwae_k, s2=s2 if floating else None, baggins_s2=s2_train)
    at_mu = A.laplace_evidence(params, x, mu, var, mc, s2)
    at_mode = A.laplace_evidence(params, x, run.xp.asarray(grid["mode"]), var, mc, s2)
    lp = grid["log_px"]
    per = {"grid_log_px": lp, "grid_err": grid["err"], "mode": grid["mode"], "mu": to_numpy(mu), "iwae": iwae,
           "elbo": elbo, "eq16_at_mean": at_mu["log_evidence"], "eq16_at_mode": at_mode["log_evidence"],
           "gap_eq18": at_mu["gap_eq18"]}
    hit = lp - iwae <= MISSED

    def mean(a, where=None):
        a = a if where is None else a[where]
        return float(np.mean(a)) if a.size else None

    gap = lp - elbo
    summary = {
        "run": str(run_dir), "posterior": mc.posterior, "likelihood": mc.likelihood, "scale": run.cfg.scale,
        "images": int(len(lp)), "iwae_k": iwae_k, "elbo_k": elbo_k,
        "grid_log_px": mean(lp), "grid_err_max": float(grid["err"].max()),
        "grid_unconverged": int((~grid["converged"]).sum()), "grid_evaluations_per_image": mean(grid["evaluations"]),
        "iwae": mean(iwae), "grid_minus_iwae": mean(lp - iwae), "grid_minus_iwae_median": float(np.median(lp - iwae)),
        "grid_minus_iwae_max": float(np.max(lp - iwae)), "grid_minus_iwae_min": float(np.min(lp - iwae)),
        "missed": int((~hit).sum()),
        "elbo": mean(elbo), "gap": mean(gap), "gap_iwae": mean(iwae - elbo), "gap_eq18": mean(per["gap_eq18"]),
        "gap_where_found": mean(gap, hit), "gap_eq18_where_found": mean(per["gap_eq18"], hit),
        "eq16_at_mean_minus_log_px": mean(per["eq16_at_mean"] - lp),
        "eq16_at_mean_minus_log_px_where_found": mean(per["eq16_at_mean"] - lp, hit),
        "eq16_at_mode_minus_log_px": mean(per["eq16_at_mode"] - lp),
        "eq16_at_mode_minus_log_px_median": float(np.median(per["eq16_at_mode"] - lp)),
        "grid_seconds": t_grid, "seconds": time.perf_counter() - t0,
    }
    return summary, per


def signed(v) -> str:
    """``v`` as ``+1.23`` (``n/a`` for ``None``), the way the reports print differences."""
    return "n/a" if v is None else f"{v:+.2f}"


def report_md(r: dict) -> str:
    """A short Markdown report of :func:`evaluate_run`'s summary (Not in the paper)."""
    f = signed
    return "\n".join([
        f"# Exact log p(x) by grid quadrature: {r['run']}", "",
        f"First {r['images']} test images, nats per image (means).", "",
        f"- log p(x), adaptive grid: {r['grid_log_px']:.2f} (largest error estimate {r['grid_err_max']:.2g}, "
        f"{r['grid_unconverged']} image(s) not converged)",
        f"- IWAE bound, k = {r['iwae_k']}: {r['iwae']:.2f}; log p(x) minus it {f(r['grid_minus_iwae'])} (median "
        f"{f(r['grid_minus_iwae_median'])}, largest {f(r['grid_minus_iwae_max'])}); missed by the encoder "
        f"(more than {MISSED:g} nat): {r['missed']} of {r['images']}",
        f"- ELBO ({r['elbo_k']} samples): {r['elbo']:.2f}; gap log p(x) - ELBO {r['gap']:.2f} (the IWAE's "
        f"{r['gap_iwae']:.2f}); Eq. (18) predicts {r['gap_eq18']:.2f}; where the encoder found the mass "
        f"{f(r['gap_where_found'])} against {f(r['gap_eq18_where_found'])}",
        f"- Eq. (16) minus log p(x): {f(r['eq16_at_mean_minus_log_px'])} at the encoder's mean, "
        f"{f(r['eq16_at_mode_minus_log_px'])} at the posterior mode "
        f"(median {f(r['eq16_at_mode_minus_log_px_median'])})",
    ]) + "\n"
