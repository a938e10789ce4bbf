"""``vaetheory analyze RUN --fixed-decoder-images N``: the gaps of one trained n <= 2 decoder, separated.

Not in the paper: on a fixed decoder the paper's two predictions are about the
same decoder, so they are measured on it (:func:`mlpvae.evidence.fixed_decoder.fit_posteriors`,
each image's optimum converged to a stated gradient on a fixed grid of nodes):

* the amortization gap: each image's best diagonal Gaussian minus the encoder's posterior;
* the rest of the gap: the exact log p(x) (:mod:`mlpvae.evidence.grid`) minus the
  best diagonal and the best full Gaussian, against Eq. (18) at the diagonal optimum;
* the cost of a constant variance: the best diagonal minus the best shared
  diagonal Sigma, against Eq. (22) for this decoder (at the shared optimum's means).

Every summary is a mean over the images with a paired bootstrap 95% interval
(:func:`mlpvae.experiments.intervals.paired_bootstrap`).  The quadrature's
resolution is checked by re-finding every optimum on every other node.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from mlpvae.evidence.fixed_decoder import fit_posteriors, frame_nodes, gaussian_elbo, grid_gaussian_elbo
from mlpvae.evidence.grid import grid_log_px, log_joint
from mlpvae.evidence.laplace import gaps_at_optima, training_priors
from mlpvae.experiments import fixed_decoder_saa_report as saa
from mlpvae.experiments.evaluate import print_written, write_per_image
from mlpvae.experiments.fixed_decoder_medians import eq22_medians, medians_line
from mlpvae.experiments.intervals import paired_bootstrap
from mlpvae.experiments.report import comparison_text
from mlpvae.nn.batched import encode_all
from mlpvae.nn.likelihoods import LOG_2PI
from mlpvae.training.runs import git_sha, load_run, read_config
from vaetheory.xp import array_namespace, to_numpy

TOL = 1e-9  # the stopping test: the ELBO gain a further Newton step predicts, per image (nats)
# log p(x) minus the best full Gaussian beyond this (nats) names the image in the report: its posterior is one no
# Gaussian fits (separate modes), or the optimum, certified as local, sits in a lesser basin
FAR_FROM_LOG_PX = 1.0

# The quoted comparisons: name -> (a, b, what a - b is), per-image arrays of the result.
COMPARISONS = {
    "amortization_gap": ("elbo_diagonal", "elbo_encoder", "best diagonal minus the encoder's posterior"),
    "gap_after_diagonal": ("log_px", "elbo_diagonal", "log p(x) minus the best diagonal"),
    "gap_after_full": ("log_px", "elbo_full", "log p(x) minus the best full Gaussian"),
    "full_over_diagonal": ("elbo_full", "elbo_diagonal", "best full minus best diagonal"),
    "constant_cost": ("elbo_diagonal", "elbo_constant", "best diagonal minus best shared Sigma"),
}


def image_loglik(params, x, mu, var, mc, s2, baggins_s2):
    """log p(x_i|z) of Eqs. (1), (26), (29) at host nodes ``z (K, n)`` (host (K,)): the log joint of
    :mod:`mlpvae.evidence.grid` minus the prior N(z; 0, S^2)."""
    xp = array_namespace(x)
    s2h = to_numpy(s2)

    def f(i, z):
        lj = to_numpy(log_joint(params, x[i], xp.asarray(z), mu[i], var[i], mc, s2, baggins_s2))
        return lj + 0.5 * np.sum(z * z / s2h + np.log(s2h) + LOG_2PI, axis=-1)

    return f


def _interval(a, b, rng) -> dict:
    return paired_bootstrap(a, b, rng)


def _diag_cov(v):
    """Diagonal covariance matrices ``(N, n, n)`` from variances ``(N, n)``."""
    return v[:, :, None] * np.eye(v.shape[1])


def diagonal_starts(mu, var, grid: dict) -> list:
    """The diagonal family's starts ``[(m, cov)]`` (Not in the paper): the encoder's q; the grid's mode with
    the encoder's variance; the grid's mode with its node spacing as standard deviation; and, where some
    image's posterior has separate modes, the best node of its heaviest one with that spacing.

    The narrow start is the one that finds a sharp main mode: from a start as broad as the encoder's q
    the climb follows the posterior's mass on that scale and can settle in a lesser basin beside it.  The
    last finds the mode that holds most of the mass when a sharper one, holding little, is higher.
    """
    spacing = np.asarray(grid["spacing"])
    starts = [(mu, _diag_cov(var)), (grid["mode"], _diag_cov(var)), (grid["mode"], _diag_cov(spacing**2))]
    heaviest = np.asarray(grid.get("mass_mode", grid["mode"]))
    if np.any(heaviest != np.asarray(grid["mode"])):
        starts.append((heaviest, _diag_cov(spacing**2)))
    return starts


def evaluate_run(
    run_dir,
    images: int = 100,
    *,
    points: int = 129,
    tol: float = TOL,
    device: str | None = None,
    progress: bool = False,
    seed: int = 0,
):
    """The gaps of the run's decoder on its first ``images`` test images (see the module docstring; Not in the paper).

    Returns ``(summary, per_image)``: means over the images (nats per image) with paired bootstrap
    95% intervals, the optimiser's certificates, and host arrays per image.
    """
    sha = git_sha()  # of the code that computes, taken before it runs
    t0 = time.perf_counter()
    run = load_run(run_dir, device=device, test_limit=images, float64=True)
    mc, params, x, xp = run.mc, run.params, run.x_test, run.xp
    if mc.n > 2:
        raise ValueError(
            f"{run_dir}: this study needs n <= 2 (a grid expectation), this run has n = {mc.n}; "
            "mlpvae.experiments.fixed_decoder_saa_report is the one for n > 2"
        )
    _, _, s2, s2_train = training_priors(run)
    mu, var = encode_all(params, x, mc)
    var = xp.broadcast_to(var, mu.shape)
    mu_h, var_h = to_numpy(mu), to_numpy(var)
    N, n = mu_h.shape
    s2_h = to_numpy(s2).astype(np.float64)
    loglik = image_loglik(params, x, mu, var, mc, s2, s2_train)
    grid = grid_log_px(params, x, mc, s2, baggins_s2=s2_train, progress=progress)
    exact = grid["log_px"]
    # the encoder's posteriors on a frame of their own
    L_enc = np.sqrt(var_h)[:, :, None] * np.eye(n)
    z, logw = frame_nodes(mu_h, L_enc, points, 10.0)
    f_enc = np.stack([loglik(i, z[i]) for i in range(N)])
    enc = grid_gaussian_elbo(f_enc, z, logw, s2_h, mu_h, L_enc)[0]
    kw = dict(points=points, tol=tol, progress=progress)
    fam = {}
    fam["diagonal"] = fit_posteriors(loglik, s2_h, "diagonal", diagonal_starts(mu_h, var_h, grid), **kw)
    d = fam["diagonal"]
    fam["full"] = fit_posteriors(loglik, s2_h, "full", [(d["m"], d["cov"])], **kw)
    fam["constant"] = fit_posteriors(loglik, s2_h, "constant", [(d["m"], d["cov"]), (mu_h, _diag_cov(var_h))], **kw)
    c = fam["constant"]
    var_d = np.diagonal(d["cov"], axis1=1, axis2=2)
    var_c = np.diagonal(c["cov"], axis1=1, axis2=2)
    gaps = gaps_at_optima(params, x, mc, s2, s2_train, mu, var, (d["m"], var_d), (c["m"], var_c))
    eq18, eq18_c, eq22 = gaps["eq18_at_diagonal"], gaps["eq18_at_constant"], gaps["eq22"]
    ok = np.isfinite(eq18) & np.isfinite(eq18_c)  # BAGGINS' precision may be indefinite: Eq. (18) has no value
    per = {
        "log_px": exact,
        "log_px_err": grid["err"],
        "elbo_encoder": enc,
        "eq18_at_diagonal": eq18,
        "eq18_at_constant": eq18_c,
        "eq22_terms": eq22["terms"],
        "mean_diagonal": d["m"],
        "var_diagonal": var_d,
        "mean_constant": c["m"],
        "cov_full": fam["full"]["cov"],
    }
    for f, r in fam.items():
        for k in ("elbo", "elbo_halved", "gain", "gain_joint", "gradient", "frames", "mass", "start"):
            per[f"{k}_{f}" if k != "elbo" else f"elbo_{f}"] = r[k]
    for f in ("diagonal", "full"):  # an independent quadrature at the optimum: Gauss-Hermite of order 20
        L = np.linalg.cholesky(fam[f]["cov"])
        per[f"elbo_gh20_{f}"] = gaussian_elbo(params, x, mc, s2, fam[f]["m"], L, 20, s2_train, mu, var)[0]
    rng = np.random.default_rng(seed)
    halved = {k: per.get(f"elbo_halved_{k[5:]}", per[k]) if k.startswith("elbo_") else per[k] for k in per}
    comparisons = {}
    for name, (a, b, what) in COMPARISONS.items():
        ci = _interval(per[a], per[b], rng)
        ci["what"] = what
        # the same mean with every optimum re-found on every other node: the quadrature's share of it
        ci["halved_change"] = float(np.mean(halved[a] - halved[b]) - ci["mean"])
        comparisons[name] = ci
    zero = np.zeros(N)
    if ok.any():
        comparisons["eq18_at_diagonal"] = dict(
            _interval(eq18[ok], zero[ok], rng), what="Eq. (18) at the diagonal optimum"
        )
        comparisons["gap_after_diagonal_minus_eq18"] = dict(
            _interval((exact - d["elbo"])[ok], eq18[ok], rng),
            what="log p(x) minus the best diagonal, minus Eq. (18) there",
        )
    comparisons["eq22"] = dict(_interval(eq22["terms"], zero, rng), what="Eq. (22) (per-image terms)")
    comparisons["constant_cost_minus_eq22"] = dict(
        _interval(d["elbo"] - c["elbo"], eq22["terms"], rng), what="the cost of a shared Sigma minus Eq. (22)"
    )
    if ok.any():
        comparisons["eq18_constant_minus_diagonal"] = dict(
            _interval(eq18_c[ok], eq18[ok], rng),
            what="Eq. (18) at the shared optimum minus at the diagonal one (Laplace's reading of the cost)",
        )
    mean = lambda a: float(np.mean(a))  # noqa: E731
    summary = {
        "run": str(run_dir),
        "git_sha": sha,
        "posterior": mc.posterior,
        "likelihood": mc.likelihood,
        "images": int(N),
        "points": points,
        "tol": tol,
        "interval": "paired bootstrap over the images, 10,000 resamples, 95% percentile",
        "log_px": mean(exact),
        "log_px_err_max": float(np.max(grid["err"])),
        "elbo_encoder": mean(enc),
        **{f"elbo_{f}": mean(r["elbo"]) for f, r in fam.items()},
        **{f"converged_{f}": int(np.sum(r["converged"])) for f, r in fam.items()},
        **{f"gradient_max_{f}": float(np.max(r["gradient"])) for f, r in fam.items()},
        **{f"gain_max_{f}": float(max(np.max(r["gain"]), np.max(r["gain_joint"]))) for f, r in fam.items()},
        "gradient_shared_constant": np.abs(c["gradient_shared"]).tolist(),
        **{f"halved_change_max_{f}": float(np.max(np.abs(r["elbo"] - r["elbo_halved"]))) for f, r in fam.items()},
        **{f"mass_error_max_{f}": float(np.max(np.abs(r["mass"] - 1))) for f, r in fam.items()},
        "full_above_log_px_max": float(np.max(fam["full"]["elbo"] - exact)),
        "far_from_log_px": far_from_log_px(exact, fam["full"]["elbo"]),
        **{
            f"gh20_minus_grid_max_{f}": float(np.max(np.abs(per[f"elbo_gh20_{f}"] - fam[f]["elbo"])))
            for f in ("diagonal", "full")
        },
        "comparisons": comparisons,
        "eq22": eq22["cv2_penalty"],
        "curvature": gaps["curvature"],
        "eq18_defined_images": int(ok.sum()),
        "eq22_indefinite_images": eq22["indefinite"],
        "shared_var": var_c[0].tolist(),
        "medians": eq22_medians(per, seed),
        "seconds": time.perf_counter() - t0,
    }
    return summary, per


def far_from_log_px(log_px, elbo_full, far: float = FAR_FROM_LOG_PX) -> list:
    """``[[image, log p(x) - best full ELBO], ...]`` where that exceeds ``far`` nats, largest first (Not in the
    paper)."""
    gap = np.asarray(log_px) - np.asarray(elbo_full)
    return [[int(i), float(gap[i])] for i in np.argsort(-gap) if gap[i] > far]


def report_md(r: dict) -> str:
    """:func:`evaluate_run`'s summary as Markdown: means over the images with their intervals (nats per image)."""
    f = "{:+.3f}".format
    c = r["comparisons"]

    def ci(name):
        return comparison_text(c, name)

    defined = r.get("eq18_defined_images", r["images"])
    lines = [
        f"# The gaps on one decoder: {r['run']}",
        "",
        f"{r['likelihood']} likelihood, {r['posterior']} posterior; first {r['images']} test images; float64; "
        f"expectations on a fixed {r['points']}-node-per-axis frame per image; intervals: {r['interval']}.",
        "",
        f"- exact log p(x) {r['log_px']:.3f} (grid, largest error estimate {r['log_px_err_max']:.3f}); ELBO: "
        f"encoder {r['elbo_encoder']:.3f}, best diagonal {r['elbo_diagonal']:.3f}, best shared Sigma "
        f"{r['elbo_constant']:.3f}, best full {r['elbo_full']:.3f}",
        f"- amortization gap (best diagonal minus the encoder): {ci('amortization_gap')}",
        f"- log p(x) minus the best diagonal: {ci('gap_after_diagonal')}; Eq. (18) there predicts "
        f"{ci('eq18_at_diagonal')}; measured minus predicted {ci('gap_after_diagonal_minus_eq18')}"
        + (f" (over the {defined} images where the precision is positive definite)" if defined < r["images"] else ""),
        f"- log p(x) minus the best full Gaussian: {ci('gap_after_full')} (best full minus best diagonal "
        f"{ci('full_over_diagonal')})",
        f"- the cost of a shared Sigma on this decoder: {ci('constant_cost')}; Eq. (22) predicts {ci('eq22')}; "
        f"measured minus predicted {ci('constant_cost_minus_eq22')}; Eq. (18) at the shared optimum minus at the "
        f"diagonal one {ci('eq18_constant_minus_diagonal')}"
        + (
            f" ({r['eq22_indefinite_images']} images with an indefinite precision)"
            if r.get("eq22_indefinite_images")
            else ""
        ),
        *medians_line(r),
        f"- curvature in Eqs. (18) and (22): {r.get('curvature', 'the likelihood metric J^T G J')}",
        "",
        "Certificate of the optimum (per image: the ELBO gain a further Newton step predicts, at a strict local "
        "maximum; the Euclidean norm of the ELBO's gradient in the image's own parameters; the change of its "
        "optimum when re-found on every other node):",
        "",
        "| family | converged | largest predicted gain | largest gradient | largest change on every other node |",
        "|---|---|---|---|---|",
    ]
    for fam in ("diagonal", "constant", "full"):
        lines.append(
            f"| {fam} | {r['converged_' + fam]} of {r['images']} | {r['gain_max_' + fam]:.1e} | "
            f"{r['gradient_max_' + fam]:.1e} | "
            f"{r['halved_change_max_' + fam]:.1e} |"
        )
    lines += [
        "",
        f"Stopping test: predicted Newton gain <= {r['tol']:g} nats; the shared log standard deviations' "
        f"gradient of the "
        f"summed ELBO {', '.join(f'{g:.1e}' for g in r['gradient_shared_constant'])}. Largest best-full ELBO "
        f"above the exact log p(x): {r['full_above_log_px_max']:+.4f}. Largest |Gauss-Hermite (order 20) minus "
        f"grid ELBO| at the optimum: diagonal {r['gh20_minus_grid_max_diagonal']:.4f}, full "
        f"{r['gh20_minus_grid_max_full']:.4f}. Each quoted mean's change when every "
        "optimum is re-found on every other node: "
        + ", ".join(f"{k} {f(v['halved_change'])}" for k, v in c.items() if "halved_change" in v)
        + f". {r['seconds']:.0f} s.",
    ]
    far = r.get("far_from_log_px")
    if far is not None:
        names = ", ".join(f"{i} ({g:.2f})" for i, g in far) or "none"
        lines += [
            "",
            f"Images whose best full Gaussian is more than {FAR_FROM_LOG_PX:g} nat below log p(x) (separate modes "
            f"no Gaussian fits, or an optimum in a lesser basin: worth a look): {names}.",
        ]
    return "\n".join(lines) + "\n"


def add_arguments(parser) -> None:
    """The ``--fixed-decoder-images`` option of ``vaetheory analyze``."""
    parser.add_argument(
        "--fixed-decoder-images",
        type=int,
        default=None,
        metavar="N",
        help="instead: the gaps of the run's fixed decoder on the first N test images: per-image optimal "
        "Gaussian posteriors (diagonal, shared Sigma; full for n <= 2) against the encoder, log p(x) (exact for "
        "n <= 2; for n > 2 by AIS, from a previous --ais run), Eqs. (18) and (22) "
        "(mlpvae/experiments/fixed_decoder_report.py, fixed_decoder_saa_report.py); writes "
        "RUN_DIR/fixed_decoder.json, .md and fixed_decoder_per_image.npz",
    )


def add_draws_argument(parser) -> None:
    """The ``--fixed-decoder-draws`` and ``--fixed-decoder-method`` options of ``vaetheory analyze``."""
    parser.add_argument(
        "--fixed-decoder-draws",
        type=int,
        default=1024,
        metavar="K",
        help="for the draws method: draws of the sample-average ELBO whose optimum is found (then again with 2K) "
        "(1024)",
    )
    parser.add_argument(
        "--fixed-decoder-method",
        choices=("grid", "draws"),
        default=None,
        help="how the fixed-decoder study takes each posterior's expectation: grid (quadrature on frames of nodes; "
        "n <= 2 only, with the full-covariance family) or draws (a sample average; any n, log p(x) exact for "
        "n <= 2, by a previous --ais run for n > 2) (default: grid for n <= 2, draws for n > 2)",
    )


def run(args) -> int:
    """``vaetheory analyze RUN --fixed-decoder-images N``: evaluate, print, write; the exit status."""
    try:
        if args.fixed_decoder_images < 1:
            raise ValueError(f"--fixed-decoder-images must be >= 1, got {args.fixed_decoder_images}")
        n = read_config(args.run_dir)[1].n
        method = args.fixed_decoder_method or ("grid" if n <= 2 else "draws")
        if method == "grid" and n > 2:
            raise ValueError(f"--fixed-decoder-method grid needs n <= 2; this run has n = {n} (use draws)")
        if method == "draws":
            summary, per = saa.evaluate_run(
                args.run_dir,
                args.fixed_decoder_images,
                K=args.fixed_decoder_draws,
                device=args.device,
                progress=args.progress,
            )
            text = saa.report_md(summary)
        else:
            summary, per = evaluate_run(
                args.run_dir, args.fixed_decoder_images, device=args.device, progress=args.progress
            )
            text = report_md(summary)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"vaetheory analyze: {exc}", file=sys.stderr)
        return 2
    written = write_per_image(args.run_dir, "fixed_decoder", summary, per)
    md = Path(args.run_dir) / "fixed_decoder.md"
    md.write_text(text)
    written.append(str(md))
    print(text)
    print_written(written)
    return 0
