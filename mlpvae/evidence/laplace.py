"""The Laplace approximation of log p(x) on a trained model: Eq. (16) / Eq. (26),
the gap Eq. (18), the penalty Eq. (22).

Riemannian metric (Sec. 4.1, "Proof of Extension"): Eqs. (16), (18) and (22)
are stated for unit-normal noise; for another likelihood we use the metric it
induces on the decoder output, G = -d^2 log p(x|out) / d out^2, and J^T G J in
place of J^T J (equivalently: whiten J to G^(1/2) J), J = d nu / d z the
trained decoder's Jacobian (:mod:`mlpvae.nn.jacobian`).  Gaussian likelihood
with variance T: G = T^-1, which makes our Eq. (16) exactly the paper's
Eq. (26).  Bernoulli likelihood with logits l: G = diag(p (1 - p)),
p = sigmoid(l), the Fisher information of the logits (the exact Hessian of
-log p in l, for binary and grayscale targets alike).  Our Eq. (16) then reads
``log p(x|nu(mu)) - 1/2 |S^-1 mu|^2 - 1/2 log|I + S J^T G J S|``: the Laplace
approximation of log p(x) with the Gauss-Newton (Fisher) Hessian, which is
what Eq. (16) is for a unit-normal likelihood.  For ``gaussian-learned`` the
variance T(mu) is held fixed (its own derivative in z is ignored); for BAGGINS
T is Eq. (29) at z = mu with S^2 from the training set.

Prior: N(0, I) for learned posteriors (Eq. (1)); the floating prior
N(0, S^2), S^2 = E[Sigma] + E[diag(mu)^2] on the training set (Eq. (4)), for the
constant / BILBO models.  The analyses cast the trained float32 parameters to
float64.
"""

from __future__ import annotations

import math

import numpy as np

from mlpvae.nn import jacobian as Jac
from mlpvae.nn import model as M
from mlpvae.nn.batched import FLOATING, chunks, encode_all, prior_s2
from mlpvae.nn.layers import sigmoid
from mlpvae.training.runs import Run
from vaetheory import constant_variance as CV
from vaetheory import evidence as EV
from vaetheory.xp import array_namespace, to_numpy

GRAM_ELEMENTS = 1 << 25  # default bound on the stored (N, n, n) metric Grams for Eq. (22) (256 MiB)
BLOCK_ELEMENTS = 1 << 22  # Jacobian block (chunk, m, n) of Eq. (16) (32 MiB)


def prior_variance(mc: M.ModelConfig, mu_train, var_train):
    """The prior variance S^2 (n,): ones for learned posteriors (Eq. (1)), Eq. (4) on the training set otherwise."""
    xp = array_namespace(mu_train)
    if mc.posterior in FLOATING:
        return prior_s2(mu_train, var_train)
    return xp.ones(mc.n, dtype=mu_train.dtype)


def training_priors(run: Run):
    """Training-set posteriors and the two S^2 the analyses use: Eqs. (1), (4), (29).

    Returns ``mu_tr, var_tr`` (the encoder on the training images), the prior
    S^2 (:func:`prior_variance`) and BAGGINS' S^2 for Eq. (29) (Eq. (4) on
    the training set).
    """
    mu_tr, var_tr = encode_all(run.params, run.x_train, run.mc)
    return mu_tr, var_tr, prior_variance(run.mc, mu_tr, var_tr), prior_s2(mu_tr, var_tr)


def elbo_per_example(params, x, mc: M.ModelConfig, rng, k: int, s2, chunk: int = 2000) -> np.ndarray:
    """The ELBO of each image, Eq. (1) / Eq. (2) with prior N(0, S^2), averaged over ``k`` posterior samples.

    Returns a host (N,) float64 array.  For BAGGINS T is Eq. (29) with S^2 = ``s2``.
    """
    out = np.zeros(len(x))
    for sl in chunks(len(x), chunk):
        for _ in range(k):
            eps = rng.standard_normal((sl.stop - sl.start, mc.n), dtype=x.dtype)
            out[sl] += to_numpy(M.elbo_per_example(params, x[sl], eps, mc, s2=s2))
    return out / k


def likelihood_at(params, x, z, mu, var, mc: M.ModelConfig, s2, out=None):
    """log p(x|z) per image (B,) and the metric G (B, m) the likelihood induces on the decoder output (Sec. 4.1).

    G = p (1 - p) for Bernoulli logits, 1 / T for Gaussian likelihoods (T = t,
    the learned T(z), or Eq. (29)'s T with S^2 = ``s2`` for BAGGINS).  ``out``
    is the decoder output at z when already computed.
    """
    xp = array_namespace(x)
    dec = M.decode(params, z, mc)
    if out is not None:
        dec["logits" if mc.likelihood == "bernoulli" else "mean"] = out
    T = M.likelihood_T(x, dec.get("mean"), mu, var, mc, s2)
    if T is not None:
        G = xp.broadcast_to((1.0 / T)[:, None], x.shape)
    elif mc.likelihood == "bernoulli":
        p = sigmoid(dec["logits"])
        G = p * (1.0 - p)
    elif mc.likelihood == "gaussian":
        G = xp.full(x.shape, 1.0 / mc.t, dtype=x.dtype)
    else:
        G = 1.0 / dec["var"]
    return M.log_likelihood(dec, x, mc, T=T), G


def baggins_hessian_gram(params, x, z, mc: M.ModelConfig):
    """-d^2 log p(x|z) / dz^2 (B, n, n) of BAGGINS with T following the residual, Eq. (29) (Not in the paper).

    With T of Eq. (29) at the residual of z itself (as the ELBO, the IWAE and AIS evaluate it),
    ``log p(x|z) = -m/2 log |x - nu(z)|^2`` plus terms constant in z, whose Hessian in nu is
    ``-(m / r^2)(I - 2 dhat dhat^T)``, d = x - nu, r^2 = |d|^2, dhat = d / r.  Through a decoder
    that is linear in z between ReLU switches, the Hessian in z is exactly
    ``-(m / r^2)(J^T J - 2 u u^T)``, u = J^T dhat, which is returned negated.  It can be indefinite
    (the direction of the residual), unlike the metric T^-1 J^T J with T held fixed that
    :func:`likelihood_at` induces, which is ``tr(Sigma^-1 S^2) / (tau m)`` times its first term.
    """
    if mc.likelihood != "baggins":
        raise ValueError(f"baggins_hessian_gram: the likelihood must be baggins, not {mc.likelihood!r}")
    xp = array_namespace(x)
    out, J = Jac.decoder_jacobian(params, z, mc)
    d = x - out
    r2 = xp.sum(d * d, axis=1)
    u = xp.einsum("bmn,bm->bn", J, d) / xp.sqrt(r2)[:, None]
    gram = xp.einsum("bmi,bmj->bij", J, J) - 2.0 * u[:, :, None] * u[:, None, :]
    return to_numpy((mc.m / r2)[:, None, None] * gram)


def baggins_laplace(
    params, x, z, mu, var, mc: M.ModelConfig, s2, baggins_s2, chunk: int | None = None, sigma=None
) -> dict:
    """Eq. (16) at ``z`` and Eq. (18) for the posterior variance ``var`` by BAGGINS' own curvature (Not in the paper).

    As :func:`laplace_evidence`, but with :func:`baggins_hessian_gram` in place of the fixed-T metric
    (the curvature of the log p(x|z) that the ELBO, the IWAE, the grid and AIS evaluate): Eq. (16)
    ``log p(x|nu(z)) - 1/2 |S^-1 z|^2 - 1/2 log|I + S H S|`` and Eq. (18)
    ``1/2 (tr(P Sigma) - n - log|P Sigma|)``, P = S^-2 + H.  ``mu, var (N, n)``: the encoder's posterior,
    whose Sigma and ``baggins_s2`` fix Eq. (29)'s T; ``sigma (N, n)``: the Gaussian's variance in Eq. (18)
    when it is not the encoder's (e.g. a per-image optimum on the fixed decoder).  Where H makes
    ``I + S H S`` or P indefinite the value is not defined and is NaN.  Returns host arrays
    ``log_evidence (N,)`` and ``gap_eq18 (N,)``.
    """
    N, n = z.shape
    xp = array_namespace(z)
    mu, var = xp.broadcast_to(mu, z.shape), xp.broadcast_to(var, z.shape)
    sigma = var if sigma is None else xp.broadcast_to(xp.asarray(sigma), z.shape)
    chunk = chunk or max(1, BLOCK_ELEMENTS // (mc.m * n))
    s2h = to_numpy(s2).astype(np.float64)
    S = np.sqrt(s2h)
    res = {k: np.empty(N) for k in ("log_evidence", "gap_eq18")}
    for sl in chunks(N, chunk):
        H = baggins_hessian_gram(params, x[sl], z[sl], mc)
        ll, _ = likelihood_at(params, x[sl], z[sl], mu[sl], var[sl], mc, baggins_s2)
        sign, logdet = np.linalg.slogdet(np.eye(n) + S[:, None] * H * S[None, :])
        zh = to_numpy(z[sl]).astype(np.float64)
        eq16 = to_numpy(ll) - 0.5 * (zh * zh / s2h).sum(axis=1) - 0.5 * logdet
        res["log_evidence"][sl] = np.where(sign > 0, eq16, np.nan)
        P = np.diag(1.0 / s2h) + H
        PS = P * to_numpy(sigma[sl]).astype(np.float64)[:, None, :]  # P Sigma, Sigma diagonal
        _, logdet = np.linalg.slogdet(PS)
        eq18 = 0.5 * (np.trace(PS, axis1=1, axis2=2) - n - logdet)
        definite = np.linalg.eigvalsh((P + np.swapaxes(P, 1, 2)) / 2).min(axis=1) > 0
        res["gap_eq18"][sl] = np.where(definite, eq18, np.nan)
    return res


def _factor(gram: np.ndarray) -> np.ndarray:
    """R (N, n, n) with R^T R = gram, from the eigendecomposition (gram may be singular)."""
    lam, V = np.linalg.eigh(gram)
    return np.sqrt(np.clip(lam, 0.0, None))[:, :, None] * np.swapaxes(V, -1, -2)


def _gram_at_mean(params, x, mu, var, mc: M.ModelConfig, s2):
    """log p(x|nu(mu)) (b,) and the metric Gram J^T G J (b, n, n), symmetrised, at the posterior means (Eq. (16))."""
    out, J = Jac.decoder_jacobian(params, mu, mc)
    ll, G = likelihood_at(params, x, mu, mu, var, mc, s2, out=out)
    gram = to_numpy((J * G[:, :, None]).transpose(0, 2, 1) @ J)
    return ll, (gram + np.swapaxes(gram, -1, -2)) / 2


def laplace_evidence(params, x, mu, var, mc: M.ModelConfig, s2, *, keep: int = 0, chunk: int | None = None) -> dict:
    """Eq. (16) / Eq. (26) at the posterior mean and the gap Eq. (18), from the network's Jacobian.

    Per image: ``log p(x) ~ log p(x|nu(mu)) - 1/2 |S^-1 mu|^2 - 1/2 log|I + S J^T G J S|``
    (with G = I this is Eq. (16) exactly; the module docstring gives the
    metric G of each likelihood), and Eq. (18)'s gap
    ``1/2 (tr(P Sigma) - log|e P Sigma|)``, P = S^-2 + J^T G J, for the model's
    own Sigma (:func:`vaetheory.evidence.evidence_gap` on the whitened J).

    Parameters
    ----------
    params : float64 parameters.
    x : (N, m) targets.
    mu, var : (N, n) posteriors.
    s2 : (n,) prior variance.
    keep : store the metric Grams J^T G J (n, n) of the first ``keep`` images (for Eq. (22)).
    chunk : images per block (default: the (chunk, m, n) Jacobian block near 4M elements).

    Returns
    -------
    dict of host arrays: ``log_evidence (N,)``, ``loglik_at_mean (N,)``,
    ``logdet (N,)`` (log|I + S J^T G J S|), ``gap_eq18 (N,)``, ``grams (keep, n, n)``.
    """
    N, n = mu.shape
    chunk = chunk or max(1, BLOCK_ELEMENTS // (mc.m * n))
    s2h = to_numpy(s2).astype(np.float64)
    S = np.sqrt(s2h)
    res = {k: np.empty(N) for k in ("log_evidence", "loglik_at_mean", "logdet", "gap_eq18")}
    grams = np.empty((min(keep, N), n, n))
    for sl in chunks(N, chunk):
        ll, gram = _gram_at_mean(params, x[sl], mu[sl], var[sl], mc, s2)
        A = np.eye(n) + S[:, None] * gram * S[None, :]
        logdet = 2.0 * np.log(np.diagonal(np.linalg.cholesky(A), axis1=-2, axis2=-1)).sum(axis=-1)
        muh = to_numpy(mu[sl])
        res["loglik_at_mean"][sl] = to_numpy(ll)
        res["logdet"][sl] = logdet
        res["log_evidence"][sl] = res["loglik_at_mean"][sl] - 0.5 * (muh * muh / s2h).sum(axis=1) - 0.5 * logdet
        res["gap_eq18"][sl] = EV.evidence_gap(to_numpy(var[sl]), s2h, _factor(gram))
        k = slice(sl.start, min(sl.stop, len(grams)))
        if k.stop > k.start:
            grams[k] = gram[: k.stop - k.start]
    res["grams"] = grams
    return res


def laplace_proposal(params, x, mu, var, mc: M.ModelConfig, s2):
    """The Laplace posterior of Eq. (16), N(mu, P^-1) with P = S^-2 + J^T G J at mu, as an IWAE proposal.

    Returns ``proposal(sl, eps) -> (z, log_q)`` for :func:`mlpvae.evidence.iwae.iwae_log_px`:
    ``z = mu + L^-T eps`` with ``P = L L^T`` (Cholesky), so ``log q = -n/2
    log 2 pi + sum log diag L - |eps|^2 / 2``.  Where the decoder is linear
    and the likelihood Gaussian this is the exact posterior and every
    importance weight is p(x).  The Cholesky factor of the images ``x[sl]``
    is computed once and kept while ``iwae_log_px`` draws their sample
    chunks (float64, on the host).  Not in the paper (its Eq. (16) as a sampler).
    """
    xp = array_namespace(x)
    s2h = to_numpy(s2).astype(np.float64)
    n = mu.shape[1]
    factor: dict = {}  # the current images' (L, sum log diag L)

    def proposal(sl, eps):
        if (sl.start, sl.stop) not in factor:
            factor.clear()
            _ll, gram = _gram_at_mean(params, x[sl], mu[sl], var[sl], mc, s2)
            L = np.linalg.cholesky(np.diag(1.0 / s2h)[None] + gram)  # (b, n, n)
            factor[sl.start, sl.stop] = L, np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1)
        L, half_logdet = factor[sl.start, sl.stop]
        e = to_numpy(eps).astype(np.float64)  # (c, b, n)
        dz = np.linalg.solve(np.swapaxes(L, -1, -2), e.transpose(1, 2, 0))  # (b, n, c): L^T dz = eps
        z = to_numpy(mu[sl])[None] + dz.transpose(2, 0, 1)
        log_q = -0.5 * n * math.log(2 * math.pi) + half_logdet[None] - 0.5 * (e * e).sum(axis=-1)
        return xp.asarray(z, dtype=eps.dtype), xp.asarray(log_q)

    return proposal


def cv2_penalty(grams: np.ndarray, s2) -> dict:
    """The constant-variance penalty Eq. (22) from the metric Grams J^T G J of the test images.

    Calls :func:`vaetheory.constant_variance.cv2_penalty` with R (N, n, n),
    R^T R = J^T G J (the penalty depends on J only through J^T J, so this is
    the whitened Jacobian G^(1/2) J up to an orthogonal factor).
    """
    R = _factor(grams)
    s2h = to_numpy(s2).astype(np.float64)
    terms = CV.cv2_penalty_terms(s2h, R)
    return {"cv2_penalty": float(CV.cv2_penalty(s2h, R)), "terms": terms, "images": int(len(grams))}


def baggins_cv2_penalty(params, x, z, mc: M.ModelConfig, s2, chunk: int | None = None) -> dict:
    """Eq. (22) for BAGGINS by its own curvature at the means ``z (N, n)`` (Not in the paper).

    P_x = S^-2 + H_x with H_x of :func:`baggins_hessian_gram`, through
    :func:`vaetheory.constant_variance.cv2_penalty_terms_of_precisions` (P_x may be indefinite;
    their mean must not be).  Returns ``cv2_penalty``, per-image ``terms (N,)`` and ``indefinite``,
    the number of images whose P_x is not positive definite (where Eq. (18), whose second-order
    expansion Eq. (22) is, has no value).
    """
    N, n = z.shape
    chunk = chunk or max(1, BLOCK_ELEMENTS // (mc.m * n))
    P = np.diag(1.0 / to_numpy(s2).astype(np.float64)) + np.concatenate(
        [baggins_hessian_gram(params, x[sl], z[sl], mc) for sl in chunks(N, chunk)]
    )
    P = (P + np.swapaxes(P, 1, 2)) / 2
    terms = CV.cv2_penalty_terms_of_precisions(P)
    indefinite = int(np.sum(np.linalg.eigvalsh(P).min(axis=1) <= 0))
    return {"cv2_penalty": float(np.mean(terms)), "terms": terms, "indefinite": indefinite, "images": int(N)}


def gaps_at_optima(params, x, mc: M.ModelConfig, s2, baggins_s2, mu, var, diagonal, shared) -> dict:
    """Eq. (18) at per-image optima and Eq. (22) at a shared-Sigma optimum, on one fixed decoder (Not in the paper).

    ``diagonal``, ``shared``: ``(means (N, n), variances (N, n))`` of the per-image and the shared-Sigma
    optimum.  The curvature is the likelihood's metric J^T G J (:func:`laplace_evidence`,
    :func:`cv2_penalty`) except for BAGGINS, whose log p(x|z) (T of Eq. (29) held at the encoder's
    ``var`` and ``baggins_s2``) is curved by :func:`baggins_hessian_gram` (:func:`baggins_laplace`,
    :func:`baggins_cv2_penalty`); there Eq. (18) is NaN where the precision is indefinite.
    Returns host ``eq18_at_diagonal (N,)``, ``eq18_at_constant (N,)``, ``eq22`` (as :func:`cv2_penalty`,
    with ``indefinite`` images) and ``curvature`` (words).
    """
    xp = array_namespace(x)
    (m_d, var_d), (m_c, var_c) = ((xp.asarray(m), xp.asarray(v)) for m, v in (diagonal, shared))
    if mc.likelihood == "baggins":
        eq18 = [
            baggins_laplace(params, x, m, mu, var, mc, s2, baggins_s2, sigma=v)["gap_eq18"]
            for m, v in ((m_d, var_d), (m_c, var_c))
        ]
        eq22 = baggins_cv2_penalty(params, x, m_c, mc, s2)
        curvature = "BAGGINS' own Hessian (T following the residual)"
    else:
        eq18 = [laplace_evidence(params, x, m_d, var_d, mc, s2)["gap_eq18"]]
        lap_c = laplace_evidence(params, x, m_c, var_c, mc, s2, keep=len(m_c))
        eq18.append(lap_c["gap_eq18"])
        eq22 = cv2_penalty(lap_c["grams"], s2) | {"indefinite": 0}
        curvature = "the likelihood's metric J^T G J"
    return {"eq18_at_diagonal": eq18[0], "eq18_at_constant": eq18[1], "eq22": eq22, "curvature": curvature}
