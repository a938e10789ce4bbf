"""AIS log p(x) of chosen test images of an n = 2 run against the exact grid, at chosen settings, repeated over seeds.

    OMP_NUM_THREADS=1 python validation/scripts/ais_one_image.py RUN --images 6 --chains 256 --steps 1000 \
        --seeds 0 1 2 [--init modes-mixture] [--q-fraction 0.5] [--leapfrog 5]

What `vaetheory analyze RUN --ais` measures (same prior S^2, encoder posteriors and grid), on the listed images
only, with NumPy generators seeded 0, 1, ... (not the command's stream): for each seed and image, AIS minus the
grid value, its stratified standard error, the effective sample size and the mean log weight of each p0
component's chains relative to the grid value, and the process time.  For the images where the command's
largest difference sits: does it close with more chains or more intermediate distributions?
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mlpvae.evidence import ais as A
from mlpvae.evidence.grid import grid_log_px
from mlpvae.evidence.laplace import training_priors
from mlpvae.nn.batched import encode_all
from mlpvae.training.runs import load_run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--images", type=int, nargs="+", required=True, help="test image indices")
    ap.add_argument("--chains", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--leapfrog", type=int, default=5)
    ap.add_argument("--init", default="modes-mixture", choices=A.INITS)
    ap.add_argument("--q-fraction", type=float, default=0.5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    run = load_run(args.run, test_limit=max(args.images) + 1, float64=True)
    if run.mc.n > 2:
        raise SystemExit("ais_one_image: the grid needs n <= 2")
    _, _, s2, s2b = training_priors(run)
    idx = np.asarray(args.images)
    x = run.x_test[idx]
    mu, var = encode_all(run.params, x, run.mc)
    var = np.broadcast_to(var, mu.shape)
    exact = grid_log_px(run.params, x, run.mc, s2, baggins_s2=s2b)["log_px"]
    opts = dict(chains=args.chains, steps=args.steps, leapfrog=args.leapfrog, init=args.init)
    print(f"{args.run}: images {args.images}, {opts}, q_fraction {args.q_fraction}")
    for seed in args.seeds:
        t0 = time.process_time()
        r = A.ais_log_px(
            run.params,
            x,
            run.mc,
            s2,
            np.random.default_rng(seed),
            mu=mu,
            var=var,
            baggins_s2=s2b,
            q_fraction=args.q_fraction,
            **opts,
        )
        dt = time.process_time() - t0
        for j, i in enumerate(args.images):
            lw = r["log_w"][:, j] - exact[j]
            comp = "  ".join(
                f"{name} chains mean log w {lw[sel].mean():+.2f} (sd {lw[sel].std():.2f})"
                for name, sel in (("q/Laplace", r["in_q"]), ("prior", ~r["in_q"]))
                if sel.any()
            )
            print(
                f"seed {seed} image {i}: AIS - grid {r['log_px'][j] - exact[j]:+.3f} +- {r['se'][j]:.3f}, "
                f"ESS {r['ess'][j]:.1f}; {comp}; {dt:.1f} s CPU"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
