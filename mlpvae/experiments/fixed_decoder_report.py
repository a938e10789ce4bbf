"""``vaetheory analyze RUN --fixed-decoder-images N``: the gaps of one trained n <= 2 decoder, separated.

Not in the paper: on a fixed decoder the paper's two predictions are about the
same decoder, so they are measured on it (:mod:`mlpvae.evidence.fixed_decoder`):

* the amortization gap: each image's best diagonal Gaussian minus the encoder's posterior;
* the rest of the gap: the exact log p(x) (:mod:`mlpvae.evidence.grid`) minus the
  best diagonal and the best full Gaussian, against Eq. (18) at the diagonal optimum;
* the cost of a constant variance: the best diagonal minus the best shared
  diagonal Sigma, against Eq. (22) for this decoder (at the shared optimum's means).

Every ELBO here, the encoder's included, is the same Gauss-Hermite expectation.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from mlpvae.evidence.fixed_decoder import gaussian_elbo, optimise_posteriors
from mlpvae.evidence.grid import grid_log_px
from mlpvae.evidence.laplace import cv2_penalty, laplace_evidence, training_priors
from mlpvae.experiments.evaluate import print_written, write_per_image
from mlpvae.experiments.report import signed
from mlpvae.nn.batched import encode_all
from mlpvae.training.runs import load_run
from vaetheory.xp import to_numpy


def evaluate_run(run_dir, images: int = 100, *, order: int = 10, device: str | None = None, progress: bool = False):
    """The gaps of the run's decoder on its first ``images`` test images (see the module docstring; Not in the paper).

    Returns ``(summary, per_image)``: means over the images (nats per image) and host arrays.
    """
    t0 = time.perf_counter()
    run = load_run(run_dir, device=device, test_limit=images, float64=True)
    mc, params, x, xp = run.mc, run.params, run.x_test, run.xp
    if mc.n > 2:
        raise ValueError(
            f"{run_dir}: the fixed-decoder study needs n <= 2 (a Gauss-Hermite ELBO), this run has n = {mc.n}"
        )
    _, _, s2, s2_train = training_priors(run)
    mu, var = encode_all(params, x, mc)
    var = xp.broadcast_to(var, mu.shape)
    mu_h, var_h = to_numpy(mu), to_numpy(var)
    kw = dict(order=order, baggins_s2=s2_train, mu=mu, var=var)
    L_enc = np.sqrt(var_h)[:, :, None] * np.eye(mc.n)
    enc, _, _ = gaussian_elbo(params, x, mc, s2, mu_h, L_enc, **kw)
    fam = {f: optimise_posteriors(params, x, mc, s2, f, mu_h, var_h, **kw) for f in ("diagonal", "constant", "full")}
    exact = grid_log_px(params, x, mc, s2, baggins_s2=s2_train, progress=progress)["log_px"]
    d = fam["diagonal"]
    var_d = np.diagonal(d["cov"], axis1=1, axis2=2)
    eq18 = laplace_evidence(params, x, xp.asarray(d["m"]), xp.asarray(var_d), mc, s2)["gap_eq18"]
    c = fam["constant"]
    lap_c = laplace_evidence(
        params, x, xp.asarray(c["m"]), xp.asarray(np.diagonal(c["cov"], axis1=1, axis2=2)), mc, s2, keep=len(exact)
    )
    eq22 = cv2_penalty(lap_c["grams"], s2)
    per = {"log_px": exact, "elbo_encoder": enc, "eq18_at_diagonal": eq18, "eq22_terms": eq22["terms"]}
    per.update({f"elbo_{f}": r["elbo"] for f, r in fam.items()})
    per["mean_diagonal"], per["var_diagonal"] = d["m"], var_d
    mean = lambda a: float(np.mean(a))  # noqa: E731
    summary = {
        "run": str(run_dir),
        "posterior": mc.posterior,
        "likelihood": mc.likelihood,
        "images": int(len(exact)),
        "order": order,
        "log_px": mean(exact),
        "elbo_encoder": mean(enc),
        **{f"elbo_{f}": mean(r["elbo"]) for f, r in fam.items()},
        **{f"converged_{f}": r["converged"] for f, r in fam.items()},
        **{f"gradient_max_{f}": r["gradient_max"] for f, r in fam.items()},
        "amortization_gap": mean(d["elbo"] - enc),
        "gap_after_diagonal": mean(exact - d["elbo"]),
        "eq18_at_diagonal": mean(eq18),
        "gap_after_full": mean(exact - fam["full"]["elbo"]),
        "constant_cost": mean(d["elbo"] - c["elbo"]),
        "eq22": eq22["cv2_penalty"],
        "shared_var": np.diagonal(c["cov"][0]).tolist(),
        "seconds": time.perf_counter() - t0,
    }
    return summary, per


def report_md(r: dict) -> str:
    """:func:`evaluate_run`'s summary as a short Markdown report (means over the images, nats per image)."""
    f = signed
    return "\n".join(
        [
            f"# The gaps on one decoder: {r['run']}",
            f"{r['likelihood']} likelihood, {r['posterior']} posterior; first {r['images']} test images; "
            f"Gauss-Hermite order {r['order']}; float64",
            f"- exact log p(x) {r['log_px']:.3f}; ELBO: encoder {r['elbo_encoder']:.3f}, best diagonal "
            f"{r['elbo_diagonal']:.3f}, best shared Sigma {r['elbo_constant']:.3f}, best full {r['elbo_full']:.3f}",
            f"- amortization gap (best diagonal minus the encoder): {f(r['amortization_gap'])}",
            f"- log p(x) minus the best diagonal: {f(r['gap_after_diagonal'])}, Eq. (18) there predicts "
            f"{f(r['eq18_at_diagonal'])}; minus the best full Gaussian {f(r['gap_after_full'])}",
            f"- the cost of a constant Sigma on this decoder: {f(r['constant_cost'])}; Eq. (22) predicts "
            f"{f(r['eq22'])}",
        ]
    )


def add_arguments(parser) -> None:
    """The ``--fixed-decoder-images`` option of ``vaetheory analyze``."""
    parser.add_argument(
        "--fixed-decoder-images",
        type=int,
        default=None,
        metavar="N",
        help="instead: the gaps of an n <= 2 run's fixed decoder on the first N test images: per-image optimal "
        "Gaussian posteriors (diagonal, shared Sigma, full) against the encoder, the exact log p(x), Eqs. (18) "
        "and (22) (mlpvae/experiments/fixed_decoder_report.py); writes RUN_DIR/fixed_decoder.json and "
        "fixed_decoder_per_image.npz",
    )


def run(args) -> int:
    """``vaetheory analyze RUN --fixed-decoder-images N``: evaluate, print, write; the exit status."""
    try:
        if args.fixed_decoder_images < 1:
            raise ValueError(f"--fixed-decoder-images must be >= 1, got {args.fixed_decoder_images}")
        summary, per = evaluate_run(args.run_dir, args.fixed_decoder_images, device=args.device, progress=args.progress)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"vaetheory analyze: {exc}", file=sys.stderr)
        return 2
    written = write_per_image(args.run_dir, "fixed_decoder", summary, per)
    print(report_md(summary))
    print_written(written)
    return 0
