"""The importance-sampled bound on log p(x) (IWAE), active units and the grayscale entropy floor of a trained model.

None of these is in the paper; they are the measurements the paper's claims
are checked against (Sec. 7).  All numbers are in nats per image, summed over
pixels.

* Importance-sampled log p(x) (Burda et al.'s IWAE bound):
  ``log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x)``, ``z_i ~ q(z|x)``.  It is a
  lower bound on log p(x) for every k and increases to it as k grows; the
  samples are processed in chunks so memory stays bounded for k up to 5000.
* The Pareto tail shape k-hat of the importance weights (Vehtari et al.,
  "Pareto smoothed importance sampling", JMLR 2024): a generalized Pareto
  distribution fitted to the largest weights.  Above about 0.7 the weights'
  variance is infinite in practice and a k-sample estimate can land far above
  log p(x) now and then (it is unbiased in p, not in log p), so a single
  IWAE value is no yardstick for another estimator on that image.
* Active units (Burda et al.): latent dimension u is active when
  ``Cov_x(E_q[z_u]) = Var_x(mu_u) > 1e-2``.
* The grayscale entropy floor: with grayscale targets ``x in [0, 1]`` the
  Bernoulli log-likelihood ``x log p + (1 - x) log(1 - p)`` is at most
  ``-H(x)``, so ``-sum_pixels H(x_pixel)`` is an upper bound on any Bernoulli
  model's ELBO and log p(x) for that image (~ -45.5 nats per MNIST test image).
"""

from __future__ import annotations

import math
import sys

import numpy as np
from tqdm import tqdm

from mlpvae.nn import model as M
from mlpvae.nn.batched import chunks
from mlpvae.nn.likelihoods import LOG_2PI
from vaetheory.xp import array_namespace, to_numpy

ACTIVE_THRESHOLD = 1e-2  # Var_x(mu_u) above which latent unit u counts as active (Burda et al.)


def _log_normal_diag(xp, z, mean, var):
    """log N(z; mean, diag(var)) summed over the last axis."""
    d = z - mean
    return -0.5 * xp.sum(d * d / var + xp.log(var) + LOG_2PI, axis=-1)


def iwae_log_px(
    params,
    x,
    mc,
    noise_rng,
    k: int = 5000,
    s2=None,
    rows: int = 20000,
    baggins_s2=None,
    progress: bool = False,
    proposal=None,
    top: int = 0,
):
    """Importance-sampled lower bound on log p(x) per image (N,), with k samples (Burda et al.; Not in the paper).

    ``log p(x) >= log (1/k) sum_{i<=k} p(x|z_i) N(z_i; 0, S^2) / q(z_i|x)``,
    ``z_i ~ q(z|x) = N(mu, Sigma)``; ``S^2 = s2`` (None: 1, the N(0, I) prior).
    At most ``rows`` (image, sample) pairs are decoded at once, so the memory
    is ``O(rows * m)`` whatever k is; the running log-sum-exp over sample
    chunks is kept in float64.  For BAGGINS, p(x|z_i) = N(x; nu(z_i), T_i I)
    with T_i from Eq. (29) for that sample, S^2 = ``baggins_s2`` (required).
    ``proposal(sl, eps) -> (z, log_q)`` replaces q(z|x) by another proposal
    for the images ``x[sl]``, from standard normal ``eps (c, b, n)`` (e.g.
    :func:`mlpvae.evidence.laplace.laplace_proposal`); BAGGINS's T still uses the
    encoder's Sigma, as in training.
    ``top > 0``: also return the ``top`` largest log weights of each image,
    ``(log_px (N,), top_log_w (N, top))`` in decreasing order (for
    :func:`pareto_khat`).
    """
    xp = array_namespace(x)
    n = mc.n
    s2 = xp.ones(n, dtype=x.dtype) if s2 is None else s2
    out = np.empty(len(x))
    per = max(1, rows // k) if k <= rows else 1
    kc = min(k, rows)
    if not 0 <= top <= k:
        raise ValueError(f"top must be between 0 and k = {k}, got {top}")
    best = np.full((len(x), top), -np.inf)
    for sl in tqdm(list(chunks(len(x), per)), desc=f"IWAE k={k}", disable=not progress, leave=False, file=sys.stderr):
        xb = x[sl]
        b = len(xb)
        mu, var = M.encode(params, xb, mc)
        var = xp.broadcast_to(var, mu.shape)
        acc = xp.full(b, -xp.inf, dtype=xp.float64)
        done = 0
        while done < k:
            c = min(kc, k - done)
            eps = noise_rng.standard_normal((c, b, n), dtype=x.dtype)
            if proposal is None:
                z = mu[None] + xp.sqrt(var)[None] * eps  # (c, b, n)
                log_q = _log_normal_diag(xp, z, mu[None], var[None])
            else:
                z, log_q = proposal(sl, eps)
            zf = z.reshape(c * b, n)
            xr = xp.broadcast_to(xb[None], (c, b, xb.shape[1])).reshape(c * b, -1)
            dec = M.decode(params, zf, mc)
            mur = xp.broadcast_to(mu[None], (c, b, n)).reshape(c * b, n)
            varr = xp.broadcast_to(var[None], (c, b, n)).reshape(c * b, n)
            T = M.likelihood_T(xr, dec.get("mean"), mur, varr, mc, baggins_s2)
            ll = M.log_likelihood(dec, xr, mc, T=T).reshape(c, b)
            lw = ll + _log_normal_diag(xp, z, 0.0, s2) - log_q
            lw = lw.astype(xp.float64)
            m = xp.maximum(acc, lw.max(axis=0))
            acc = m + xp.log(xp.exp(acc - m) + xp.exp(lw - m[None]).sum(axis=0))
            if top:
                both = np.concatenate([best[sl], to_numpy(lw).T], axis=1)
                best[sl] = -np.sort(-both, axis=1)[:, :top]
            done += c
        out[sl] = to_numpy(acc) - math.log(k)
    return (out, best) if top else out


def tail_size(S: int) -> int:
    """The number of largest weights PSIS fits the Pareto tail to, min(S / 5, 3 sqrt(S)) (Vehtari et al.)."""
    return int(min(S / 5, 3 * math.sqrt(S)))


def pareto_khat(top_log_w, prior_weight: float = 10.0) -> np.ndarray:
    """The shape k-hat of a generalized Pareto tail fitted to the largest importance weights (Not in the paper).

    ``top_log_w (N, M + 1)`` or ``(M + 1,)``: the M + 1 largest log weights of
    each image (any order; :func:`tail_size` gives M).  The M exceedances
    ``w_i - w_(M+1)`` over the (M+1)-th largest weight are fitted by
    Zhang and Stephens' (2009) empirical-Bayes estimate: with the GPD written
    ``(1/sigma) (1 - kappa y / sigma)^(1/kappa - 1)`` and ``theta = kappa / sigma``,
    the profile MLE is ``kappa(theta) = -mean log(1 - theta y)``, and theta is
    averaged over a grid below ``1 / y_max`` with weights proportional to the
    profile likelihood ``exp(M (log(theta / kappa) + kappa - 1))``.  The shape
    is ``k = -kappa``, shrunk towards 0.5 with the weight of ``prior_weight``
    observations as PSIS does: ``(M k + prior_weight / 2) / (M + prior_weight)``.
    Returns k-hat per image (a float for one image): below 0.5 the weights
    have a finite variance; above 0.7 an importance-sampling estimate is
    unreliable (Vehtari et al. 2024).
    """
    lw = np.asarray(top_log_w, dtype=np.float64)
    one = lw.ndim == 1
    lw = np.atleast_2d(lw)
    if lw.shape[1] < 6 or not np.all(np.isfinite(lw)):
        raise ValueError(f"pareto_khat needs at least 6 finite log weights per image, got shape {lw.shape}")
    lw = -np.sort(-lw, axis=1)
    out = np.empty(len(lw))
    for i, row in enumerate(lw):
        # exceedances over the threshold in units of the largest weight (the shape is scale-free), so no
        # spread of log weights overflows
        y = np.sort(np.exp(row[:-1] - row[0]) - np.exp(row[-1] - row[0]))
        if y[-1] <= 0:
            out[i] = -np.inf  # no tail at all: every weight equal
            continue
        M = len(y)
        g = 30 + int(math.sqrt(M))
        j = np.arange(1, g + 1)
        quart = y[max(int(M / 4 + 0.5) - 1, 0)]
        theta = 1.0 / y[-1] + (1.0 - np.sqrt(g / (j - 0.5))) / (3.0 * max(quart, y[-1] * 1e-12))
        kappa = -np.mean(np.log1p(-theta[:, None] * y[None]), axis=1)
        ll = M * (np.log(theta / kappa) + kappa - 1.0)
        wgt = np.exp(ll - ll.max())
        th = np.sum(theta * wgt) / wgt.sum()
        k = np.mean(np.log1p(-th * y))  # = -kappa(th), the shape
        out[i] = (M * k + prior_weight * 0.5) / (M + prior_weight)
    return out[0] if one else out


def active_units(mu, threshold: float = ACTIVE_THRESHOLD) -> tuple[int, np.ndarray]:
    """Number of active latent units and ``Var_x(mu_u) (n,)`` (Burda et al.'s criterion; Not in the paper)."""
    v = to_numpy(mu).astype(np.float64).var(axis=0)
    return int((v > threshold).sum()), v


def entropy_floor(x) -> float:
    """Mean over images of ``sum_pixels H(x)``, the Bernoulli entropy of grayscale targets (Sec. 7).

    ``x (N, m)`` in [0, 1], with ``0 log 0 = 0``.  Minus this is an upper bound
    on the Bernoulli ELBO and log p(x) of every image, averaged.
    """
    p = to_numpy(x).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(p > 0, p * np.log(p), 0.0) + np.where(p < 1, (1 - p) * np.log1p(-p), 0.0))
    return float(h.sum(axis=1).mean())
