"""Compare two training runs of the same model: is a stack's model the one trained alone?

    python validation/scripts/device/same_run.py RUN_A RUN_B [RUN_C ...]

For each run after the first: whether its parameters, Adam state and metrics.csv (timing columns
left out) equal RUN_A's bit for bit, and where they do not, the first epoch whose metrics differ
and the largest parameter difference.  device_checks.sh compares the lone Fig. 4 run (stage
one_run) with seed 0 of the same method trained in a stack of five, batched and with
VAETHEORY_STACK_EXACT=1 (computed one model at a time, mlpvae.nn.model.models_apart).  Exit status 0 always:
this reports, the tests assert.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from mlpvae.training import checkpoint

TIMING = ("seconds", "eval_seconds")


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def compare(a: Path, b: Path) -> str:
    ca, cb = checkpoint.load(a / "checkpoint.npz"), checkpoint.load(b / "checkpoint.npz")
    diff = max(float(np.max(np.abs(ca["params"][k].astype(np.float64) - cb["params"][k]))) for k in ca["params"])
    same_adam = all(np.array_equal(ca["adam"][k], cb["adam"][k]) for k in ca["adam"])
    ra, rb = _rows(a), _rows(b)
    first = next((i for i, (x, y) in enumerate(zip(ra, rb)) if x != y), None)
    if diff == 0.0 and same_adam and ra == rb:
        return f"{b}: identical to {a} (parameters, Adam state, {len(ra)} metric rows)"
    where = (
        f"first different metric row: epoch {ra[first].get('epoch')}"
        if first is not None
        else f"metric rows {len(ra)} vs {len(rb)}"
        if len(ra) != len(rb)
        else "metrics equal"
    )
    col = next((c for c in (ra[0] if ra else {}) if c.startswith("test_elbo")), None)
    last = f"final {col} {ra[-1][col]} vs {rb[-1].get(col)}" if col and rb else ""
    return f"{b}: differs from {a}: max |parameter difference| {diff:.3g}; {where}; {last}"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    runs = [Path(p) for p in argv]
    for b in runs[1:]:
        if not (b / "checkpoint.npz").exists() or not (runs[0] / "checkpoint.npz").exists():
            print(f"{b}: not comparable (a checkpoint is missing)")
            continue
        print(compare(runs[0], b))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
