"""Does the IWAE bound with k = 5000 measure log p(x)?  Its value at growing k (docs/findings.md).

Prints `mlpvae.experiments.diagnostics.iwae_convergence` for trained runs (their checkpoints): the IWAE bound of the
first test images at k = 50, 500, 5000, 50000 and its rise per tenfold k, with the encoder's q(z|x)
as proposal and with the Laplace posterior of Eq. (16) (both lower bounds: the larger is better).

    python validation/scripts/iwae_k.py validation/results/figures/fig6_10_11_14_15/d2_T1_lambda16/seed0

A bound that stops rising is not thereby log p(x): where q(z|x) misses the posterior's mass no k
finds it.  For n <= 2 the exact value is `vaetheory analyze RUN --grid-images N` (validation/scripts/grid_log_px.py).
"""

from __future__ import annotations

import argparse
import sys

from mlpvae.experiments.diagnostics import iwae_convergence


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", nargs="+")
    p.add_argument("--images", type=int, default=40, help="first test images (40)")
    p.add_argument("--ks", default="50,500,5000,50000", help="comma-separated k (50,500,5000,50000)")
    p.add_argument("--no-laplace", action="store_true", help="only the encoder's q(z|x) as proposal")
    args = p.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]
    for d in args.run_dir:
        r = iwae_convergence(d, args.images, ks, laplace=not args.no_laplace)
        print(f"{d} ({r['images']} test images):", flush=True)
        for name, label in (("iwae", "q(z|x)"), ("iwae_laplace", "Laplace, Eq. (16)")):
            if name in r:
                vals = list(r[name].values())
                rises = ", ".join(f"{b - a:+.2f}" for a, b in zip(vals, vals[1:]))
                print(
                    f"  proposal {label}: "
                    + ", ".join(f"k={k} {v:.2f}" for k, v in r[name].items())
                    + f"; rise per step {rises}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
