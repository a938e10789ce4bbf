"""Per-image Gaussian posteriors on a fixed decoder in any latent dimension, by a sample-average ELBO.

Not in the paper's experiments: the n > 2 counterpart of :mod:`mlpvae.evidence.fixed_decoder`,
whose grid expectations need n <= 2.  With the decoder held fixed, each image's ELBO, Eq. (2) with
prior N(0, S^2),

    E_{N(m, diag s^2)}[log p(x|z)] - KL(N(m, diag s^2) | N(0, S^2)),

is maximised in float64 over its own diagonal Gaussian, for two families: ``diagonal`` (per-image
m and s) and ``constant`` (per-image m, one s shared by all images: the constant-variance method of
Eq. (2) on this decoder).

The expectation is the average over K fixed standard-normal draws eps (a sample-average
approximation), **moment-matched**: antithetic pairs (mean exactly 0) whitened to a second moment
of exactly I.  The objective is then a fixed function of (m, log s), smooth wherever no ReLU unit
switches, and exact whenever log p(x|z) is quadratic in z (a linear decoder with a Gaussian
likelihood: the Laplace regime); L-BFGS converges on it to a stated gradient.  Its optimum is
evaluated with independent draws (plain antithetic pairs), an unbiased ELBO of that posterior with
its standard error; the sample average's own optimism does not enter the quoted values.  How far
the K-draw optimum is from the best is measured by re-finding it with 2K draws.

BAGGINS' T of Eq. (29) depends on the posterior's Sigma and on S^2, so "the decoder held fixed"
needs a reading: here T's formula is held at the trained model's, Sigma the encoder's posterior
variance of the image and S^2 the training set's (the ``baggins`` argument), so that log p(x|z) is
one fixed function of z, ``-m/2 log |x - nu(z)|^2`` plus a constant: the likelihood whose log p(x)
AIS measures (:mod:`mlpvae.evidence.ais_target`).  A q that moves its own Sigma changes its ELBO,
not the likelihood it is scored against.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.optimize import minimize
from tqdm import tqdm

from mlpvae.evidence.posterior_mode import score
from mlpvae.nn import jacobian as Jac
from mlpvae.nn import model as M
from vaetheory.xp import array_namespace, to_numpy

FAMILIES = ("diagonal", "constant")
LOG_S_RANGE = 30.0  # how far (in log s) an optimisation may take a standard deviation from its start
SUPPORTED = ("bernoulli", "gaussian", "baggins")


def draws(K: int, n: int, rng: np.random.Generator, whiten: bool = True) -> np.ndarray:
    """K standard-normal draws (K, n) in antithetic pairs; ``whiten``: second moment exactly I (Not in the paper).

    Whitening needs K >= 2 n (the pairs must span the latent space).
    """
    if K < 2 or K % 2:
        raise ValueError(f"K must be an even number >= 2, got {K}")
    half = rng.standard_normal((K // 2, n))
    eps = np.concatenate([half, -half])
    if whiten:
        if K < 2 * n:
            raise ValueError(f"whitened draws need K >= 2 n = {2 * n}, got K = {K}")
        w, V = np.linalg.eigh(eps.T @ eps / K)
        eps = eps @ (V / np.sqrt(w)) @ V.T
    return eps


def _kl(m, logs, s2):
    """KL(N(m, diag s^2) | N(0, S^2)) per image, and its gradients in m and log s."""
    s2e = np.exp(2 * logs)
    kl = 0.5 * np.sum(s2e / s2 + m * m / s2 - 1.0 - 2 * logs + np.log(s2), axis=1)
    return kl, m / s2, s2e / s2 - 1.0


def _check_baggins(mc: M.ModelConfig, baggins, N: int):
    """``baggins`` as host float64 ``(var (N, n), s2 (n,))`` for the baggins likelihood, else None."""
    if mc.likelihood != "baggins":
        return None
    if baggins is None:
        raise ValueError("the baggins likelihood needs baggins=(var, s2): Eq. (29)'s Sigma per image and S^2")
    var, s2 = (to_numpy(a).astype(np.float64) for a in baggins)
    if var.shape != (N, mc.n) or s2.shape != (mc.n,):
        raise ValueError(f"baggins=(var, s2) must have shapes ({N}, {mc.n}) and ({mc.n},), got {var.shape}, {s2.shape}")
    return var, s2


def _log_likelihood(out, xr, mc: M.ModelConfig, baggins, a: int, b: int, K: int):
    """log p(x|z) (c K,) at the decoder outputs of images a..b-1, K rows each; BAGGINS' T by Eq. (29)."""
    T = None
    if baggins is not None:
        xp = array_namespace(out)
        var = xp.asarray(np.repeat(baggins[0][a:b], K, axis=0))
        T = M.likelihood_T(xr, out, xp.zeros_like(var), var, mc, xp.asarray(baggins[1]))
    return M.log_likelihood({"logits" if mc.likelihood == "bernoulli" else "mean": out}, xr, mc, T)


def _points(x, m, logs, eps, a: int, b: int):
    """Images a..b-1: z = m + exp(logs) eps as (c K, n) host rows, and each image's targets repeated (c K, m)."""
    xp = array_namespace(x)
    K, c = len(eps), b - a
    z = m[a:b, None, :] + np.exp(logs[a:b])[:, None, :] * eps[None]  # (c, K, n)
    xr = xp.broadcast_to(x[a:b, None], (c, K, x.shape[1])).reshape(c * K, -1)
    return z.reshape(c * K, -1), xr


def sample_elbo(params, x, mc: M.ModelConfig, s2, m, logs, eps, chunk: int = 8, baggins=None):
    """The ELBO of Eq. (2) per image, averaged over the draws ``eps (K, n)``, and its gradients (Not in the paper).

    ``x (N, mc.m)`` on the parameters' device; ``m, logs (N, n)`` host float64; ``s2 (n,)``;
    ``baggins``: ``(var (N, n), s2 (n,))`` that fix Eq. (29)'s T (module docstring), for BAGGINS only.
    Returns host float64 ``(elbo (N,), d_m (N, n), d_logs (N, n))``; z = m + exp(logs) eps.
    """
    if mc.likelihood not in SUPPORTED:
        raise ValueError(f"the sample-average study supports the likelihoods {SUPPORTED}, not {mc.likelihood!r}")
    xp = array_namespace(x)
    s2 = to_numpy(s2).astype(np.float64)
    N, n = m.shape
    baggins = _check_baggins(mc, baggins, N)
    K = len(eps)
    ll, g_m, g_s = np.empty(N), np.empty((N, n)), np.empty((N, n))
    for a in range(0, N, chunk):
        b = min(N, a + chunk)
        s = np.exp(logs[a:b])
        z, xr = _points(x, m, logs, eps, a, b)
        out, vjp = Jac.decoder_vjp(params, xp.asarray(z), mc)
        ll[a:b] = to_numpy(_log_likelihood(out, xr, mc, baggins, a, b, K)).reshape(b - a, K).mean(axis=1)
        g = to_numpy(vjp(score(out, xr, mc))).reshape(b - a, K, n)
        g_m[a:b] = g.mean(axis=1)
        g_s[a:b] = np.einsum("ckn,kn->cn", g, eps) / K * s
    kl, k_m, k_s = _kl(m, logs, s2)
    return ll - kl, g_m - k_m, g_s - k_s


def fresh_elbo(
    params, x, mc: M.ModelConfig, s2, m, logs, K: int, rng: np.random.Generator, chunk: int = 8, baggins=None
):
    """An unbiased ELBO per image from K independent antithetic draws, and its standard error (Not in the paper).

    Returns host ``(elbo (N,), se (N,))``; the standard error is over the K/2 pair means.  ``baggins``
    as :func:`sample_elbo`'s.
    """
    xp = array_namespace(x)
    s2 = to_numpy(s2).astype(np.float64)
    N, n = m.shape
    baggins = _check_baggins(mc, baggins, N)
    eps = draws(K, n, rng, whiten=False)
    est, se = np.empty(N), np.empty(N)
    for a in range(0, N, chunk):
        b = min(N, a + chunk)
        z, xr = _points(x, m, logs, eps, a, b)
        dec = M.decode(params, xp.asarray(z), mc)
        out = dec["logits" if mc.likelihood == "bernoulli" else "mean"]
        ll = to_numpy(_log_likelihood(out, xr, mc, baggins, a, b, K)).reshape(b - a, K)
        pairs = 0.5 * (ll[:, : K // 2] + ll[:, K // 2 :])
        est[a:b] = pairs.mean(axis=1)
        se[a:b] = pairs.std(axis=1, ddof=1) / np.sqrt(K // 2)
    return est - _kl(m, logs, s2)[0], se


def optimise(
    params,
    x,
    mc: M.ModelConfig,
    s2,
    family: str,
    m0,
    logs0,
    eps,
    gtol: float = 1e-6,
    maxiter: int = 2000,
    chunk: int = 8,
    gain_tol: float = 1e-6,
    baggins=None,
    progress: bool = False,
    desc: str = "",
) -> dict:
    """Each image's best Gaussian of ``family`` under the sample-average ELBO over ``eps`` (Not in the paper).

    L-BFGS in float64 over (m, log s), from ``m0, logs0 (N, n)``: image by image for ``diagonal``,
    on the summed ELBO for ``constant`` (starting from the mean of ``logs0`` over the images).  Returns a dict of
    host arrays: ``m``, ``logs`` (N, n), ``elbo`` (N,) (the sample average at the optimum, optimistic
    by construction: quote :func:`fresh_elbo` instead), ``gradient`` (N,) (each image's own
    gradient norm; for ``constant`` the shared log s's is ``gradient_shared`` (n,)), ``gradient_max``,
    ``restart_gain`` (nats per image a second L-BFGS run from the optimum still gained; the largest
    over the images), ``iterations``
    and ``converged`` (every gradient within ``gtol`` sqrt(n), or a restart gain within ``gain_tol``, and no
    log s at its bound, ``LOG_S_RANGE`` from its start).
    ``baggins`` as :func:`sample_elbo`'s.  ``progress``: a bar on stderr (labelled ``desc``) over the images
    (``diagonal``) or over the L-BFGS iterations of the joint fit (``constant``, whose count is not known
    in advance).
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    N, n = m0.shape
    baggins = _check_baggins(mc, baggins, N)
    bar = dict(desc=desc or f"{family} posteriors", disable=not progress, leave=False, file=sys.stderr)
    if family == "constant":
        with tqdm(unit=" iterations", **bar) as b:
            step = lambda *_: b.update(1)  # noqa: E731
            return _lbfgs(params, x, mc, s2, m0, logs0, eps, True, gtol, maxiter, chunk, gain_tol, baggins, step)
    # independent problems: each image on its own, so each stops when it has converged
    own = [None] * N if baggins is None else [(baggins[0][i : i + 1], baggins[1]) for i in range(N)]
    fixed = (eps, False, gtol, maxiter, 1, gain_tol)
    parts = [
        _lbfgs(params, x[i : i + 1], mc, s2, m0[i : i + 1], logs0[i : i + 1], *fixed, own[i])
        for i in tqdm(range(N), unit=" images", **bar)
    ]
    out = {k: np.concatenate([p[k] for p in parts]) for k in ("m", "logs", "elbo", "gradient")}
    out["iterations"] = int(sum(p["iterations"] for p in parts))
    out["gradient_max"] = max(p["gradient_max"] for p in parts)
    out["restart_gain"] = max(p["restart_gain"] for p in parts)
    out["converged"] = all(p["converged"] for p in parts)
    return out


def best_of(results: list[dict]) -> dict:
    """Per image, the ``diagonal`` optimum with the highest sample-average ELBO among runs from other starts.

    A posterior with several modes has a local optimum per basin; an image keeps the best one found
    (Not in the paper).  ``start`` (N,) says which run each image's optimum came from.
    """
    e = np.stack([r["elbo"] for r in results])
    pick = np.argmax(e, axis=0)
    rows = np.arange(e.shape[1])
    out = {k: np.stack([r[k] for r in results])[pick, rows] for k in ("m", "logs", "elbo", "gradient")}
    out["start"] = pick
    out["iterations"] = int(sum(r["iterations"] for r in results))
    out["gradient_max"] = float(out["gradient"].max())
    out["restart_gain"] = max(r["restart_gain"] for r in results)
    out["converged"] = all(r["converged"] for r in results)
    return out


def _lbfgs(
    params, x, mc, s2, m0, logs0, eps, shared: bool, gtol, maxiter, chunk, gain_tol, baggins, callback=None
) -> dict:
    """L-BFGS on the summed sample-average ELBO of the images in ``x``, then a restart (see :func:`optimise`);
    ``callback`` is called after every iteration of either run."""
    N, n = m0.shape
    v0 = np.concatenate([m0.ravel(), (logs0.mean(axis=0) if shared else logs0).ravel()])

    def unpack(v):
        m = v[: N * n].reshape(N, n)
        logs = np.broadcast_to(v[N * n :], (N, n)) if shared else v[N * n :].reshape(N, n)
        return m, np.array(logs)

    def f(v):
        m, logs = unpack(v)
        e, d_m, d_s = sample_elbo(params, x, mc, s2, m, logs, eps, chunk, baggins)
        g = np.concatenate([d_m.ravel(), (d_s.sum(axis=0) if shared else d_s).ravel()])
        return -float(e.sum()), -g

    # ftol 0: stop on the gradient (or a line search that can no longer gain), not on a small relative gain
    opts = {"maxiter": maxiter, "gtol": gtol, "ftol": 0.0, "maxcor": 30}
    # log s within LOG_S_RANGE of its start: a line search's trial step on a steep decoder can otherwise ask
    # for exp(log s) beyond float64; an optimum on that bound is reported as not converged
    lo, hi = np.full(v0.size, -np.inf), np.full(v0.size, np.inf)
    lo[N * n :], hi[N * n :] = v0[N * n :] - LOG_S_RANGE, v0[N * n :] + LOG_S_RANGE
    box = list(zip(lo, hi, strict=True))
    res = minimize(f, v0, jac=True, method="L-BFGS-B", bounds=box, options=opts, callback=callback)
    # A ReLU decoder makes the sample average piecewise smooth: L-BFGS can stop at a kink with a
    # gradient above gtol.  A restart with fresh curvature memory from there measures what is left.
    again = minimize(f, res.x, jac=True, method="L-BFGS-B", bounds=box, options=opts, callback=callback)
    m, logs = unpack(again.x)
    e, d_m, d_s = sample_elbo(params, x, mc, s2, m, logs, eps, chunk, baggins)
    own = np.sqrt(np.sum(d_m**2, axis=1) + (0.0 if shared else np.sum(d_s**2, axis=1)))
    out = {"m": m, "logs": logs, "elbo": e, "gradient": own, "iterations": int(res.nit + again.nit)}
    if shared:
        out["gradient_shared"] = d_s.sum(axis=0)
    worst = max(float(own.max()), float(np.abs(out.get("gradient_shared", np.zeros(1))).max()))
    out["gradient_max"] = worst
    out["restart_gain"] = float(res.fun - again.fun) / N  # nats per image the restart still found
    out["at_bound"] = bool(np.any(np.abs(again.x[N * n :] - v0[N * n :]) >= LOG_S_RANGE * (1 - 1e-9)))
    stopped = worst <= gtol * max(1.0, np.sqrt(n)) or out["restart_gain"] <= gain_tol
    out["converged"] = bool(stopped and not out["at_bound"])
    return out
