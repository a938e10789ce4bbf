"""The BDMC sandwich of the mixture estimator, for a run analysed with `vaetheory analyze RUN --ais` (issue 27).

    python validation/scripts/bdmc_mixture_width.py RUN [--out FILE.json]

`analyze --ais` reports this width itself (`bdmc_mixture_width` in ais_evidence.json); this script adds
it to a run analysed before it did. It re-draws the run's simulated images
(the same stream, mlpvae.experiments.ais_report.simulated_images), runs forward AIS from the run's mixture p0
(the estimator of the test images, the prior component included) with the settings in RUN/ais_evidence.json,
and compares it with the reverse (upper) bounds in RUN/ais_evidence_per_image.npz, which hold whatever p0 the
forward run uses. Prints per image and writes FILE.json (default RUN/bdmc_mixture.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mlpvae.evidence.ais import ais_log_px
from mlpvae.evidence.laplace import training_priors
from mlpvae.experiments.ais_report import simulated_images
from mlpvae.nn.batched import encode_all
from mlpvae.training.runs import git_sha, load_run
from mlpvae.training.streams import STREAM_AIS, generator


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    sha = git_sha()
    s = json.loads((a.run / "ais_evidence.json").read_text())
    per = np.load(a.run / "ais_evidence_per_image.npz")
    upper = per["bdmc_upper"]
    run = load_run(a.run, device="cpu", test_limit=s["images"], float64=True)
    _, _, s2, _ = training_priors(run)
    mu, _ = encode_all(run.params, run.x_test, run.mc)
    mc_b, xs, _, mus, vs = simulated_images(run, run.x_test, mu, s2, len(upper))
    opts = {k: s[k] for k in ("chains", "steps", "leapfrog", "init", "q_fraction")}
    rng = generator(run.cfg.seed, STREAM_AIS, run.epoch, run.xp)
    f = ais_log_px(run.params, xs, mc_b, s2, rng, mu=mus, var=vs, schedule_kind=s["schedule_kind"], **opts)
    width = upper - f["log_px"]
    for i in range(len(upper)):
        print(
            f"image {i}: modes-only forward {per['bdmc_lower'][i]:.3f}, {opts['init']} forward {f['log_px'][i]:.3f} "
            f"(+- {f['se'][i]:.3f}), reverse upper {upper[i]:.3f}: width {width[i]:+.3f}"
        )
    spread = f"({width.min():+.3f} to {width.max():+.3f})"
    print(f"width of the {opts['init']} estimator: {width.mean():+.3f} on average {spread}")
    out = a.out or a.run / "bdmc_mixture.json"
    rec = dict(
        run=str(a.run),
        git_sha=sha,
        **opts,
        mixture_lower=f["log_px"].tolist(),
        mixture_se=f["se"].tolist(),
        upper=upper.tolist(),
        modes_lower=per["bdmc_lower"].tolist(),
        width=width.tolist(),
        width_mean=float(width.mean()),
    )
    out.write_text(json.dumps(rec, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
