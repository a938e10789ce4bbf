"""The n > 2 fixed-decoder method checked where the answer is known: a 2-D model's converged grid optima.

    python validation/scripts/fixed_decoder_saa_check.py RUN GRID_NPZ [--images 20] [--K 1024] [--out FILE]

RUN: a 2-D run directory with its checkpoint; GRID_NPZ: the fixed_decoder_per_image.npz that
`vaetheory analyze RUN --fixed-decoder-images N` wrote for the same run (each image's best diagonal
Gaussian on a fixed grid, converged to a stated Newton gain).  Finds each image's best diagonal
Gaussian again with mlpvae.evidence.fixed_decoder_saa (moment-matched sample average over K and 2K
draws, from the encoder's mean and from local maxima of the log joint, evaluated with 8192 fresh draws) and
prints the per-image differences from the grid's optimum, with a paired bootstrap interval over the
images; likewise for the encoder's own ELBO.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mlpvae.evidence import fixed_decoder_saa as S
from mlpvae.evidence.laplace import training_priors
from mlpvae.experiments.fixed_decoder_saa_report import starts
from mlpvae.experiments.intervals import describe, paired_bootstrap
from mlpvae.experiments.report import emit
from mlpvae.nn.batched import encode_all
from mlpvae.training.runs import git_sha, load_run
from vaetheory.xp import to_numpy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("grid", type=Path)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--K", type=int, default=1024)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    g = np.load(args.grid)
    N = args.images
    run = load_run(args.run, test_limit=N, float64=True)
    mc, params, x = run.mc, run.params, run.x_test
    s2 = to_numpy(training_priors(run)[2]).astype(np.float64)
    mu_d, var_d = encode_all(params, x, mc)
    var_d = run.xp.broadcast_to(var_d, mu_d.shape)
    mu = to_numpy(mu_d).astype(np.float64)
    logs = 0.5 * np.log(to_numpy(var_d).astype(np.float64))
    m_starts = starts(run, mu_d, var_d)

    def fresh(m, ls):
        return S.fresh_elbo(params, x, mc, s2, m, ls, 8192, np.random.default_rng(1))

    lines = [f'"git_sha": "{git_sha()}"; {args.run}, first {N} test images, n = {mc.n}; grid optima from {args.grid}']
    enc, se = fresh(mu, logs)
    r = paired_bootstrap(enc, g["elbo_encoder"][:N], np.random.default_rng(0))
    lines.append(f"encoder ELBO, fresh draws minus grid: {describe(r, 'paired bootstrap over images')}")
    lines.append(f"  largest |difference| {np.abs(enc - g['elbo_encoder'][:N]).max():.4f}, largest se {se.max():.4f}")
    for k in (args.K, 2 * args.K):
        eps = S.draws(k, mc.n, np.random.default_rng(2 + k))
        d = S.best_of([S.optimise(params, x, mc, s2, "diagonal", m0, logs, eps) for m0 in m_starts])
        e, se = fresh(d["m"], d["logs"])
        diff = e - g["elbo_diagonal"][:N]
        r = paired_bootstrap(e, g["elbo_diagonal"][:N], np.random.default_rng(0))
        lines.append(f"best diagonal, K = {k}, minus the grid's: {describe(r, 'paired bootstrap over images')}")
        lines.append(
            f"  largest |difference| {np.abs(diff).max():.4f} (image {int(np.argmax(np.abs(diff)))}), largest se "
            f"{se.max():.4f}; converged {d['converged']}, restart gain {d['restart_gain']:.1e}, "
            f"{d['iterations']} iterations; optimum from a start other than the encoder's on "
            f"{int((d['start'] > 0).sum())} images"
        )
        far = np.flatnonzero(np.abs(diff) > 0.05)
        lines.append(
            f"  within 0.05 nats of the grid's optimum: {N - len(far)} of {N}; beyond: "
            + (", ".join(f"image {i} {diff[i]:+.3f}" for i in far) or "none")
        )
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
