"""log p(x) of trained models of any latent dimension: IWAE with the Laplace posterior at the posterior mode.

For each run (its checkpoint), on the first test images, `mlpvae.evidence.posterior_mode.evaluate_run` (what
`vaetheory analyze RUN --mode-images N` does for one run): the posterior mode per image (Levenberg-Marquardt
from the encoder's mean and from the best 10 of its 30 nearest training images' means), the IWAE bound with
k = 5000 samples of q(z|x) and of the Laplace posterior at the mode, the ELBO, Eq. (16) at mu and at the
mode, and Eq. (18).  Here for many runs: one Markdown table row and one JSON entry per run, and the
per-image arrays.  With ``--exact DIR`` (the per-image files of validation/scripts/grid_log_px.py, for 2-D runs)
each row also says how far the bounds are from the exact log p(x).

    python validation/scripts/mode_laplace.py --images 200 --json DIR/mode_laplace.json --per-image DIR RUN...
    python validation/scripts/mode_laplace.py --table DIR/mode_laplace.json
    python validation/scripts/mode_laplace.py --images 200 --exact validation/results/analysis/grid-2d --json ... RUN...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mlpvae.experiments import mode_report as PM
from mlpvae.experiments.report import natural_key, signed


def _name(run: str) -> str:
    return str(run).split("results/")[-1].strip("/").replace("/", "_")


def row(r: dict) -> str:
    """One Markdown table row (see :data:`HEADER`)."""
    f = signed
    exact = f" | {f(r['exact_minus_best'])} ({r['exact_missed']})" if "exact_minus_best" in r else " | "
    return (
        f"| {r['run'].split('results/')[-1]} | {r['n']} | {r['iwae_q']:.2f} | {r['iwae_mode']:.2f}"
        f" | {f(r['mode_minus_q'])} ({r['mode_above_q']} / {r['mode_below_q']}) | {r['gap_best']:.2f}"
        f" | {r['gap_eq18']:.2f} | {f(r['eq16_at_mean_minus_best'])} | {f(r['eq16_at_mode_minus_best'])}"
        f" | {r['converged']} / {r['stalled']}{exact} |"
    )


HEADER = (
    "| run | n | IWAE, q | IWAE, Laplace at the mode | mode - q (images > 1 nat better / worse)"
    " | gap best - ELBO | Eq. (18) gap | Eq. (16) at mu - best | Eq. (16) at the mode - best"
    " | converged / on a kink | exact - best (images > 1 nat) |\n" + "|---" * 11 + "|"
)


def with_exact(r: dict, per: dict, exact_dir: Path) -> dict:
    """Add the comparison with the grid's exact log p(x) of the same images, where its per-image file exists."""
    f = exact_dir / (_name(r["run"]) + ".npz")
    if not f.exists():
        return r
    lp = np.load(f)["grid_log_px"][: r["images"]]
    best = np.maximum(per["iwae_q"], per["iwae_mode"])
    return r | {
        "exact": float(np.mean(lp)),
        "exact_minus_best": float(np.mean(lp - best)),
        "exact_minus_mode": float(np.mean(lp - per["iwae_mode"])),
        "exact_minus_q": float(np.mean(lp - per["iwae_q"])),
        "exact_missed": int((lp - best > 1.0).sum()),
        "eq16_at_mode_minus_exact": float(np.mean(per["eq16_at_mode"] - lp)),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", nargs="*")
    p.add_argument("--images", type=int, default=200, help="first test images (200)")
    p.add_argument("--iwae-k", type=int, default=5000)
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default=None, help="default: the run's")
    p.add_argument("--json", type=Path, help="add each run's figures to this JSON file (keyed by run)")
    p.add_argument("--per-image", type=Path, metavar="DIR", help="save each run's per-image arrays to DIR/<run>.npz")
    p.add_argument("--exact", type=Path, metavar="DIR", help="grid_log_px.py's per-image files, for 2-D runs")
    p.add_argument("--table", type=Path, metavar="JSON", help="print the table of a --json file")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    if args.table:
        runs = json.loads(args.table.read_text())
        print(HEADER)
        for key in sorted(runs, key=natural_key):
            print(row(runs[key]))
        return 0
    if not args.run_dir:
        p.error("give run directories (or --table)")
    print(HEADER, flush=True)
    for d in args.run_dir:
        r, per = PM.evaluate_run(d, args.images, iwae_k=args.iwae_k, device=args.device, progress=args.progress)
        if args.exact:
            r = with_exact(r, per, args.exact)
        if args.per_image:
            args.per_image.mkdir(parents=True, exist_ok=True)
            np.savez(args.per_image / (_name(d) + ".npz"), **per)
        print(row(r), flush=True)
        if args.json:
            have = json.loads(args.json.read_text()) if args.json.exists() else {}
            have[r["run"]] = r
            args.json.write_text(json.dumps(have, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
