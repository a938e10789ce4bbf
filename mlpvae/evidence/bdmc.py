"""Bidirectional Monte Carlo (Grosse et al. 2015; Wu et al. 2017): a certified sandwich on log p(x) (Not in the paper).

On data simulated from the model itself (z* from the prior N(0, S^2), x from
the decoder's p(x|z*)), z* is an exact sample of the posterior p(z|x).  AIS
forward from p0 (:func:`mlpvae.evidence.ais.anneal`) gives a stochastic lower
bound on log p(x); the same chains run in reverse from z* give weights whose
mean exp is an unbiased estimate of 1 / p(x), so minus its log is a stochastic
upper bound.  The width of the sandwich bounds the forward estimate's error on
such data, and so says how many intermediate distributions are enough for the
model.  Both directions use the same step sizes, tuned by one pilot run on the
simulated images and then held fixed (:func:`mlpvae.evidence.ais.tune_step_sizes`).

With a mixture p0 (a posterior component and the prior), both directions use the
posterior component alone (:data:`WITHOUT_PRIOR`): a reverse chain starts at z*
and, in many dimensions, never reaches the prior's part of p0 in a finite run,
so its weight misses that part's share and the upper bound reads -log(a) too
high (a the component's fraction) on nearly every image, corrected only by rare
chains that do cross; more intermediate distributions do not remove it.  The
width then certifies the annealing of that component's chains.

BAGGINS is refused: its p(x|z), with T of Eq. (29) depending on the residual,
is not a density in x that can be sampled, so a simulated pair is not an
exact posterior sample.  :func:`gaussian_twin` gives the closest certificate:
the Gaussian likelihood whose posterior has BAGGINS' shape near the images,
on which the sandwich measures how hard such a posterior is to anneal.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
from tqdm import tqdm

from mlpvae.evidence import ais as A
from mlpvae.nn import model as M
from mlpvae.nn.layers import sigmoid
from vaetheory.xp import array_namespace, to_numpy

# p0 of the sandwich for each --init: a mixture's posterior component without the prior (see above)
WITHOUT_PRIOR = {"modes-mixture": "modes", "laplace-mixture": "laplace", "mixture": "q"}


def gaussian_twin(params, x, z, mc: M.ModelConfig) -> M.ModelConfig:
    """The Gaussian likelihood whose log p(x|z) has BAGGINS' gradient in z at ``z`` (Eq. (29); Not in the paper).

    With T of Eq. (29), |x - nu|^2 / T = tr(Sigma^-1 S^2) / tau does not depend
    on z, so BAGGINS' log p(x|z) is ``-m/2 log |x - nu(z)|^2`` plus terms
    constant in z, and its gradient ``-m/2 grad r^2 / r^2`` is that of the
    Gaussian ``-r^2 / (2 t)`` with ``t = r^2 / m``.  The twin takes the median
    of ``|x_i - nu(z_i)|^2 / m`` over the rows of ``x (N, m)`` and ``z (N, n)``
    (e.g. the encoder means of test images), so its posteriors have the
    curvature of BAGGINS' near such images; unlike BAGGINS it is a density in x,
    and :func:`simulate` and :func:`bdmc` apply.  Its tails are lighter than
    BAGGINS' (quadratic against logarithmic in r^2), so its sandwich is
    evidence about, not a bound on, the annealing of BAGGINS' posteriors.
    """
    if mc.likelihood != "baggins":
        raise ValueError(f"gaussian_twin: the model's likelihood must be baggins, not {mc.likelihood!r}")
    r2 = to_numpy(((x - M.decode(params, z, mc)["mean"]) ** 2).sum(axis=1)).astype(np.float64)
    t = float(np.median(r2)) / mc.m
    if not (np.isfinite(t) and t > 0):
        raise ValueError(f"gaussian_twin: the median squared residual per pixel must be positive and finite, got {t!r}")
    return replace(mc, likelihood="gaussian", t=t)


def simulate(params, mc: M.ModelConfig, s2, N: int, rng):
    """``(x (N, m), z* (N, n))``: z* ~ N(0, S^2), x ~ p(x|z*) (Bernoulli: binary; Gaussian: nu + sqrt(t) noise).

    Not in the paper.  ``s2 (n,)`` on the parameters' array module; ``rng`` its generator.
    """
    if mc.likelihood not in ("bernoulli", "gaussian"):
        raise ValueError(
            f"simulate: only the bernoulli and gaussian likelihoods are densities in x to sample, not {mc.likelihood!r}"
        )
    xp = array_namespace(s2)
    dtype = params["dec_W0"].dtype
    z = xp.sqrt(xp.asarray(s2, dtype=dtype)) * rng.standard_normal((N, mc.n), dtype=dtype)
    dec = M.decode(params, z, mc)
    if mc.likelihood == "bernoulli":
        x = (rng.random((N, mc.m), dtype=dtype) < sigmoid(dec["logits"])).astype(dtype)
    else:
        x = dec["mean"] + np.sqrt(mc.t) * rng.standard_normal((N, mc.m), dtype=dtype)
    return x, z


def bdmc(
    params,
    x,
    z_star,
    mc: M.ModelConfig,
    s2,
    rng,
    *,
    mu,
    var,
    chains: int = 64,
    steps: int = 1000,
    leapfrog: int = 5,
    schedule_kind: str = "sigmoid",
    init: str = "modes-mixture",
    q_fraction: float = 0.5,
    target_accept: float = 0.65,
    pilot_steps: int = A.PILOT_STEPS,
    pilot_rounds: int = 3,
    rows: int = 4096,
    progress: bool = False,
) -> dict:
    """Forward (lower) and reverse (upper) AIS bounds on log p(x) of simulated images (Not in the paper).

    ``x (N, m)`` and ``z_star (N, n)`` from :func:`simulate`; ``mu, var`` the
    encoder's posterior of ``x``; the other arguments as
    :func:`mlpvae.evidence.ais.ais_log_px`.  Every reverse chain of an image
    starts at its z*.

    Returns a dict of host arrays (N,): ``lower`` (log of the mean forward
    weight), ``upper`` (minus the log of the mean reverse weight), ``width``
    (upper - lower), ``lower_se`` (stratified by p0's component), ``upper_se`` (delta-method standard
    errors), ``accept`` (forward), and ``betas``.
    """
    A.check(
        mc,
        x,
        s2,
        None,
        chains=chains,
        steps=steps,
        leapfrog=leapfrog,
        schedule_kind=schedule_kind,
        init=init,
        q_fraction=q_fraction,
        target_accept=target_accept,
        pilot_steps=pilot_steps,
    )
    xp = array_namespace(x)
    s2 = xp.asarray(s2, dtype=x.dtype)
    N = x.shape[0]
    if tuple(z_star.shape) != (N, mc.n):
        raise ValueError(f"z_star must have shape ({N}, {mc.n}), got {tuple(z_star.shape)}")
    betas, betas_p = A.schedule(schedule_kind, steps), A.schedule(schedule_kind, pilot_steps)
    per = max(1, rows // chains)
    res = {k: np.empty(N) for k in ("lower", "upper", "lower_se", "upper_se", "accept")}
    work = (-(-N // per)) * (pilot_steps + 1 + 2 * steps)
    with tqdm(total=work, desc=f"BDMC T={steps}", disable=not progress, leave=False, file=sys.stderr) as bar:
        for a in range(0, N, per):
            sl = slice(a, min(N, a + per))
            b = sl.stop - sl.start
            target, groups, G = A.setup(
                params, x[sl], mc, s2, mu[sl], var[sl], None, chains, WITHOUT_PRIOR.get(init, init), q_fraction
            )
            eps_p = A.tune_step_sizes(target, groups, G, betas_p, leapfrog, target_accept, rng, pilot_rounds, bar)
            eps = A.interpolate_step_sizes(betas_p, eps_p, betas)[:, groups]
            fw, acc = A.anneal(target, target.sample_initial(rng), betas, eps, leapfrog, rng, bar=bar)
            z0 = xp.broadcast_to(z_star[sl][None], (chains, b, mc.n)).reshape(chains * b, mc.n)
            rv, _ = A.anneal(target, z0, betas, eps, leapfrog, rng, reverse=True, bar=bar)
            strata = to_numpy(target.strata())
            lo, lo_se = A.log_mean_exp(fw.reshape(chains, b), strata)
            up, up_se = A.log_mean_exp(rv.reshape(chains, b))
            res["lower"][sl], res["lower_se"][sl] = to_numpy(lo), to_numpy(lo_se)
            res["upper"][sl], res["upper_se"][sl] = -to_numpy(up), to_numpy(up_se)
            res["accept"][sl] = to_numpy(acc.reshape(chains, b).mean(axis=0))
    res["width"] = res["upper"] - res["lower"]
    res["betas"] = betas
    return res
