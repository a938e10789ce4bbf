"""``vaetheory bench logdet``: Eq. (19)-based log-det estimators against tuned and preconditioned baselines.

The families and the variants are in :mod:`vaetheory.bench.logdet_methods`,
the intervals, verdicts, tables and figure in :mod:`vaetheory.bench.logdet_report`.
Every estimator sees only a counting matvec, except that Chebyshev is handed
the exact spectral interval and the pivoted Cholesky the diagonal of ``A``
(both favour the baselines).  A *cell* is one (family, variant, budget) with
``--seeds`` independent runs; the JSON is rewritten after every cell, and a
run started again with the same ``--json`` keeps the cells it finds (same n
and seeds) and computes only the rest.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vaetheory import logdet as L
from vaetheory.bench.logdet_methods import (
    DEFAULT_VARIANTS,
    FAMILIES,
    QUICK_VARIANTS,
    VARIANTS,
    make_family,
    run_variant,
)
from vaetheory.bench.logdet_report import markdown, plot, summarise

__all__ = ["make_family", "bench", "estimate_seconds", "add_arguments", "run"]

DEFAULTS = {"n": 576, "seeds": 20, "budgets": (50, 150, 400)}
QUICK = {"n": 256, "seeds": 8, "budgets": (50, 150), "families": FAMILIES}
# Seconds per matvec column beyond the product itself (Lanczos reorthogonalisation, preconditioner, Python),
# per unit of n, fitted to the two committed runs (validation/results/logdet/COMMAND) on the shared 2-core machine.
OVERHEAD_PER_N = 2.5e-7


def _matvec_seconds(mv, n: int) -> float:
    X = np.random.default_rng(0).standard_normal((n, 32))
    t = time.perf_counter()
    for _ in range(3):
        mv(X)
    return (time.perf_counter() - t) / 96


def estimate_seconds(families, variants, budgets, seeds: int, n: int, per_column: dict) -> float:
    """Not in the paper: the cost model ``seeds * budget * (matvec time + overhead * n)`` summed over cells."""
    per = sum(per_column[f] + OVERHEAD_PER_N * n for f in families)
    return float(seeds * sum(budgets) * len(variants) * per)


def _write(path: Path | None, res: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, path)


def _one_cell(variant, mv, A, n, budget, seeds, truth, bounds) -> dict:
    t = time.perf_counter()
    err, mvs = [], []
    for seed in range(seeds):
        try:
            r = run_variant(variant, mv, n, budget, np.random.default_rng([seed, budget]), A, bounds)
        except ValueError as exc:  # budget too small for this variant
            return {"ran": False, "why": str(exc)}
        err.append(r.estimate - truth)
        mvs.append(r.matvecs)
    return {"ran": True, "errors": err, "matvecs_max": int(max(mvs)), "seconds": time.perf_counter() - t}


def bench(families, variants, budgets, seeds: int, n: int, path: Path | None = None, quiet: bool = False) -> dict:
    """Not in the paper: run every (family, variant, budget) cell, keeping and extending the JSON at ``path``."""
    res = {"n": n, "seeds": seeds, "budgets": list(budgets), "families": {}}
    if path is not None and path.exists():
        old = json.loads(path.read_text())
        if (old.get("n"), old.get("seeds")) != (n, seeds):
            raise ValueError(
                f"--json {path} holds a run with n={old.get('n')}, seeds={old.get('seeds')}: "
                f"give another path to start one with n={n}, seeds={seeds}"
            )
        res["families"] = old.get("families", {})
        res["seconds"] = old.get("seconds", 0.0)  # a continued run adds its own time
    made = {f: make_family(f, n) for f in families}
    per_col = {f: _matvec_seconds(made[f][0], n) for f in families}
    todo = [
        (f, v, b)
        for f in families
        for v in variants
        for b in budgets
        if str(b) not in res["families"].get(f, {}).get("cells", {}).get(v, {})
    ]
    est = estimate_seconds(families, variants, budgets, seeds, n, per_col)
    if not quiet:
        print(
            f"bench logdet: n={n}, {seeds} seeds, budgets {list(budgets)}, {len(families)} families x "
            f"{len(variants)} variants; estimated {est / 60:.1f} min for the whole grid, "
            f"{len(todo)} of {len(families) * len(variants) * len(budgets)} cells left",
            flush=True,
        )
    for f in families:
        mv, A, truth, bounds = made[f]
        fr = res["families"].setdefault(f, {"cells": {}})
        fr.update(logdet=truth, lambda_min=bounds[0], lambda_max=bounds[1])
        fr["bias_floor"] = {p: L.trace_identity_bias_floor(A, p) for p in ("scalar", "diagonal")}
    bar = tqdm(todo, desc="cells", unit="cell", disable=quiet, file=sys.stderr)
    for f, v, b in bar:
        bar.set_postfix_str(f"{f} {v} @{b}")
        mv, A, truth, bounds = made[f]
        cells = res["families"][f]["cells"].setdefault(v, {})
        cells[str(b)] = _one_cell(v, mv, A, n, b, seeds, truth, bounds)
        _write(path, res)
    return res


def add_arguments(parser) -> None:
    """The options of ``vaetheory bench logdet``."""
    d = DEFAULTS
    parser.add_argument("--n", type=int, default=None, help=f"matrix size, a perfect square (default {d['n']})")
    parser.add_argument("--seeds", type=int, default=None, help=f"independent runs per cell (default {d['seeds']})")
    parser.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        default=None,
        help="matrix-vector products per estimate (default " + " ".join(map(str, d["budgets"])) + ")",
    )
    parser.add_argument(
        "--families",
        nargs="+",
        default=None,
        choices=FAMILIES,
        metavar="FAMILY",
        help="test matrices, any of: " + ", ".join(FAMILIES) + " (default: all)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=VARIANTS,
        metavar="VARIANT",
        help="estimator variants, any of: "
        + ", ".join(VARIANTS)
        + " (default: all but "
        + ", ".join(v for v in VARIANTS if v not in DEFAULT_VARIANTS)
        + ")",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a CI-sized run (seconds): n={QUICK['n']}, {QUICK['seeds']} seeds, budgets {QUICK['budgets']}, families "
        f"{', '.join(QUICK['families'])}, {len(QUICK_VARIANTS)} variants "
        "(flags given explicitly still win; default: the full grid)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="results JSON, rewritten after every cell; an existing one is continued (default: none)",
    )
    parser.add_argument("--plot", type=Path, default=None, help="figure with intervals, PNG (default: none)")
    parser.add_argument("--markdown", type=Path, default=None, help="tables and verdicts, Markdown (default: none)")
    parser.add_argument(
        "--from-json", type=Path, default=None, help="re-render tables and figure from a --json file (default: run)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or estimate (default: show them)")


def _settings(args) -> dict:
    base = dict(DEFAULTS, families=FAMILIES, methods=DEFAULT_VARIANTS)
    if args.quick:
        base.update(QUICK, methods=QUICK_VARIANTS)
    given = {k: getattr(args, k) for k in ("n", "seeds", "budgets", "families", "methods")}
    return {k: (v if v is not None else base[k]) for k, v in given.items()}


def run(args) -> int:
    """Run the grid (or read it back with ``--from-json``), print the verdicts, and write JSON, figure, tables."""
    if args.from_json:
        res = json.loads(args.from_json.read_text())
    else:
        s = _settings(args)
        if s["seeds"] < 2:
            raise ValueError(f"--seeds must be at least 2 for an interval, got {s['seeds']}")
        t = time.time()
        res = bench(s["families"], s["methods"], s["budgets"], s["seeds"], s["n"], args.json, args.quiet)
        res["command"] = "vaetheory bench logdet " + " ".join(sys.argv[3:])
        res["seconds"] = res.get("seconds", 0.0) + time.time() - t
        _write(args.json, res)
    summary = summarise(res)
    for fam, sm in summary.items():
        print(
            f"{fam}: "
            + "; ".join(
                f"@{v['budget']} {v['winner']} ({v['ours']['variant']} {v['ours']['rmse']:.3g} vs "
                f"{v['baseline']['variant']} {v['baseline']['rmse']:.3g})"
                for v in sm["verdicts"]
            )
        )
    wrote = [str(p) for p in (args.json,) if p and not args.from_json]
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(res, summary, args.plot)
        wrote.append(str(args.plot))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(res, summary))
        wrote.append(str(args.markdown))
    if wrote:
        print("wrote " + ", ".join(wrote))
    return 0
