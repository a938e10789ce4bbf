"""The exact log p(x) of the trained 2-D models, by grid quadrature, against the IWAE bound, Eq. (16) and Eq. (18).

For each run (its checkpoint), on the first test images, `mlpvae.evidence.grid.evaluate_run` (what
`vaetheory analyze RUN --grid-images N` does for one run): log p(x) by adaptive grid quadrature against the
IWAE bound with k = 5000, the ELBO, Eq. (16) at the encoder's mean and at the posterior mode, and Eq. (18).
Here for many runs: one Markdown table row and one JSON entry per run, the per-image arrays, and a plot.

    python validation/scripts/grid_log_px.py --images 200 --json DIR/grid_log_px.json --per-image DIR RUN...
    python validation/scripts/grid_log_px.py --plot DIR/grid_log_px.png --per-image DIR    # redraw from DIR/*.npz
    python validation/scripts/grid_log_px.py --table DIR/grid_log_px.json                  # the table again
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mlpvae.experiments import grid_report as G
from mlpvae.experiments.report import natural_key, signed


def row(r: dict) -> str:
    """One Markdown table row (see :data:`HEADER`)."""
    f = signed
    return (
        f"| {r['run'].split('results/')[-1]} | {r['grid_log_px']:.2f} ({r['grid_err_max']:.1g})"
        f" | {f(r['grid_minus_iwae'])} (median {f(r['grid_minus_iwae_median'])}) | {r['missed']}/{r['images']}"
        f" | {r['gap']:.2f} | {r['gap_eq18']:.2f} | {f(r['gap_where_found'])} / {f(r['gap_eq18_where_found'])}"
        f" | {f(r['eq16_at_mean_minus_log_px'])} | {f(r['eq16_at_mode_minus_log_px'])} |"
    )


HEADER = (
    "| run | grid log p(x) (largest err) | grid - IWAE k=5000 | missed | gap log p(x) - ELBO | Eq. (18) gap"
    " | gap / Eq. (18) where found | Eq. (16) at mu - log p(x) | Eq. (16) at the mode - log p(x) |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


SEED_COLUMNS = (
    "grid_log_px",
    "grid_minus_iwae",
    "missed",
    "gap",
    "gap_eq18",
    "eq16_at_mean_minus_log_px",
    "eq16_at_mode_minus_log_px",
)


def seeds_table(runs: dict) -> str:
    """Mean +- std over the seeds of each model (runs grouped by their path without ``seedN``)."""
    import re

    groups: dict = {}
    for r in runs.values():
        groups.setdefault(re.sub(r"/seed\d+/?$", "", r["run"].split("results/")[-1]), []).append(r)
    lines = [
        "| model | seeds | exact log p(x) | minus IWAE | missed (of 200) | gap log p - ELBO | Eq. (18) gap"
        " | Eq. (16) at mu - log p | Eq. (16) at the mode - log p |",
        "|---" * 9 + "|",
    ]
    for name in sorted(groups, key=natural_key):
        rs = groups[name]
        cells = []
        for c in SEED_COLUMNS:
            v = np.array([r[c] for r in rs], dtype=float)
            d = 0 if c == "missed" else 2
            cells.append(f"{v.mean():.{d}f} +- {v.std(ddof=1):.{d}f}" if len(v) > 1 else f"{v[0]:.{d}f}")
        lines.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(per_image: Path, path: Path) -> Path:
    """Per image and model: log p(x) minus the IWAE bound, and Eq. (16) minus log p(x) at the mean and at the mode."""
    from mlpvae.experiments.plots import pyplot, save

    plt = pyplot()
    files = sorted(per_image.glob("*.npz"), key=lambda f: natural_key(f.stem))
    if not files:
        raise SystemExit(f"no per-image .npz files in {per_image}")
    fig, axes = plt.subplots(1, 2, figsize=(13.0, 0.45 * len(files) + 1.8), sharey=True)
    rng = np.random.default_rng(0)
    for y, f in enumerate(files):
        d = np.load(f)
        lp = d["grid_log_px"]
        jit = y + 0.25 * rng.uniform(-1, 1, len(lp))
        axes[0].scatter(lp - d["iwae"], jit, s=4, color="C0", alpha=0.5)
        axes[1].scatter(
            d["eq16_at_mean"] - lp, jit, s=4, color="C3", alpha=0.5, label="at the encoder's mean" if y == 0 else None
        )
        axes[1].scatter(
            d["eq16_at_mode"] - lp, jit, s=4, color="C2", alpha=0.5, label="at the posterior mode" if y == 0 else None
        )
    labels = [f.stem.replace("fig6_10_11_14_15_", "").replace("_seed", " seed") for f in files]
    axes[0].set_yticks(range(len(files)), labels)
    axes[0].set_xlabel("grid $\\log p(x)$ - IWAE bound, k = 5000 (nats)")
    axes[1].set_xlabel("Eq. (16) - grid $\\log p(x)$ (nats)")
    axes[0].set_ylabel("model (figure, method, seed)")
    for ax in axes:
        ax.set_xscale("symlog", linthresh=1.0)
        ax.axvline(0.0, color="k", lw=0.6)
        ax.grid(False, axis="y")
        ax.set_xlabel(ax.get_xlabel() + "\nsymlog axis: linear within \u00b11")
    axes[0].invert_yaxis()  # the first model on top
    fig.legend(
        *axes[1].get_legend_handles_labels(), loc="outside lower center", ncols=2, markerscale=3, title="Eq. (16)"
    )
    fig.suptitle("The exact $\\log p(x)$ of the 2-D models (adaptive grid), one dot per test image")
    return save(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", nargs="*")
    p.add_argument("--images", type=int, default=200, help="first test images (200)")
    p.add_argument("--json", type=Path, help="add each run's figures to this JSON file (keyed by run)")
    p.add_argument("--per-image", type=Path, metavar="DIR", help="save each run's per-image arrays to DIR/<run>.npz")
    p.add_argument("--plot", type=Path, metavar="PNG", help="draw the per-image arrays of --per-image DIR")
    p.add_argument("--table", type=Path, metavar="JSON", help="print the table of a --json file")
    p.add_argument("--seeds", action="store_true", help="with --table: mean +- std over each model's seeds")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    if args.table:
        runs = json.loads(args.table.read_text())
        if args.seeds:
            print(seeds_table(runs))
            return 0
        print(HEADER)
        for key in sorted(runs, key=natural_key):
            print(row(runs[key]))
        return 0
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
        r, per = G.evaluate_run(d, args.images, progress=args.progress)
        if npz is not None:
            np.savez(npz, **per)
        print(row(r), flush=True)
        if args.json:
            have = json.loads(args.json.read_text()) if args.json.exists() else {}
            have[r["run"]] = r
            args.json.write_text(json.dumps(have, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
