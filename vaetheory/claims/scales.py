"""The scale the relative thresholds of ``vaetheory verify`` are read against, free of the noise's entropy.

The log evidence of unit-noise data carries the constant ``-m/2 log(2 pi e)``
(the entropy of the noise in all m dimensions), which grows with m and says
nothing about the latent code.  A relative error taken against ``|log p(x)|``
or ``|ELBO|`` therefore gets smaller as m grows for free.  The scale used
instead is :func:`latent_gain`, the log evidence the latent code adds over the
collapsed model: the noise constant cancels in the difference.
"""

from __future__ import annotations

import numpy as np

from vaetheory.validate import array

_LOG2PI = np.log(2.0 * np.pi)


def collapsed_log_likelihood(x) -> np.ndarray:
    """log N(x_i; mean(x), I) per example: the model with every latent direction collapsed. Not in the paper.

    With every latent direction collapsed (Sec. 6) the optimal decoder Eq. (6) is the data mean, so this is
    the log evidence (and the ELBO) of that model under the unit likelihood.

    Parameters
    ----------
    x : (N, m) data.

    Returns
    -------
    (N,) log-likelihoods in nats.
    """
    x = array("x", x, ("N", "m"))
    r = x - x.mean(axis=0)
    return -0.5 * (x.shape[1] * _LOG2PI + np.sum(r**2, axis=1))


def latent_gain(x, log_px) -> float:
    """E[log p(x)] - E[log N(x; mean(x), I)]: nats per example the latent code adds. Not in the paper.

    The scale of the relative thresholds: the entropy constant of the unit noise cancels, so it does not
    grow with the data dimension m.  For pPCA with data variances ``lam_k`` it is
    ``sum_k (lam_k - 1 - log lam_k) / 2`` over the directions with ``lam_k > 1``.

    Parameters
    ----------
    x : (N, m) data.
    log_px : (N,) the fitted model's log evidence of each example.

    Returns
    -------
    float, nats per example (positive for any model better than the collapsed one).
    """
    dims: dict = {}
    x = array("x", x, ("N", "m"), dims)
    log_px = array("log_px", log_px, ("N",), dims)
    return float(np.mean(log_px) - np.mean(collapsed_log_likelihood(x)))
