"""``vaetheory analyze``: the paper's central claims measured on a trained model (Secs. 4.1-4.3 on MNIST runs).

For one run directory written by ``vaetheory train`` this computes, on the test
set, in nats per image:

* the ELBO (Eq. (1) / Eq. (2), ``elbo_k`` posterior samples per image) and the
  importance-sampled log p(x) (IWAE, ``iwae_k`` samples; :mod:`mlpvae.evidence.iwae`),
  so the actual gap log p(x) - ELBO;
* the log evidence of Eq. (16) / Eq. (26) at the posterior mean, from the
  trained decoder's Jacobian J = d nu / d z (:mod:`mlpvae.nn.jacobian`), and the gap
  Eq. (18) it predicts for the model's own Sigma;
* the constant-variance penalty Eq. (22), 1/4 tr CV^2[S^-2 + J^T G J];
* the closed-form optimal decoder Eq. (6) built from the trained encoder's
  training-set posteriors, against the network decoder.

The metric G of each likelihood in Eqs. (16), (18), (22) and the prior are
those of :mod:`mlpvae.evidence.laplace`; all arithmetic is float64 (the
trained float32 parameters are cast).  Also the summary over seeds
(:mod:`mlpvae.experiments.analyze_summary`); two diagnostics of trained runs
are in :mod:`mlpvae.experiments.diagnostics`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mlpvae.evidence.decoder import optimal_decoder_comparison
from mlpvae.evidence.iwae import iwae_log_px
from mlpvae.evidence.laplace import (
    GRAM_ELEMENTS,
    baggins_laplace,
    cv2_penalty,
    elbo_per_example,
    laplace_evidence,
    training_priors,
)
from mlpvae.experiments import ais_report, fixed_decoder_report, grid_report, mode_report
from mlpvae.experiments.analysis_report import redraw_evidence, report_md, write_plots
from mlpvae.experiments.analyze_summary import compare_runs, summarize, summary_md, summary_plot
from mlpvae.experiments.evaluate import print_written, run_dir_problem, write_per_image
from mlpvae.nn import jacobian as Jac
from mlpvae.nn.batched import FLOATING, encode_all
from mlpvae.training.checkpoint import write_json
from mlpvae.training.runs import load_run
from mlpvae.training.streams import STREAM_ANALYSIS, generator
from vaetheory.xp import to_numpy


def _summary(a: np.ndarray) -> dict:
    """Mean, standard deviation, standard error of the mean, minimum and maximum of per-image values."""
    a = np.asarray(a, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "std": float(a.std()),
        "sem": float(a.std() / math.sqrt(max(len(a), 1))),
        "min": float(a.min()),
        "max": float(a.max()),
    }


def _summary_defined(a: np.ndarray) -> dict:
    """:func:`_summary` of the finite values, with ``undefined``: how many are NaN (an indefinite precision)."""
    ok = np.isfinite(a)
    return {**(_summary(a[ok]) if ok.any() else {}), "undefined": int((~ok).sum())}


def analyze_run(
    run_dir,
    *,
    iwae_k: int = 5000,
    elbo_k: int = 10,
    opt_k: int = 1,
    test_limit: int | None = None,
    limit: int | None = None,
    cv_limit: int | None = None,
    device: str | None = None,
    plots: bool = True,
    progress: bool = False,
    seed: int = 0,
    fd_check: int = 8,
) -> dict:
    """Measure Secs. 4.1-4.3 on one trained run; write ``analysis.json``, ``analysis.md`` and PNGs (see module doc).

    Parameters
    ----------
    run_dir : a directory written by ``vaetheory train``.
    iwae_k : importance samples per test image (use fewer on a CPU).
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
    stages = tqdm(total=5, desc="analyze: load", unit="step", disable=not progress, leave=False, file=sys.stderr)

    def stage(name: str) -> None:  # one more step done; the next one named on the bar
        stages.update(1)
        stages.set_description(f"analyze: {name}")

    run = load_run(run_dir, device=device, limit=limit, test_limit=test_limit, float64=True)
    xp, mc, params = run.xp, run.mc, run.params
    rng = generator(run.cfg.seed + seed, STREAM_ANALYSIS, run.epoch, xp)
    mu_tr, var_tr, s2, s2_train = training_priors(run)
    mu, var = encode_all(params, run.x_test, mc)
    N = len(run.x_test)
    res: dict = {
        "run": str(run.run_dir),
        "epoch": run.epoch,
        "device": run.device,
        "targets": run.targets,
        "posterior": mc.posterior,
        "likelihood": mc.likelihood,
        "n": mc.n,
        "m": mc.m,
        "scale": run.cfg.scale,
        **({"t": mc.t} if mc.likelihood == "gaussian" else {}),
        **({"tau": mc.tau} if mc.likelihood == "baggins" else {}),
        "test_images": N,
        "train_images": int(len(run.x_train)),
        "dtype": "float64",
        "units": "nats per image, summed over pixels",
        "prior": (
            "N(0, S^2), S^2 from Eq. (4) on the training set" if mc.posterior in FLOATING else "N(0, I) (Eq. (1))"
        ),
        "s2": to_numpy(s2).tolist(),
        "metric": {
            "bernoulli": "Fisher information of the logits, G = diag(p (1 - p)): J^T G J",
            "gaussian": "G = T^-1 = I / t (Eq. (26))",
            "gaussian-learned": "G = T(mu)^-1, the learned variance at the mean, held fixed",
            "baggins": "G = T^-1, T from Eq. (29) at z = mu with S^2 from the training set (held fixed); the "
            "'own Hessian' rows use the curvature of log p(x|z) with T following the residual, as the ELBO and "
            "the IWAE evaluate it",
        }[mc.likelihood],
    }

    # Jacobian check: forward mode against central differences on a few test means
    if fd_check:
        zc = mu[:fd_check]
        _, Jf = Jac.decoder_jacobian(params, zc, mc)
        fd = Jac.finite_difference_jacobian(params, zc, mc, 1e-6)
        res["jacobian_fd_max_rel_error"] = float(to_numpy(xp.abs(Jf - fd).max() / (xp.abs(Jf).max() + 1e-300)))

    stage(f"ELBO (k={elbo_k})")
    t = time.perf_counter()
    prior = s2 if mc.posterior in FLOATING else None
    elbo = elbo_per_example(params, run.x_test, mc, rng, elbo_k, prior)
    res["elbo"] = _summary(elbo)
    res["elbo_samples"] = elbo_k
    res["elbo_seconds"] = time.perf_counter() - t
    stage(f"IWAE (k={iwae_k})")
    t = time.perf_counter()
    lp = iwae_log_px(params, run.x_test, mc, rng, iwae_k, s2=prior, baggins_s2=s2_train, progress=progress)
    res["iwae_log_px"] = _summary(lp)
    res["iwae_k"] = iwae_k
    res["iwae_seconds"] = time.perf_counter() - t
    res["gap_iwae_minus_elbo"] = _summary(lp - elbo)

    stage("Eqs. (16), (18), (22)")
    t = time.perf_counter()
    keep = cv_limit if cv_limit is not None else min(N, max(1, GRAM_ELEMENTS // (mc.n * mc.n)))
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
    if mc.likelihood == "baggins":  # the curvature of the log p(x|z) the ELBO and IWAE evaluate (docs/ais.md)
        own = baggins_laplace(params, run.x_test, mu, mu, var, mc, s2, s2_train)
        res["log_evidence_eq16_own_hessian"] = _summary_defined(own["log_evidence"])
        res["eq16_minus_iwae_own_hessian"] = _summary_defined(own["log_evidence"] - lp)
        res["gap_eq18_own_hessian"] = _summary_defined(own["gap_eq18"])
    res["evidence_seconds"] = time.perf_counter() - t

    stage("Eq. (6) decoder")
    t = time.perf_counter()
    opt = optimal_decoder_comparison(params, mc, run.x_train, mu_tr, var_tr, run.x_test, mu, var, s2, rng, opt_k)
    per_image_d = opt.pop("per_image_sq_difference")
    res["optimal_decoder_eq6"] = opt
    res["optimal_decoder_seconds"] = time.perf_counter() - t
    res["seconds"] = time.perf_counter() - t_start
    stages.update(1)
    stages.close()
    if plots:
        res["plots"] = [
            str(p) for p in write_plots(run, res, lp, elbo, lap, cv["terms"], per_image_d, mu, var, mu_tr, var_tr)
        ]
    write_json(run.run_dir / "analysis.json", res)
    (run.run_dir / "analysis.md").write_text(report_md(res))
    np.savez(
        run.run_dir / "analysis_per_image.npz",
        elbo=elbo,
        iwae_log_px=lp,
        log_evidence_eq16=lap["log_evidence"],
        gap_eq18=lap["gap_eq18"],
        cv2_terms=cv["terms"],
        optimal_decoder_sq_difference=per_image_d,
    )
    return res


def add_arguments(parser) -> None:
    """The options of ``vaetheory analyze``: the run, sample counts, image limits, and the other analyses it runs."""
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        nargs="+",
        help="directories written by `vaetheory train` (with --summarize: a folder holding analysed runs)",
    )
    parser.add_argument(
        "--summarize",
        action="store_true",
        help="summarise every analysed run under RUN_DIR over seeds (writes RUN_DIR/summary.md/json/png)",
    )
    parser.add_argument("--iwae-k", type=int, default=5000, help="importance samples per test image (5000)")
    parser.add_argument("--elbo-k", type=int, default=10, help="posterior samples per test image for the ELBO (10)")
    parser.add_argument("--opt-k", type=int, default=1, help="samples per image for the Eq. (6) decoder's ELBO (1)")
    parser.add_argument("--test-limit", type=int, default=None, help="use only the first test images")
    parser.add_argument("--limit", type=int, default=None, help="use only the first training images (Eq. (6), S^2)")
    parser.add_argument(
        "--cv-limit", type=int, default=None, help="test images for Eq. (22) (default: all, up to 2^25 / n^2)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default=None, help="default: the run's device")
    parser.add_argument("--no-plots", action="store_true", help="do not write the PNG figures (default: write them)")
    parser.add_argument(
        "--plots-only",
        action="store_true",
        help="instead: redraw analysis_evidence.png from RUN_DIR's analysis.json and analysis_per_image.npz "
        "(no model or data needed)",
    )
    parser.add_argument(
        "--versus",
        metavar="LEARNED_RUN_DIR",
        default=None,
        help="a learned-variance run (already analysed) to compare this constant-variance run with "
        "(Eq. (22) predicted vs measured); writes RUN_DIR/comparison.json",
    )
    parser.add_argument(
        "--grid-images",
        type=int,
        default=None,
        metavar="N",
        help="instead: the exact log p(x) of an n <= 2 run by grid quadrature on the first N test "
        "images, against IWAE and Eqs. (16), (18) (mlpvae/experiments/grid_report.py); writes "
        "RUN_DIR/grid_evidence.json and grid_evidence_per_image.npz",
    )
    parser.add_argument(
        "--mode-images",
        type=int,
        default=None,
        metavar="N",
        help="instead: the posterior mode of each of the first N test images (any n), the IWAE bound "
        "with the Laplace posterior there as proposal against q's, and Eq. (16) at the mode "
        "(mlpvae/experiments/mode_report.py); writes RUN_DIR/mode_evidence.json and mode_evidence_per_image.npz",
    )
    ais_report.add_arguments(parser)
    fixed_decoder_report.add_arguments(parser)
    fixed_decoder_report.add_draws_argument(parser)
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=(
            "progress bars on stderr for the long steps: ELBO, IWAE, Eq. (16), Eq. (6); grid quadrature, AIS, "
            "the fixed-decoder fits (default: on)"
        ),
    )


def _per_image_run(args, option: str, images: int, module, name: str) -> int:
    """``--grid-images`` / ``--mode-images``: ``module.evaluate_run`` on the first images, its JSON, npz and report."""
    try:
        if images < 1:
            raise ValueError(f"{option} must be >= 1, got {images}")
        summary, per = module.evaluate_run(
            args.run_dir, images, iwae_k=args.iwae_k, elbo_k=args.elbo_k, device=args.device, progress=args.progress
        )
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"vaetheory analyze: {exc}", file=sys.stderr)
        return 2
    written = write_per_image(args.run_dir, name, summary, per)
    print(module.report_md(summary))
    print_written(written)
    return 0


def run(args) -> int:
    """``vaetheory analyze``: analyse a run (or summarise, or a per-image report), print, write; the exit status."""
    if args.summarize:
        try:
            summary = summarize(args.run_dir)
        except FileNotFoundError as exc:
            print(f"vaetheory analyze: {exc}", file=sys.stderr)
            return 2
        out = Path(args.run_dir)
        write_json(out / "summary.json", summary)
        text = summary_md(summary)
        (out / "summary.md").write_text(text + "\n")
        print(text)
        plot = [] if args.no_plots else [summary_plot(summary, out / "summary.png")]
        print_written([out / "summary.json", out / "summary.md", *plot])
        return 0
    if args.plots_only:
        problem = run_dir_problem(args.run_dir, checkpoint=False, analysed=True)
        try:
            if problem:
                raise FileNotFoundError(problem)
            print_written([redraw_evidence(args.run_dir)])
        except (FileNotFoundError, KeyError, ValueError) as exc:
            print(f"vaetheory analyze: {exc}", file=sys.stderr)
            return 2
        return 0
    versus = args.versus and run_dir_problem(args.versus, checkpoint=False, analysed=True)
    problem = run_dir_problem(args.run_dir) or versus
    if problem:
        print(f"vaetheory analyze: {problem}", file=sys.stderr)
        return 2
    if args.grid_images is not None:
        return _per_image_run(args, "--grid-images", args.grid_images, grid_report, "grid_evidence")
    if args.mode_images is not None:
        return _per_image_run(args, "--mode-images", args.mode_images, mode_report, "mode_evidence")
    if args.ais:
        return ais_report.run(args)
    if args.fixed_decoder_images is not None:
        return fixed_decoder_report.run(args)
    try:
        res = analyze_run(
            args.run_dir,
            iwae_k=args.iwae_k,
            elbo_k=args.elbo_k,
            opt_k=args.opt_k,
            test_limit=args.test_limit,
            limit=args.limit,
            cv_limit=args.cv_limit,
            device=args.device,
            plots=not args.no_plots,
            progress=args.progress,
        )
        cmp = compare_runs(args.run_dir, args.versus) if args.versus else None
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"vaetheory analyze: {exc}", file=sys.stderr)
        return 2
    out = Path(args.run_dir)
    print(report_md(res))
    written = [out / "analysis.json", out / "analysis.md", out / "analysis_per_image.npz", *res.get("plots", [])]
    if cmp is not None:
        write_json(out / "comparison.json", cmp)
        written.append(out / "comparison.json")
        for k, v in cmp.items():
            print(f"{k:45s} {v:.4f}" if isinstance(v, float) else f"{k:45s} {v}")
    print_written(written)
    return 0
