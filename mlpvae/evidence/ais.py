"""log p(x) of a trained model by annealed importance sampling (AIS) with Hamiltonian Monte Carlo transitions.

Not in the paper: the estimator its log p(x) statements are checked against
beyond two latent dimensions, where the grid (:mod:`mlpvae.evidence.grid`) cannot go and the
IWAE bound's error depends on how far the encoder's q(z|x) is from the posterior.

AIS (Neal 2001) moves chains from a normalised initial density p0(z) to the
posterior through ``f_t(z) = p0(z)^(1 - beta_t) p(x, z)^beta_t``,
``0 = beta_0 < ... < beta_T = 1``, with ``p(x, z) = p(x|z) N(z; 0, S^2)``.  A
chain starts at ``z_0 ~ p0``; at each t it adds ``(beta_t - beta_{t-1}) (log p(x, z)
- log p0(z))`` to its log weight and then takes one HMC transition that leaves
``f_t`` invariant.  Each chain's weight is an unbiased estimate of p(x); the
estimate of log p(x) is the log of the chains' mean weight (log-sum-exp), a
stochastic lower bound (Jensen).  :mod:`mlpvae.evidence.bdmc` runs the same
chains backwards from an exact posterior sample for the upper bound.

p0 (``init``, :mod:`mlpvae.evidence.ais_target`) is the encoder's q(z|x), the
Laplace posterior at the mode of the log joint, the prior, or the mixture of
q, the Laplace posterior, or the Laplace posteriors at every distinct local
maximum of the log joint (weighted by their Laplace masses) with the prior
(default: ``modes-mixture``, ``q_fraction`` of the chains in the Laplace
components).  The mixture's chains are stratified (a fixed count of each
image's chains per component, p0's weights the counts' shares, the weight
using the mixture density), so the mean weight stays unbiased as long
as a chain's transitions do not depend on its component: every chain of an
image shares that image's step sizes.  The standard error is the stratified
one, ``Var = sum_k a_k^2 s_k^2 / n_k`` over the components k with ``n_k`` chains,
share ``a_k`` and weight variance ``s_k^2``.  Chains from q alone stay in q's
mode of a multimodal posterior; the prior's chains reach the others while
beta is small.

HMC (leapfrog, ``leapfrog`` steps, momentum in coordinates whitened by the
prior's standard deviation S): the gradient of log p(x, z) is the decoder's
vector-Jacobian product of the likelihood's score
(:func:`mlpvae.nn.jacobian.decoder_vjp`, :func:`mlpvae.evidence.posterior_mode.score`), no autodiff.
Step sizes: a pilot AIS run (its own random numbers, its weights discarded)
adapts one step size per image (all its chains, whichever component they
started in) towards ``target_accept`` after
every transition; the main run then uses the pilot's step sizes, interpolated
in beta and held fixed.  A step size that adapted to the chains being measured
would bias the estimate and both BDMC bounds.  Same source on NumPy and CuPy.
"""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

from mlpvae.evidence.ais_target import INITS, Target, setup
from mlpvae.evidence.posterior_mode import LIKELIHOODS
from mlpvae.nn import model as M
from vaetheory import validate as V
from vaetheory.xp import array_namespace, to_numpy

SCHEDULES = ("sigmoid", "geometric", "linear")
SIGMOID_DELTA = 4.0  # the sigmoidal schedule's steepness (Grosse et al. 2015)
GEOMETRIC_BETA_1 = 1e-4  # the first nonzero beta of the geometric schedule
PILOT_STEPS = 100  # intermediate distributions of the pilot run that tunes the step sizes
ADAPT_RATE = 0.5  # the pilot's log step-size change per unit of acceptance error


def schedule(kind: str, steps: int) -> np.ndarray:
    """The inverse temperatures beta_0 = 0 < ... < beta_T = 1 (T = ``steps``) of AIS (Not in the paper).

    ``sigmoid``: ``s(delta (2 t / T - 1))`` with s the logistic function,
    rescaled to [0, 1] (delta = :data:`SIGMOID_DELTA`, Grosse et al. 2015);
    ``geometric``: 0, then log-spaced from :data:`GEOMETRIC_BETA_1` to 1;
    ``linear``: t / T.
    """
    V.choice("schedule", kind, SCHEDULES)
    T = V.scalar("steps", steps, positive=True, integer=True)
    t = np.arange(T + 1) / T
    if kind == "linear":
        b = t
    elif kind == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-SIGMOID_DELTA * (2.0 * t - 1.0)))
        b = (s - s[0]) / (s[-1] - s[0])
    else:
        b = np.concatenate([[0.0], np.geomspace(GEOMETRIC_BETA_1, 1.0, T)]) if T > 1 else np.array([0.0, 1.0])
    b[0], b[-1] = 0.0, 1.0
    return b


def _state(target: Target, z):
    lj, gj = target.joint(z)
    l0, g0 = target.initial(z)
    return [z, lj, gj, l0, g0]


def hmc(target: Target, state, beta: float, eps, leapfrog: int, rng):
    """One HMC transition leaving ``f_beta = p0^(1 - beta) p(x, z)^beta`` invariant, row by row (Not in the paper).

    ``state = [z, log p(x, z), its gradient, log p0(z), its gradient]`` (kept
    so that no point is decoded twice); ``eps (R,)`` the step sizes in
    coordinates whitened by S.  A proposal whose energy is not finite is
    rejected.  Returns the new state and the acceptance probabilities (R,).
    """
    xp = target.xp
    z, lj, gj, l0, g0 = state
    S, e = target.scale, eps[:, None]
    p = rng.standard_normal(z.shape, dtype=z.dtype)
    H0 = beta * lj + (1.0 - beta) * l0 - 0.5 * xp.sum(p * p, axis=-1)
    new = state
    with np.errstate(all="ignore"):
        p = p + 0.5 * e * S * (beta * gj + (1.0 - beta) * g0)
        zn = z
        for k in range(leapfrog):
            zn = zn + e * S * p
            new = _state(target, zn)
            g = beta * new[2] + (1.0 - beta) * new[4]
            p = p + (e if k < leapfrog - 1 else 0.5 * e) * S * g
        H1 = beta * new[1] + (1.0 - beta) * new[3] - 0.5 * xp.sum(p * p, axis=-1)
        log_a = xp.where(xp.isfinite(H1), H1 - H0, -xp.inf)
        acc = xp.exp(xp.minimum(log_a, 0.0))
    u = rng.random(acc.shape, dtype=acc.dtype)
    take = u < acc
    out = [xp.where(take[:, None] if s.ndim == 2 else take, s1, s) for s, s1 in zip(state, new)]
    return out, acc


def anneal(target: Target, z0, betas: np.ndarray, eps, leapfrog: int, rng, *, reverse: bool = False, bar=None):
    """The log AIS weights (R,) of chains from ``z0`` through ``betas``, forward or reverse (Not in the paper).

    Forward: z_0 ~ p0 and at t = 1..T the weight gains ``(beta_t - beta_{t-1}) h(z)``,
    ``h = log p(x, z) - log p0(z)``, then one HMC transition at beta_t (none after
    the last).  Reverse (``z0`` an exact posterior sample): at t = T..1 the
    weight loses ``(beta_t - beta_{t-1}) h(z)``, then one transition at beta_{t-1};
    its mean exp is an unbiased estimate of 1 / p(x).  ``eps (T + 1, R)``: the
    step size of the transition at each beta, fixed.  Returns the log weights
    and the mean acceptance probability per row.
    """
    xp = target.xp
    state = _state(target, z0)
    logw = xp.zeros(z0.shape[0], dtype=xp.float64)
    acc = xp.zeros(z0.shape[0], dtype=xp.float64)
    T = len(betas) - 1
    for s in range(1, T + 1):
        t = T - s + 1 if reverse else s
        d = float(betas[t] - betas[t - 1])
        logw = logw + (-d if reverse else d) * (state[1] - state[3])
        nxt = t - 1 if reverse else t
        if s < T:
            state, a = hmc(target, state, float(betas[nxt]), eps[nxt], leapfrog, rng)
            acc += a
        if bar is not None:
            bar.update(1)
    if not bool(xp.all(xp.isfinite(logw))):
        raise FloatingPointError("an AIS weight is NaN or infinite: the model's log joint is not finite there")
    return logw, acc / max(T - 1, 1)


def tune_step_sizes(
    target: Target,
    groups,
    G: int,
    betas: np.ndarray,
    leapfrog: int,
    target_accept: float,
    rng,
    rounds: int = 3,
    bar=None,
):
    """Step sizes (T + 1, G) per group of rows (an image's chains) from a pilot AIS run (Not in the paper).

    ``groups (R,)`` numbers each row's group.  At each beta the pilot takes
    ``rounds`` transitions, each followed by ``log eps += ADAPT_RATE (mean
    acceptance of the group - target_accept)``, and records the mean log step
    size over the rounds.  The first step size is the geometric mean over the
    group's rows of their starting component's smallest whitened standard
    deviation (:meth:`mlpvae.evidence.ais_target.Target.start_step`).  A group
    must not split an image's chains by component: the kernel would then
    depend on the component label, which the weight does not see.
    """
    xp = target.xp
    z = target.sample_initial(rng)
    state = _state(target, z)
    start = xp.log(target.start_step())
    count = xp.zeros(G, dtype=xp.float64)
    count = count + xp.bincount(groups, minlength=G)
    log_eps = xp.bincount(groups, weights=start, minlength=G) / count
    out = xp.empty((len(betas), G), dtype=xp.float64)
    for t, beta in enumerate(betas):
        total = xp.zeros(G, dtype=xp.float64)
        for _ in range(rounds):
            state, a = hmc(target, state, float(beta), xp.exp(log_eps)[groups], leapfrog, rng)
            mean_a = xp.bincount(groups, weights=a, minlength=G) / count
            total = total + log_eps
            log_eps = log_eps + ADAPT_RATE * (mean_a - target_accept)
        out[t] = total / rounds
        if bar is not None:
            bar.update(1)
    return xp.exp(out)


def interpolate_step_sizes(betas_pilot: np.ndarray, eps_pilot, betas: np.ndarray):
    """The pilot's step sizes (Tp + 1, G) at another schedule's betas (T + 1, G), linear in log eps and beta."""
    xp = array_namespace(eps_pilot)
    le = to_numpy(xp.log(eps_pilot))
    out = np.stack([np.interp(betas, betas_pilot, le[:, g]) for g in range(le.shape[1])], axis=1)
    return xp.exp(xp.asarray(out))


def log_mean_exp(logw, strata=None):
    """log of the chains' mean weight (B,) and its delta-method standard error, stratified (Not in the paper).

    ``logw (C, B)``: C chains of B images.  ``strata`` (bool or int, ``(C,)``
    shared by the images or ``(C, B)``; None: one stratum) labels the component
    each chain started in.  The mean weight ``Z = sum_k a_k wbar_k`` (``a_k =
    n_k / C``) has variance ``sum_k a_k^2 s_k^2 / n_k`` with ``s_k^2`` the
    weights' variance within stratum k (ddof 1), and the standard error of
    log Z is its square root over Z.  A stratum with one chain gives an
    infinite standard error.
    """
    if logw.ndim != 2:
        raise ValueError(f"logw must have shape (chains, images), got {tuple(logw.shape)}")
    xp = array_namespace(logw)
    C, B = logw.shape
    top = xp.max(logw, axis=0, keepdims=True)
    w = xp.exp(logw - top)
    mean = xp.mean(w, axis=0)
    labels = np.zeros(C, dtype=np.int64) if strata is None else np.asarray(to_numpy(strata)).astype(np.int64)
    if labels.shape not in ((C,), (C, B)):
        raise ValueError(f"strata must have shape ({C},) or ({C}, {B}), got {labels.shape}")
    labels = np.broadcast_to(labels.reshape(C, -1), (C, B))
    var = xp.zeros(mean.shape, dtype=mean.dtype)
    for k in np.unique(labels):
        mask = xp.asarray((labels == k).astype(np.float64))
        n_k = xp.sum(mask, axis=0)  # (B,)
        mean_k = xp.sum(w * mask, axis=0) / xp.maximum(n_k, 1.0)
        s2_k = xp.sum(mask * (w - mean_k) ** 2, axis=0) / xp.maximum(n_k - 1.0, 1.0)
        part = (n_k / C) ** 2 * s2_k / xp.maximum(n_k, 1.0)
        var = var + xp.where(n_k >= 2, part, xp.where(n_k == 1, xp.inf, 0.0))
    return xp.log(mean) + xp.squeeze(top, axis=0), xp.sqrt(var) / mean


def effective_sample_size(logw):
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` per image (B,) of the weights ``exp(logw) (C, B)``."""
    if logw.ndim != 2 or logw.shape[0] < 1:
        raise ValueError(f"logw must have shape (chains, images), got {tuple(logw.shape)}")
    xp = array_namespace(logw)
    w = xp.exp(logw - xp.max(logw, axis=0))
    return xp.sum(w, axis=0) ** 2 / xp.sum(w * w, axis=0)


def check(
    mc: M.ModelConfig,
    x,
    s2,
    baggins_s2,
    *,
    chains: int,
    steps: int,
    leapfrog: int,
    schedule_kind: str,
    init: str,
    q_fraction: float,
    target_accept: float,
    pilot_steps: int,
):
    """The arguments of :func:`ais_log_px` and :func:`mlpvae.evidence.bdmc.bdmc`, checked (ValueError naming each)."""
    if not isinstance(mc, M.ModelConfig):
        raise ValueError(f"mc must be a mlpvae.nn.model.ModelConfig, got {type(mc).__name__}")
    if mc.likelihood not in LIKELIHOODS:
        raise ValueError(f"AIS supports the likelihoods {LIKELIHOODS}, not {mc.likelihood!r}")
    if mc.likelihood == "baggins" and baggins_s2 is None:
        raise ValueError("baggins_s2 (the S^2 of Eq. (29)) is required for the baggins likelihood")
    V.array("x", x, ("N", "m"), {"m": mc.m}, finite=True)
    s2 = V.array("s2", s2, ("n",), {"n": mc.n}, finite=True)
    if bool(array_namespace(s2).any(s2 <= 0)):
        raise ValueError("s2 must be positive")
    for name, v in (("chains", chains), ("steps", steps), ("leapfrog", leapfrog), ("pilot_steps", pilot_steps)):
        V.scalar(name, v, positive=True, integer=True)
    if chains < 2:
        raise ValueError(f"chains must be >= 2 (the standard error needs two), got {chains}")
    V.choice("schedule", schedule_kind, SCHEDULES)
    V.choice("init", init, INITS)
    if not 0.0 < q_fraction < 1.0:
        raise ValueError(f"q_fraction must be in (0, 1), got {q_fraction}")
    if not 0.0 < target_accept < 1.0:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")


def ais_log_px(
    params,
    x,
    mc: M.ModelConfig,
    s2,
    rng,
    *,
    mu,
    var,
    baggins_s2=None,
    chains: int = 64,
    steps: int = 1000,
    leapfrog: int = 5,
    schedule_kind: str = "sigmoid",
    init: str = "modes-mixture",
    q_fraction: float = 0.5,
    target_accept: float = 0.65,
    pilot_steps: int = PILOT_STEPS,
    pilot_rounds: int = 3,
    rows: int = 4096,
    progress: bool = False,
) -> dict:
    """log p(x) = log int p(x|z) N(z; 0, S^2) dz per image by AIS with HMC transitions (Not in the paper).

    Parameters
    ----------
    params, mc : a trained model (float64 parameters); ``gaussian-learned`` is refused (its
        variance head is not in the gradient).
    x : (N, m) targets.  s2 : (n,) the prior variance S^2.  rng : NumPy's (or CuPy's) generator.
    mu, var : (N, n) the encoder's posterior q(z|x) (also BAGGINS' T, Eq. (29), with ``baggins_s2``).
    chains : chains per image.  steps : T, the number of intermediate distributions.
    leapfrog : leapfrog steps per HMC transition.  schedule_kind : :data:`SCHEDULES`.
    init : p0, one of :data:`mlpvae.evidence.ais_target.INITS` (q(z|x), the Laplace posterior
        at the mode, the prior, or a mixture with ``q_fraction`` of the chains in q, the Laplace
        posterior, or the Laplace posteriors at every distinct local maximum, ``modes-mixture``).
    target_accept, pilot_steps, pilot_rounds : the pilot run that sets the step sizes
        (:func:`tune_step_sizes`, on its own ``pilot_steps``-step schedule of the same kind).
    rows : at most this many (chain, image) rows at once.

    Returns
    -------
    dict of host arrays
        ``log_px (N,)``, ``se (N,)`` (stratified delta-method standard error of log p(x) over the
        chains, :func:`log_mean_exp`), ``ess (N,)`` (the weights' effective sample size,
        :func:`effective_sample_size`), ``in_q (chains,)`` (the chains started in q or Laplace),
        ``component (chains, N)`` (each chain's starting component of p0, -1 the prior),
        ``log_w (chains, N)``, ``accept (N,)`` (the main run's mean acceptance probability), and
        ``betas``, the schedule.
    """
    check(
        mc,
        x,
        s2,
        baggins_s2,
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
    betas, betas_p = schedule(schedule_kind, steps), schedule(schedule_kind, pilot_steps)
    per = max(1, rows // chains)
    res = {"log_px": np.empty(N), "se": np.empty(N), "ess": np.empty(N), "accept": np.empty(N)}
    res["log_w"] = np.empty((chains, N))
    res["component"] = np.empty((chains, N), dtype=np.int64)
    work = (-(-N // per)) * (pilot_steps + 1 + steps)
    with tqdm(total=work, desc=f"AIS T={steps}", disable=not progress, leave=False, file=sys.stderr) as bar:
        for a in range(0, N, per):
            sl = slice(a, min(N, a + per))
            b = sl.stop - sl.start
            target, groups, G = setup(params, x[sl], mc, s2, mu[sl], var[sl], baggins_s2, chains, init, q_fraction)
            eps_p = tune_step_sizes(target, groups, G, betas_p, leapfrog, target_accept, rng, pilot_rounds, bar)
            eps = interpolate_step_sizes(betas_p, eps_p, betas)[:, groups]
            logw, acc = anneal(target, target.sample_initial(rng), betas, eps, leapfrog, rng, bar=bar)
            logw = logw.reshape(chains, b)
            strata = to_numpy(target.strata())
            lp, se = log_mean_exp(logw, strata)
            res["log_px"][sl], res["se"][sl] = to_numpy(lp), to_numpy(se)
            res["ess"][sl] = to_numpy(effective_sample_size(logw))
            res["accept"][sl] = to_numpy(acc.reshape(chains, b).mean(axis=0))
            res["log_w"][:, sl] = to_numpy(logw)
            res["component"][:, sl] = strata
    res["betas"] = betas
    res["in_q"] = res["component"][:, 0] >= 0
    return res
