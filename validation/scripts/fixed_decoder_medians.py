"""Eq. (22) against the measured cost of a shared Sigma by medians over the images, for recorded fixed-decoder studies.

    python validation/scripts/fixed_decoder_medians.py NPZ [NPZ ...] [--out FILE]

NPZ: fixed_decoder_per_image.npz files `vaetheory analyze RUN --fixed-decoder-images N` wrote.  Eq. (22)'s
per-image terms are heavy-tailed (on the BAGGINS decoders one image carries more than the rest together), so
beside the reports' means this prints, per study, the mean and the median (each with its paired bootstrap 95%
interval over the images) of the measured cost (best diagonal minus best shared Sigma), of Eq. (22)'s terms and of
measured minus predicted: `mlpvae.experiments.fixed_decoder_medians.eq22_medians`, which newer reports carry too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mlpvae.experiments.fixed_decoder_medians import eq22_medians, median_text
from mlpvae.experiments.intervals import paired_bootstrap
from mlpvae.experiments.report import emit, interval_text
from mlpvae.training.runs import git_sha

ROWS = (("constant_cost", "cost of a shared Sigma"), ("eq22", "Eq. (22)"), ("constant_cost_minus_eq22", "minus"))


def study_lines(npz: Path) -> list[str]:
    """The study's rows: mean [interval] and median [interval] of the three quantities."""
    per = dict(np.load(npz))
    cost = per["elbo_diagonal"] - per["elbo_constant"]
    zero = np.zeros_like(cost)
    rng = np.random.default_rng(0)
    means = {
        "constant_cost": paired_bootstrap(cost, zero, rng),
        "eq22": paired_bootstrap(per["eq22_terms"], zero, rng),
        "constant_cost_minus_eq22": paired_bootstrap(cost, per["eq22_terms"], rng),
    }
    med = eq22_medians(per)
    out = [f"{npz.parent} ({cost.size} images):"]
    for key, label in ROWS:
        label = "measured minus Eq. (22)" if label == "minus" else label
        out.append(f"    {label}: mean {interval_text(means[key])}, median {median_text(med[key])}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("npz", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    missing = [str(p) for p in args.npz if not p.is_file()]
    if missing:
        raise SystemExit(f"not found: {', '.join(missing)}")
    lines = [
        f"code {git_sha()}; nats per image; intervals: paired bootstrap over the images, 10,000 resamples, 95% "
        "percentile"
    ]
    for p in args.npz:
        lines += study_lines(p)
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
