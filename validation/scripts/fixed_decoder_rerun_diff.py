"""Two grid fixed-decoder studies of the same decoder and images compared per image: what a code change moved.

    python validation/scripts/fixed_decoder_rerun_diff.py BEFORE_NPZ AFTER_NPZ [--out FILE]

BEFORE_NPZ, AFTER_NPZ: the fixed_decoder_per_image.npz files `vaetheory analyze RUN --fixed-decoder-images N`
wrote (the same run, the same first N images).  Prints, per family (diagonal, shared Sigma, full), how many
images' optimum ELBO moved by more than 1e-3 nats, the largest moves with their images, and for each moved
diagonal optimum how far its mean went, in the after-optimum's standard deviations; then the exact
log p(x)'s largest change (it does not depend on the optimiser) and the change of each quoted mean.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mlpvae.experiments.report import emit

FAMILIES = (("diagonal", "elbo_diagonal"), ("shared Sigma", "elbo_constant"), ("full", "elbo_full"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    a, b = np.load(args.before), np.load(args.after)
    if a["log_px"].shape != b["log_px"].shape:
        raise SystemExit(f"the two studies cover {a['log_px'].size} and {b['log_px'].size} images: not comparable")
    lines = [f"before: {args.before}", f"after:  {args.after}", f"{b['log_px'].size} images; nats per image"]
    lines.append(f"exact log p(x): largest |after - before| {np.max(np.abs(b['log_px'] - a['log_px'])):.2e}")
    for name, key in FAMILIES:
        d = b[key] - a[key]
        moved = np.flatnonzero(np.abs(d) > 1e-3)
        order = moved[np.argsort(-np.abs(d[moved]))]
        top = ", ".join(f"image {i}: {d[i]:+.3f}" for i in order[:8])
        lines.append(f"{name}: {moved.size} optima moved by more than 1e-3 ({top or 'none'}); mean {d.mean():+.4f}")
        if name == "diagonal":
            sd = np.sqrt(b["var_diagonal"])
            for i in order[:8]:
                dist = np.abs(b["mean_diagonal"][i] - a["mean_diagonal"][i]) / sd[i]
                lines.append(f"    image {i}: the mean moved {np.array2string(dist, precision=1)} after-sds")
    rows = {
        "amortization gap (best diagonal - encoder)": lambda z: z["elbo_diagonal"] - z["elbo_encoder"],
        "log p(x) - best diagonal": lambda z: z["log_px"] - z["elbo_diagonal"],
        "log p(x) - best full": lambda z: z["log_px"] - z["elbo_full"],
        "cost of a shared Sigma": lambda z: z["elbo_diagonal"] - z["elbo_constant"],
    }
    for label, f in rows.items():
        lines.append(f"{label}: before {f(a).mean():+.4f}, after {f(b).mean():+.4f}")
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
