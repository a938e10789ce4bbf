"""``vaetheory analyze RUN --fixed-decoder-images N`` for n > 2: the gaps of one trained decoder, separated.

Not in the paper: the n > 2 counterpart of :mod:`mlpvae.experiments.fixed_decoder_report`.  Each
image's best diagonal Gaussian and the best shared diagonal Sigma are found on the run's fixed
decoder (:mod:`mlpvae.evidence.fixed_decoder_saa`: a moment-matched sample-average ELBO, L-BFGS in
float64, certified by a restart), with K draws and again with 2K, and every ELBO is evaluated with
the same independent draws (unbiased, paired across the families).  Against log p(x) by AIS
(``vaetheory analyze RUN --ais``, read from the run's ``ais_evidence_per_image.npz``), or for n <= 2 the
exact value by grid quadrature (``vaetheory analyze RUN --fixed-decoder-images N --fixed-decoder-method
draws``: where per-image posterior widths differ by orders of magnitude, the grid study's frames cannot
follow one shared Sigma, and this study has no frames):

* the amortization gap: each image's best diagonal Gaussian (the best of the optima climbed from
  the encoder's mean and from local maxima of the log joint, :func:`starts`) minus the encoder's
  posterior;
* the rest of the gap: log p(x) minus the best diagonal, against Eq. (18) there;
* the cost of a constant variance: the best diagonal minus the best shared Sigma, against
  Eq. (22) for this decoder (at the shared optimum's means).

The quoted optimum is the 2K one, climbed from the same starts and from the K optimum (so that it
does not settle in a lesser basin than the K one); its change from K estimates what a finite sample
average leaves (the shortfall of a K-draw optimum shrinks about as 1/K).  Every summary is a mean over the images
with a paired bootstrap 95% interval.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mlpvae.evidence import fixed_decoder_saa as S
from mlpvae.evidence.ais_target import laplace_modes
from mlpvae.evidence.grid import grid_log_px
from mlpvae.evidence.laplace import gaps_at_optima, training_priors
from mlpvae.evidence.posterior_mode import neighbour_starts, posterior_mode
from mlpvae.experiments.fixed_decoder_medians import eq22_medians, medians_line
from mlpvae.experiments.intervals import paired_bootstrap
from mlpvae.experiments.report import comparison_text
from mlpvae.nn.batched import encode_all
from mlpvae.training.runs import git_sha, load_run
from vaetheory.xp import to_numpy

REPORTED = ("bernoulli", "gaussian", "baggins")


def _log_px(run_dir, images: int) -> tuple[np.ndarray, np.ndarray]:
    path = Path(run_dir) / "ais_evidence_per_image.npz"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: for n > 2 the fixed-decoder study compares with log p(x) by AIS; "
            f"run `vaetheory analyze {run_dir} --ais --ais-images {images}` first"
        )
    a = np.load(path)
    if len(a["ais_log_px"]) < images:
        raise ValueError(
            f"{path} holds AIS for the first {len(a['ais_log_px'])} test images, fewer than the {images} asked for"
        )
    return a["ais_log_px"][:images], a["ais_se"][:images]


def starts(run, mu, var, neighbours: int = 10, modes: int = 3) -> list[np.ndarray]:
    """The diagonal family's starting means, each (N, n): the encoder's, then local maxima of the log joint.

    Where the posterior has several modes the encoder may sit in a lesser one, whose basin holds
    only a local optimum.  The maxima: the climb from the encoder's mean and from the encoder's
    means of the ``neighbours`` most similar training images (:mod:`mlpvae.evidence.posterior_mode`),
    and the ``modes`` heaviest by Laplace mass among the climbs from the prior's points
    (:func:`mlpvae.evidence.ais_target.laplace_modes`; an image with fewer repeats its heaviest).
    Not in the paper.
    """
    mc, params, x = run.mc, run.params, run.x_test
    mu_tr, _, s2, s2_train = training_priors(run)
    near = neighbour_starts(x, run.x_train, mu_tr, neighbours) if neighbours > 0 else None
    mode = posterior_mode(params, x, mu, var, mc, s2, baggins_s2=s2_train, starts=near)["mode"]
    heavy = to_numpy(laplace_modes(params, x, mu, var, mc, s2, s2_train, max_modes=modes)[0])
    host = lambda a: to_numpy(a).astype(np.float64)  # noqa: E731
    return [host(mu), host(mode)] + [heavy[:, j].astype(np.float64) for j in range(modes)]


def evaluate_run(
    run_dir,
    images: int = 20,
    *,
    K: int = 1024,
    K_eval: int = 8192,
    gtol: float = 1e-6,
    device: str | None = None,
    seed: int = 0,
    log=print,
    progress: bool = False,
):
    """The gaps of an n > 2 run's decoder on its first ``images`` test images (module docstring; Not in the paper).

    ``progress``: bars on stderr over each start's images and over the shared-Sigma fit's iterations.
    Returns ``(summary, per_image)``: means (nats per image) with paired bootstrap 95% intervals,
    the optimiser's certificates, and host arrays per image.
    """
    sha = git_sha()  # of the code that computes, taken before it runs
    t0 = time.perf_counter()
    run = load_run(run_dir, device=device, test_limit=images, float64=True)
    mc, params, x, xp = run.mc, run.params, run.x_test, run.xp
    if mc.likelihood not in REPORTED:
        raise ValueError(f"{run_dir}: the sample-average fixed-decoder study reports {REPORTED}, not {mc.likelihood!r}")
    _, _, s2, s2_train = training_priors(run)
    if mc.n <= 2:  # the exact value by quadrature: no AIS run needed, and no estimator error
        log_px = to_numpy(grid_log_px(params, x, mc, s2, baggins_s2=s2_train, progress=progress)["log_px"])
        log_px, log_px_se, reference = log_px.astype(np.float64), np.zeros(len(log_px)), "grid"
    else:
        (log_px, log_px_se), reference = _log_px(run_dir, images), "AIS"
    s2_h = to_numpy(s2).astype(np.float64)
    mu, var = encode_all(params, x, mc)
    var = xp.broadcast_to(var, mu.shape)
    mu_h = to_numpy(mu).astype(np.float64)
    logs_enc = 0.5 * np.log(to_numpy(var).astype(np.float64))
    m_starts = starts(run, mu, var)
    N, n = mu_h.shape
    # BAGGINS: Eq. (29)'s T held at the trained model's (the encoder's Sigma of each image, the training set's
    # S^2), so log p(x|z) is the fixed function AIS measured (docs/fixed_decoder.md)
    bag = (np.exp(2 * logs_enc), to_numpy(s2_train).astype(np.float64)) if mc.likelihood == "baggins" else None

    def fresh(m, logs):  # the same independent draws for every posterior: paired across the families
        return S.fresh_elbo(params, x, mc, s2_h, m, logs, K_eval, np.random.default_rng(seed + 1), baggins=bag)

    per = {"log_px": log_px, "log_px_se": log_px_se}
    per["elbo_encoder"], per["se_encoder"] = fresh(mu_h, logs_enc)
    fits = {}
    for k in (K, 2 * K):
        eps = S.draws(k, n, np.random.default_rng(seed + 2 + k))
        t = time.perf_counter()
        bar = dict(baggins=bag, progress=progress)
        # the 2K fit also starts from the K optimum: from the same starts alone it can settle in a lesser basin
        begin = [(m0, logs_enc) for m0 in m_starts]
        if k == 2 * K:
            begin.append((fits[K]["diagonal"]["m"], fits[K]["diagonal"]["logs"]))
        d = S.best_of(
            [
                S.optimise(
                    params,
                    x,
                    mc,
                    s2_h,
                    "diagonal",
                    m0,
                    logs0,
                    eps,
                    gtol,
                    **bar,
                    desc=f"K = {k}: diagonal posteriors, start {j + 1} of {len(begin)}",
                )
                for j, (m0, logs0) in enumerate(begin)
            ]
        )
        c = S.optimise(
            params, x, mc, s2_h, "constant", d["m"], d["logs"], eps, gtol, **bar, desc=f"K = {k}: shared Sigma"
        )
        fits[k] = {"diagonal": d, "constant": c}
        for f, r in fits[k].items():
            tag = f"{f}_K{k}"
            per[f"elbo_{tag}"], per[f"se_{tag}"] = fresh(r["m"], r["logs"])
            per[f"gradient_{tag}"] = r["gradient"]
        per[f"start_diagonal_K{k}"] = d["start"]
        log(
            f"  K = {k}: diagonal {d['iterations']} iterations (restart gain {d['restart_gain']:.1e}), "
            f"shared Sigma {c['iterations']} ({c['restart_gain']:.1e}); {time.perf_counter() - t:.0f} s"
        )
    d, c = fits[2 * K]["diagonal"], fits[2 * K]["constant"]
    per["elbo_diagonal"], per["elbo_constant"] = per[f"elbo_diagonal_K{2 * K}"], per[f"elbo_constant_K{2 * K}"]
    var_d, var_c = np.exp(2 * d["logs"]), np.exp(2 * c["logs"])
    gaps = gaps_at_optima(params, x, mc, s2, s2_train, mu, var, (d["m"], var_d), (c["m"], var_c))
    per["eq18_at_diagonal"], eq22 = gaps["eq18_at_diagonal"], gaps["eq22"]
    # Eq. (18) has no value where the precision is indefinite (possible for BAGGINS): compared where defined
    ok = np.isfinite(per["eq18_at_diagonal"])
    per["eq22_terms"] = eq22["terms"]
    per["mean_diagonal"], per["var_diagonal"], per["mean_constant"] = d["m"], var_d, c["m"]
    rng = np.random.default_rng(seed)
    zero = np.zeros(N)
    pairs = {
        "amortization_gap": (per["elbo_diagonal"], per["elbo_encoder"], "best diagonal minus the encoder's posterior"),
        "gap_after_diagonal": (log_px, per["elbo_diagonal"], f"log p(x) ({reference}) minus the best diagonal"),
        "eq18_at_diagonal": (per["eq18_at_diagonal"][ok], zero[ok], "Eq. (18) at the diagonal optimum"),
        "gap_after_diagonal_minus_eq18": (
            (log_px - per["elbo_diagonal"])[ok],
            per["eq18_at_diagonal"][ok],
            "log p(x) minus the best diagonal, minus Eq. (18) there",
        ),
        "constant_cost": (per["elbo_diagonal"], per["elbo_constant"], "best diagonal minus best shared Sigma"),
        "eq22": (eq22["terms"], zero, "Eq. (22) (per-image terms)"),
        "constant_cost_minus_eq22": (
            per["elbo_diagonal"] - per["elbo_constant"],
            eq22["terms"],
            "the cost of a shared Sigma minus Eq. (22)",
        ),
    }
    for f in ("diagonal", "constant"):
        pairs[f"{f}_2K_minus_K"] = (
            per[f"elbo_{f}_K{2 * K}"],
            per[f"elbo_{f}_K{K}"],
            f"best {f}: optimum from 2K draws minus from K (what the sample average leaves)",
        )
    comparisons = {name: dict(paired_bootstrap(a, b, rng), what=what) for name, (a, b, what) in pairs.items() if len(a)}
    mean = lambda a: float(np.mean(a))  # noqa: E731
    summary = {
        "run": str(run_dir),
        "git_sha": sha,
        "posterior": mc.posterior,
        "likelihood": mc.likelihood,
        "n": int(n),
        "images": int(N),
        "log_px_reference": reference,
        "K": K,
        "K_eval": K_eval,
        "gtol": gtol,
        "interval": "paired bootstrap over the images, 10,000 resamples, 95% percentile",
        "log_px": mean(log_px),
        "log_px_se_max": float(np.max(log_px_se)),
        "elbo_encoder": mean(per["elbo_encoder"]),
        "elbo_diagonal": mean(per["elbo_diagonal"]),
        "elbo_constant": mean(per["elbo_constant"]),
        "fresh_se_max": float(max(np.max(per[k]) for k in per if k.startswith("se_"))),
        **{
            f"{f}_K{k}_{q}": fits[k][f][q]
            for k in fits
            for f in ("diagonal", "constant")
            for q in ("converged", "iterations", "restart_gain", "gradient_max")
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


def report_md(r: dict) -> str:
    """:func:`evaluate_run`'s summary as Markdown (nats per image, means over the images with intervals)."""
    c = r["comparisons"]

    def ci(name):
        return comparison_text(c, name)

    K = r["K"]
    ref = "exact quadrature" if r.get("log_px_reference") == "grid" else "AIS"
    defined = r.get("eq18_defined_images", r["images"])
    lines = [
        f"# The gaps on one decoder: {r['run']}",
        "",
        f"{r['likelihood']} likelihood, {r['posterior']} posterior, n = {r['n']}; first {r['images']} test images; "
        f"float64; optimum of a moment-matched sample-average ELBO over {2 * K} draws (and {K}), every ELBO "
        f"evaluated with the same {r['K_eval']} independent draws; log p(x) by {ref}; intervals: {r['interval']}.",
        "",
        f"- log p(x) ({ref}) {r['log_px']:.3f} (largest standard error {r['log_px_se_max']:.3f}); ELBO: encoder "
        f"{r['elbo_encoder']:.3f}, best diagonal {r['elbo_diagonal']:.3f}, best shared Sigma {r['elbo_constant']:.3f} "
        f"(largest Monte Carlo standard error of an ELBO {r['fresh_se_max']:.3f})",
        f"- amortization gap (best diagonal minus the encoder): {ci('amortization_gap')}",
        f"- log p(x) minus the best diagonal: {ci('gap_after_diagonal')}; Eq. (18) there predicts "
        f"{ci('eq18_at_diagonal')}; measured minus predicted {ci('gap_after_diagonal_minus_eq18')}"
        + (f" (over the {defined} images where the precision is positive definite)" if defined < r["images"] else ""),
        f"- the cost of a shared Sigma on this decoder: {ci('constant_cost')}; Eq. (22) predicts {ci('eq22')}; "
        f"measured minus predicted {ci('constant_cost_minus_eq22')}"
        + (
            f" ({r['eq22_indefinite_images']} images with an indefinite precision)"
            if r.get("eq22_indefinite_images")
            else ""
        ),
        *medians_line(r),
        f"- curvature in Eqs. (18) and (22): {r.get('curvature', 'the likelihood metric J^T G J')}",
        f"- the optimum from {2 * K} draws minus from {K}: diagonal {ci('diagonal_2K_minus_K')}, shared Sigma "
        f"{ci('constant_2K_minus_K')} (a finite sample average's shortfall, about halved by doubling K)",
        "",
        "| family | draws | converged | L-BFGS iterations | restart gain (nats per image) | largest gradient |",
        "|---|---|---|---|---|---|",
    ]
    for k in (K, 2 * K):
        for fam in ("diagonal", "constant"):
            p = f"{fam}_K{k}_"
            lines.append(
                f"| {fam} | {k} | {r[p + 'converged']} | {r[p + 'iterations']} | {r[p + 'restart_gain']:.1e} | "
                f"{r[p + 'gradient_max']:.1e} |"
            )
    lines += ["", f"{r['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"
