"""The paper's central claims measured on a trained model (Secs. 4.1-4.3 on MNIST runs).

For one run directory written by ``vaetheory train`` this computes, on the test
set, in nats per image:

* the ELBO (Eq. (1) / Eq. (2), ``elbo_k`` posterior samples per image) and the
  importance-sampled log p(x) (IWAE, ``iwae_k`` samples; :mod:`mlpvae.experiments.evaluate`),
  so the actual gap log p(x) - ELBO;
* the log evidence of Eq. (16) / Eq. (26) at the posterior mean, from the
  trained decoder's Jacobian J = d nu / d z (:mod:`mlpvae.nn.jacobian`), and the gap
  Eq. (18) it predicts for the model's own Sigma;
* the constant-variance penalty Eq. (22), 1/4 tr CV^2[S^-2 + J^T G J];
* the closed-form optimal decoder Eq. (6) built from the trained encoder's
  training-set posteriors, against the network decoder.

Riemannian metric (Sec. 4.1, "Proof of Extension"): Eqs. (16), (18) and (22)
are stated for unit-normal noise; for another likelihood we use the metric it
induces on the decoder output, G = -d^2 log p(x|out) / d out^2, and J^T G J in
place of J^T J (equivalently: whiten J to G^(1/2) J).  Gaussian likelihood with
variance T: G = T^-1, which makes our Eq. (16) exactly the paper's Eq. (26).
Bernoulli likelihood with logits l: G = diag(p (1 - p)), p = sigmoid(l), the
Fisher information of the logits (the exact Hessian of -log p in l, for binary
and grayscale targets alike).  Our Eq. (16) then reads
``log p(x|nu(mu)) - 1/2 |S^-1 mu|^2 - 1/2 log|I + S J^T G J S|``: the Laplace
approximation of log p(x) with the Gauss-Newton (Fisher) Hessian, which is
what Eq. (16) is for a unit-normal likelihood.  For ``gaussian-learned`` the
variance T(mu) is held fixed (its own derivative in z is ignored); for BAGGINS
T is Eq. (29) at z = mu with S^2 from the training set.

Prior: N(0, I) for learned posteriors (Eq. (1)); the floating prior
N(0, S^2), S^2 = E[Sigma] + E[diag(mu)^2] on the training set (Eq. (4)), for the
constant / BILBO models.  All arithmetic is float64 (the trained float32
parameters are cast).
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpvae.experiments import evaluate as E
from mlpvae.nn import jacobian as Jac
from mlpvae.nn import model as M
from vaetheory import constant_variance as CV
from vaetheory import evidence as EV
from vaetheory import optimal as OPT
from vaetheory.xp import array_namespace, to_numpy

STREAM_ANALYSIS = 1002  # seed stream, beside mlpvae.training.train's and mlpvae.experiments.evaluate's
_P_CLIP = 1e-6  # Bernoulli probabilities of Eq. (6) are clipped to [1e-6, 1 - 1e-6] for log p(x|nu)
_GRAM_ELEMENTS = 1 << 25  # default bound on the stored (N, n, n) metric Grams for Eq. (22) (256 MiB)
_BLOCK_ELEMENTS = 1 << 22  # Jacobian block (chunk, m, n) of Eq. (16) (32 MiB)


@dataclass
class Run:
    """A trained run loaded for analysis: float64 parameters and targets on the run's device (Sec. 7)."""

    run_dir: Path
    cfg: object
    mc: M.ModelConfig
    params: dict
    xp: object
    device: str
    epoch: int
    x_train: object
    x_test: object
    labels_test: np.ndarray
    targets: str | None


def load_run(run_dir, *, device: str | None = None, limit: int | None = None, test_limit: int | None = None) -> Run:
    """Load a run directory's checkpoint and its data as :func:`mlpvae.experiments.evaluate.evaluate_run` does (Sec. 7).

    ``limit`` / ``test_limit`` keep the first training / test images (default:
    the run's own settings).  Parameters and targets are float64.
    """
    from mlpvae.training import checkpoint
    from mlpvae.training import config as C
    from mlpvae.training import data as D
    from mlpvae.accel import device as dev
    from mlpvae.training import train as T

    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    cfg_d = dict(info["config"])
    if device is not None:
        cfg_d["device"] = device
    for key, val in (("limit", limit), ("test_limit", test_limit)):
        if val is not None:
            cfg_d[key] = val
    cfg = C.TrainConfig(**cfg_d)
    xp, desc = dev.select(cfg.device)
    ck = checkpoint.load(run_dir / "checkpoint.npz", xp)
    epoch = int(ck["epoch"])
    ds = T.load_data(cfg)
    x_train = D.targets(xp.asarray(ds.train_images), scale=cfg.scale, binarize=cfg.binarize, dtype=np.float64,
                        rng=T.generator(cfg.seed, T.STREAM_NOISE, max(epoch - 1, 0), xp))
    x_test = D.targets(xp.asarray(ds.test_images), scale=cfg.scale, binarize=cfg.binarize, dtype=np.float64,
                       rng=T.generator(cfg.seed, T.STREAM_TEST, 0, xp))
    return Run(run_dir, cfg, cfg.model_config(), Jac.cast_params(ck["params"], np.float64), xp, desc, epoch,
               x_train, x_test, np.asarray(ds.test_labels), info.get("targets"))


def _chunks(N: int, size: int):
    for a in range(0, N, size):
        yield slice(a, min(N, a + size))


def prior_variance(mc: M.ModelConfig, mu_train, var_train):
    """The prior variance S^2 (n,): ones for learned posteriors (Eq. (1)), Eq. (4) on the training set otherwise."""
    xp = array_namespace(mu_train)
    if mc.posterior in E.FLOATING:
        return E.prior_s2(mu_train, var_train)
    return xp.ones(mc.n, dtype=mu_train.dtype)


def training_priors(run: Run):
    """Training-set posteriors and the two S^2 the analyses use: Eqs. (1), (4), (29).

    Returns ``mu_tr, var_tr`` (the encoder on the training images), the prior
    S^2 (:func:`prior_variance`) and BAGGINS' S^2 for Eq. (29) (Eq. (4) on
    the training set).
    """
    mu_tr, var_tr = E.encode_all(run.params, run.x_train, run.mc)
    return mu_tr, var_tr, prior_variance(run.mc, mu_tr, var_tr), E.prior_s2(mu_tr, var_tr)


def elbo_per_example(params, x, mc: M.ModelConfig, rng, k: int, s2, chunk: int = 2000) -> np.ndarray:
    """The ELBO of each image, Eq. (1) / Eq. (2) with prior N(0, S^2), averaged over ``k`` posterior samples.

    Returns a host (N,) float64 array.  For BAGGINS T is Eq. (29) with S^2 = ``s2``.
    """
    xp = array_namespace(x)
    out = np.zeros(len(x))
    for sl in _chunks(len(x), chunk):
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
    from mlpvae.nn.layers import sigmoid
    from vaetheory.objectives import baggins_T

    xp = array_namespace(x)
    dec = M.decode(params, z, mc)
    if out is not None:
        dec["logits" if mc.likelihood == "bernoulli" else "mean"] = out
    T = None
    if mc.likelihood == "bernoulli":
        p = sigmoid(dec["logits"])
        G = p * (1.0 - p)
    elif mc.likelihood == "gaussian":
        G = xp.full(x.shape, 1.0 / mc.t, dtype=x.dtype)
    elif mc.likelihood == "gaussian-learned":
        G = 1.0 / dec["var"]
    else:
        T = baggins_T(x, dec["mean"], mu, var, mc.tau, s2)
        G = xp.broadcast_to((1.0 / T)[:, None], x.shape)
    return M.log_likelihood(dec, x, mc, T=T), G


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
    params : float64 parameters.  x : (N, m) targets.  mu, var : (N, n) posteriors.
    s2 : (n,) prior variance.  keep : store the metric Grams J^T G J (n, n)
    of the first ``keep`` images (for Eq. (22)).  chunk : images per block
    (default: the (chunk, m, n) Jacobian block near 4M elements).

    Returns
    -------
    dict of host arrays: ``log_evidence (N,)``, ``loglik_at_mean (N,)``,
    ``logdet (N,)`` (log|I + S J^T G J S|), ``gap_eq18 (N,)``, ``grams (keep, n, n)``.
    """
    N, n = mu.shape
    chunk = chunk or max(1, _BLOCK_ELEMENTS // (mc.m * n))
    s2h = to_numpy(s2).astype(np.float64)
    S = np.sqrt(s2h)
    res = {k: np.empty(N) for k in ("log_evidence", "loglik_at_mean", "logdet", "gap_eq18")}
    grams = np.empty((min(keep, N), n, n))
    for sl in _chunks(N, chunk):
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

    Returns ``proposal(sl, eps) -> (z, log_q)`` for :func:`mlpvae.experiments.evaluate.iwae_log_px`:
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


def optimal_decoder_comparison(params, mc: M.ModelConfig, x_train, mu_train, var_train, x, mu, var, s2, rng,
                               k: int = 1, chunk: int | None = None) -> dict:
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
    from mlpvae.nn.layers import sigmoid

    xp = array_namespace(x)
    bern = mc.likelihood == "bernoulli"
    key = "logits" if bern else "mean"

    def mean_of(out):
        return sigmoid(out) if bern else out

    def as_output(nu):
        if not bern:
            return nu
        p = xp.clip(nu, _P_CLIP, 1.0 - _P_CLIP)
        return xp.log(p) - xp.log1p(-p)

    def loglik(out, z, mu_, var_):
        dec = M.decode(params, z, mc)
        dec[key] = out
        T = None
        if mc.likelihood == "baggins":
            from vaetheory.objectives import baggins_T

            T = baggins_T(x, out, mu_, var_, mc.tau, s2)
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


def _summary(a: np.ndarray) -> dict:
    a = np.asarray(a, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "sem": float(a.std() / math.sqrt(max(len(a), 1))),
            "min": float(a.min()), "max": float(a.max())}


def analyze_run(run_dir, *, iwae_k: int = 5000, elbo_k: int = 10, opt_k: int = 1, test_limit: int | None = None,
                limit: int | None = None, cv_limit: int | None = None, device: str | None = None, plots: bool = True,
                progress: bool = False, seed: int = 0, fd_check: int = 8) -> dict:
    """Measure Secs. 4.1-4.3 on one trained run; write ``analysis.json``, ``analysis.md`` and PNGs (see module doc).

    Parameters
    ----------
    run_dir : a directory written by ``vaetheory train``.
    iwae_k : importance samples per test image (5000 as the issue; use fewer on a CPU).
    elbo_k : posterior samples per test image for the ELBO.
    opt_k : posterior samples per test image for the ELBO with the Eq. (6) decoder.
    test_limit, limit : use the first test / training images (default: the run's).
    cv_limit : test images whose Grams are kept for Eq. (22) (default: all, up
        to 2^25 / n^2 of them).
    fd_check : test images on which the Jacobian is compared with central differences.

    Returns
    -------
    The dict written to ``analysis.json`` (nats per image).
    """
    t_start = time.perf_counter()
    run = load_run(run_dir, device=device, limit=limit, test_limit=test_limit)
    xp, mc, params = run.xp, run.mc, run.params
    from mlpvae.training import train as T

    rng = T.generator(run.cfg.seed + seed, STREAM_ANALYSIS, run.epoch, xp)
    mu_tr, var_tr, s2, s2_train = training_priors(run)
    mu, var = E.encode_all(params, run.x_test, mc)
    N = len(run.x_test)
    res: dict = {
        "run": str(run.run_dir), "epoch": run.epoch, "device": run.device, "targets": run.targets,
        "posterior": mc.posterior, "likelihood": mc.likelihood, "n": mc.n, "m": mc.m,
        "scale": run.cfg.scale, **({"t": mc.t} if mc.likelihood == "gaussian" else {}),
        **({"tau": mc.tau} if mc.likelihood == "baggins" else {}),
        "test_images": N, "train_images": int(len(run.x_train)), "dtype": "float64",
        "units": "nats per image, summed over pixels",
        "prior": ("N(0, S^2), S^2 from Eq. (4) on the training set" if mc.posterior in E.FLOATING
                  else "N(0, I) (Eq. (1))"),
        "s2": to_numpy(s2).tolist(),
        "metric": {"bernoulli": "Fisher information of the logits, G = diag(p (1 - p)): J^T G J",
                   "gaussian": "G = T^-1 = I / t (Eq. (26))",
                   "gaussian-learned": "G = T(mu)^-1, the learned variance at the mean, held fixed",
                   "baggins": "G = T^-1, T from Eq. (29) at z = mu with S^2 from the training set"}[mc.likelihood],
    }

    # Jacobian check: forward mode against central differences on a few test means
    if fd_check:
        zc = mu[:fd_check]
        _, Jf = Jac.decoder_jacobian(params, zc, mc)
        fd = Jac.finite_difference_jacobian(params, zc, mc, 1e-6)
        res["jacobian_fd_max_rel_error"] = float(to_numpy(xp.abs(Jf - fd).max() / (xp.abs(Jf).max() + 1e-300)))

    t = time.perf_counter()
    elbo = elbo_per_example(params, run.x_test, mc, rng, elbo_k, None if mc.posterior not in E.FLOATING else s2)
    res["elbo"] = _summary(elbo)
    res["elbo_samples"] = elbo_k
    res["elbo_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    lp = E.iwae_log_px(params, run.x_test, mc, rng, iwae_k, s2=None if mc.posterior not in E.FLOATING else s2,
                       baggins_s2=s2_train, progress=progress)
    res["iwae_log_px"] = _summary(lp)
    res["iwae_k"] = iwae_k
    res["iwae_seconds"] = time.perf_counter() - t
    res["gap_iwae_minus_elbo"] = _summary(lp - elbo)

    t = time.perf_counter()
    keep = cv_limit if cv_limit is not None else min(N, max(1, _GRAM_ELEMENTS // (mc.n * mc.n)))
    lap = laplace_evidence(params, run.x_test, mu, var, mc, s2, keep=keep)
    res["log_evidence_eq16"] = _summary(lap["log_evidence"])
    res["eq16_minus_iwae"] = _summary(lap["log_evidence"] - lp)
    res["eq16_minus_elbo"] = _summary(lap["log_evidence"] - elbo)
    res["gap_eq18"] = _summary(lap["gap_eq18"])
    res["loglik_at_mean"] = _summary(lap["loglik_at_mean"])
    res["logdet_term"] = _summary(lap["logdet"])
    cv = cv2_penalty(lap["grams"], s2)
    res["cv2_penalty_eq22"] = cv["cv2_penalty"]
    res["cv2_images"] = cv["images"]
    res["evidence_seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    opt = optimal_decoder_comparison(params, mc, run.x_train, mu_tr, var_tr, run.x_test, mu, var, s2, rng, opt_k)
    per_image_d = opt.pop("per_image_sq_difference")
    res["optimal_decoder_eq6"] = opt
    res["optimal_decoder_seconds"] = time.perf_counter() - t
    res["seconds"] = time.perf_counter() - t_start

    if plots:
        res["plots"] = [str(p) for p in write_plots(run, res, lp, elbo, lap, cv["terms"], per_image_d, mu, var,
                                                     mu_tr, var_tr)]
    from mlpvae.training.checkpoint import write_json

    write_json(run.run_dir / "analysis.json", res)
    (run.run_dir / "analysis.md").write_text(report_md(res))
    np.savez(run.run_dir / "analysis_per_image.npz", elbo=elbo, iwae_log_px=lp, log_evidence_eq16=lap["log_evidence"],
             gap_eq18=lap["gap_eq18"], cv2_terms=cv["terms"], optimal_decoder_sq_difference=per_image_d)
    return res


def report_md(res: dict) -> str:
    """A short Markdown summary of ``analysis.json`` (Not in the paper)."""
    o = res["optimal_decoder_eq6"]
    L = [
        f"# Analysis of {res['run']} ({res['posterior']} posterior, {res['likelihood']} likelihood, n={res['n']})",
        "",
        f"{res['test_images']} test images, {res['units']}; prior {res['prior']}; device {res['device']}.",
        "",
        "| quantity | mean | sem |",
        "| --- | ---: | ---: |",
    ]
    for key, label in (("elbo", f"ELBO ({res['elbo_samples']} samples)"),
                       ("iwae_log_px", f"log p(x), IWAE k={res['iwae_k']}"),
                       ("gap_iwae_minus_elbo", "gap log p(x) - ELBO (IWAE)"),
                       ("log_evidence_eq16", "log evidence Eq. (16) at mu"),
                       ("eq16_minus_iwae", "Eq. (16) - IWAE"),
                       ("gap_eq18", "gap Eq. (18), own Sigma")):
        L.append(f"| {label} | {res[key]['mean']:.3f} | {res[key]['sem']:.3f} |")
    L += [
        f"| penalty Eq. (22), 1/4 tr CV^2 ({res['cv2_images']} images) | {res['cv2_penalty_eq22']:.3f} | |",
        "",
        f"Metric for Eqs. (16), (18), (22): {res['metric']}.",
        f"Jacobian by forward mode vs central differences: max relative error "
        f"{res.get('jacobian_fd_max_rel_error', float('nan')):.2e}.",
        "",
        f"Closed-form decoder Eq. (6) from {o['train_posteriors']} training posteriors vs the network, at the test "
        f"means: mean squared difference {o['mean_sq_difference']:.3f} per image "
        f"({o['mean_sq_difference_per_pixel']:.2e} per pixel); squared error to x: network {o['net_sq_error']:.3f}, "
        f"Eq. (6) {o['opt_sq_error']:.3f}; log p(x|nu(mu)): network {o['net_loglik_at_mean']:.3f}, Eq. (6) "
        f"{o['opt_loglik_at_mean']:.3f}; ELBO ({o['elbo_samples']} sample): network {o['net_elbo']:.3f}, "
        f"Eq. (6) {o['opt_elbo']:.3f}.",
        "",
    ]
    return "\n".join(L)


def write_plots(run: Run, res, lp, elbo, lap, cv_terms, per_image_d, mu, var, mu_tr, var_tr) -> list[Path]:
    """The analysis figures as PNG in the run directory (Not in the paper: our measurements)."""
    from mlpvae.experiments.plots import _plt, _save, image_grid

    plt = _plt()
    out = []
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.5))
    ax[0].scatter(lp, lap["log_evidence"], s=3, alpha=0.5)
    lo, hi = float(min(lp.min(), lap["log_evidence"].min())), float(max(lp.max(), lap["log_evidence"].max()))
    ax[0].plot([lo, hi], [lo, hi], "k--", lw=1)
    ax[0].set(xlabel=f"log p(x), IWAE k={res['iwae_k']}", ylabel="log evidence, Eq. (16) at mu",
              title="Eq. (16) vs importance sampling")
    ax[1].hist(lp - elbo, bins=60, alpha=0.6, label="log p(x) - ELBO (IWAE)")
    ax[1].hist(lap["gap_eq18"], bins=60, alpha=0.6, label="Eq. (18), own Sigma")
    ax[1].set(xlabel="nats", title="the ELBO gap per image")
    ax[1].legend()
    ax[2].hist(cv_terms, bins=60)
    ax[2].set(xlabel="1/4 tr((P_x Pbar^-1 - I)^2)", title=f"Eq. (22) terms, mean {res['cv2_penalty_eq22']:.3f}")
    fig.tight_layout()
    out.append(_save(fig, run.run_dir / "analysis_evidence.png"))
    if math.isqrt(run.mc.m) ** 2 == run.mc.m:
        from mlpvae.nn.layers import sigmoid

        sel = slice(0, 10)
        dec = M.decode(run.params, mu[sel], run.mc)
        net = sigmoid(dec["logits"]) if "logits" in dec else dec["mean"]
        opt = OPT.optimal_decoder(mu[sel], mu_tr, var_tr, run.x_train)
        scale = run.cfg.scale
        rows = np.concatenate([to_numpy(run.x_test[sel]) / scale, to_numpy(net) / scale, to_numpy(opt) / scale])
        out.append(image_grid(rows, run.run_dir / "analysis_optimal_decoder.png", 3, 10,
                              "test images / network decoder at mu / Eq. (6) at mu", size=(8.0, 3.0)))
    return out


def compare_runs(constant_dir, learned_dir) -> dict:
    """Eq. (22)'s predicted penalty next to the measured ELBO difference between two runs (Sec. 4.3).

    Reads both runs' ``analysis.json`` (run :func:`analyze_run` first); the
    standard errors of the differences are paired over the same test images
    when both runs' ``analysis_per_image.npz`` cover the same images.
    Reading: with the learned model's decoder, Eq. (22) predicts that the best
    constant Sigma loses ``cv2 - gap18`` nats of ELBO against its own learned
    Sigma (``gap18``: Eq. (18) with the learned Sigma), so the predicted
    ELBO(constant) - ELBO(learned) is ``gap18_learned - cv2_learned`` if both
    models had the same log p(x).  Measured: the test ELBO difference, and the
    IWAE log p(x) difference that separates how good the models are from how
    tight their bounds are.  Also, for the constant model, the measured gap
    IWAE - ELBO next to Eq. (18) with its Sigma and Eq. (22)'s minimum over
    constant Sigma.
    """
    a = json.loads((Path(constant_dir) / "analysis.json").read_text())
    b = json.loads((Path(learned_dir) / "analysis.json").read_text())
    paired = {}
    try:
        with np.load(Path(constant_dir) / "analysis_per_image.npz") as pa, \
                np.load(Path(learned_dir) / "analysis_per_image.npz") as pb:
            if len(pa["elbo"]) == len(pb["elbo"]):
                for key in ("elbo", "iwae_log_px"):
                    d = pa[key] - pb[key]
                    paired[f"paired_sem_{key}_difference"] = float(d.std() / math.sqrt(len(d)))
    except FileNotFoundError:
        pass
    return paired | {
        "constant_run": str(constant_dir), "learned_run": str(learned_dir),
        "constant_posterior": a["posterior"], "learned_posterior": b["posterior"],
        "measured_elbo_difference": a["elbo"]["mean"] - b["elbo"]["mean"],
        "measured_elbo_difference_sem": math.hypot(a["elbo"]["sem"], b["elbo"]["sem"]),
        "measured_log_px_difference": a["iwae_log_px"]["mean"] - b["iwae_log_px"]["mean"],
        "measured_gap_difference": a["gap_iwae_minus_elbo"]["mean"] - b["gap_iwae_minus_elbo"]["mean"],
        "predicted_elbo_difference_same_decoder": b["gap_eq18"]["mean"] - b["cv2_penalty_eq22"],
        "cv2_penalty_learned_model": b["cv2_penalty_eq22"],
        "cv2_penalty_constant_model": a["cv2_penalty_eq22"],
        "constant_model_gap_iwae": a["gap_iwae_minus_elbo"]["mean"],
        "constant_model_gap_eq18": a["gap_eq18"]["mean"],
        "learned_model_gap_iwae": b["gap_iwae_minus_elbo"]["mean"],
        "learned_model_gap_eq18": b["gap_eq18"]["mean"],
    }


# (label, value of one analysis.json) rows of the summary over seeds
_SUMMARY_ROWS = (
    ("ELBO", lambda a: a["elbo"]["mean"]),
    ("IWAE log p(x)", lambda a: a["iwae_log_px"]["mean"]),
    ("measured gap log p - ELBO", lambda a: a["gap_iwae_minus_elbo"]["mean"]),
    ("Eq. (18) predicted gap", lambda a: a["gap_eq18"]["mean"]),
    ("Eq. (16) at mu", lambda a: a["log_evidence_eq16"]["mean"]),
    ("Eq. (16) - IWAE", lambda a: a["eq16_minus_iwae"]["mean"]),
    ("Eq. (22) penalty, 1/4 tr CV^2", lambda a: a["cv2_penalty_eq22"]),
    ("Eq. (6) decoder ELBO", lambda a: a["optimal_decoder_eq6"]["opt_elbo"]),
    ("network ELBO (same samples)", lambda a: a["optimal_decoder_eq6"]["net_elbo"]),
)
_COMPARISON_ROWS = (
    ("measured ELBO difference", "measured_elbo_difference"),
    ("measured log p(x) difference", "measured_log_px_difference"),
    ("measured gap difference", "measured_gap_difference"),
    ("Eq. (22) predicted ELBO difference (same decoder)", "predicted_elbo_difference_same_decoder"),
)


def _mean_std(values: list) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None, "n": len(v),
            "values": v.tolist()}


def summarize(root) -> dict:
    """Mean and spread over seeds of every analysed run under ``root`` (Secs. 4-5 claims on trained models).

    Runs are grouped by (latent size n, posterior), and for a Gaussian-family
    likelihood also by the likelihood, its t or tau and the data scale
    lambda; every ``comparison.json`` (constant vs learned Sigma, Eq. (22)) by
    n.  Not in the paper.
    """
    groups: dict = {}
    for f in sorted(Path(root).rglob("analysis.json")):
        a = json.loads(f.read_text())
        groups.setdefault(_group(a), []).append(a)
    if not groups:
        raise FileNotFoundError(f"no analysis.json under {root} (run `vaetheory analyze RUN_DIR` first)")
    comparisons: dict = {}
    for f in sorted(Path(root).rglob("comparison.json")):
        n = json.loads((f.parent / "analysis.json").read_text())["n"]
        comparisons.setdefault(f"n={n}, constant - learned", []).append(json.loads(f.read_text()))
    out = {"units": "nats per image", "groups": {}, "comparisons": {}}
    for key, runs in sorted(groups.items(), key=lambda kv: _natural(kv[0])):
        out["groups"][key] = {"runs": [a["run"] for a in runs], "test_images": sorted({a["test_images"] for a in runs}),
                              **{label: _mean_std([get(a) for a in runs]) for label, get in _SUMMARY_ROWS}}
    for key, comps in comparisons.items():
        out["comparisons"][key] = {label: _mean_std([c[k] for c in comps]) for label, k in _COMPARISON_ROWS}
    return out


def _natural(key: str) -> list:
    """Sort key that orders the numbers inside ``key`` by value (n=2 before n=100, lambda 4 before 16)."""
    return [(0, float(t), "") if t[0].isdigit() else (1, 0.0, t) for t in re.findall(r"\d+(?:\.\d+)?|\D+", key)]


def _group(a: dict) -> str:
    """The summary group of one analysis: ``n=2, learned``; ``n=2, bilbo, baggins tau 0.2, lambda 4``."""
    key = f"n={a['n']}, {a['posterior']}"
    like = a.get("likelihood", "bernoulli")
    if like == "bernoulli":
        return key
    param = {"gaussian": "t", "baggins": "tau"}.get(like)
    key += f", {like}" + (f" {param} {a[param]:g}" if param in a else "")
    return key + (f", lambda {a['scale']:g}" if "scale" in a else "")


def summary_md(summary: dict) -> str:
    """The :func:`summarize` result as two Markdown tables (mean +- sample std over seeds) (Not in the paper)."""

    def cell(d):
        return f"{d['mean']:.2f}" + (f" +- {d['std']:.2f}" if d["std"] is not None else "") + f" (n={d['n']})"

    lines = []
    for title, table, labels in (("per model", summary["groups"], [r[0] for r in _SUMMARY_ROWS]),
                                 ("constant minus learned Sigma, same seed", summary["comparisons"],
                                  [r[0] for r in _COMPARISON_ROWS])):
        if not table:
            continue
        keys = list(table)
        lines += [f"### {title} ({summary['units']}; mean +- std over seeds)", "",
                  "| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        if title == "per model":
            lines.append("| test images | " + " | ".join(", ".join(map(str, table[k]["test_images"])) for k in keys) + " |")
        lines += [f"| {label} | " + " | ".join(cell(table[k][label]) for k in keys) + " |" for label in labels]
        lines.append("")
    return "\n".join(lines)


def learned_t_pixels(run_dir, images: int = 2000, tiny: float = 1e-5, device: str = "auto") -> dict:
    """Where a learned Gaussian likelihood variance T has gone to zero, pixel by pixel (Sec. 5, Sec. 7.2).

    Sec. 5: the ELBO is optimal as T -> 0, which training cannot reach
    stably.  Decodes the test posterior means of the first ``images`` test
    images and reports the per-pixel median T: how many pixels have
    collapsed (median below ``tiny``), how often those pixels are inked
    (non-zero) in the same test images, and what they add to log p(x|z),
    -1/2 log(2 pi T) each, where they are blank.  ``device`` "auto" reads a
    GPU-trained run on a CPU too.  Not in the paper.
    """
    run = load_run(run_dir, device=device, test_limit=images)
    if run.mc.likelihood != "gaussian-learned":
        raise ValueError(f"{run_dir}: likelihood {run.mc.likelihood!r} has no learned T")
    mu, _ = M.encode(run.params, run.x_test, run.mc)
    T = to_numpy(M.decode(run.params, mu, run.mc)["var"])
    per_pixel = np.median(T, axis=0)
    inked = (to_numpy(run.x_test) > 0).mean(axis=0)
    small = per_pixel < tiny
    return {"run": str(run_dir), "images": int(len(T)), "pixels": int(T.shape[1]), "tiny": tiny,
            "collapsed_pixels": int(small.sum()),
            "T_quantiles": {str(q): float(np.quantile(T, q)) for q in (0.05, 0.5, 0.95)},
            "collapsed_inked_fraction_max": float(inked[small].max()) if small.any() else None,
            "collapsed_inked_fraction_mean": float(inked[small].mean()) if small.any() else None,
            "collapsed_log_lik_where_blank": float((-0.5 * np.log(2 * np.pi * per_pixel[small])).sum()),
            "other_pixels_median_T": float(np.median(per_pixel[~small])) if (~small).any() else None}


def iwae_convergence(run_dir, images: int = 40, ks=(50, 500, 5000, 50000), seed: int = 1,
                     device: str = "auto", laplace: bool = True) -> dict:
    """The IWAE bound on log p(x) of the first ``images`` test images at each k in ``ks`` (Not in the paper).

    The IWAE bound rises towards log p(x) as k grows; where it still rises
    between the largest k, the gap log p(x) - ELBO it measures (and Eq. (16)
    minus it) is a bound, not a value.  ``iwae`` samples the encoder's
    q(z|x); ``iwae_laplace`` (with ``laplace``) the Laplace posterior of Eq.
    (16) (:func:`laplace_proposal`).  Both are lower bounds in expectation,
    so the larger is the better estimate.  Prior and BAGGINS S^2 as
    :func:`analyze_run` takes them (training set).  Means over the images.
    """
    from mlpvae.training import train as T

    run = load_run(run_dir, device=device, test_limit=images)
    _, _, s2, s2_train = training_priors(run)
    out = {"run": str(run_dir), "images": int(len(run.x_test)), "iwae": {}}
    proposals = {"iwae": None}
    if laplace:
        mu, var = E.encode_all(run.params, run.x_test, run.mc)
        var = run.xp.broadcast_to(var, mu.shape)
        proposals["iwae_laplace"] = laplace_proposal(run.params, run.x_test, mu, var, run.mc, s2)
    for name, prop in proposals.items():
        out[name] = {}
        for k in ks:
            rng = T.generator(run.cfg.seed + seed, STREAM_ANALYSIS, run.epoch, run.xp)
            lp = E.iwae_log_px(run.params, run.x_test, run.mc, rng, k=int(k), s2=s2, baggins_s2=s2_train,
                               proposal=prop)
            out[name][int(k)] = float(np.mean(lp))
    return out


def summary_plot(summary: dict, path) -> Path:
    """The over-seeds summary as two scatter panels, one point per model (Eqs. (18) and (22) on trained models).

    Left: the measured gap log p(x) - ELBO against Eq. (18)'s prediction;
    right: the measured constant-minus-learned ELBO difference against Eq.
    (22)'s same-decoder prediction.  The diagonal is where prediction and
    measurement agree.  Not in the paper.
    """
    from mlpvae.experiments.plots import _plt, _save

    plt = _plt()
    panels = [p for p in (
        (summary["groups"], "Eq. (18) predicted gap", "measured gap log p - ELBO",
         "gap log p(x) - ELBO: Eq. (18) vs IWAE (k as analysed)"),
        (summary["comparisons"], "Eq. (22) predicted ELBO difference (same decoder)",
         "measured ELBO difference", "constant minus learned Sigma: Eq. (22) vs measured"),
    ) if p[0]]  # no constant-vs-learned pairs (e.g. Gaussian-likelihood runs): one panel
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.6), squeeze=False)
    for ax, (table, xkey, ykey, title) in zip(axes[0], panels):
        lo, hi = np.inf, -np.inf
        for key, rows in table.items():
            x, y = np.asarray(rows[xkey]["values"]), np.asarray(rows[ykey]["values"])
            ax.scatter(x, y, label=f"{key} ({len(x)})", alpha=0.8)
            lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
        if np.isfinite(lo):
            pad = 0.05 * (hi - lo) + 0.1
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.5", linewidth=1, label="prediction = measured")
            ax.axhline(0.0, color="0.8", linewidth=0.8)
            ax.axvline(0.0, color="0.8", linewidth=0.8)
        ax.set_xlabel(f"{xkey}, {summary['units']}", fontsize=8)
        ax.set_ylabel(f"{ykey}, {summary['units']}", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def add_arguments(parser) -> None:
    """The command-line interface (Not in the paper)."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `vaetheory train` "
                        "(with --summarize: a folder holding analysed runs)")
    parser.add_argument("--summarize", action="store_true",
                        help="summarise every analysed run under RUN_DIR over seeds (writes RUN_DIR/summary.md/json/png)")
    parser.add_argument("--iwae-k", type=int, default=5000, help="importance samples per test image (5000)")
    parser.add_argument("--elbo-k", type=int, default=10, help="posterior samples per test image for the ELBO (10)")
    parser.add_argument("--opt-k", type=int, default=1, help="samples per image for the Eq. (6) decoder's ELBO (1)")
    parser.add_argument("--test-limit", type=int, default=None, help="use only the first test images")
    parser.add_argument("--limit", type=int, default=None,
                        help="use only the first training images (for Eq. (6) and the training-set S^2)")
    parser.add_argument("--cv-limit", type=int, default=None, help="test images for Eq. (22) (default: all, "
                        "up to 2^25 / n^2)")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default=None, help="default: the run's")
    parser.add_argument("--no-plots", action="store_true", help="do not write the PNG figures")
    parser.add_argument("--versus", metavar="LEARNED_RUN_DIR", default=None,
                        help="a learned-variance run (already analysed) to compare this constant-variance run with "
                             "(Eq. (22) predicted vs measured); writes RUN_DIR/comparison.json")
    parser.add_argument("--grid-images", type=int, default=None, metavar="N",
                        help="instead: the exact log p(x) of an n <= 2 run by grid quadrature on the first N test "
                             "images, against IWAE and Eqs. (16), (18) (mlpvae/evidence/grid.py); writes "
                             "RUN_DIR/grid_evidence.json and grid_evidence_per_image.npz")
    parser.add_argument("--mode-images", type=int, default=None, metavar="N",
                        help="instead: the posterior mode of each of the first N test images (any n), the IWAE bound "
                             "with the Laplace posterior there as proposal against q's, and Eq. (16) at the mode "
                             "(mlpvae/evidence/posterior_mode.py); writes RUN_DIR/mode_evidence.json and mode_evidence_per_image.npz")
    parser.add_argument("--progress", action="store_true", help="progress bar for the IWAE")


def _per_image_run(args, option: str, images: int, module, name: str) -> int:
    """``--grid-images`` / ``--mode-images``: ``module.evaluate_run`` on the first images, its JSON, npz and report."""
    from mlpvae.training.checkpoint import write_json

    try:
        if images < 1:
            raise ValueError(f"{option} must be >= 1, got {images}")
        summary, per = module.evaluate_run(args.run_dir, images, iwae_k=args.iwae_k, elbo_k=args.elbo_k,
                                           device=args.device, progress=args.progress)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"vaetheory analyze: {exc}", file=sys.stderr)
        return 2
    out = Path(args.run_dir)
    write_json(out / f"{name}.json", summary)
    np.savez(out / f"{name}_per_image.npz", **per)
    print(module.report_md(summary))
    print(f"wrote {out / (name + '.json')}")
    return 0


def run(args) -> int:
    """The command-line interface (Not in the paper)."""
    if args.summarize:
        try:
            summary = summarize(args.run_dir)
        except FileNotFoundError as exc:
            print(f"vaetheory analyze: {exc}", file=sys.stderr)
            return 2
        from mlpvae.training.checkpoint import write_json

        write_json(Path(args.run_dir) / "summary.json", summary)
        text = summary_md(summary)
        (Path(args.run_dir) / "summary.md").write_text(text + "\n")
        print(text)
        if not args.no_plots:
            print(f"wrote {summary_plot(summary, Path(args.run_dir) / 'summary.png')}")
        return 0
    if args.grid_images is not None:
        from mlpvae.evidence import grid as grid_evidence

        return _per_image_run(args, "--grid-images", args.grid_images, grid_evidence, "grid_evidence")
    if args.mode_images is not None:
        from mlpvae.evidence import posterior_mode

        return _per_image_run(args, "--mode-images", args.mode_images, posterior_mode, "mode_evidence")
    try:
        res = analyze_run(args.run_dir, iwae_k=args.iwae_k, elbo_k=args.elbo_k, opt_k=args.opt_k,
                          test_limit=args.test_limit, limit=args.limit, cv_limit=args.cv_limit, device=args.device,
                          plots=not args.no_plots, progress=args.progress)
        cmp = compare_runs(args.run_dir, args.versus) if args.versus else None
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"vaetheory analyze: {exc}", file=sys.stderr)
        return 2
    print(report_md(res))
    if cmp is not None:
        from mlpvae.training.checkpoint import write_json

        write_json(Path(args.run_dir) / "comparison.json", cmp)
        for k, v in cmp.items():
            print(f"{k:45s} {v:.4f}" if isinstance(v, float) else f"{k:45s} {v}")
    print(f"wrote {Path(args.run_dir) / 'analysis.json'}")
    return 0
