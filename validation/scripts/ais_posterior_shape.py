"""Where the posterior mass of chosen test images of an n = 2 run lies, against the Laplace component of AIS.

    OMP_NUM_THREADS=1 python validation/scripts/ais_posterior_shape.py RUN --images 6 13 10 14

The log joint log p(x|z) + log N(z; 0, S^2) on a 300 x 300 grid over +-4 S (the prior S^2 of
`vaetheory analyze`), normalised to a posterior: its local maxima (5 x 5 neighbourhoods holding over 1e-4
of the mass) with the mass near each, and the share of the posterior within Mahalanobis distance 3 of the
Laplace posterior N(z*, P^-1) that AIS starts from (mlpvae.evidence.ais_target.laplace_posterior).
A coarse picture (log Z here is a plain Riemann sum), not the grid quadrature of mlpvae.evidence.grid.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.ndimage import maximum_filter

from mlpvae.evidence import ais_target as AT
from mlpvae.evidence.laplace import training_priors
from mlpvae.nn import model as M
from mlpvae.nn.batched import encode_all
from mlpvae.training.runs import load_run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--images", type=int, nargs="+", required=True)
    args = ap.parse_args()
    run = load_run(args.run, test_limit=max(args.images) + 1, float64=True)
    _, _, s2, _ = training_priors(run)
    S = np.sqrt(s2)
    for i in args.images:
        x = run.x_test[i : i + 1]
        mu, var = encode_all(run.params, x, run.mc)
        var = np.broadcast_to(var, mu.shape)
        mode, P = AT.laplace_posterior(run.params, x, mu, var, run.mc, s2)
        G = 300
        a = np.linspace(-4, 4, G)
        Z = np.stack(np.meshgrid(a * S[0], a * S[1], indexing="ij"), -1).reshape(-1, 2)
        out = []
        for c in range(0, len(Z), 10000):
            z = Z[c : c + 10000]
            dec = M.decode(run.params, z, run.mc)
            ll = M.log_likelihood(dec, np.broadcast_to(x, (len(z), x.shape[1])), run.mc)
            out.append(ll - 0.5 * np.sum(z * z / s2 + np.log(2 * np.pi * s2), -1))
        L = np.concatenate(out).reshape(G, G)
        cell = (a[1] - a[0]) ** 2 * S.prod()
        logZ = np.log(np.exp(L - L.max()).sum() * cell) + L.max()
        post = np.exp(L - logZ) * cell
        pk = (L == maximum_filter(L, size=5)) & (post > 1e-4)
        idx = np.argwhere(pk)
        # mass within 3 Laplace sd of the mode
        C = np.linalg.inv(P[0])
        d = Z - mode[0]
        m2 = np.einsum("ri,ij,rj->r", d, P[0], d).reshape(G, G)
        print(
            f"image {i}: logZ(grid300) {logZ:.3f}; mu {mu[0]}, mode {mode[0]}, Laplace sd {np.sqrt(np.diag(C))}; "
            f"posterior mass within Mahalanobis 3 of Laplace: {post[m2 < 9].sum():.3f}"
        )
        for j, k in idx:
            near = post[max(0, j - 2) : j + 3, max(0, k - 2) : k + 3].sum()
            print(f"   local max at z {Z[j * G + k]}, log joint {L[j, k]:.2f}, posterior mass in 5x5 cell {near:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
