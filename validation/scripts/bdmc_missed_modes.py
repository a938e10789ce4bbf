"""Whether an open BDMC sandwich is a mode the forward chains' start missed (issue 27).

    OMP_NUM_THREADS=1 python validation/scripts/bdmc_missed_modes.py RUN [--images N] [--climbs C] [--max-modes K]
        [--out FILE.json]

For a run analysed with `vaetheory analyze RUN --ais` (BDMC on N simulated images), re-draws the same simulated
images and their exact posterior samples z (mlpvae.experiments.ais_report.simulated_images: the run's own
simulation stream), runs the mode search that places the Gaussian components of the forward chains' p0
(mlpvae.evidence.ais_target.laplace_modes: Levenberg-Marquardt from the encoder's mean and the best of the prior's
points; `--climbs` and `--max-modes` widen it), and climbs once more from the exact sample z itself
(mlpvae.evidence.posterior_mode). Per image it prints the log joint log p(x|z) + log N(z; 0, S^2) at the exact
sample and at the best mode found, the Mahalanobis distance from z to the nearest found mode (in that mode's
Laplace precision), and the Laplace log mass (Eq. (16)) of the mode z climbs to against the heaviest found. A climb
from z that ends on a mode heavier than every found one, far from all of them, is a mode the forward start missed:
the reverse chain, started at z, knows it; the forward chains, started at the found modes, do not. The reverse and
forward bounds are read from RUN/ais_evidence_per_image.npz. Writes FILE.json (default RUN/bdmc_missed_modes.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mlpvae.evidence.ais_target import (
    MAX_MODES,
    MODE_CLIMBS,
    SAME_MODE_SD,
    laplace_log_mass,
    laplace_modes,
    laplace_precision,
)
from mlpvae.evidence.laplace import training_priors
from mlpvae.evidence.posterior_mode import log_joint_at, posterior_mode
from mlpvae.experiments.ais_report import simulated_images
from mlpvae.nn.batched import encode_all
from mlpvae.training.runs import git_sha, load_run
from vaetheory.xp import to_numpy


def _mahalanobis(z, m, P) -> float:
    """sqrt((z - m)^T P (z - m)): the distance in posterior standard deviations of N(m, P^-1)."""
    return float(np.sqrt((z - m) @ P @ (z - m)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--images", type=int, default=None, help="simulated images (default: those of the BDMC run)")
    ap.add_argument("--climbs", type=int, default=MODE_CLIMBS, help=f"climbs from the prior's points ({MODE_CLIMBS})")
    ap.add_argument("--max-modes", type=int, default=MAX_MODES, help=f"modes kept at most ({MAX_MODES})")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    sha = git_sha()
    s = json.loads((a.run / "ais_evidence.json").read_text())
    per = np.load(a.run / "ais_evidence_per_image.npz")
    N = a.images or len(per["bdmc_width"])
    run = load_run(a.run, device="cpu", test_limit=s["images"], float64=True)
    params = run.params
    _, _, s2, s2_train = training_priors(run)
    mu, _ = encode_all(params, run.x_test, run.mc)
    mc_b, xs, zs, mus, vs = simulated_images(run, run.x_test, mu, s2, N)
    xp = run.xp
    s2 = xp.asarray(s2, dtype=xp.float64)
    found_modes = laplace_modes(params, xs, mus, vs, mc_b, s2, climbs=a.climbs, max_modes=a.max_modes)
    modes, precs, log_mass = (to_numpy(v) for v in found_modes)
    lj_modes = np.stack(
        [
            to_numpy(log_joint_at(params, xs, xp.asarray(modes[:, k]), mus, vs, mc_b, s2, None))
            for k in range(modes.shape[1])
        ],
        axis=1,
    )
    lj_modes[~np.isfinite(log_mass)] = -np.inf
    lj_true = to_numpy(log_joint_at(params, xs, zs, mus, vs, mc_b, s2, None))
    # the climb from the exact sample: posterior_mode's first climb starts at its `mu` argument
    fromz = posterior_mode(params, xs, zs, vs, mc_b, s2)
    z_star = to_numpy(fromz["mode"])
    P = to_numpy(laplace_precision(params, xs, xp.asarray(z_star), mus, vs, mc_b, s2, None))
    mass_z = laplace_log_mass(to_numpy(fromz["log_joint"]), P)
    zs_h = to_numpy(zs)
    rows = []
    for b in range(N):
        found = np.isfinite(log_mass[b])
        d_true = [_mahalanobis(zs_h[b], modes[b, k], precs[b, k]) for k in np.flatnonzero(found)]
        d_star = [_mahalanobis(z_star[b], modes[b, k], precs[b, k]) for k in np.flatnonzero(found)]
        r = dict(
            image=b,
            width=float(per["bdmc_width"][b]),
            lower=float(per["bdmc_lower"][b]),
            upper=float(per["bdmc_upper"][b]),
            modes_found=int(found.sum()),
            log_joint_true=float(lj_true[b]),
            log_joint_best_found=float(lj_modes[b][found].max()),
            log_mass_heaviest_found=float(log_mass[b, 0]),
            distance_true_to_found=min(d_true),
            log_joint_climb_from_true=float(to_numpy(fromz["log_joint"])[b]),
            log_mass_climb_from_true=float(mass_z[b]),
            distance_climb_to_found=min(d_star),
            climb_is_new_mode=bool(min(d_star) >= SAME_MODE_SD),
        )
        rows.append(r)
        print(
            f"image {b}: width {r['width']:+.3f}; {r['modes_found']} modes found, heaviest log mass "
            f"{r['log_mass_heaviest_found']:.2f}, best log joint {r['log_joint_best_found']:.2f}; exact z: log joint "
            f"{r['log_joint_true']:.2f}, {r['distance_true_to_found']:.1f} sd from the nearest; its climb ends at "
            f"log joint {r['log_joint_climb_from_true']:.2f}, log mass {r['log_mass_climb_from_true']:.2f}, "
            f"{r['distance_climb_to_found']:.1f} sd from the nearest found mode"
            + (" (a mode not found)" if r["climb_is_new_mode"] else "")
        )
    out = a.out or a.run / "bdmc_missed_modes.json"
    rec = dict(run=str(a.run), git_sha=sha, images=N, climbs=a.climbs, max_modes=a.max_modes, rows=rows)
    out.write_text(json.dumps(rec, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
