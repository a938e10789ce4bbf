"""log p(x) by AIS on the Fig. 4 100-D models, learned against constant Sigma, with intervals (issue 27).

    python validation/scripts/ais_100d_summary.py [--dir validation/results/analysis/ais-100d-fig4] [--out FILE]

Reads DIR/<method>/seed<s>/ais_evidence_per_image.npz (written by `vaetheory analyze RUN --ais`, the same
first test images for every model) and prints, per model: the mean AIS log p(x), IWAE and ELBO, the
estimator's tail (largest standard error, smallest effective sample size) and the BDMC sandwich width on
the simulated images; per seed: constant minus learned Sigma on the same images (paired bootstrap over the
images, mlpvae.experiments.intervals, 10,000 resamples, seed 0); over the seeds present for both methods:
the same differences paired by seed (Student's t), and whether the IWAE's error (AIS - IWAE) depends on
the method.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mlpvae.experiments.intervals import describe, paired_bootstrap, paired_t
from mlpvae.experiments.report import emit

ROOT = Path(__file__).resolve().parents[2]
DIR = ROOT / "validation" / "results" / "analysis" / "ais-100d-fig4"
METHODS = ("learned", "constant")
#: per-image quantities compared between the methods: name -> f(npz)
QUANTITIES = {
    "AIS log p(x)": lambda d: d["ais_log_px"],
    "IWAE (k = 5000)": lambda d: d["iwae"],
    "ELBO": lambda d: d["elbo"],
    "gap, AIS - ELBO": lambda d: d["ais_log_px"] - d["elbo"],
    "IWAE error, AIS - IWAE": lambda d: d["ais_log_px"] - d["iwae"],
    # a sensitivity check: AIS and the IWAE are both stochastic lower bounds; where AIS falls below the
    # IWAE it missed mass the encoder's q found, and the larger of the two is the better bound there
    "larger of AIS and IWAE": lambda d: np.maximum(d["ais_log_px"], d["iwae"]),
}


def load(root: Path) -> dict[tuple[str, int], dict]:
    """(method, seed) -> the per-image arrays of every finished model under ``root``."""
    runs = {}
    for m in METHODS:
        for p in sorted((root / m).glob("seed*/ais_evidence_per_image.npz")):
            runs[(m, int(p.parent.name[4:]))] = dict(np.load(p))
    return runs


def _below(d) -> str:
    """The images where AIS is below the IWAE bound by more than three AIS standard errors, with the amount."""
    low = np.flatnonzero(d["ais_log_px"] < d["iwae"] - 3 * d["ais_se"])
    return ", ".join(f"image {i} ({d['ais_log_px'][i] - d['iwae'][i]:+.2f})" for i in low) or "no image"


def summarize(runs: dict[tuple[str, int], dict]) -> list[str]:
    lines = ["per model (first test images; BDMC on simulated images):"]
    for (m, s), d in sorted(runs.items()):
        w = d["bdmc_width"]
        lines.append(
            f"  {m:8s} seed {s}: {len(d['ais_log_px'])} images, AIS {d['ais_log_px'].mean():.3f}, "
            f"IWAE {d['iwae'].mean():.3f}, ELBO {d['elbo'].mean():.3f}; AIS - IWAE "
            f"{(d['ais_log_px'] - d['iwae']).mean():+.3f} (from {(d['ais_log_px'] - d['iwae']).min():+.3f}); "
            f"largest standard error {d['ais_se'].max():.3f}, smallest ESS {d['ais_ess'].min():.1f}; "
            f"AIS below the IWAE by more than 3 of its standard errors on "
            f"{_below(d)}; "
            f"BDMC width {w.mean():+.3f} on average (from {w.min():+.3f} to {w.max():+.3f}, {len(w)} images)"
        )
    w = np.concatenate([d["bdmc_width"] for d in runs.values()])
    lines.append(
        f"  BDMC sandwich over all {len(runs)} models: {w.mean():+.3f} per image on average, largest {w.max():+.3f}, "
        f"{int((np.abs(w) > 0.15).sum())} of {len(w)} images beyond 0.15 nat"
    )
    seeds = sorted({s for (m, s) in runs if all((k, s) in runs for k in METHODS)})
    for name, f in QUANTITIES.items():
        lines.append(f"constant minus learned Sigma, {name}:")
        for s in seeds:
            c, le = f(runs[("constant", s)]), f(runs[("learned", s)])
            r = paired_bootstrap(c, le, np.random.default_rng(0))
            lines.append(f"  seed {s}: " + describe(r, "paired bootstrap over images"))
        if len(seeds) >= 2:
            c = [f(runs[("constant", s)]).mean() for s in seeds]
            le = [f(runs[("learned", s)]).mean() for s in seeds]
            lines.append(f"  over seeds {seeds}: " + describe(paired_t(c, le), "paired t over seeds"))
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=DIR)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    runs = load(args.dir)
    if not runs:
        raise SystemExit(f"no ais_evidence_per_image.npz under {args.dir}/{{learned,constant}}/seed*/")
    emit(summarize(runs), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
