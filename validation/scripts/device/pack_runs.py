"""Pack the trained Fig. 4 models for `validation/scripts/device/analyses.sh`: parameters only, into .carry/runs/.

A device call carries at most 64 MiB: the 20 checkpoints of fig4_2d and fig4_100d (learned and
constant Sigma; BILBO trains bit-identically to constant Sigma) are 5.5 MB each with their Adam
state, about 1.2 MB each without it.  Run from the repository root, once, before the device call:

    python validation/scripts/device/pack_runs.py [RESULTS_ROOT]      # default validation/results/figures
    (and once: echo /.carry/ >> .git/info/exclude)

On a device, `pack_runs.py ROOT OUT FIGURE...` packs every run of the figures named (all methods), so
that models trained there come back small enough to bring home (device_checks.sh does this).  A run
that did not finish (a stage cut off by its time limit) keeps its whole checkpoint, Adam state included:
`vaetheory reproduce` here then resumes it where it stopped.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from mlpvae.training import checkpoint


def main(root: str = "validation/results/figures", out: str = ".carry/runs", *figures: str) -> int:
    n = 0
    every = bool(figures)  # figures named: all their methods; else Fig. 4's learned and constant
    for fig in figures or ("fig4_2d", "fig4_100d"):
        here = Path(root) / fig
        methods = sorted(p.name for p in here.glob("*") if p.is_dir()) if every else ("learned", "constant")
        for method in methods:
            for run in sorted((here / method).glob("seed*")):
                if not (run / "checkpoint.npz").exists():
                    print(f"skipped {run}: no checkpoint", file=sys.stderr)
                    continue
                dst = Path(out) / fig / method / run.name
                dst.mkdir(parents=True, exist_ok=True)
                # A run cut off (status still "running" after a time limit, or "interrupted") travels whole, Adam
                # state included, so that `vaetheory reproduce` can resume it here; a finished one needs its
                # parameters only.
                if json.loads((run / "run.json").read_text()).get("status") in ("completed", "diverged"):
                    ck = checkpoint.load(run / "checkpoint.npz")
                    checkpoint.save(dst / "checkpoint.npz", {k: ck[k] for k in ("params", "epoch", "seed", "config")})
                else:
                    shutil.copy(run / "checkpoint.npz", dst / "checkpoint.npz")
                for name in ("run.json", "metrics.csv"):
                    shutil.copy(run / name, dst / name)
                n += 1
    print(f"packed {n} runs into {out}")
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
