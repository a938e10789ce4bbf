"""The model applied to a whole data set in chunks: encoder passes, the floating prior S^2, the mean ELBO (Sec. 7).

All numbers are in nats per image, summed over pixels.  For floating-prior
models (posterior "constant" or "bilbo", :data:`FLOATING`) the prior is
N(0, S^2) with ``S^2 = E[Sigma] + E[diag(mu)^2]`` (Eq. (4), diagonal).
"""

from __future__ import annotations

import numpy as np

from mlpvae.nn import model as M
from mlpvae.nn.layers import sigmoid
from vaetheory.xp import array_namespace, to_numpy

FLOATING = ("constant", "bilbo")  # the posteriors whose prior is the floating N(0, S^2) of Eq. (4)

# Images per chunk of the test-ELBO and encoder passes.  On a GPU the cost of a chunk is its launches
# and the host synchronisation that reads its sum, so chunks there are five times larger.
CHUNK = {"numpy": 2000, "cupy": 10000}


def chunks(N: int, size: int):
    """Slices ``[a, a + size)`` that cover ``range(N)`` in order, the last one possibly shorter."""
    for a in range(0, N, size):
        yield slice(a, min(N, a + size))


def chunk_size(xp, chunk: int | None = None) -> int:
    """``chunk``, or by default :data:`CHUNK` for the array module ``xp``."""
    return chunk if chunk is not None else CHUNK["numpy" if xp is np else "cupy"]


def is_floating(mc: M.ModelConfig) -> bool:
    """Whether the model's prior is the floating N(0, S^2) of Eq. (4) (posterior "constant" or "bilbo")."""
    return mc.posterior in FLOATING


def encode_all(params, x, mc, chunk: int | None = None):
    """Posterior means and variances ``mu, var (N, n)`` of every row of ``x (N, m)``, in chunks (Sec. 7).

    ``chunk``: images per encoder pass (default :data:`CHUNK` for the array module).
    """
    xp = array_namespace(x)
    mus, vars_ = [], []
    for sl in chunks(len(x), chunk_size(xp, chunk)):
        mu, var = M.encode(params, x[sl], mc)
        mus.append(mu)
        vars_.append(xp.broadcast_to(var, mu.shape))
    return xp.concatenate(mus), xp.concatenate(vars_)


def prior_s2(mu, var):
    """The floating prior variance ``S^2 = E[Sigma] + E[diag(mu)^2]`` (n,), Eq. (4) (diagonal) / Sec. 4.3."""
    xp = array_namespace(mu)
    return xp.mean(var, axis=0) + xp.mean(mu * mu, axis=0)


def elbo_mean(params, x, mc, noise_rng, k: int = 1, s2=None, chunk: int | None = None) -> float:
    """Mean over images of the ELBO, Eq. (1) or Eq. (2) with prior N(0, S^2), averaged over ``k`` samples.

    ``s2 (n,)`` is the prior variance for floating-prior models (None: the
    model's own prior, N(0, I) for learned posteriors).  Accumulated in float64.
    """
    xp = array_namespace(x)
    n = mc.n
    total = xp.zeros((), dtype=xp.float64)  # summed where the arrays are: one host read at the end
    for sl in chunks(len(x), chunk_size(xp, chunk)):
        xb = x[sl]
        for _ in range(k):
            eps = noise_rng.standard_normal((len(xb), n), dtype=xb.dtype)
            total += xp.sum(M.elbo_per_example(params, xb, eps, mc, s2=s2), dtype=xp.float64)
    return float(total) / (k * len(x))


def test_elbos(params, mc, x_train, x_test, noise_rng, k: int = 1) -> dict[str, float]:
    """The labelled test-ELBO columns of ``metrics.csv`` (nats per image), Eqs. (1)-(2) / Sec. 7.

    Learned posteriors: ``{"test_elbo"}``.  Floating-prior models:
    ``{"test_elbo_s2_train", "test_elbo_s2_test"}``, S^2 from Eq. (4) on the
    training set and on the test set.
    """
    if not is_floating(mc):
        return {"test_elbo": elbo_mean(params, x_test, mc, noise_rng, k)}
    s2_train = prior_s2(*encode_all(params, x_train, mc))
    s2_test = prior_s2(*encode_all(params, x_test, mc))
    return {
        "test_elbo_s2_train": elbo_mean(params, x_test, mc, noise_rng, k, s2=s2_train),
        "test_elbo_s2_test": elbo_mean(params, x_test, mc, noise_rng, k, s2=s2_test),
    }


def decode_mean(params, z, mc, scale: float = 1.0):
    """Decoder means nu(z) as host images in [0, 1] (Sec. 7).

    Bernoulli probabilities, or Gaussian means divided by the data scale lambda.
    """
    dec = M.decode(params, z, mc)
    img = sigmoid(dec["logits"]) if "logits" in dec else dec["mean"] / scale
    return to_numpy(img)
