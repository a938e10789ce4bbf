"""Models whose evidence is known in closed form, for the tests of the importance-sampled bounds."""

import numpy as np

from mlpvae.nn import model


def linear_gaussian(posterior: str, seed: int = 0, m: int = 6, t: float = 0.7):
    """A one-layer (linear) VAE whose encoder is the exact posterior, and its exact evidence.

    Decoder nu(z) = z W + b, W (n, m) with orthogonal rows (W W^T = diag(d^2)), T = t I,
    prior N(0, S^2): p(x) = N(x; b, W^T S^2 W + t I) and p(z|x) = N(P^-1 W (x - b) / t, P^-1),
    P = S^-2 + W W^T / t diagonal (Eq. (25) for a linear decoder).  For "constant" S^2 is chosen
    so that P^-1 = sigma2 I.
    """
    rng = np.random.default_rng(seed)
    n = 2
    d = np.array([0.8, 1.1])
    Q, _ = np.linalg.qr(rng.standard_normal((m, n)))
    W = d[:, None] * Q.T
    b = rng.standard_normal(m) * 0.3
    if posterior == "learned":
        s2 = np.ones(n)
        post_var = 1.0 / (1.0 / s2 + d**2 / t)
        sigma2 = 1.0
    else:
        sigma2 = 0.5
        s2 = 1.0 / (1.0 / sigma2 - d**2 / t)
        post_var = np.full(n, sigma2)
    mc = model.ModelConfig(m=m, n=n, layers=1, posterior=posterior, likelihood="gaussian", t=t, sigma2=sigma2)
    A = W.T * (post_var / t)[None, :]  # mu = (x - b) A
    params = {"enc_W0": A, "enc_b0": -b @ A, "dec_W0": W, "dec_b0": b}
    if posterior == "learned":
        params["enc_std_W"] = np.zeros((m, n))
        params["enc_std_b"] = np.log(np.expm1(np.sqrt(post_var)))  # softplus^-1
    x = rng.standard_normal((9, m))
    C_ = W.T @ (s2[:, None] * W) + t * np.eye(m)
    diff = x - b
    _, logdet = np.linalg.slogdet(C_)
    exact = -0.5 * (m * np.log(2 * np.pi) + logdet + np.einsum("bi,ij,bj->b", diff, np.linalg.inv(C_), diff))
    return params, mc, x, (None if posterior == "learned" else s2), exact
