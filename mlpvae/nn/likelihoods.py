"""Decoder likelihoods log p(x|z) with their gradients w.r.t. the decoder outputs (Sec. 7).

Each function returns the per-example log-likelihood ``(B,)`` in nats, summed
over the ``m`` outputs (``(K, B)`` for a stack of K models,
:func:`mlpvae.training.train.train_many`), and (when ``scale`` is given) the gradient of
``scale * sum_b log p(x_b|z_b)`` w.r.t. the decoder outputs; the model passes
``scale = -1/B`` to get the gradient of the loss directly, computed in buffers
the forward pass already allocated.  BAGGINS (Eqs. (29)-(30)) couples the
batch and lives in :mod:`vaetheory.objectives`.
"""

from __future__ import annotations

import math

from mlpvae.accel import cpu, fused
from mlpvae.nn.layers import sigmoid, softplus
from vaetheory.xp import array_namespace

LOG_2PI = math.log(2.0 * math.pi)


def bernoulli(logits, x, scale=None):
    """Bernoulli log-likelihood from logits, sum_j x_j l_j - softplus(l_j) (Sec. 7, "logits").

    Targets ``x (B, m)`` may be grayscale intensities in [0, 1] (the paper's
    MNIST setting, a continuous relaxation) or binary.  Stable for any logit:
    softplus is a log-add-exp and the sigmoid is ``exp(l - softplus(l))``, an
    exponent that is never positive.

    Returns ``(logp (B,), d_logits (B, m) or None)``.
    """
    xp = array_namespace(logits, x)
    if fused.enabled(xp):
        return fused.bernoulli(logits, x, scale)
    if cpu.enabled(xp) and logits.shape == x.shape and logits.flags.c_contiguous and x.flags.c_contiguous:
        return cpu.bernoulli(logits, x, scale)
    sp = softplus(logits)
    t = x * logits
    t -= sp
    logp = t.sum(axis=-1)
    if scale is None:
        return logp, None
    # d/dl = x - sigmoid(l); reuse sp's buffer for the sigmoid
    xp.subtract(logits, sp, out=sp)
    xp.exp(sp, out=sp)
    sp -= x
    sp *= -scale
    return logp, sp


def gaussian(mean, x, t, scale=None):
    """Gaussian log-likelihood log N(x; nu, t I) with a constant variance t (Eq. (26) with T = t I).

    ``t`` is a positive scalar or a ``(B,)`` per-example variance (BAGGINS' T,
    Eq. (29), held fixed here).  Returns ``(logp (B,), d_mean (B, m) or None)``.
    """
    xp = array_namespace(mean, x)
    m = x.shape[-1]
    d = x - mean
    r = xp.sum(d * d, axis=-1)
    if getattr(t, "ndim", 0) >= 1:
        logp = -0.5 * (m * (LOG_2PI + xp.log(t)) + r / t)
        if scale is None:
            return logp, None
        d *= (scale / t)[..., None]
        return logp, d
    logp = -0.5 * (m * (LOG_2PI + math.log(t)) + r / t)
    if scale is None:
        return logp, None
    d *= scale / t
    return logp, d


def log_normaliser(t: float, m: int) -> float:
    """``m log(2 pi t)`` as :func:`gaussian` computes it for a constant variance t (Eq. (26) with T = t I)."""
    return m * (LOG_2PI + math.log(t))


def over(t: float, a: float) -> float:
    """``a / t`` in float64, as :func:`gaussian` scales its gradient (Not in the paper (numerics))."""
    return a / t


def gaussian_models(mean, x, t, log_norm, scale_t=None):
    """:func:`gaussian` for a stack of K models, each with its own constant variance t (Eq. (26) with T = t I).

    ``t`` and ``log_norm`` (:func:`log_normaliser`) are ``(K, 1)``, ``scale_t``
    (``scale / t``, :func:`over`) ``(K, 1, 1)``, each model's float64 value
    rounded to ``mean``'s dtype (:func:`mlpvae.nn.scalars.value`): model k's
    numbers are those of :func:`gaussian` with its own t, bit for bit.
    Returns ``(logp (K, B), d_mean (K, B, m) or None)``.
    """
    xp = array_namespace(mean, x)
    d = x - mean
    r = xp.sum(d * d, axis=-1)
    logp = -0.5 * (log_norm + r / t)
    if scale_t is None:
        return logp, None
    d *= scale_t
    return logp, d


def gaussian_learned(mean, std_raw, x, scale=None):
    """Gaussian log-likelihood with a learned diagonal T, std = softplus(std_raw) (Sec. 7.2, Eq. (26)).

    The paper reports that learning T does not converge (Sec. 5, Fig. 6a):
    nothing is clipped here, so if a standard deviation underflows to zero the
    log-likelihood becomes non-finite and the trainer reports it.

    Returns ``(logp (B,), d_mean, d_std_raw)`` (the gradients ``None`` when
    ``scale`` is ``None``).
    """
    xp = array_namespace(mean, std_raw, x)
    std = softplus(std_raw)
    d = x - mean
    d /= std  # standardised residual
    q = d * d
    logp = -0.5 * (q + 2.0 * xp.log(std)).sum(axis=-1)
    logp -= 0.5 * x.shape[-1] * LOG_2PI
    if scale is None:
        return logp, None, None
    # d/dmean = (x - mean)/std^2 ; d/dstd = (q - 1)/std ; dstd/draw = sigmoid(raw)
    d /= std
    d *= scale
    q -= 1.0
    q /= std
    q *= sigmoid(std_raw)
    q *= scale
    return logp, d, q
