"""Where the fixed-decoder shared-Sigma fit spends its rounds of frames (issue 27, a diagnostic).

    python validation/scripts/shared_sigma_rounds.py RUN [--images N] [--max-frames R]

`vaetheory analyze RUN --fixed-decoder-images N` fits, on the run's decoder held fixed, each image's best
diagonal Gaussian and then one shared diagonal Sigma for all images jointly
(mlpvae.evidence.fixed_decoder.fit_posteriors).  Each round optimises on fixed frames of quadrature nodes,
then re-centres every frame that no longer holds or resolves its q.  On the 2-D T = I, lambda = 16 model
that joint fit ran for hours.  This script fits the diagonal family on the first N test images (from the
encoder's posteriors), then the shared Sigma from those optima as the report's first start does, and
prints after every round: the shared standard deviations, how many frames failed, q's standard deviation
over its frame's (per axis, smallest and largest over the images), the largest distance of q's mean from
its frame's centre in the frame's standard deviations, and the time.  It instruments the fit's frame check
(mlpvae.evidence.fixed_decoder._frame_ok) to see each round; the fit itself is unchanged.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mlpvae.evidence import fixed_decoder as F
from mlpvae.evidence.laplace import training_priors
from mlpvae.experiments.fixed_decoder_report import image_loglik
from mlpvae.nn.batched import encode_all
from mlpvae.training.runs import git_sha, load_run
from vaetheory.xp import to_numpy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--max-frames", type=int, default=20)
    a = ap.parse_args()
    print(f"code {git_sha()}; {a.run}; first {a.images} test images", flush=True)
    run = load_run(a.run, test_limit=a.images, float64=True)
    mc, params, x, xp = run.mc, run.params, run.x_test, run.xp
    _, _, s2, s2_train = training_priors(run)
    mu, var = encode_all(params, x, mc)
    var = xp.broadcast_to(var, mu.shape)
    mu_h, var_h = to_numpy(mu), to_numpy(var)
    n = mu_h.shape[1]
    s2_h = to_numpy(s2).astype(np.float64)
    loglik = image_loglik(params, x, mu, var, mc, s2, s2_train)
    t = time.perf_counter()
    d = F.fit_posteriors(loglik, s2_h, "diagonal", [(mu_h, var_h[:, :, None] * np.eye(n))])
    sd = np.sqrt(np.diagonal(d["cov"], axis1=1, axis2=2))
    print(
        f"diagonal optima: {int(d['converged'].sum())} of {a.images} converged, {int(d['frames'].sum())} frames, "
        f"{time.perf_counter() - t:.0f} s; their standard deviations per axis from {np.round(sd.min(axis=0), 4)} "
        f"to {np.round(sd.max(axis=0), 4)}",
        flush=True,
    )
    check = F._frame_ok
    clock = [time.perf_counter()]

    def seen(m, L, c, A, points, span):
        ok = check(m, L, c, A, points, span)
        Ai = np.linalg.inv(A)
        Lv = Ai @ L
        ratio = np.sqrt(np.diagonal(Lv @ np.swapaxes(Lv, 1, 2), axis1=1, axis2=2))
        shift = np.abs(np.einsum("nij,nj->ni", Ai, m - c)).max()
        now = time.perf_counter()
        print(
            f"  shared sd {np.array2string(np.sqrt(np.diagonal(L[0] @ L[0].T)), precision=4)}; frames failing "
            f"{int((~ok).sum())} of {len(ok)}; q sd / frame sd {ratio.min():.3g} to {ratio.max():.3g}; mean shift up "
            f"to {shift:.3g} frame sds; {now - clock[0]:.0f} s",
            flush=True,
        )
        clock[0] = now
        return ok

    F._frame_ok = seen
    clock[0] = time.perf_counter()
    c = F.fit_posteriors(loglik, s2_h, "constant", [(d["m"], d["cov"])], max_frames=a.max_frames)
    print(
        f"shared Sigma: {int(c['converged'].sum())} of {a.images} converged after {int(c['frames'].max())} frames",
        flush=True,
    )


if __name__ == "__main__":
    main()
