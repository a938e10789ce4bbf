"""The report of one ``vaetheory analyze`` run: its Markdown summary and its figures (Secs. 4.1-4.3).

:func:`report_md` writes ``analysis.md`` from ``analysis.json``'s numbers;
:func:`write_plots` draws ``analysis_evidence.png`` (Eqs. (16), (18), (22) per
test image) and ``analysis_optimal_decoder.png`` (the network decoder against
Eq. (6) at the posterior means); :func:`redraw_evidence` redraws the first
from the recorded per-image arrays alone.  The numbers themselves are
computed by :mod:`mlpvae.experiments.analyze`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from mlpvae.experiments.plots import analysis_evidence, image_grid
from mlpvae.nn import model as M
from mlpvae.nn.layers import sigmoid
from mlpvae.training.runs import Run
from vaetheory import optimal as OPT
from vaetheory.xp import to_numpy


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
    for key, label in (
        ("elbo", f"ELBO ({res['elbo_samples']} samples)"),
        ("iwae_log_px", f"log p(x), IWAE k={res['iwae_k']}"),
        ("gap_iwae_minus_elbo", "gap log p(x) - ELBO (IWAE)"),
        ("log_evidence_eq16", "log evidence Eq. (16) at mu"),
        ("eq16_minus_iwae", "Eq. (16) - IWAE"),
        ("gap_eq18", "gap Eq. (18), own Sigma"),
    ):
        L.append(f"| {label} | {res[key]['mean']:.3f} | {res[key]['sem']:.3f} |")
    for key in ("log_evidence_eq16", "eq16_minus_iwae", "gap_eq18"):  # BAGGINS: under its own Hessian too
        if "mean" in (r := res.get(f"{key}_own_hessian", {})):
            L.append(f"| {key}, BAGGINS' own Hessian ({r['undefined']} undefined) | {r['mean']:.3f} | {r['sem']:.3f} |")
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


def redraw_evidence(run_dir) -> Path:
    """Redraw ``analysis_evidence.png`` from a finished analysis's ``analysis.json`` and per-image arrays (Sec. 4).

    No model or data is read: the figure is drawn from ``analysis_per_image.npz``
    exactly as :func:`analyze_run` drew it (the IWAE log p(x), Eq. (16), the
    two gaps and the Eq. (22) terms), so that a change of style can be applied
    to recorded analyses.  ``analysis_optimal_decoder.png`` needs the model and
    the training set and is redrawn only by a full analysis.
    """
    d = Path(run_dir)
    if not (d / "analysis_per_image.npz").is_file():
        raise FileNotFoundError(f"{d} has no analysis_per_image.npz: analyze it with `vaetheory analyze {d}`")
    res = json.loads((d / "analysis.json").read_text())
    with np.load(d / "analysis_per_image.npz") as z:
        lp, elbo = z["iwae_log_px"], z["elbo"]
        return analysis_evidence(
            lp, z["log_evidence_eq16"], lp - elbo, z["gap_eq18"], z["cv2_terms"], res, d / "analysis_evidence.png"
        )


def write_plots(run: Run, res, lp, elbo, lap, cv_terms, per_image_d, mu, var, mu_tr, var_tr) -> list[Path]:
    """The analysis figures as PNG in the run directory (Not in the paper: our measurements)."""
    out = [
        analysis_evidence(
            lp, lap["log_evidence"], lp - elbo, lap["gap_eq18"], cv_terms, res, run.run_dir / "analysis_evidence.png"
        )
    ]
    if math.isqrt(run.mc.m) ** 2 == run.mc.m:
        sel = slice(0, 10)
        dec = M.decode(run.params, mu[sel], run.mc)
        net = sigmoid(dec["logits"]) if "logits" in dec else dec["mean"]
        opt = OPT.optimal_decoder(mu[sel], mu_tr, var_tr, run.x_train)
        scale = run.cfg.scale
        rows = np.concatenate([to_numpy(run.x_test[sel]) / scale, to_numpy(net) / scale, to_numpy(opt) / scale])
        out.append(
            image_grid(
                rows,
                run.run_dir / "analysis_optimal_decoder.png",
                3,
                10,
                "test images / network decoder at mu / Eq. (6) at mu",
                size=(8.0, 3.0),
            )
        )
    return out
