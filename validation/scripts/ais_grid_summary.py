"""AIS against the exact grid on the committed 2-D runs of validation/results/analysis/ais-2d-30ep, with intervals.

    python validation/scripts/ais_grid_summary.py [--out validation/results/analysis/ais-2d-30ep/summary.txt]

Reads each subfolder's ais_evidence_per_image.npz (written by `vaetheory analyze RUN --ais`) and prints, per
setting: the mean of AIS minus the grid value with a paired bootstrap interval over the images
(mlpvae.experiments.intervals, 10,000 resamples, seed 0), the largest |difference| with its standard error,
the images beyond 0.1 nat and beyond two standard errors; and between the settings, the paired differences
of |AIS - grid| and of the standard errors over the same images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mlpvae.experiments.intervals import describe, paired_bootstrap
from mlpvae.experiments.report import emit

ROOT = Path(__file__).resolve().parents[2]
DIR = ROOT / "validation" / "results" / "analysis" / "ais-2d-30ep"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    runs = {p.parent.name: np.load(p) for p in sorted(DIR.glob("*/ais_evidence_per_image.npz"))}
    lines = []
    for name, d in runs.items():
        diff, se = d["ais_minus_grid"], d["ais_se"]
        z = np.zeros_like(diff)
        i = int(np.argmax(np.abs(diff)))
        ess = d["ais_ess"]
        beyond = {k: np.flatnonzero(np.abs(diff) > k * se).tolist() for k in (2, 3)}
        lines += [
            f"{name}: {len(diff)} images",
            "  AIS - grid, mean: " + describe(paired_bootstrap(diff, z, np.random.default_rng(0)), "paired bootstrap"),
            f"  largest |AIS - grid| {abs(diff[i]):.3f} (image {i}: {diff[i]:+.3f} +- {se[i]:.3f}); "
            f"standard errors {se.min():.3f} to {se.max():.3f}; ESS {ess.min():.1f} to {ess.max():.1f}",
            f"  beyond 0.1 nat: images {np.flatnonzero(np.abs(diff) > 0.1).tolist()}; beyond 2 standard errors: "
            f"images {beyond[2]}; beyond 3: {beyond[3]}",
        ]
    names = list(runs)
    for a, b in zip(names, names[1:]):
        da, db = runs[a], runs[b]
        if len(da["ais_minus_grid"]) != len(db["ais_minus_grid"]):
            continue  # not the same images
        rng = np.random.default_rng(0)
        lines += [
            f"{b} minus {a}, same images:",
            "  |AIS - grid|: "
            + describe(
                paired_bootstrap(np.abs(db["ais_minus_grid"]), np.abs(da["ais_minus_grid"]), rng), "paired bootstrap"
            ),
            "  standard error: " + describe(paired_bootstrap(db["ais_se"], da["ais_se"], rng), "paired bootstrap"),
        ]
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
