"""The exact log p(x) of the trained 2-D models, by grid quadrature, against the IWAE bound, Eq. (16) and Eq. (18).

For each run (its checkpoint), on the first test images: log p(x) by `gpu.grid_evidence.grid_log_px`,
the IWAE bound with k = 5000 (the encoder's q(z|x) as proposal), the ELBO (k = 10 samples), Eq. (16) at the
encoder's mean and at the posterior mode the grid found, and Eq. (18)'s gap for the model's own Sigma, all as
`vaetheory analyze` computes them (gpu/analysis.py: prior, metric G, BAGGINS' S^2).  Images whose grid
log p(x) is more than 1 nat above the IWAE bound are counted as "missed": the encoder's q(z|x) sits away from
where the posterior mass is.  Means over images; one JSON entry per run.

    python validation/grid_log_px.py --images 200 --json DIR/grid_log_px.json --per-image DIR RUN...
    python validation/grid_log_px.py --plot DIR/grid_log_px.png --per-image DIR    # redraw from DIR/*.npz
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from gpu import analysis as A
from gpu import evaluate as E
from gpu import grid_evidence as G
from gpu import train as T

MISSED = 1.0  # nats of grid log p(x) above the IWAE bound that mark an image as missed by the encoder


def measure(run_dir, images: int, iwae_k: int = 5000, elbo_k: int = 10, progress: bool = False,
            per_image=None) -> dict:
    """Grid log p(x), IWAE, ELBO, Eqs. (16) and (18) on the first ``images`` test images of one run.

    ``per_image``: a path to save the per-image arrays to (``.npz``).
    """
    t0 = time.perf_counter()
    run = A.load_run(run_dir, device="cpu", test_limit=images)
    mc, params, x = run.mc, run.params, run.x_test
    mu_tr, var_tr = E.encode_all(params, run.x_train, mc)
    s2, s2_train = A.prior_variance(mc, mu_tr, var_tr), E.prior_s2(mu_tr, var_tr)
    floating = mc.posterior in E.FLOATING
    mu, var = E.encode_all(params, x, mc)
    var = np.broadcast_to(var, mu.shape)
    grid = G.grid_log_px(params, x, mc, s2, baggins_s2=s2_train, progress=progress)
    t_grid = time.perf_counter() - t0
    rng = T.generator(run.cfg.seed, A.STREAM_ANALYSIS, run.epoch, run.xp)
    elbo = A.elbo_per_example(params, x, mc, rng, elbo_k, s2 if floating else None)
    iwae = E.iwae_log_px(params, x, mc, rng, iwae_k, s2=s2 if floating else None, baggins_s2=s2_train)
    at_mu = A.laplace_evidence(params, x, mu, var, mc, s2)
    at_mode = A.laplace_evidence(params, x, grid["mode"], var, mc, s2, keep=len(x))
    # KL(N(mu, Sigma) | N(mode, P^-1)), P = S^-2 + J^T G J at the mode: Eq. (18)'s term for Sigma plus
    # 1/2 (mu - mode)^T P (mu - mode) for the encoder's mean being away from the mode
    delta = mu - grid["mode"]
    P = at_mode["grams"] + np.diag(1.0 / np.asarray(s2))
    offset = 0.5 * np.einsum("bi,bij,bj->b", delta, P, delta)
    lp = grid["log_px"]
    hit = lp - iwae <= MISSED

    def mean(a, where=None):
        a = a if where is None else a[where]
        return float(np.mean(a)) if a.size else None

    gap, eq18 = lp - elbo, at_mu["gap_eq18"]
    if per_image is not None:
        np.savez(per_image, grid_log_px=lp, grid_err=grid["err"], mode=grid["mode"], mu=mu, iwae=iwae, elbo=elbo,
                 eq16_at_mean=at_mu["log_evidence"], eq16_at_mode=at_mode["log_evidence"], gap_eq18=eq18,
                 gap_eq18_at_mode=at_mode["gap_eq18"], mean_offset_term=offset)
    return {
        "run": str(run_dir), "posterior": mc.posterior, "likelihood": mc.likelihood, "scale": run.cfg.scale,
        "images": int(len(x)), "iwae_k": iwae_k, "elbo_k": elbo_k,
        "grid_log_px": mean(lp), "grid_err_max": float(grid["err"].max()),
        "grid_unconverged": int((~grid["converged"]).sum()), "grid_evaluations_per_image": mean(grid["evaluations"]),
        "iwae": mean(iwae), "grid_minus_iwae": mean(lp - iwae), "grid_minus_iwae_median": float(np.median(lp - iwae)),
        "grid_minus_iwae_max": float(np.max(lp - iwae)), "grid_minus_iwae_min": float(np.min(lp - iwae)),
        "missed": int((~hit).sum()),
        "elbo": mean(elbo), "gap": mean(gap), "gap_iwae": mean(iwae - elbo), "gap_eq18": mean(eq18),
        "gap_where_found": mean(gap, hit), "gap_eq18_where_found": mean(eq18, hit),
        "gap_eq18_at_mode": mean(at_mode["gap_eq18"]), "mean_offset_term": mean(offset),
        "mean_offset_term_where_found": mean(offset, hit),
        "gap_eq18_at_mode_where_found": mean(at_mode["gap_eq18"], hit),
        "eq16_at_mean_minus_log_px": mean(at_mu["log_evidence"] - lp),
        "eq16_at_mean_minus_log_px_where_found": mean(at_mu["log_evidence"] - lp, hit),
        "eq16_at_mode_minus_log_px": mean(at_mode["log_evidence"] - lp),
        "eq16_at_mode_minus_log_px_median": float(np.median(at_mode["log_evidence"] - lp)),
        "grid_seconds": t_grid, "seconds": time.perf_counter() - t0,
    }


def row(r: dict) -> str:
    """One Markdown table row (see :data:`HEADER`)."""
    f = lambda v: "n/a" if v is None else f"{v:+.2f}"  # noqa: E731
    return (f"| {r['run'].split('results/')[-1]} | {r['grid_log_px']:.2f} ({r['grid_err_max']:.1g}) | {f(r['grid_minus_iwae'])}"
            f" (median {f(r['grid_minus_iwae_median'])}) | {r['missed']}/{r['images']} | {r['gap']:.2f} | {r['gap_eq18']:.2f}"
            f" | {f(r['gap_where_found'])} / {f(r['gap_eq18_where_found'])} | {f(r['eq16_at_mean_minus_log_px'])}"
            f" | {f(r['eq16_at_mode_minus_log_px'])} | {f(r['gap_eq18_at_mode_where_found'])} + {f(r['mean_offset_term_where_found'])} |")


HEADER = ("| run | grid log p(x) (largest err) | grid - IWAE k=5000 | missed | gap log p(x) - ELBO | Eq. (18) gap"
          " | gap / Eq. (18) where found | Eq. (16) at mu - log p(x) | Eq. (16) at the mode - log p(x)"
          " | Eq. (18) at the mode + mean offset, where found |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def plot(per_image: Path, path: Path) -> Path:
    """Per image and model: log p(x) minus the IWAE bound, and Eq. (16) minus log p(x) at the mean and at the mode."""
    from gpu.plots import _plt, _save

    plt = _plt()
    files = sorted(per_image.glob("*.npz"), key=lambda f: A._natural(f.stem))
    if not files:
        raise SystemExit(f"no per-image .npz files in {per_image}")
    fig, axes = plt.subplots(1, 2, figsize=(13.0, 0.45 * len(files) + 1.8), sharey=True)
    rng = np.random.default_rng(0)
    for y, f in enumerate(files):
        d = np.load(f)
        lp = d["grid_log_px"]
        jit = y + 0.25 * rng.uniform(-1, 1, len(lp))
        axes[0].scatter(lp - d["iwae"], jit, s=4, color="C0", alpha=0.5)
        axes[1].scatter(d["eq16_at_mean"] - lp, jit, s=4, color="C3", alpha=0.5,
                        label="at the encoder's mean" if y == 0 else None)
        axes[1].scatter(d["eq16_at_mode"] - lp, jit, s=4, color="C2", alpha=0.5,
                        label="at the posterior mode" if y == 0 else None)
    labels = [f.stem.replace("fig6_10_11_14_15_", "").replace("_seed", " seed") for f in files]
    axes[0].set_yticks(range(len(files)), labels)
    axes[0].set_xlabel("grid log p(x) - IWAE bound, k = 5000 (nats)")
    axes[1].set_xlabel("Eq. (16) - grid log p(x) (nats)")
    for ax in axes:
        ax.set_xscale("symlog", linthresh=1.0)
        ax.axvline(0.0, color="k", lw=0.6)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].invert_yaxis()  # the first model on top
    fig.legend(*axes[1].get_legend_handles_labels(), loc="upper right", ncol=2, markerscale=3, title="Eq. (16)")
    fig.suptitle("The exact log p(x) of the 2-D models (adaptive grid), one dot per test image", x=0.3)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return _save(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", nargs="*")
    p.add_argument("--images", type=int, default=200, help="first test images (200)")
    p.add_argument("--json", type=Path, help="add each run's figures to this JSON file (keyed by run)")
    p.add_argument("--per-image", type=Path, metavar="DIR", help="save each run's per-image arrays to DIR/<run>.npz")
    p.add_argument("--plot", type=Path, metavar="PNG", help="draw the per-image arrays of --per-image DIR")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    if args.plot:
        if not args.per_image:
            p.error("--plot needs --per-image DIR")
        print(plot(args.per_image, args.plot))
        return 0
    if not args.run_dir:
        p.error("give run directories (or --plot)")
    print(HEADER, flush=True)
    for d in args.run_dir:
        npz = None
        if args.per_image:
            args.per_image.mkdir(parents=True, exist_ok=True)
            npz = args.per_image / (str(d).split("results/")[-1].strip("/").replace("/", "_") + ".npz")
        r = measure(d, args.images, progress=args.progress, per_image=npz)
        print(row(r), flush=True)
        if args.json:
            have = json.loads(args.json.read_text()) if args.json.exists() else {}
            have[r["run"]] = r
            args.json.write_text(json.dumps(have, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
