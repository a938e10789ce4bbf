"""Two diagnostics of trained runs used by the validation scripts: collapsed learned T, and IWAE against k.

:func:`learned_t_pixels` finds the pixels where a learned Gaussian variance T
has gone to zero (Sec. 5); :func:`iwae_convergence` shows whether the IWAE
bound on log p(x) has stopped rising in k, so whether a gap it measures is a
value or only a bound.
"""

from __future__ import annotations

import numpy as np

from mlpvae.evidence.iwae import iwae_log_px
from mlpvae.evidence.laplace import laplace_proposal, training_priors
from mlpvae.nn import model as M
from mlpvae.nn.batched import encode_all
from mlpvae.training.runs import load_run
from mlpvae.training.streams import STREAM_ANALYSIS, generator
from vaetheory.xp import to_numpy


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
    run = load_run(run_dir, device=device, test_limit=images, float64=True)
    if run.mc.likelihood != "gaussian-learned":
        raise ValueError(f"{run_dir}: likelihood {run.mc.likelihood!r} has no learned T")
    mu, _ = M.encode(run.params, run.x_test, run.mc)
    T = to_numpy(M.decode(run.params, mu, run.mc)["var"])
    per_pixel = np.median(T, axis=0)
    inked = (to_numpy(run.x_test) > 0).mean(axis=0)
    small = per_pixel < tiny
    return {
        "run": str(run_dir),
        "images": int(len(T)),
        "pixels": int(T.shape[1]),
        "tiny": tiny,
        "collapsed_pixels": int(small.sum()),
        "T_quantiles": {str(q): float(np.quantile(T, q)) for q in (0.05, 0.5, 0.95)},
        "collapsed_inked_fraction_max": float(inked[small].max()) if small.any() else None,
        "collapsed_inked_fraction_mean": float(inked[small].mean()) if small.any() else None,
        "collapsed_log_lik_where_blank": float((-0.5 * np.log(2 * np.pi * per_pixel[small])).sum()),
        "other_pixels_median_T": float(np.median(per_pixel[~small])) if (~small).any() else None,
    }


def iwae_convergence(
    run_dir, images: int = 40, ks=(50, 500, 5000, 50000), seed: int = 1, device: str = "auto", laplace: bool = True
) -> dict:
    """The IWAE bound on log p(x) of the first ``images`` test images at each k in ``ks`` (Not in the paper).

    The IWAE bound rises towards log p(x) as k grows; where it still rises
    between the largest k, the gap log p(x) - ELBO it measures (and Eq. (16)
    minus it) is a bound, not a value.  ``iwae`` samples the encoder's
    q(z|x); ``iwae_laplace`` (with ``laplace``) the Laplace posterior of Eq.
    (16) (:func:`mlpvae.evidence.laplace.laplace_proposal`).  Both are lower bounds in expectation,
    so the larger is the better estimate.  Prior and BAGGINS S^2 as
    :func:`mlpvae.experiments.analyze.analyze_run` takes them (training set).  Means over the images.
    """
    run = load_run(run_dir, device=device, test_limit=images, float64=True)
    _, _, s2, s2_train = training_priors(run)
    out = {"run": str(run_dir), "images": int(len(run.x_test)), "iwae": {}}
    proposals = {"iwae": None}
    if laplace:
        mu, var = encode_all(run.params, run.x_test, run.mc)
        var = run.xp.broadcast_to(var, mu.shape)
        proposals["iwae_laplace"] = laplace_proposal(run.params, run.x_test, mu, var, run.mc, s2)
    for name, prop in proposals.items():
        out[name] = {}
        for k in ks:
            rng = generator(run.cfg.seed + seed, STREAM_ANALYSIS, run.epoch, run.xp)
            lp = iwae_log_px(run.params, run.x_test, run.mc, rng, k=int(k), s2=s2, baggins_s2=s2_train, proposal=prop)
            out[name][int(k)] = float(np.mean(lp))
    return out
