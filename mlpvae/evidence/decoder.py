"""The closed-form optimal decoder Eq. (6) from a trained encoder's posteriors,
against the network decoder (Sec. 4.1)."""

from __future__ import annotations

import time

import numpy as np

from mlpvae.nn import model as M
from mlpvae.nn.layers import sigmoid
from vaetheory import optimal as OPT
from vaetheory.xp import array_namespace, to_numpy

P_CLIP = 1e-6  # Bernoulli probabilities of Eq. (6) are clipped to [1e-6, 1 - 1e-6] for log p(x|nu)


def optimal_decoder_comparison(
    params, mc: M.ModelConfig, x_train, mu_train, var_train, x, mu, var, s2, rng, k: int = 1, chunk: int | None = None
) -> dict:
    """The closed-form decoder Eq. (6) from the training posteriors against the network decoder, on test images.

    nu*(z) = sum_i N(z; mu_i, Sigma_i) x_i / sum_i N(z; mu_i, Sigma_i) over the
    training set (:func:`vaetheory.optimal.optimal_decoder`, chunked over the
    query points so memory is chunk x N floats).  Eq. (6) is the optimal mean
    for the unit Gaussian likelihood of Sec. 4.1, for any constant T, for a
    learned T(z) (T does not depend on i) and for the Bernoulli likelihood in
    its mean parametrisation (sum_i w_i (x_i / p - (1 - x_i) / (1 - p)) = 0
    gives p = sum_i w_i x_i); for BAGGINS, whose T depends on the example, it
    is the unweighted approximation.  Bernoulli probabilities from Eq. (6) are
    clipped to [1e-6, 1 - 1e-6] before log p(x|nu) (a pixel that is 0 in every
    nearby training image would otherwise give -inf).

    Returns host figures: mean squared difference of the decoded means at
    z = mu (sum over pixels, mean over images), each decoder's squared error
    to x, log p(x|nu(mu)), and the ELBO (Eq. (1) / (2) with ``k`` samples
    z ~ q(z|x), the same samples for both decoders).
    """
    xp = array_namespace(x)
    bern = mc.likelihood == "bernoulli"
    key = "logits" if bern else "mean"

    def mean_of(out):
        return sigmoid(out) if bern else out

    def as_output(nu):
        if not bern:
            return nu
        p = xp.clip(nu, P_CLIP, 1.0 - P_CLIP)
        return xp.log(p) - xp.log1p(-p)

    def loglik(out, z, mu_, var_):
        dec = M.decode(params, z, mc)
        dec[key] = out
        T = M.likelihood_T(x, out, mu_, var_, mc, s2)
        return to_numpy(M.log_likelihood(dec, x, mc, T=T))

    t0 = time.perf_counter()
    net_mu = mean_of(M.decode(params, mu, mc)[key])
    opt_mu = OPT.optimal_decoder(mu, mu_train, var_train, x_train, chunk=chunk)
    d = to_numpy(((net_mu - opt_mu) ** 2).sum(axis=1))
    res = {
        "train_posteriors": int(len(mu_train)),
        "mean_sq_difference": float(d.mean()),
        "mean_sq_difference_per_pixel": float(d.mean() / mc.m),
        "net_sq_error": float(to_numpy(((x - net_mu) ** 2).sum(axis=1)).mean()),
        "opt_sq_error": float(to_numpy(((x - opt_mu) ** 2).sum(axis=1)).mean()),
        "net_loglik_at_mean": float(loglik(M.decode(params, mu, mc)[key], mu, mu, var).mean()),
        "opt_loglik_at_mean": float(loglik(as_output(opt_mu), mu, mu, var).mean()),
    }
    kl = 0.5 * to_numpy((var / s2 + mu * mu / s2 - 1.0 - xp.log(var / s2)).sum(axis=1))
    net_e, opt_e = np.zeros(len(x)), np.zeros(len(x))
    for _ in range(k):
        z = mu + xp.sqrt(var) * rng.standard_normal(mu.shape, dtype=mu.dtype)
        net_e += loglik(M.decode(params, z, mc)[key], z, mu, var)
        opt_e += loglik(as_output(OPT.optimal_decoder(z, mu_train, var_train, x_train, chunk=chunk)), z, mu, var)
    res["net_elbo"] = float((net_e / k - kl).mean())
    res["opt_elbo"] = float((opt_e / k - kl).mean())
    res["elbo_samples"] = k
    res["seconds"] = time.perf_counter() - t0
    res["per_image_sq_difference"] = d
    return res
