"""Eqs. (16) and (18) under BAGGINS with the curvature of the likelihood the evidence estimators use (issue 27).

    python validation/scripts/baggins_metric.py RUN (--grid NPZ | --ais NPZ) [--images N] [--out FILE]

`vaetheory analyze` evaluates Eqs. (16) and (18) for BAGGINS with the metric G = T^-1, T of Eq. (29)
held at its value at z (mlpvae.evidence.laplace.likelihood_at). The ELBO, the IWAE, the grid and AIS
evaluate log p(x|z) with T at each z's own residual, i.e. the function -m/2 log |x - nu(z)|^2 + const,
whose curvature is mlpvae.evidence.laplace.baggins_hessian_gram: (m / r^2)(J^T J - 2 u u^T). The two
differ by the factor tr(Sigma^-1 S^2) / (tau m) on J^T J and by the residual direction. This script
evaluates both on the same images of a BAGGINS run (its checkpoint) and compares them with log p(x):

- ``--grid NPZ`` (2-D: validation/results/analysis/grid-2d/<figure>_<method>_seed<s>.npz, the exact
  log p(x) by quadrature, the grid's posterior mode and the ELBO per image): Eq. (16) at the mode and
  at the encoder's mean minus the exact value, and Eq. (18) at the mean against the measured gap;
- ``--ais NPZ`` (any n: ais_evidence_per_image.npz of `vaetheory analyze RUN --ais`): Eq. (16) at the
  encoder's mean minus AIS, and Eq. (18) against the AIS gap.

Each with a paired bootstrap 95% interval over the images (mlpvae.experiments.intervals, 10,000
resamples, seed 0). Where the curvature makes a precision indefinite (Eq. (16)'s I + S H S or Eq. (18)'s
P), that image's value is not defined; the count is printed and the images are left out of that row.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mlpvae.evidence.laplace import baggins_laplace, laplace_evidence, training_priors
from mlpvae.experiments.intervals import describe, paired_bootstrap
from mlpvae.experiments.report import emit
from mlpvae.nn.batched import encode_all
from mlpvae.training.runs import git_sha, load_run
from vaetheory.xp import to_numpy


def compare(label: str, a: np.ndarray, b: np.ndarray, rng) -> str:
    ok = np.isfinite(a) & np.isfinite(b)  # baggins_laplace's NaN: an indefinite precision
    note = "" if ok.all() else f" ({int((~ok).sum())} image(s) undefined, left out)"
    return f"- {label}: {describe(paired_bootstrap(a[ok], b[ok], rng), 'paired bootstrap over images')}{note}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ref = ap.add_mutually_exclusive_group(required=True)
    ref.add_argument("--grid", type=Path, help="the grid-2d per-image npz of this run (exact log p(x), mode, ELBO)")
    ref.add_argument("--ais", type=Path, help="the run's ais_evidence_per_image.npz (AIS log p(x), ELBO)")
    ap.add_argument("--images", type=int, default=None, help="first N images of the reference (default: all)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    r = dict(np.load(a.grid or a.ais))
    log_px = r["grid_log_px"] if a.grid else r["ais_log_px"]
    N = min(len(log_px), a.images or len(log_px))
    log_px, elbo = log_px[:N], r["elbo"][:N]
    sha = git_sha()
    run = load_run(a.run, device="cpu", test_limit=N, float64=True)
    if run.mc.likelihood != "baggins":
        raise SystemExit(f"{a.run}: a {run.mc.likelihood} run; this script compares BAGGINS' two curvatures")
    params, x, mc = run.params, run.x_test, run.mc
    _, _, s2, s2_train = training_priors(run)
    mu, var = encode_all(params, x, mc)
    var = np.broadcast_to(var, mu.shape)
    if a.grid:
        np.testing.assert_allclose(to_numpy(mu), r["mu"][:N], rtol=1e-9, atol=1e-9)  # the same model and images
    rng = np.random.default_rng(0)
    fixed = laplace_evidence(params, x, mu, var, mc, s2)
    res = baggins_laplace(params, x, mu, mu, var, mc, s2, s2_train)
    c = float(np.sum(s2_train / var[0]))
    L = [
        f"# Eqs. (16), (18) under BAGGINS: T held fixed (G = T^-1) against T following the residual; {a.run}",
        f"{N} test images; reference {'exact log p(x) (grid)' if a.grid else 'AIS log p(x)'} from {a.grid or a.ais}; "
        f"code {sha}",
        f"tr(Sigma^-1 S^2) / (tau m) = {c / (mc.tau * mc.m):.3f} (the fixed-T metric's factor on J^T J)",
        "",
        "## at the encoder's mean",
        compare("Eq. (16) minus log p(x), T fixed", fixed["log_evidence"], log_px, rng),
        compare("Eq. (16) minus log p(x), T following the residual", res["log_evidence"], log_px, rng),
        compare("measured gap, log p(x) - ELBO", log_px, elbo, rng),
        compare("Eq. (18) minus the measured gap, T fixed", fixed["gap_eq18"], log_px - elbo, rng),
        compare("Eq. (18) minus the measured gap, T following the residual", res["gap_eq18"], log_px - elbo, rng),
    ]
    if a.grid:
        mode = r["mode"][:N]
        fixed_m = laplace_evidence(params, x, mode, var, mc, s2)
        res_m = baggins_laplace(params, x, mode, mu, var, mc, s2, s2_train)
        L += [
            "",
            "## at the grid's posterior mode (Laplace's approximation proper)",
            compare("Eq. (16) minus log p(x), T fixed", fixed_m["log_evidence"], log_px, rng),
            compare("Eq. (16) minus log p(x), T following the residual", res_m["log_evidence"], log_px, rng),
        ]
    emit(L, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
