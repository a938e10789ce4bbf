"""The log joint that AIS anneals to and its initial distribution p0: q(z|x), Laplace posteriors, the prior.

Not in the paper: the two ends of the path of :mod:`mlpvae.evidence.ais`.
The target is ``log p(x, z) = log p(x|z) + log N(z; 0, S^2)`` (Eqs. (1),
(26), (29)).  p0 is a mixture of Gaussian components g_j(z) and the prior,
``sum_j a_j g_j + a_0 N(0, S^2)``, per image:

- ``q``: g = the encoder's q(z|x), alone;
- ``laplace``: g = N(z*, P^-1), the Laplace posterior of Eq. (16) at the mode
  z* of the log joint (:func:`mlpvae.evidence.posterior_mode.posterior_mode`,
  climbed from the encoder's mean and from the best of a set of the prior's points), with P = S^-2 +
  J^T G J, minus the Hessian of the log joint there (exact for the ReLU
  decoder, which is linear around z*, with a Gaussian or Bernoulli
  likelihood; the positive part of the curvature for BAGGINS), alone;
- ``prior``: the prior alone;
- ``mixture``: q and the prior; ``laplace-mixture``: the Laplace posterior
  and the prior;
- ``modes``: one Laplace posterior N(z*_j, P_j^-1) at each distinct local
  maximum the mode search reaches (:func:`laplace_modes`), weighted by its
  Laplace mass, alone; ``modes-mixture``: these and the prior.

The mixtures' chains are stratified: ``n_q = round(a C)`` of an image's C
chains start in the Gaussian components (n_j of them in component j, a
deterministic count) and the rest in the prior, and p0's weights are those
counts' shares, ``a_j = n_j / C`` and ``a_0 = (C - n_q) / C``, with every
chain's weight using the whole mixture density of p0.  Then the plain mean
of the C weights is unbiased: a chain from g_j has expected weight
``E_j[w]``, and ``sum_j (n_j / C) E_j[w] + ((C - n_q) / C) E_prior[w] =
E_p0[w] = p(x)`` because p0 is exactly the mixture with those shares (AIS
with p0's density in the weight is unbiased for chains drawn from p0).  The
chains' HMC kernels must then not depend on which component a chain started
in (the label is not part of the state whose density the weight uses: a
kernel that depends on it leaves the mixture of the components' annealed
densities, not f_t, invariant), so a step size belongs to the image, shared
by all its chains (:func:`mlpvae.evidence.ais.tune_step_sizes`).
"""

from __future__ import annotations

import numpy as np

from mlpvae.evidence.laplace import likelihood_at
from mlpvae.evidence.posterior_mode import posterior_mode, score
from mlpvae.nn import jacobian as Jac
from mlpvae.nn import model as M
from mlpvae.nn.likelihoods import LOG_2PI
from vaetheory.xp import array_namespace, to_numpy

INITS = ("modes-mixture", "laplace-mixture", "mixture", "modes", "laplace", "q", "prior")
MIXTURES = ("modes-mixture", "laplace-mixture", "mixture")
LAPLACE_INITS = ("laplace-mixture", "laplace")
MODES_INITS = ("modes-mixture", "modes")
LAPLACE_CLIMBS = 4  # climbs of the mode search besides the encoder's mean: from the best of the prior's points
PRIOR_POINTS = 64  # fixed draws from the prior among the mode search's candidate starts
MODE_CLIMBS = 32  # climbs from the prior's points when every local maximum is kept (modes-mixture)
MAX_MODES = 8  # Gaussian components of modes-mixture at most, the heaviest by Laplace mass
SAME_MODE_SD = 1.0  # local maxima closer than this many posterior standard deviations are one mode
MIN_MODE_SHARE = 0.01  # a local maximum with a smaller share of the Laplace masses gets no component
MIN_CHAINS = 2  # chains per Gaussian component at least (a stratum's standard error needs two)


def laplace_posterior(params, x, mu, var, mc: M.ModelConfig, s2, baggins_s2=None):
    """The Laplace posterior N(z*, P^-1) per image, ``P = S^-2 + J^T G J`` at the mode z* (Eq. (16), Not in the paper).

    z* is the highest local maximum of the log joint reached by
    :func:`mlpvae.evidence.posterior_mode.posterior_mode` from the encoder's
    mean ``mu`` and from the :data:`LAPLACE_CLIMBS` highest (in the log joint)
    of the prior's points 0, +-S_k e_k and :data:`PRIOR_POINTS` fixed draws
    S eps (eps from a generator seeded 0, the same for every image and
    independent of the chains' random numbers), since the encoder may aim at
    a light mode of a multimodal posterior; J is the decoder's Jacobian there
    and G the curvature of the likelihood in the decoder output
    (:func:`mlpvae.evidence.laplace.likelihood_at`).

    Parameters
    ----------
    params, mc : a trained model (float64 parameters).
    x : (N, m) targets.  mu, var : (N, n) the encoder's posterior (the first start; BAGGINS' T).
    s2 : (n,) the prior variance S^2.  baggins_s2 : S^2 of Eq. (29) (BAGGINS only).

    Returns
    -------
    ``(mode (N, n), precision (N, n, n))`` on the array module of ``x``.
    """
    xp = array_namespace(x)
    _check_posterior(x, mu, var)
    s2 = xp.asarray(s2, dtype=xp.float64)
    starts = _prior_points(xp, s2, mu.shape[0])
    found = posterior_mode(
        params, x, mu, var, mc, s2, baggins_s2=baggins_s2, starts=starts, climbs=min(LAPLACE_CLIMBS, len(starts))
    )
    mode = xp.asarray(found["mode"], dtype=xp.float64)
    return mode, xp.asarray(laplace_precision(params, x, mode, mu, var, mc, s2, baggins_s2))


def _check_posterior(x, mu, var):
    if mu.shape != var.shape or mu.ndim != 2 or mu.shape[0] != x.shape[0]:
        raise ValueError(f"mu and var must have shape ({x.shape[0]}, n), got {tuple(mu.shape)}, {tuple(var.shape)}")


def _prior_points(xp, s2, N: int):
    """The mode search's candidate starts (P, N, n): 0, +-S_k e_k and PRIOR_POINTS fixed draws S eps."""
    n = s2.shape[0]
    axes = np.diag(np.sqrt(to_numpy(s2)))
    draws = np.sqrt(to_numpy(s2)) * np.random.default_rng(0).standard_normal((PRIOR_POINTS, n))
    points = np.concatenate([np.zeros((1, n)), axes, -axes, draws])  # (2 n + 1 + PRIOR_POINTS, n)
    return xp.asarray(np.broadcast_to(points[:, None], (len(points), N, n)).copy())


def laplace_precision(params, x, z, mu, var, mc: M.ModelConfig, s2, baggins_s2):
    """``P = S^-2 + J^T G J`` (N, n, n) at the points z (N, n), on the host (Eq. (16))."""
    out, J = Jac.decoder_jacobian(params, z, mc)
    _, G = likelihood_at(params, x, z, mu, var, mc, baggins_s2, out=out)
    gram = to_numpy((J * G[:, :, None]).transpose(0, 2, 1) @ J)
    return (gram + np.swapaxes(gram, -1, -2)) / 2 + np.diag(1.0 / to_numpy(s2))[None]


def laplace_log_mass(log_joint, precision) -> np.ndarray:
    """Eq. (16)'s Laplace log evidence ``log p(x, z*) - 1/2 log det P + n/2 log 2 pi`` at maxima z* (host arrays).

    ``log_joint (...)`` the log joint at each maximum, ``precision (..., n, n)`` its precision P = S^-2 + J^T G J
    (positive definite: its Cholesky factor gives the log-determinant).
    """
    P = np.asarray(precision)
    L = np.linalg.cholesky(P)
    return np.asarray(log_joint) - np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1) + 0.5 * P.shape[-1] * LOG_2PI


def laplace_modes(
    params, x, mu, var, mc: M.ModelConfig, s2, baggins_s2=None, *, climbs: int = MODE_CLIMBS, max_modes: int = MAX_MODES
):
    """Laplace posteriors N(z*_j, P_j^-1) at the distinct local maxima of the log joint and their masses (Eq. (16)).

    Not in the paper as a mixture: the modes-mixture start of AIS.

    The mode search of :func:`laplace_posterior` (Levenberg-Marquardt from the
    encoder's mean and from the ``climbs`` highest of the prior's points),
    keeping where every climb ended instead of only the highest.  Climbs are
    taken in order of their log joint; one that ends within
    :data:`SAME_MODE_SD` posterior standard deviations of a kept maximum
    (Mahalanobis distance in either's precision P = S^-2 + J^T G J of Eq.
    (16)) is the same mode.  Each kept maximum's Laplace mass is Eq. (16)'s
    ``log p(x, z*_j) - 1/2 log det P_j + n/2 log 2 pi``; the ``max_modes``
    heaviest are returned, heaviest first.

    Parameters
    ----------
    params, mc : a trained model (float64 parameters).
    x : (N, m) targets.  mu, var : (N, n) the encoder's posterior (the first start; BAGGINS' T).
    s2 : (n,) the prior variance S^2.  baggins_s2 : S^2 of Eq. (29) (BAGGINS only).
    climbs : climbs from the prior's points besides the encoder's mean.
    max_modes : K, the most modes kept per image.

    Returns
    -------
    ``(mode (N, K, n), precision (N, K, n, n), log_mass (N, K))`` on the array
    module of ``x``; an image with fewer than K modes has ``log_mass`` -inf in
    the rest, whose mode and precision repeat its heaviest.
    """
    xp = array_namespace(x)
    _check_posterior(x, mu, var)
    for name, v in (("climbs", climbs), ("max_modes", max_modes)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    N, n = mu.shape
    s2 = xp.asarray(s2, dtype=xp.float64)
    starts = _prior_points(xp, s2, N)
    found = posterior_mode(
        params, x, mu, var, mc, s2, baggins_s2=baggins_s2, starts=starts, climbs=min(climbs, len(starts)), keep_all=True
    )
    ends, lj = found["modes"], found["log_joints"]  # (E, N, n), (E, N)
    E = len(ends)
    rep = lambda a: xp.broadcast_to(a[None], (E,) + a.shape).reshape((E * N,) + a.shape[1:])  # noqa: E731
    prec = laplace_precision(params, rep(x), xp.asarray(ends.reshape(E * N, n)), rep(mu), rep(var), mc, s2, baggins_s2)
    prec = prec.reshape(E, N, n, n)
    log_mass = laplace_log_mass(lj, prec)  # (E, N)
    K = max_modes
    modes, precs, masses = np.empty((N, K, n)), np.empty((N, K, n, n)), np.full((N, K), -np.inf)
    for b in range(N):
        kept = []
        for e in np.argsort(-lj[:, b], kind="stable"):
            z = ends[e, b]
            if all(
                min((z - ends[k, b]) @ prec[k, b] @ (z - ends[k, b]), (z - ends[k, b]) @ prec[e, b] @ (z - ends[k, b]))
                >= SAME_MODE_SD**2
                for k in kept
            ):
                kept.append(e)
        kept = sorted(kept, key=lambda e: -log_mass[e, b])[:K]
        k = len(kept)
        modes[b, :k], precs[b, :k], masses[b, :k] = ends[kept, b], prec[kept, b], log_mass[kept, b]
        modes[b, k:], precs[b, k:] = ends[kept[0], b], prec[kept[0], b]
    return xp.asarray(modes), xp.asarray(precs), xp.asarray(masses)


def chain_counts(log_mass, n_q: int) -> np.ndarray:
    """Chains per Gaussian component (B, K) of ``n_q`` per image, by the components' masses (Not in the paper).

    ``log_mass (B, K)``: log masses (-inf: no component), heaviest first.  Components with less than
    :data:`MIN_MODE_SHARE` of an image's mass get none; the rest, at most ``n_q // MIN_CHAINS`` of them
    (the heaviest), get ``n_q`` times their share of the kept mass rounded by largest remainders, raised
    to :data:`MIN_CHAINS` each from the largest counts.  Deterministic, so the counts are p0's weights.
    """
    lm = np.asarray(to_numpy(log_mass), dtype=np.float64)
    if lm.ndim != 2 or not np.all(np.isfinite(lm[:, 0])):
        raise ValueError(f"log_mass must have shape (B, K) with a finite first column, got {lm.shape}")
    if n_q < 1:
        raise ValueError(f"n_q must be >= 1, got {n_q}")
    B, K = lm.shape
    counts = np.zeros((B, K), dtype=np.int64)
    for b in range(B):
        share = np.exp(lm[b] - lm[b].max())
        share /= share.sum()
        order = np.argsort(-share, kind="stable")
        k = int(min(np.sum(share >= MIN_MODE_SHARE), max(1, n_q // MIN_CHAINS)))
        keep = order[:k]
        ideal = n_q * share[keep] / share[keep].sum()
        c = np.floor(ideal).astype(np.int64)
        rest = n_q - c.sum()
        c[np.argsort(-(ideal - c), kind="stable")[:rest]] += 1
        low = min(MIN_CHAINS, n_q // k)
        while c.min() < low:
            c[np.argmin(c)] += 1
            c[np.argmax(c)] -= 1
        counts[b, keep] = c
    return counts


class Target:
    """The log joint ``log p(x|z) + log N(z; 0, S^2)`` and the initial density p0 of AIS chains, with gradients.

    Rows are (chain, image) pairs, chain-major: row ``c B + b`` is chain c of
    image b, R = C B.  ``x, mu, var`` are (R, m), (R, n), (R, n) (the
    encoder's posterior, also BAGGINS' T of Eq. (29) with S^2 =
    ``baggins_s2``).  p0 of image b is ``sum_j a_bj N(g_mean[b, j],
    g_prec[b, j]^-1) + a_b0 N(0, S^2)`` with ``log_share (B, K + 1)`` the log
    weights (columns: the K Gaussian components, then the prior; -inf for an
    absent one), ``g_mean (B, K, n)``, ``g_prec (B, K, n, n)`` (None when p0 is
    the prior).  ``component (C, B)``: the component each chain starts in
    (-1: the prior).  Not in the paper.
    """

    def __init__(self, params, mc: M.ModelConfig, x, mu, var, s2, baggins_s2, component, log_share, g_mean, g_prec):
        self.params, self.mc, self.x, self.mu, self.var = params, mc, x, mu, var
        self.xp = xp = array_namespace(x)
        self.s2, self.baggins_s2 = s2, baggins_s2
        self.chain_component = component  # (C, B)
        self.component = component.reshape(-1)  # (R,), chain-major like the rows
        self.in_q = self.component >= 0
        self.scale = xp.sqrt(s2)
        self.g_mean, self.g_prec = g_mean, g_prec
        if g_prec is not None:
            self.log_share = xp.asarray(log_share, dtype=xp.float64)
            P = to_numpy(g_prec)
            L = np.linalg.cholesky(P)  # P = L L^T
            self.half_logdet = xp.asarray(np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1))  # (B, K)
            # z = mean + L^-T eps has covariance P^-1
            self.g_draw = xp.asarray(np.linalg.inv(np.swapaxes(L, -1, -2)))
            self.g_sd = xp.asarray(np.sqrt(np.diagonal(np.linalg.inv(P), axis1=-2, axis2=-1)))  # (B, K, n)

    def joint(self, z):
        """log p(x, z) (R,) and its gradient (R, n) (Eqs. (1), (26), (29))."""
        xp, mc = self.xp, self.mc
        out, vjp = Jac.decoder_vjp(self.params, z, mc)
        dec = {"logits" if mc.likelihood == "bernoulli" else "mean": out}
        T = M.likelihood_T(self.x, dec.get("mean"), self.mu, self.var, mc, self.baggins_s2)
        with np.errstate(all="ignore"):
            ll = M.log_likelihood(dec, self.x, mc, T=T)
            g = vjp(score(out, self.x, mc)) - z / self.s2
        return ll - 0.5 * xp.sum(z * z / self.s2 + xp.log(self.s2) + LOG_2PI, axis=-1), g

    def _by_image(self, z):
        B = self.g_mean.shape[0]
        return z.reshape(-1, B, z.shape[-1])

    def gaussians(self, z):
        """log N(z; g_mean_j, g_prec_j^-1) (C, B, K) of every Gaussian component and the gradients (C, B, K, n)."""
        xp = self.xp
        d = self._by_image(z)[:, :, None] - self.g_mean[None]
        Pd = xp.einsum("bkij,cbkj->cbki", self.g_prec, d)
        n = z.shape[-1]
        lq = -0.5 * xp.sum(d * Pd, axis=-1) + self.half_logdet[None] - 0.5 * n * LOG_2PI
        return lq, -Pd

    def initial(self, z):
        """log p0(z) (R,) and its gradient (R, n): the mixture of the Gaussian components and the prior N(0, S^2)."""
        xp = self.xp
        lpr = -0.5 * xp.sum(z * z / self.s2 + xp.log(self.s2) + LOG_2PI, axis=-1)
        gpr = -z / self.s2
        if self.g_prec is None:
            return lpr, gpr
        lq, gq = self.gaussians(z)
        K = lq.shape[-1]
        terms = xp.concatenate([lq, self._by_image(lpr[:, None])], axis=-1) + self.log_share[None]  # (C, B, K + 1)
        top = xp.max(terms, axis=-1, keepdims=True)
        lp = top + xp.log(xp.sum(xp.exp(terms - top), axis=-1, keepdims=True))
        r = xp.exp(terms - lp)  # the responsibilities of the components
        grad = xp.sum(r[..., :K, None] * gq, axis=-2) + r[..., K:] * self._by_image(gpr)
        return lp.reshape(-1), grad.reshape(z.shape)

    def sample_initial(self, rng):
        """z_0 (R, n): each row from its starting component (``component``; -1 the prior)."""
        xp = self.xp
        eps = rng.standard_normal(self.mu.shape, dtype=self.mu.dtype)
        z = self.scale * eps
        if self.g_prec is None:
            return z
        e, comp = self._by_image(eps), self.component.reshape(-1, self.g_mean.shape[0])
        z = self._by_image(z)
        for j in range(self.g_mean.shape[1]):
            g = self.g_mean[None, :, j] + xp.einsum("bij,cbj->cbi", self.g_draw[:, j], e)
            z = xp.where((comp == j)[:, :, None], g, z)
        return z.reshape(eps.shape)

    def start_step(self):
        """The whitened scale (R,) of each row's starting component: its smallest sd / S (1 for the prior)."""
        xp = self.xp
        if self.g_prec is None:
            return xp.ones(self.mu.shape[0], dtype=xp.float64)
        ratio = xp.min(self.g_sd / self.scale, axis=-1)  # (B, K)
        comp = self.component.reshape(-1, ratio.shape[0])  # (C, B)
        picked = xp.take_along_axis(ratio.T, xp.maximum(comp, 0), axis=0)  # (C, B): ratio[b, comp[c, b]]
        return xp.where(comp >= 0, picked, 1.0).reshape(-1)

    def strata(self):
        """The starting component (C, B) of every chain of every image (-1: the prior), for the standard error."""
        return self.chain_component


def setup(
    params, x, mc: M.ModelConfig, s2, mu, var, baggins_s2, chains: int, init: str, q_fraction: float, laplace=None
):
    """The rows of ``chains`` chains per image (chain-major, R = chains x B), their step-size groups (Not in the paper).

    ``init`` one of :data:`INITS`; ``q_fraction`` the share of the chains in the
    Gaussian components of a mixture.  ``laplace``: the ``(mode, precision)``
    of :func:`laplace_posterior` for these images (``(mode, precision,
    log_mass)`` of :func:`laplace_modes` for ``modes`` and ``modes-mixture``), computed here
    when None and needed.  The chains in the Gaussian components are shared
    among them by :func:`chain_counts` (one component but for
    ``modes`` and ``modes-mixture``), and p0's weights are the chains' shares.  Returns
    ``(target, groups, G)``: one step-size group per image (``groups (R,)`` the
    row's image, G = B), shared by all its chains whichever component they
    started in.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    xp = array_namespace(x)
    B = x.shape[0]
    n_q = int(round(q_fraction * chains)) if init in MIXTURES else 0 if init == "prior" else chains
    if init in MIXTURES and not 0 < n_q < chains:
        raise ValueError(f"q_fraction {q_fraction} of {chains} chains leaves a component without chains")
    rep = lambda a: xp.broadcast_to(a[None], (chains,) + a.shape).reshape(chains * B, -1)  # noqa: E731
    g_mean = g_prec = log_share = None
    comp = np.full((chains, B), -1, dtype=np.int64)
    if init != "prior":
        if init in MODES_INITS:
            g_mean, g_prec, log_mass = (
                laplace if laplace is not None else laplace_modes(params, x, mu, var, mc, s2, baggins_s2)
            )
        else:
            if init in LAPLACE_INITS:
                mode, prec = (
                    laplace if laplace is not None else laplace_posterior(params, x, mu, var, mc, s2, baggins_s2)
                )
            else:
                mode = xp.asarray(mu, dtype=xp.float64)
                prec = xp.asarray(np.stack([np.diag(1.0 / v) for v in to_numpy(var)]))
            g_mean, g_prec, log_mass = mode[:, None], prec[:, None], np.zeros((B, 1))
        counts = chain_counts(log_mass, n_q)  # (B, K)
        for b in range(B):
            comp[:n_q, b] = np.repeat(np.arange(counts.shape[1]), counts[b])
        with np.errstate(divide="ignore"):
            log_share = np.log(np.concatenate([counts, np.full((B, 1), chains - n_q)], axis=1) / chains)
    component = xp.asarray(comp)
    target = Target(params, mc, rep(x), rep(mu), rep(var), s2, baggins_s2, component, log_share, g_mean, g_prec)
    groups = xp.asarray(np.tile(np.arange(B), chains))
    return target, groups, B
