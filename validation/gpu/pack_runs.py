"""Pack the trained Fig. 4 models for `validation/gpu/analyses.sh`: parameters only, into .carry/runs/.

A device call carries at most 64 MiB: the 20 checkpoints of fig4_2d and fig4_100d (learned and
constant Sigma; BILBO trains bit-identically to constant Sigma) are 5.5 MB each with their Adam
state, about 1.2 MB each without it.  Run from the repository root, once, before the device call:

    python validation/gpu/pack_runs.py [RESULTS_ROOT]      # default validation/results
    (and once: echo /.carry/ >> .git/info/exclude)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from gpu import checkpoint


def main(root: str = "validation/results", out: str = ".carry/runs") -> int:
    n = 0
    for fig in ("fig4_2d", "fig4_100d"):
        for method in ("learned", "constant"):
            for run in sorted((Path(root) / fig / method).glob("seed*")):
                if not (run / "checkpoint.npz").exists():
                    print(f"skipped {run}: no checkpoint", file=sys.stderr)
                    continue
                ck = checkpoint.load(run / "checkpoint.npz")
                dst = Path(out) / fig / method / run.name
                dst.mkdir(parents=True, exist_ok=True)
                checkpoint.save(dst / "checkpoint.npz", {k: ck[k] for k in ("params", "epoch", "seed", "config")})
                for name in ("run.json", "metrics.csv"):
                    shutil.copy(run / name, dst / name)
                n += 1
    print(f"packed {n} runs into {out}")
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
