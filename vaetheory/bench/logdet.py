"""``vaetheory bench logdet``: the Eq. (19) estimator against matvec-only baselines.

Matrix families with known ``log|A|`` (not in the paper):

- ``rbf-1e-1``, ``rbf-1e-3``: squared-exponential kernel on n points uniform in
  the unit square (length-scale 0.2) plus noise variance 1e-1 / 1e-3 (dense).
- ``laplace2d``: 5-point Dirichlet Laplacian on a sqrt(n) x sqrt(n) grid plus
  a shift 1e-2 (sparse; eigenvalues in closed form).
- ``powerlaw``: eigenvalues ``k^-1`` in the orthonormal DCT-II basis (FFT matvec).
- ``toeplitz``: banded symmetric Toeplitz, first row (1, 0.45, 0.2, 0.05) (sparse).

Every estimator sees only a counting matvec; Chebyshev alone is handed the exact
spectral interval for free (it cannot run without one), which favours it.  For
each family, method and budget the bench runs ``--seeds`` independent seeds
and reports bias (mean - truth, with its standard error), spread (standard
deviation), RMSE, and the slope of log RMSE against log budget.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from vaetheory import logdet as L
from vaetheory import plotting as P

FAMILIES = ("rbf-1e-1", "rbf-1e-3", "laplace2d", "powerlaw", "toeplitz")
METHODS = (
    "eq19-scalar",
    "eq19-diagonal",
    "eq19-diag+lowrank",
    "pslq",
    "slq-rademacher",
    "slq-gaussian",
    "hutch++",
    "chebyshev",
)
OURS = ("eq19-scalar", "eq19-diagonal", "eq19-diag+lowrank", "pslq")
DEFAULT_BUDGETS = (50, 100, 200, 400, 800, 1600)


def make_family(name: str, n: int, seed: int = 12345):
    """Not in the paper: ``(matvec, dense A or None, log|A|, (lambda_min, lambda_max))`` for a bench family."""
    import scipy.fft
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    if name.startswith("rbf-"):
        noise = float(name[4:])
        X = rng.uniform(size=(n, 2))
        d2 = np.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=-1)
        A = np.exp(-d2 / (2 * 0.2**2)) + noise * np.eye(n)
        lam = np.linalg.eigvalsh(A)
        return A.__matmul__, A, float(np.sum(np.log(lam))), (float(lam[0]), float(lam[-1]))
    if name == "laplace2d":
        g = int(round(math.sqrt(n)))
        if g * g != n:
            raise ValueError(f"laplace2d needs n to be a perfect square, got {n}")
        T = sp.diags([-np.ones(g - 1), 2 * np.ones(g), -np.ones(g - 1)], [-1, 0, 1])
        A = (sp.kron(T, sp.eye(g)) + sp.kron(sp.eye(g), T) + 1e-2 * sp.eye(n)).tocsr()
        t = 2 - 2 * np.cos(np.arange(1, g + 1) * np.pi / (g + 1))
        lam = (t[:, None] + t[None, :]).ravel() + 1e-2
        return A.__matmul__, A.toarray(), float(np.sum(np.log(lam))), (float(lam.min()), float(lam.max()))
    if name == "powerlaw":
        lam = np.arange(1, n + 1, dtype=float) ** -1.0

        def mv(X):
            scale = lam.reshape((n,) + (1,) * (X.ndim - 1))
            return scipy.fft.idct(scale * scipy.fft.dct(X, axis=0, norm="ortho"), axis=0, norm="ortho")

        A = mv(np.eye(n))
        return mv, (A + A.T) / 2, float(np.sum(np.log(lam))), (float(lam.min()), float(lam.max()))
    if name == "toeplitz":
        row = [1.0, 0.45, 0.2, 0.05]
        A = sp.diags([row[abs(k)] * np.ones(n - abs(k)) for k in range(-3, 4)], list(range(-3, 4))).tocsr()
        Ad = A.toarray()
        lam = np.linalg.eigvalsh(Ad)
        return A.__matmul__, Ad, float(np.sum(np.log(lam))), (float(lam[0]), float(lam[-1]))
    raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {name!r}")


def run_method(method: str, mv, n: int, budget: int, rng, bounds):
    """Not in the paper: one estimate by a named method; returns the LogdetResult."""
    if method.startswith("eq19-"):
        return L.logdet_trace_estimator(mv, n, rng=rng, budget=budget, parameterization=method[5:])
    if method == "pslq":
        return L.preconditioned_slq_logdet(mv, n, rng=rng, budget=budget)
    if method.startswith("slq-"):
        return L.slq_logdet(mv, n, rng=rng, budget=budget, probes=method[4:])
    if method == "hutch++":
        return L.hutchpp_logdet(mv, n, rng=rng, budget=budget)
    if method == "chebyshev":
        lo, hi = bounds
        return L.chebyshev_logdet(mv, n, rng=rng, budget=budget, bounds=(0.99 * lo, 1.01 * hi))
    raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")


def _slope(budgets, rmse):
    x, y = np.log(np.asarray(budgets, float)), np.log(np.asarray(rmse, float))
    ok = np.isfinite(y)
    return float(np.polyfit(x[ok], y[ok], 1)[0]) if ok.sum() >= 2 else float("nan")


def bench(families, methods, budgets, seeds: int, n: int, progress=None) -> dict:
    """Not in the paper: run the grid and return the results as a JSON-ready dict."""
    out = {"n": n, "seeds": seeds, "budgets": list(budgets), "families": {}}
    for fam in families:
        mv, A, truth, bounds = make_family(fam, n)
        floors = {p: L.trace_identity_bias_floor(A, p) for p in ("scalar", "diagonal")}
        famres = {"logdet": truth, "lambda_min": bounds[0], "lambda_max": bounds[1], "bias_floor": floors}
        famres["methods"] = {}
        for method in methods:
            rows = []
            for budget in budgets:
                t = time.perf_counter()
                est, mvs = [], []
                for seed in range(seeds):
                    try:
                        r = run_method(method, mv, n, budget, np.random.default_rng([seed, budget]), bounds)
                        est.append(r.estimate)
                        mvs.append(r.matvecs)
                    except ValueError:  # budget too small for this method
                        break
                if len(est) < seeds:
                    rows.append({"budget": budget, "ran": False})
                    continue
                e = np.asarray(est) - truth
                rows.append(
                    {
                        "budget": budget,
                        "ran": True,
                        "bias": float(e.mean()),
                        "bias_se": float(e.std(ddof=1) / math.sqrt(seeds)),
                        "sd": float(e.std(ddof=1)),
                        "rmse": float(np.sqrt(np.mean(e**2))),
                        "matvecs_mean": float(np.mean(mvs)),
                        "matvecs_max": int(np.max(mvs)),
                        "seconds_per_run": (time.perf_counter() - t) / seeds,
                    }
                )
                if progress:
                    progress(fam, method, rows[-1])
            ran = [r for r in rows if r["ran"]]
            famres["methods"][method] = {
                "rows": rows,
                "rmse_slope": _slope([r["budget"] for r in ran], [r["rmse"] for r in ran]),
            }
        famres["winners"] = _winners(famres["methods"], budgets)
        out["families"][fam] = famres
    return out


def _winners(mres: dict, budgets) -> list[dict]:
    """Per budget: the best of ours vs the best baseline, by RMSE."""
    out = []
    for i, b in enumerate(budgets):

        def best(names):
            c = [(mres[m]["rows"][i]["rmse"], m) for m in names if m in mres and mres[m]["rows"][i]["ran"]]
            return min(c) if c else (float("inf"), None)

        ours = best(OURS)
        base = best([m for m in mres if m not in OURS])
        out.append(
            {
                "budget": b,
                "ours": ours[1],
                "ours_rmse": ours[0],
                "baseline": base[1],
                "baseline_rmse": base[0],
                "ours_wins": ours[0] < base[0],
            }
        )
    return out


def _versus(w: dict) -> str:
    return f"{w['ours']} {w['ours_rmse']:.3g} vs {w['baseline']} {w['baseline_rmse']:.3g}"


def markdown(res: dict) -> str:
    """Not in the paper: RMSE tables (one row per method, one column per budget) and the winners."""
    lines = []
    for fam, fr in res["families"].items():
        bud = res["budgets"]
        lines += [
            f"**{fam}** (n={res['n']}, log|A| = {fr['logdet']:.2f},"
            f" spectrum [{fr['lambda_min']:.3g}, {fr['lambda_max']:.3g}],"
            f" floors: scalar {fr['bias_floor']['scalar']:.1f}, diagonal {fr['bias_floor']['diagonal']:.1f})",
            "",
            "| method | " + " | ".join(f"RMSE @{b}" for b in bud) + " | bias @max (+-SE) | sd @max | slope |",
            "|---|" + "---|" * (len(bud) + 3),
        ]
        for m, mr in fr["methods"].items():
            cells = [f"{r['rmse']:.3g}" if r["ran"] else "-" for r in mr["rows"]]
            last = [r for r in mr["rows"] if r["ran"]][-1]
            tail = f" | {last['bias']:+.3g} ({last['bias_se']:.2g}) | {last['sd']:.3g} | {mr['rmse_slope']:.2f} |"
            lines.append(f"| {m} | " + " | ".join(cells) + tail)
        won = [w for w in fr["winners"] if w["ours_wins"]]
        lines += [
            "",
            f"Best of ours beats every baseline at {len(won)}/{len(fr['winners'])} budgets: "
            + ", ".join(f"{w['budget']} ({_versus(w)})" for w in fr["winners"]),
            "",
        ]
    return "\n".join(lines)


# What each method of the figure's legend is (Not in the paper; ours first).
METHOD_NAMES = {
    "eq19-scalar": "Eq. (19), scalar $\\Sigma$ (ours)",
    "eq19-diagonal": "Eq. (19), diagonal $\\Sigma$ (ours)",
    "eq19-diag+lowrank": "Eq. (19), diagonal + low-rank $\\Sigma$ (ours)",
    "pslq": "SLQ preconditioned by Eq. (19)'s $\\Sigma$ (ours)",
    "slq-rademacher": "SLQ, Rademacher probes",
    "slq-gaussian": "SLQ, Gaussian probes",
    "hutch++": "Hutch++",
    "chebyshev": "Chebyshev (given the exact spectral interval)",
}


def plot(res: dict, path: Path) -> None:
    """Not in the paper: RMSE against budget per family and method, saved to ``path``.

    One panel per matrix family (its size n and true log|A| in the title), every
    method in the same colour and marker in every panel, named once in a legend
    under the panels; ours solid, the baselines dashed.  The RMSE slopes are in
    the markdown table (``--markdown``).
    """
    plt = P.pyplot()
    fams = list(res["families"])
    ncols = min(3, len(fams))
    nrows = math.ceil(len(fams) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.2 * nrows + 1.6), squeeze=False)
    for ax in axes.ravel()[len(fams) :]:
        ax.set_visible(False)
    for ax, fam in zip(axes.ravel(), fams):
        fr = res["families"][fam]
        for i, (m, mr) in enumerate(fr["methods"].items()):
            rows = [r for r in mr["rows"] if r["ran"]]
            x, y = [r["budget"] for r in rows], [r["rmse"] for r in rows]
            k = METHODS.index(m) if m in METHODS else i
            ax.loglog(
                x,
                y,
                "-" if m in OURS else "--",
                marker="osD^vPX*"[k % 8],
                ms=4,
                color=f"C{k % 8}",
                label=METHOD_NAMES.get(m, m),
            )
        ax.axhline(
            fr["bias_floor"]["diagonal"],
            color="0.4",
            ls=":",
            lw=1.5,
            label="bias floor of Eq. (19) with diagonal $\\Sigma$ (Hadamard)",
        )
        ax.set_title(f"{fam}: $n$ = {res['n']}, $\\log|A|$ = {fr['logdet']:.1f}", fontsize=10)
        ax.set_xlabel("budget (matrix-vector products)")
        ax.set_ylabel("RMSE of $\\log|A|$ (natural log)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=3,
        title=f"RMSE over {res['seeds']} seeds; ours solid, baselines dashed",
    )
    P.save(fig, path)


def add_arguments(parser) -> None:
    """The options of ``vaetheory bench logdet``."""
    parser.add_argument(
        "--n", type=int, default=1024, help="matrix size, a perfect square for laplace2d (default 1024)"
    )
    parser.add_argument(
        "--seeds", type=int, default=50, help="independent runs per (family, method, budget) (default 50)"
    )
    parser.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        default=list(DEFAULT_BUDGETS),
        help="matrix-vector products per estimate (default " + " ".join(map(str, DEFAULT_BUDGETS)) + ")",
    )
    parser.add_argument(
        "--families",
        nargs="+",
        default=list(FAMILIES),
        choices=FAMILIES,
        metavar="FAMILY",
        help="test matrices, any of: " + ", ".join(FAMILIES) + " (default: all)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        choices=METHODS,
        metavar="METHOD",
        help="estimators, any of: " + ", ".join(METHODS) + " (default: all)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here as JSON (default: none)")
    parser.add_argument(
        "--plot", type=Path, default=None, help="write the RMSE-vs-budget figure here, PNG (default: none)"
    )
    parser.add_argument(
        "--markdown", type=Path, default=None, help="write the RMSE tables here, Markdown (default: none)"
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="re-render the tables and plot from an earlier --json file (default: run the benchmark)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not print each row as it finishes (default: print)")


def run(args) -> int:
    """Run the benchmark grid (or read it back with ``--from-json``), print who wins, and write JSON, plot, markdown."""

    def progress(fam, m, row):
        if not args.quiet and row["ran"]:
            print(
                f"{fam:10s} {m:18s} budget {row['budget']:5d}  bias {row['bias']:+10.3f} +- {row['bias_se']:.3f}"
                f"  sd {row['sd']:9.3f}  rmse {row['rmse']:9.3f}  ({row['seconds_per_run']:.3f} s/run)",
                flush=True,
            )

    if args.from_json:
        res = json.loads(args.from_json.read_text())
    else:
        t = time.time()
        res = bench(args.families, args.methods, args.budgets, args.seeds, args.n, progress)
        res["command"] = "vaetheory bench logdet " + " ".join(sys.argv[3:])
        res["seconds"] = time.time() - t
    for fam, fr in res["families"].items():
        won = sum(w["ours_wins"] for w in fr["winners"])
        print(
            f"{fam}: ours beats every baseline at {won}/{len(fr['winners'])} budgets; "
            + ", ".join(f"{w['budget']}: {_versus(w)}" for w in fr["winners"])
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(res, args.plot)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(res))
    return 0
