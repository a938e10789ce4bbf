"""``vaetheory analyze --grid-images``: the exact log p(x) of a trained n <= 2 run
against the IWAE bound and Eqs. (16), (18).

Not in the paper: it measures how far the IWAE bound, the ELBO and Eq. (16)
are from log p(x) itself, computed by the adaptive grid quadrature of
:mod:`mlpvae.evidence.grid`.
"""

from __future__ import annotations

import time

import numpy as np

from mlpvae.evidence.grid import grid_log_px
from mlpvae.evidence.iwae import iwae_log_px
from mlpvae.evidence.laplace import elbo_per_example, laplace_evidence, training_priors
from mlpvae.experiments.report import signed
from mlpvae.nn.batched import FLOATING, encode_all
from mlpvae.training.runs import load_run
from mlpvae.training.streams import STREAM_ANALYSIS, chunk_generator, generator
from vaetheory.xp import to_numpy

MISSED = 1.0  # nats of grid log p(x) above the IWAE bound that mark an image as missed by the encoder's q(z|x)


def evaluate_run(
    run_dir,
    images: int = 200,
    *,
    iwae_k: int = 5000,
    elbo_k: int = 10,
    device: str | None = None,
    progress: bool = False,
) -> tuple[dict, dict]:
    """The exact log p(x) of a trained n <= 2 run against the IWAE bound and Eqs. (16), (18) (Not in the paper).

    On the first ``images`` test images: log p(x) by :func:`mlpvae.evidence.grid.grid_log_px`, the
    IWAE bound (k = ``iwae_k``, the encoder's q(z|x) as proposal), the ELBO
    (``elbo_k`` samples), Eq. (16) at the encoder's mean and at the posterior
    mode the grid found, and Eq. (18)'s gap for the model's own Sigma, each as
    :func:`mlpvae.experiments.analyze.analyze_run` computes it (prior, metric G, BAGGINS' S^2).
    An image is "missed" where log p(x) is more than :data:`MISSED` nats
    above the IWAE bound: the encoder's q(z|x) sits away from the posterior's mass.

    ``device``: ``cpu``, ``gpu`` or ``auto``; default the run's own.  Returns
    ``(summary, per_image)``: means over the images (nats per image) and the
    per-image host arrays.
    """
    t0 = time.perf_counter()
    meta, per = per_image(run_dir, 0, images, iwae_k=iwae_k, elbo_k=elbo_k, device=device, progress=progress)
    return summarize(meta, per, time.perf_counter() - t0)


def per_image(
    run_dir,
    first: int,
    images: int,
    *,
    iwae_k: int,
    elbo_k: int,
    device: str | None = None,
    progress: bool = False,
    total: int | None = None,
) -> tuple[dict, dict]:
    """:func:`evaluate_run`'s per-image arrays on test images ``first .. first + images - 1`` (Not in the paper).

    The test set is read as for the first ``total`` images (default
    ``first + images``), the whole analysis of which this is a chunk: a data
    set drawn to its size (the synthetic one) has the same images in every chunk.

    Returns ``(meta, per_image)``: the run's settings and the grid's seconds,
    and the arrays, with the grid's ``grid_converged`` and ``grid_evaluations``
    that :func:`summarize` reads.  The noise of the IWAE bound and the ELBO is
    the analysis stream (:data:`mlpvae.training.streams.STREAM_ANALYSIS`) for
    ``first`` = 0 and the chunk's own (:func:`mlpvae.training.streams.chunk_generator`)
    otherwise: chunks of images give the same grid log p(x), modes and Eq. (16),
    and independent draws for the bounds.
    """
    t0 = time.perf_counter()
    total = first + images if total is None else total
    if not 0 <= first < first + images <= total:
        raise ValueError(f"images {first}..{first + images - 1} are not among the first {total}")
    run = load_run(run_dir, device=device, test_limit=total, float64=True)
    mc, params, x = run.mc, run.params, run.x_test[first : first + images]
    if mc.n > 2:
        raise ValueError(f"{run_dir}: grid quadrature is for n <= 2 latent dimensions, this run has n = {mc.n}")
    _, _, s2, s2_train = training_priors(run)
    floating = mc.posterior in FLOATING
    mu, var = encode_all(params, x, mc)
    var = run.xp.broadcast_to(var, mu.shape)
    grid = grid_log_px(params, x, mc, s2, baggins_s2=s2_train, progress=progress)
    t_grid = time.perf_counter() - t0
    if first == 0:
        rng = generator(run.cfg.seed, STREAM_ANALYSIS, run.epoch, run.xp)
    else:
        rng = chunk_generator(run.cfg.seed, STREAM_ANALYSIS, run.epoch, first, run.xp)
    elbo = elbo_per_example(params, x, mc, rng, elbo_k, s2 if floating else None)
    iwae = iwae_log_px(params, x, mc, rng, iwae_k, s2=s2 if floating else None, baggins_s2=s2_train)
    at_mu = laplace_evidence(params, x, mu, var, mc, s2)
    at_mode = laplace_evidence(params, x, run.xp.asarray(grid["mode"]), var, mc, s2)
    per = {
        "grid_log_px": grid["log_px"],
        "grid_err": grid["err"],
        "mode": grid["mode"],
        "mu": to_numpy(mu),
        "iwae": iwae,
        "elbo": elbo,
        "eq16_at_mean": at_mu["log_evidence"],
        "eq16_at_mode": at_mode["log_evidence"],
        "gap_eq18": at_mu["gap_eq18"],
        "grid_converged": np.asarray(grid["converged"]),
        "grid_evaluations": np.asarray(grid["evaluations"]),
    }
    meta = {
        "run": str(run_dir),
        "posterior": mc.posterior,
        "likelihood": mc.likelihood,
        "scale": run.cfg.scale,
        "iwae_k": iwae_k,
        "elbo_k": elbo_k,
        "grid_seconds": t_grid,
    }
    return meta, per


def summarize(meta: dict, per: dict, seconds: float) -> tuple[dict, dict]:
    """:func:`evaluate_run`'s summary from ``per`` (:func:`per_image`, or its chunks joined in order); also
    ``per`` without the grid's ``grid_converged`` and ``grid_evaluations`` (Not in the paper)."""
    per = dict(per)
    converged, evaluations = per.pop("grid_converged"), per.pop("grid_evaluations")
    lp, iwae, elbo = per["grid_log_px"], per["iwae"], per["elbo"]
    hit = lp - iwae <= MISSED

    def mean(a, where=None):
        a = a if where is None else a[where]
        return float(np.mean(a)) if a.size else None

    gap = lp - elbo
    summary = {
        "run": meta["run"],
        "posterior": meta["posterior"],
        "likelihood": meta["likelihood"],
        "scale": meta["scale"],
        "images": int(len(lp)),
        "iwae_k": meta["iwae_k"],
        "elbo_k": meta["elbo_k"],
        "grid_log_px": mean(lp),
        "grid_err_max": float(per["grid_err"].max()),
        "grid_unconverged": int((~converged).sum()),
        "grid_evaluations_per_image": mean(evaluations),
        "iwae": mean(iwae),
        "grid_minus_iwae": mean(lp - iwae),
        "grid_minus_iwae_median": float(np.median(lp - iwae)),
        "grid_minus_iwae_max": float(np.max(lp - iwae)),
        "grid_minus_iwae_min": float(np.min(lp - iwae)),
        "missed": int((~hit).sum()),
        "elbo": mean(elbo),
        "gap": mean(gap),
        "gap_iwae": mean(iwae - elbo),
        "gap_eq18": mean(per["gap_eq18"]),
        "gap_where_found": mean(gap, hit),
        "gap_eq18_where_found": mean(per["gap_eq18"], hit),
        "eq16_at_mean_minus_log_px": mean(per["eq16_at_mean"] - lp),
        "eq16_at_mean_minus_log_px_where_found": mean(per["eq16_at_mean"] - lp, hit),
        "eq16_at_mode_minus_log_px": mean(per["eq16_at_mode"] - lp),
        "eq16_at_mode_minus_log_px_median": float(np.median(per["eq16_at_mode"] - lp)),
        "grid_seconds": meta["grid_seconds"],
        "seconds": seconds,
    }
    return summary, per


def report_md(r: dict) -> str:
    """:func:`evaluate_run`'s summary as a short Markdown report (means over the images, nats per image)."""
    f = signed
    return (
        "\n".join(
            [
                f"# Exact log p(x) by grid quadrature: {r['run']}",
                "",
                f"First {r['images']} test images, nats per image (means).",
                "",
                f"- log p(x), adaptive grid: {r['grid_log_px']:.2f} (largest error estimate {r['grid_err_max']:.2g}, "
                f"{r['grid_unconverged']} image(s) not converged)",
                f"- IWAE bound, k = {r['iwae_k']}: {r['iwae']:.2f}; log p(x) minus it "
                f"{f(r['grid_minus_iwae'])} (median "
                f"{f(r['grid_minus_iwae_median'])}, largest {f(r['grid_minus_iwae_max'])}); missed by the encoder "
                f"(more than {MISSED:g} nat): {r['missed']} of {r['images']}",
                f"- ELBO ({r['elbo_k']} samples): {r['elbo']:.2f}; gap log p(x) - ELBO {r['gap']:.2f} (the IWAE's "
                f"{r['gap_iwae']:.2f}); Eq. (18) predicts {r['gap_eq18']:.2f}; where the encoder found the mass "
                f"{f(r['gap_where_found'])} against {f(r['gap_eq18_where_found'])}",
                f"- Eq. (16) minus log p(x): {f(r['eq16_at_mean_minus_log_px'])} at the encoder's mean, "
                f"{f(r['eq16_at_mode_minus_log_px'])} at the posterior mode "
                f"(median {f(r['eq16_at_mode_minus_log_px_median'])})",
            ]
        )
        + "\n"
    )
