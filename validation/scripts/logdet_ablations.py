"""The log-det ablations of docs/findings.md as paired ratios over the shared seeds.

    python validation/scripts/logdet_ablations.py [--json validation/results/logdet/bench_n576.json] [--out FILE]

Each line: two method groups of `vaetheory bench logdet`, each at its tuned variant (least RMSE on the
seeds, as in the bench's tables), on one family and budget: RMSE(first) / RMSE(second) with its 95%
percentile-bootstrap interval, resampling the seeds jointly (vaetheory.bench.logdet_report).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlpvae.experiments.report import emit
from vaetheory.bench.logdet_report import rmse_ratio_interval, summarise

ROOT = Path(__file__).resolve().parents[2]
#: (family, budget, group, against), in the order findings.md discusses them
PAIRS = [
    ("laplace2d", 400, "pslq-nodiag", "krylov-slq"),  # the complement scale alpha where the spectrum is wide
    ("rbf-1e-1", 400, "pslq-nodiag", "krylov-slq"),  # ... and where the complement is flat
    ("powerlaw", 400, "pslq-nodiag", "krylov-slq"),
    ("toeplitz", 400, "pslq-nodiag", "krylov-slq"),
    ("varlaplace", 400, "pslq-nodiag", "krylov-slq"),
    ("rbf-1e-1", 150, "pslq-lean", "pslq-nodiag"),  # spending less on the trace
    ("varlaplace", 400, "pslq", "pslq-nodiag"),  # the diagonal phase
    ("laplace2d", 50, "slq-adaptive", "slq"),  # the adaptive depth rule against the tuned depth
    ("laplace2d", 150, "slq-adaptive", "slq"),
    ("laplace2d", 400, "slq-adaptive", "slq"),
    ("varlaplace", 150, "slq-adaptive", "slq"),
    ("rbf-1e-3", 400, "xtrace", "hutch++"),
    ("laplace2d", 400, "xtrace", "hutch++"),
]


def lines(res: dict) -> list[str]:
    groups = {fam: sm["groups"] for fam, sm in summarise(res).items()}
    out = [f"n = {res['n']}, {res['seeds']} seeds; RMSE ratio [95% paired bootstrap over the seeds]"]
    for fam, b, g, h in PAIRS:
        a, c = groups[fam][g][str(b)], groups[fam][h][str(b)]
        r, lo, hi = rmse_ratio_interval(a["errors"], c["errors"])
        pair = f"{a['variant']} {a['rmse']:.3g} / {c['variant']} {c['rmse']:.3g}"
        out.append(f"{fam} @{b}: {pair} = {r:.2f} [{lo:.2f}, {hi:.2f}]")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=ROOT / "validation" / "results" / "logdet" / "bench_n576.json")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    emit(lines(json.loads(args.json.read_text())), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
