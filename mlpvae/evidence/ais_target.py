"""The log joint that AIS anneals to and its initial distribution p0: q(z|x), the Laplace posterior, the prior.

Not in the paper: the two ends of the path of :mod:`mlpvae.evidence.ais`.
The target is ``log p(x, z) = log p(x|z) + log N(z; 0, S^2)`` (Eqs. (1),
(26), (29)).  p0 is a Gaussian component g(z), the prior N(0, S^2), or their
mixture ``a g + (1 - a) N(0, S^2)``:

- ``q``: g = the encoder's q(z|x), alone;
- ``laplace``: g = N(z*, P^-1), the Laplace posterior of Eq. (16) at the mode
  z* of the log joint (:func:`mlpvae.evidence.posterior_mode.posterior_mode`,
  climbed from the encoder's mean and from the best of a set of the prior's points), with P = S^-2 +
  J^T G J, minus the Hessian of the log joint there (exact for the ReLU
  decoder, which is linear around z*, with a Gaussian or Bernoulli
  likelihood; the positive part of the curvature for BAGGINS), alone;
- ``prior``: the prior alone;
- ``mixture``: q and the prior; ``laplace-mixture``: the Laplace posterior
  and the prior.

The mixtures' chains are stratified: the first ``round(a C)`` of an image's C
chains start in g and the rest in the prior, with ``a`` that exact
fraction, and every chain's weight uses the mixture density of p0.  The
chains' HMC kernels must then not depend on which component a chain started
in (the label is not part of the state whose density the weight uses: a
kernel that depends on it leaves the mixture of the components' annealed
densities, not f_t, invariant), so a step size belongs to the image, shared
by all its chains (:func:`mlpvae.evidence.ais.tune_step_sizes`).
"""

from __future__ import annotations

import math

import numpy as np

from mlpvae.evidence.laplace import likelihood_at
from mlpvae.evidence.posterior_mode import posterior_mode, score
from mlpvae.nn import jacobian as Jac
from mlpvae.nn import model as M
from mlpvae.nn.likelihoods import LOG_2PI
from vaetheory.xp import array_namespace, to_numpy

INITS = ("laplace-mixture", "mixture", "laplace", "q", "prior")
MIXTURES = ("laplace-mixture", "mixture")
LAPLACE_INITS = ("laplace-mixture", "laplace")
LAPLACE_CLIMBS = 4  # climbs of the mode search besides the encoder's mean: from the best of the prior's points
PRIOR_POINTS = 64  # fixed draws from the prior among the mode search's candidate starts


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
    if mu.shape != var.shape or mu.ndim != 2 or mu.shape[0] != x.shape[0]:
        raise ValueError(f"mu and var must have shape ({x.shape[0]}, n), got {tuple(mu.shape)}, {tuple(var.shape)}")
    N, n = mu.shape
    s2 = xp.asarray(s2, dtype=xp.float64)
    axes = np.diag(np.sqrt(to_numpy(s2)))
    draws = np.sqrt(to_numpy(s2)) * np.random.default_rng(0).standard_normal((PRIOR_POINTS, n))
    points = np.concatenate([np.zeros((1, n)), axes, -axes, draws])  # (2 n + 1 + PRIOR_POINTS, n)
    starts = xp.asarray(np.broadcast_to(points[:, None], (len(points), N, n)).copy())
    found = posterior_mode(
        params, x, mu, var, mc, s2, baggins_s2=baggins_s2, starts=starts, climbs=min(LAPLACE_CLIMBS, len(points))
    )
    mode = xp.asarray(found["mode"], dtype=xp.float64)
    out, J = Jac.decoder_jacobian(params, mode, mc)
    _, G = likelihood_at(params, x, mode, mu, var, mc, baggins_s2, out=out)
    gram = to_numpy((J * G[:, :, None]).transpose(0, 2, 1) @ J)
    prec = (gram + np.swapaxes(gram, -1, -2)) / 2 + np.diag(1.0 / to_numpy(s2))[None]
    return mode, xp.asarray(prec)


class Target:
    """The log joint ``log p(x|z) + log N(z; 0, S^2)`` and the initial density p0 of AIS chains, with gradients.

    Rows are (chain, image) pairs, chain-major: row ``c B + b`` is chain c of
    image b, R = C B.  ``x, mu, var`` are (R, m), (R, n), (R, n) (the
    encoder's posterior, also BAGGINS' T of Eq. (29) with S^2 =
    ``baggins_s2``).  The Gaussian component of p0 is N(``g_mean``,
    ``g_prec``^-1) per image, ``g_mean (B, n)``, ``g_prec (B, n, n)`` (None
    when p0 is the prior).  ``in_q (R,)`` marks the rows whose chain starts in
    it; ``a`` is its weight in p0 (1: the component alone, 0: the prior alone).
    Not in the paper.
    """

    def __init__(self, params, mc: M.ModelConfig, x, mu, var, s2, baggins_s2, in_q, a: float, g_mean=None, g_prec=None):
        self.params, self.mc, self.x, self.mu, self.var = params, mc, x, mu, var
        self.xp = xp = array_namespace(x)
        self.s2, self.baggins_s2, self.in_q, self.a = s2, baggins_s2, in_q, a
        self.scale = xp.sqrt(s2)
        self.g_mean, self.g_prec = g_mean, g_prec
        if g_prec is not None:
            P = to_numpy(g_prec)
            L = np.linalg.cholesky(P)  # P = L L^T
            self.half_logdet = xp.asarray(np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1))
            # z = mean + L^-T eps has covariance P^-1
            self.g_draw = xp.asarray(np.linalg.inv(np.swapaxes(L, -1, -2)))
            self.g_sd = xp.asarray(np.sqrt(np.diagonal(np.linalg.inv(P), axis1=-2, axis2=-1)))  # (B, n)

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

    def gaussian(self, z):
        """log N(z; g_mean, g_prec^-1) (R,) of the Gaussian component and its gradient (R, n)."""
        xp = self.xp
        d = self._by_image(z) - self.g_mean[None]
        Pd = xp.einsum("bij,cbj->cbi", self.g_prec, d)
        n = z.shape[-1]
        lq = -0.5 * xp.sum(d * Pd, axis=-1) + self.half_logdet[None] - 0.5 * n * LOG_2PI
        return lq.reshape(-1), -Pd.reshape(z.shape)

    def initial(self, z):
        """log p0(z) (R,) and its gradient (R, n): the Gaussian component, the prior N(0, S^2) or their mixture."""
        xp = self.xp
        lpr = -0.5 * xp.sum(z * z / self.s2 + xp.log(self.s2) + LOG_2PI, axis=-1)
        gpr = -z / self.s2
        if self.a == 0.0:
            return lpr, gpr
        lq, gq = self.gaussian(z)
        if self.a == 1.0:
            return lq, gq
        a = math.log(self.a) + lq
        b = math.log1p(-self.a) + lpr
        lp = xp.logaddexp(a, b)
        r = xp.exp(a - lp)[:, None]  # the responsibility of the Gaussian component
        return lp, r * gq + (1.0 - r) * gpr

    def sample_initial(self, rng):
        """z_0 (R, n): from the Gaussian component for the rows ``in_q``, from the prior otherwise."""
        xp = self.xp
        eps = rng.standard_normal(self.mu.shape, dtype=self.mu.dtype)
        prior = self.scale * eps
        if self.g_prec is None:
            return prior
        e = self._by_image(eps)
        g = (self.g_mean[None] + xp.einsum("bij,cbj->cbi", self.g_draw, e)).reshape(eps.shape)
        return xp.where(self.in_q[:, None], g, prior)

    def start_step(self):
        """The whitened scale (R,) of each row's starting component: its smallest sd / S (1 for the prior)."""
        xp = self.xp
        if self.g_prec is None:
            return xp.ones(self.mu.shape[0], dtype=xp.float64)
        ratio = xp.min(self.g_sd / self.scale, axis=-1)  # (B,)
        C = self.mu.shape[0] // ratio.shape[0]
        return xp.where(self.in_q, xp.tile(ratio, C), 1.0)


def setup(
    params, x, mc: M.ModelConfig, s2, mu, var, baggins_s2, chains: int, init: str, q_fraction: float, laplace=None
):
    """The rows of ``chains`` chains per image (chain-major, R = chains x B), their step-size groups (Not in the paper).

    ``init`` one of :data:`INITS`; ``q_fraction`` the share of the chains in the
    Gaussian component of a mixture.  ``laplace``: the ``(mode, precision)``
    of :func:`laplace_posterior` for these images, computed here when None and
    needed.  Returns ``(target, groups, G)``: one step-size group per image
    (``groups (R,)`` the row's image, G = B), shared by all its chains
    whichever component they started in.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    xp = array_namespace(x)
    B = x.shape[0]
    n_q = int(round(q_fraction * chains)) if init in MIXTURES else 0 if init == "prior" else chains
    if init in MIXTURES and not 0 < n_q < chains:
        raise ValueError(f"q_fraction {q_fraction} of {chains} chains leaves a component without chains")
    in_q = xp.asarray(np.repeat(np.arange(chains) < n_q, B))
    rep = lambda a: xp.broadcast_to(a[None], (chains,) + a.shape).reshape(chains * B, -1)  # noqa: E731
    g_mean = g_prec = None
    if init in LAPLACE_INITS:
        g_mean, g_prec = laplace if laplace is not None else laplace_posterior(params, x, mu, var, mc, s2, baggins_s2)
    elif init != "prior":
        g_mean = xp.asarray(mu, dtype=xp.float64)
        g_prec = xp.asarray(np.stack([np.diag(1.0 / v) for v in to_numpy(var)]))
    target = Target(params, mc, rep(x), rep(mu), rep(var), s2, baggins_s2, in_q, n_q / chains, g_mean, g_prec)
    groups = xp.asarray(np.tile(np.arange(B), chains))
    return target, groups, B
