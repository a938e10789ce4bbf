"""``vaetheory analyze RUN --ais``: log p(x) of a trained run by AIS, with a BDMC sandwich on simulated data.

Not in the paper: the estimator its log p(x) statements are checked against
(:mod:`mlpvae.evidence.ais`, :mod:`mlpvae.evidence.bdmc`).  On the first test
images: AIS log p(x) with its standard error, the IWAE bound and the ELBO
against it; for n <= 2 also the exact grid value
(:mod:`mlpvae.evidence.grid`) and the largest per-image difference.  On
images simulated from the model (z* from the prior, x from the decoder): the
BDMC lower and upper bounds and their width, and with a mixture p0 the width
between the upper bound and the mixture's own forward run on the same images
(the sandwich of the estimator the test images get); for BAGGINS, whose p(x|z) cannot be
sampled, on its Gaussian twin (:func:`mlpvae.evidence.bdmc.gaussian_twin`).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from mlpvae.evidence.ais import INITS, PILOT_STEPS, SCHEDULES, ais_log_px
from mlpvae.evidence.bdmc import WITHOUT_PRIOR, bdmc, gaussian_twin, simulate
from mlpvae.evidence.grid import grid_log_px
from mlpvae.evidence.iwae import iwae_log_px
from mlpvae.evidence.laplace import elbo_per_example, training_priors
from mlpvae.experiments.evaluate import print_written, write_per_image
from mlpvae.experiments.intervals import paired_bootstrap
from mlpvae.experiments.report import signed
from mlpvae.nn.batched import FLOATING, encode_all
from mlpvae.training.runs import git_sha, load_run
from mlpvae.training.streams import STREAM_AIS, STREAM_ANALYSIS, STREAM_SIMULATE, generator

DEFAULTS = dict(
    images=100,
    chains=64,
    steps=1000,
    leapfrog=5,
    schedule="sigmoid",
    init="modes-mixture",
    q_fraction=0.5,
    bdmc_images=20,
)


def simulated_images(run, x, mu, s2, N: int):
    """``(mc_b, xs, zs, mus, vs)``: the model BDMC samples and ``N`` images simulated from it, with their posteriors.

    ``mc_b`` is the run's model, or for BAGGINS, whose p(x|z) cannot be sampled, its Gaussian twin at the
    test images ``x`` and their encoder means ``mu`` (:func:`mlpvae.evidence.bdmc.gaussian_twin`); ``xs (N, m)``
    and ``zs (N, n)`` from :func:`mlpvae.evidence.bdmc.simulate` on the run's own simulation stream, so
    every call on the same run draws the same images; ``mus, vs (N, n)`` the encoder's posteriors of ``xs``.
    """
    params, mc, xp = run.params, run.mc, run.xp
    mc_b = gaussian_twin(params, x, mu, mc) if mc.likelihood == "baggins" else mc
    xs, zs = simulate(params, mc_b, xp.asarray(s2), N, generator(run.cfg.seed, STREAM_SIMULATE, run.epoch, xp))
    mus, vs = encode_all(params, xs, mc)
    return mc_b, xs, zs, mus, xp.broadcast_to(vs, mus.shape)


def evaluate_run(
    run_dir,
    images: int = 100,
    *,
    chains: int = 64,
    steps: int = 1000,
    leapfrog: int = 5,
    schedule: str = "sigmoid",
    init: str = "modes-mixture",
    q_fraction: float = 0.5,
    bdmc_images: int = 20,
    iwae_k: int = 5000,
    elbo_k: int = 10,
    device: str | None = None,
    progress: bool = False,
) -> tuple[dict, dict]:
    """AIS log p(x) of the first ``images`` test images, and BDMC on ``bdmc_images`` simulated ones (Not in the paper).

    The prior, S^2 and BAGGINS' S^2 are those of :func:`mlpvae.experiments.analyze.analyze_run`;
    float64.  The other arguments are :func:`mlpvae.evidence.ais.ais_log_px`'s.
    Returns ``(summary, per_image)`` (nats per image; host arrays).
    """
    sha = git_sha()  # of the code that computes, taken before it runs
    t0 = time.perf_counter()
    run = load_run(run_dir, device=device, test_limit=images, float64=True)
    mc, params, x, xp = run.mc, run.params, run.x_test, run.xp
    _, _, s2, s2_train = training_priors(run)
    floating = mc.posterior in FLOATING
    mu, var = encode_all(params, x, mc)
    var = xp.broadcast_to(var, mu.shape)
    opts = dict(chains=chains, steps=steps, leapfrog=leapfrog, schedule_kind=schedule, init=init, q_fraction=q_fraction)
    rng = generator(run.cfg.seed, STREAM_AIS, run.epoch, xp)
    a = ais_log_px(params, x, mc, s2, rng, mu=mu, var=var, baggins_s2=s2_train, progress=progress, **opts)
    t_ais = time.perf_counter() - t0
    rng_e = generator(run.cfg.seed, STREAM_ANALYSIS, run.epoch, xp)
    elbo = elbo_per_example(params, x, mc, rng_e, elbo_k, s2 if floating else None)
    iwae = iwae_log_px(params, x, mc, rng_e, iwae_k, s2=s2 if floating else None, baggins_s2=s2_train)
    lp = a["log_px"]
    per = {"ais_log_px": lp, "ais_se": a["se"], "ais_ess": a["ess"], "ais_accept": a["accept"], "iwae": iwae}
    per["elbo"] = elbo
    summary = {
        "run": str(run_dir),
        "git_sha": sha,
        "posterior": mc.posterior,
        "likelihood": mc.likelihood,
        "n": mc.n,
        "device": run.device,
        "images": int(len(lp)),
        **opts,
        "pilot_steps": PILOT_STEPS,
        "iwae_k": iwae_k,
        "elbo_k": elbo_k,
        "ais_log_px": float(lp.mean()),
        "ais_se_max": float(a["se"].max()),
        "ais_ess_min": float(a["ess"].min()),
        "ais_ess_median": float(np.median(a["ess"])),
        "ais_accept": float(a["accept"].mean()),
        "ais_minus_iwae": float(np.mean(lp - iwae)),
        "ais_minus_iwae_max": float(np.max(lp - iwae)),
        "ais_minus_iwae_min": float(np.min(lp - iwae)),
        "gap_ais_minus_elbo": float(np.mean(lp - elbo)),
        "ais_seconds": t_ais,
    }
    if mc.n <= 2:
        g = grid_log_px(params, x, mc, s2, baggins_s2=s2_train, progress=progress)
        d = lp - g["log_px"]
        per["grid_log_px"], per["ais_minus_grid"] = g["log_px"], d
        worst = int(np.argmax(np.abs(d)))
        summary.update(ais_minus_grid=float(d.mean()), ais_minus_grid_max_abs=float(np.abs(d).max()))
        summary.update(
            ais_minus_grid_worst_image=worst,
            ais_minus_grid_worst=float(d[worst]),
            ais_minus_grid_worst_se=float(a["se"][worst]),
            ais_minus_grid_within_0_1=int((np.abs(d) <= 0.1).sum()),
        )
        summary["grid_unconverged"] = int((~g["converged"]).sum())
    if bdmc_images > 0:
        t = time.perf_counter()
        mc_b, xs, zs, mus, vs = simulated_images(run, x, mu, s2, bdmc_images)
        b = bdmc(params, xs, zs, mc_b, s2, rng, mu=mus, var=vs, progress=progress, **opts)
        per.update(bdmc_lower=b["lower"], bdmc_upper=b["upper"], bdmc_width=b["width"])
        per.update(bdmc_lower_se=b["lower_se"], bdmc_upper_se=b["upper_se"])
        if init in WITHOUT_PRIOR:
            # The reverse bound holds whatever p0 the forward run uses: the mixture's own forward run on the
            # same images closes the sandwich on the estimator the test images get, prior component included.
            f = ais_log_px(params, xs, mc_b, s2, rng, mu=mus, var=vs, progress=progress, **opts)
            per.update(bdmc_mixture_lower=f["log_px"], bdmc_mixture_width=b["upper"] - f["log_px"])
            w = b["upper"] - f["log_px"]
            summary.update(
                bdmc_mixture_width=float(w.mean()),
                bdmc_mixture_width_max=float(w.max()),
                bdmc_mixture_width_min=float(w.min()),
            )
        if mc_b is not mc:
            summary.update(bdmc_target="gaussian twin", bdmc_twin_t=mc_b.t)
        summary.update(
            bdmc_images=bdmc_images,
            bdmc_init=WITHOUT_PRIOR.get(opts.get("init"), opts.get("init")),
            bdmc_width=float(b["width"].mean()),
            bdmc_width_max=float(b["width"].max()),
            bdmc_width_min=float(b["width"].min()),
            **width_interval(b["width"], np.hypot(b["lower_se"], b["upper_se"])),
            bdmc_seconds=time.perf_counter() - t,
        )
    summary["seconds"] = time.perf_counter() - t0
    return summary, per


def width_interval(width, se=None) -> dict:
    """The mean sandwich width's 95% interval over the simulated images, and the images' Monte Carlo error.

    Not in the paper.  ``width (N,)`` per simulated image and ``se (N,)`` its standard error (forward
    and reverse chains are independent, so their errors add in quadrature; None where it was not
    kept).  The interval is a percentile bootstrap over the images
    (:func:`mlpvae.experiments.intervals.paired_bootstrap` against zero, with its own generator so
    that the AIS streams are untouched): the width the model's images get on average, by which "at
    most 0.15 nats per image on average" is judged.
    Keys ``bdmc_width_lo``, ``bdmc_width_hi`` (absent with one image) and ``bdmc_width_se_max``
    (absent without ``se``).
    """
    width = np.asarray(width, dtype=np.float64)
    out = {} if se is None else {"bdmc_width_se_max": float(np.max(se))}
    if len(width) >= 2:
        r = paired_bootstrap(width, np.zeros_like(width), np.random.default_rng(0))
        out.update(bdmc_width_lo=r["lo"], bdmc_width_hi=r["hi"])
    return out


def report_md(r: dict) -> str:
    """:func:`evaluate_run`'s summary as a short Markdown report (means over the images, nats per image)."""
    f = signed
    L = [
        f"# log p(x) by AIS: {r['run']}",
        f"{r['likelihood']} likelihood, {r['posterior']} posterior, n = {r['n']}; first {r['images']} test images; "
        f"{r['chains']} chains, T = {r['steps']} ({r['schedule_kind']}), {r['leapfrog']} leapfrog steps, "
        f"p0 = {r['init']}" + (f" (q_fraction {r['q_fraction']})" if "mixture" in r["init"] else ""),
        f"- AIS log p(x) {r['ais_log_px']:.3f} (largest standard error {r['ais_se_max']:.3f}; effective sample "
        f"size {r['ais_ess_min']:.1f} to median {r['ais_ess_median']:.1f} of {r['chains']}; mean acceptance "
        f"{r['ais_accept']:.2f}; {r['ais_seconds']:.1f} s on {r['device']})",
        f"- AIS minus IWAE (k = {r['iwae_k']}): {f(r['ais_minus_iwae'])} (from {f(r['ais_minus_iwae_min'])} to "
        f"{f(r['ais_minus_iwae_max'])}); AIS minus the ELBO: {f(r['gap_ais_minus_elbo'])}",
    ]
    if "ais_minus_grid" in r:
        L.append(
            f"- AIS minus the exact grid value: {f(r['ais_minus_grid'])} on average, largest |difference| "
            f"{r['ais_minus_grid_max_abs']:.3f} (image {r['ais_minus_grid_worst_image']}: "
            f"{f(r['ais_minus_grid_worst'])} +- {r['ais_minus_grid_worst_se']:.3f}); "
            f"{r['ais_minus_grid_within_0_1']} of {r['images']} within 0.1 nat "
            f"({r['grid_unconverged']} grid image(s) not converged)"
        )
    if "bdmc_width" in r:
        twin = (
            f" of BAGGINS' Gaussian twin (t = {r['bdmc_twin_t']:.4g}: its posteriors' curvature; BAGGINS' own "
            "p(x|z) cannot be sampled)"
            if "bdmc_twin_t" in r
            else ""
        )
        L.append(
            f"- BDMC on {r['bdmc_images']} simulated images{twin} (p0 = {r.get('bdmc_init', '?')}): "
            f"sandwich width {r['bdmc_width']:.3f} on average"
            + (
                f" [{r['bdmc_width_lo']:.3f}, {r['bdmc_width_hi']:.3f}] (95%, bootstrap over the images)"
                if "bdmc_width_lo" in r
                else ""
            )
            + f" (from {r['bdmc_width_min']:.3f} to {r['bdmc_width_max']:.3f}"
            + (f"; per-image standard error up to {r['bdmc_width_se_max']:.3f}" if "bdmc_width_se_max" in r else "")
            + f"; {r['bdmc_seconds']:.1f} s)"
        )
    if "bdmc_mixture_width" in r:
        L.append(
            f"- the same upper bounds against forward AIS from p0 = {r['init']} on those images (the estimator of "
            f"the test images): width {r['bdmc_mixture_width']:.3f} on average (from "
            f"{r['bdmc_mixture_width_min']:.3f} to {r['bdmc_mixture_width_max']:.3f})"
        )
    return "\n".join(L)


def add_arguments(parser) -> None:
    """The ``--ais`` options of ``vaetheory analyze``."""
    d = DEFAULTS
    parser.add_argument(
        "--ais",
        action="store_true",
        help="instead: log p(x) by AIS with HMC on the first --ais-images test images, a BDMC sandwich on "
        "--bdmc-images simulated ones, the grid for n <= 2 (mlpvae/experiments/ais_report.py); writes "
        "RUN_DIR/ais_evidence.json and ais_evidence_per_image.npz",
    )
    parser.add_argument("--ais-images", type=int, default=d["images"], help=f"test images for --ais ({d['images']})")
    parser.add_argument("--chains", type=int, default=d["chains"], help=f"AIS chains per image ({d['chains']})")
    parser.add_argument(
        "--steps", type=int, default=d["steps"], help=f"AIS intermediate distributions T ({d['steps']})"
    )
    parser.add_argument("--leapfrog", type=int, default=d["leapfrog"], help=f"leapfrog steps per HMC ({d['leapfrog']})")
    parser.add_argument("--schedule", choices=SCHEDULES, default=d["schedule"], help="AIS schedule (sigmoid)")
    parser.add_argument(
        "--init",
        choices=INITS,
        default=d["init"],
        help=f"AIS initial distribution ({d['init']}: the Laplace posteriors at every distinct local maximum of the "
        "log joint, weighted by their Laplace masses, and the prior; laplace-mixture: the highest maximum's only)",
    )
    parser.add_argument(
        "--q-fraction",
        type=float,
        default=d["q_fraction"],
        help=f"share of the chains in the q / Laplace components of a mixture --init ({d['q_fraction']})",
    )
    parser.add_argument(
        "--bdmc-images", type=int, default=d["bdmc_images"], help=f"simulated images for BDMC ({d['bdmc_images']})"
    )


def run(args) -> int:
    """``vaetheory analyze RUN --ais``: evaluate, print the report, write the JSON and npz; the exit status."""
    try:
        if args.ais_images < 1:
            raise ValueError(f"--ais-images must be >= 1, got {args.ais_images}")
        summary, per = evaluate_run(
            args.run_dir,
            args.ais_images,
            chains=args.chains,
            steps=args.steps,
            leapfrog=args.leapfrog,
            schedule=args.schedule,
            init=args.init,
            q_fraction=args.q_fraction,
            bdmc_images=args.bdmc_images,
            iwae_k=args.iwae_k,
            elbo_k=args.elbo_k,
            device=args.device,
            progress=args.progress,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"vaetheory analyze: {exc}", file=sys.stderr)
        return 2
    written = write_per_image(args.run_dir, "ais_evidence", summary, per)
    print(report_md(summary))
    print_written(written)
    return 0
