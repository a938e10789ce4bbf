"""``vaetheory analyze --mode-images``: log p(x) bounds and Eq. (16) at the posterior mode of a trained run of any n.

Not in the paper: the mode is found by :mod:`mlpvae.evidence.posterior_mode`
and the Laplace posterior there serves as an IWAE proposal
(:func:`mlpvae.evidence.laplace.laplace_proposal`), against the encoder's q(z|x).
"""

from __future__ import annotations

import time

import numpy as np

from mlpvae.evidence.iwae import iwae_log_px
from mlpvae.evidence.laplace import elbo_per_example, laplace_evidence, laplace_proposal, training_priors
from mlpvae.evidence.posterior_mode import neighbour_starts, posterior_mode
from mlpvae.experiments.report import signed
from mlpvae.nn.batched import FLOATING, encode_all
from mlpvae.training.runs import load_run
from mlpvae.training.streams import STREAM_ANALYSIS, chunk_generator, generator
from vaetheory.xp import to_numpy

A_NAT = 1.0  # an image counts as better bounded by one proposal when it is this many nats above the other


def evaluate_run(
    run_dir,
    images: int = 200,
    *,
    iwae_k: int = 5000,
    elbo_k: int = 10,
    neighbours: int = 30,
    climbs: int | None = 10,
    device: str | None = None,
    progress: bool = False,
) -> tuple[dict, dict]:
    """log p(x) bounds and Eq. (16) at the posterior mode of a trained run of any n (Not in the paper).

    On the first ``images`` test images: the posterior mode (:func:`mlpvae.evidence.posterior_mode.posterior_mode`
    from the encoder's mean and from those of the ``neighbours`` nearest
    training images, :func:`mlpvae.evidence.posterior_mode.neighbour_starts`, climbing from the ``climbs``
    best of those), the IWAE bound with k = ``iwae_k`` samples of the
    encoder's q(z|x) and of the Laplace posterior at the mode
    (:func:`mlpvae.evidence.laplace.laplace_proposal` centred at z*), the ELBO, Eq. (16) at
    mu and at the mode, and Eq. (18)'s gap, each as :func:`mlpvae.experiments.analyze.analyze_run`
    takes them (prior, metric G, BAGGINS' S^2).  Both IWAE values are lower
    bounds on log p(x) in expectation; the larger is the better estimate.

    Returns ``(summary, per_image)``: means over the images (nats per image)
    and the per-image host arrays.
    """
    t0 = time.perf_counter()
    meta, per = per_image(
        run_dir, 0, images, iwae_k=iwae_k, elbo_k=elbo_k, neighbours=neighbours, climbs=climbs, device=device,
        progress=progress,
    )  # fmt: skip
    return summarize(meta, per, time.perf_counter() - t0)


def per_image(
    run_dir,
    first: int,
    images: int,
    *,
    iwae_k: int,
    elbo_k: int,
    neighbours: int = 30,
    climbs: int | None = 10,
    device: str | None = None,
    progress: bool = False,
    total: int | None = None,
) -> tuple[dict, dict]:
    """:func:`evaluate_run`'s per-image arrays on test images ``first .. first + images - 1`` (Not in the paper).

    As :func:`mlpvae.experiments.grid_report.per_image`: the test set read as
    for the first ``total`` images; the bounds' noise from the analysis stream
    for ``first`` = 0, else from the chunk's own
    (:func:`mlpvae.training.streams.chunk_generator`).  ``per`` also holds
    ``mode_distance`` (the mode's distance from mu in prior standard
    deviations), which :func:`summarize` reads.
    """
    t0 = time.perf_counter()
    total = first + images if total is None else total
    if not 0 <= first < first + images <= total:
        raise ValueError(f"images {first}..{first + images - 1} are not among the first {total}")
    run = load_run(run_dir, device=device, test_limit=total, float64=True)
    mc, params, x, xp = run.mc, run.params, run.x_test[first : first + images], run.xp
    mu_tr, _, s2, s2_train = training_priors(run)
    floating = mc.posterior in FLOATING
    mu, var = encode_all(params, x, mc)
    var = xp.broadcast_to(var, mu.shape)
    starts = neighbour_starts(x, run.x_train, mu_tr, neighbours) if neighbours > 0 else None
    found = posterior_mode(params, x, mu, var, mc, s2, baggins_s2=s2_train, starts=starts, climbs=climbs)
    t_mode = time.perf_counter() - t0
    mode = xp.asarray(found["mode"])
    if first == 0:
        rng = generator(run.cfg.seed, STREAM_ANALYSIS, run.epoch, xp)
    else:
        rng = chunk_generator(run.cfg.seed, STREAM_ANALYSIS, run.epoch, first, xp)
    elbo = elbo_per_example(params, x, mc, rng, elbo_k, s2 if floating else None)
    prior = s2 if floating else None
    iwae_q = iwae_log_px(params, x, mc, rng, iwae_k, s2=prior, baggins_s2=s2_train, progress=progress)
    iwae_mode = iwae_log_px(
        params,
        x,
        mc,
        rng,
        iwae_k,
        s2=prior,
        baggins_s2=s2_train,
        progress=progress,
        proposal=laplace_proposal(params, x, mode, var, mc, s2),
    )
    at_mu = laplace_evidence(params, x, mu, var, mc, s2)
    at_mode = laplace_evidence(params, x, mode, var, mc, s2)
    per = {
        "mode": found["mode"],
        "mu": to_numpy(mu),
        "log_joint_at_mode": found["log_joint"],
        "log_joint_at_mu": found["start_log_joint"],
        "iterations": found["iterations"],
        "converged": found["converged"],
        "stalled": found["stalled"],
        "gradient_norm": found["gradient_norm"],
        "start": found["start"],
        "elbo": elbo,
        "iwae_q": iwae_q,
        "iwae_mode": iwae_mode,
        "eq16_at_mean": at_mu["log_evidence"],
        "eq16_at_mode": at_mode["log_evidence"],
        "gap_eq18": at_mu["gap_eq18"],
        "mode_distance": np.linalg.norm((found["mode"] - to_numpy(mu)) / np.sqrt(to_numpy(s2)), axis=1),
    }
    meta = {
        "run": str(run_dir),
        "posterior": mc.posterior,
        "likelihood": mc.likelihood,
        "n": mc.n,
        "scale": run.cfg.scale,
        "iwae_k": iwae_k,
        "elbo_k": elbo_k,
        "neighbours": neighbours,
        "climbs": climbs,
        "mode_seconds": t_mode,
    }
    return meta, per


def summarize(meta: dict, per: dict, seconds: float) -> tuple[dict, dict]:
    """:func:`evaluate_run`'s summary from ``per`` (:func:`per_image`, or its chunks joined in order); also
    ``per`` without ``mode_distance`` (Not in the paper)."""
    per = dict(per)
    distance = per.pop("mode_distance")
    elbo, iwae_q, iwae_mode = per["elbo"], per["iwae_q"], per["iwae_mode"]
    best = np.maximum(iwae_q, iwae_mode)
    d_mode = iwae_mode - iwae_q
    summary = {
        **{k: meta[k] for k in ("run", "posterior", "likelihood", "n", "scale")},
        "images": int(len(elbo)),
        **{k: meta[k] for k in ("iwae_k", "elbo_k", "neighbours", "climbs")},
        "from_a_neighbour": int((per["start"] > 0).sum()),
        "converged": int(per["converged"].sum()),
        "stalled": int(per["stalled"].sum()),
        "iterations_mean": float(per["iterations"].mean()),
        "gradient_norm_max": float(per["gradient_norm"].max()),
        "log_joint_rise": float(np.mean(per["log_joint_at_mode"] - per["log_joint_at_mu"])),
        "mode_distance": float(np.mean(distance)),
        "elbo": float(np.mean(elbo)),
        "iwae_q": float(np.mean(iwae_q)),
        "iwae_mode": float(np.mean(iwae_mode)),
        "iwae_best": float(np.mean(best)),
        "mode_minus_q": float(np.mean(d_mode)),
        "mode_minus_q_median": float(np.median(d_mode)),
        "mode_above_q": int((d_mode > A_NAT).sum()),
        "mode_below_q": int((d_mode < -A_NAT).sum()),
        "gap_q": float(np.mean(iwae_q - elbo)),
        "gap_best": float(np.mean(best - elbo)),
        "gap_eq18": float(np.mean(per["gap_eq18"])),
        "eq16_at_mean_minus_best": float(np.mean(per["eq16_at_mean"] - best)),
        "eq16_at_mode_minus_best": float(np.mean(per["eq16_at_mode"] - best)),
        "eq16_at_mode_minus_best_median": float(np.median(per["eq16_at_mode"] - best)),
        "mode_seconds": meta["mode_seconds"],
        "seconds": seconds,
    }
    return summary, per


def report_md(r: dict) -> str:
    """:func:`evaluate_run`'s summary as a short Markdown report (means over the images, nats per image)."""
    f = signed
    return "\n".join(
        [
            f"# Posterior mode and Laplace proposal: {r['run']}",
            f"{r['likelihood']} likelihood, {r['posterior']} posterior, n = {r['n']}; first {r['images']} test images, "
            f"IWAE k = {r['iwae_k']}",
            f"- mode found (Levenberg-Marquardt from mu and the best {r['climbs']} of "
            f"{r['neighbours']} neighbours' means; "
            f"a neighbour's start won on "
            f"{r['from_a_neighbour']} images): {r['converged']}/{r['images']} converged, {r['stalled']} on a "
            f"kink of the decoder; {r['iterations_mean']:.1f} iterations on average, largest relative |S grad| "
            f"{r['gradient_norm_max']:.2g}; "
            f"log joint raised by {r['log_joint_rise']:.2f} nats, mode {r['mode_distance']:.2f} prior sd from mu",
            f"- IWAE with q(z|x): {r['iwae_q']:.2f}; with the Laplace posterior at the mode: {r['iwae_mode']:.2f} "
            f"(mode minus q {f(r['mode_minus_q'])}, median {f(r['mode_minus_q_median'])}; better by > 1 nat on "
            f"{r['mode_above_q']} images, worse on {r['mode_below_q']})",
            f"- ELBO {r['elbo']:.2f}; gap to the better bound {r['gap_best']:.2f} (to q's IWAE {r['gap_q']:.2f}); "
            f"Eq. (18) {r['gap_eq18']:.2f}",
            f"- Eq. (16) minus the better bound: at mu {f(r['eq16_at_mean_minus_best'])}, at the mode "
            f"{f(r['eq16_at_mode_minus_best'])} (median {f(r['eq16_at_mode_minus_best_median'])})",
            f"- {r['seconds']:.0f} s ({r['mode_seconds']:.0f} s for the modes)",
        ]
    )
