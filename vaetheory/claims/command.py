"""The ``vaetheory verify`` command: arguments, the run, the table, the report, the exit status."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from vaetheory.claims import runner
from vaetheory.claims.registry import CLAIM_IDS
from vaetheory.claims.report import STRICT_KINDS, fmt, legend, orders_lines, summary, table, write_report
from vaetheory.claims.solves import default_jobs


def add_arguments(parser) -> None:
    """The options of ``vaetheory verify``."""
    parser.add_argument("--quick", action="store_true", help="CI-sized problems (about 7 s on 2 cores)")
    parser.add_argument("--claims", default=None, help=f"comma-separated subset of: {','.join(CLAIM_IDS)}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and solver kicks")
    parser.add_argument("--out", default=None, help="write report.md, claims.json and PNG plots here")
    parser.add_argument("--gtol", type=float, default=1e-6, help="solver gradient-norm tolerance")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="processes that solve the problems in parallel (default: one per CPU this process may use; "
        "1 solves in this process); the results do not depend on it",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS threads of each solving process (default 1: the solver's many small matrix products run slower "
        "with more threads; 0 keeps the BLAS library's own setting)",
    )


def blas_threads(threads: int):
    """A context manager that limits the BLAS libraries NumPy and SciPy loaded to ``threads`` threads.

    Uses threadpoolctl (a dependency); ``threads <= 0``, or threadpoolctl missing, leaves them as
    they are.  The limit changes timings only: ``verify``'s numbers are the same with one thread or
    the library's default (compared on ``verify --quick`` and ``verify``).
    """
    if threads <= 0:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits  # third-party; optional so verify still runs without it
    except ImportError:
        print("note: threadpoolctl is not installed; BLAS threads left as they are", file=sys.stderr)
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def run(args) -> int:
    """Measure the claims, print the table, write the report; 1 if an exact claim or a check fails or is
    unresolved between the quadrature orders (a failing check means the machinery broke), 2 on bad arguments."""
    claims = [c.strip() for c in args.claims.split(",")] if args.claims else None
    t0 = time.perf_counter()
    try:
        with blas_threads(args.threads):
            results, figs = runner.run_all(
                seed=args.seed,
                quick=args.quick,
                claims=claims,
                progress=not args.no_progress,
                gtol=args.gtol,
                jobs=default_jobs() if args.jobs is None else args.jobs,
                threads=args.threads,
            )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - t0
    print(table(results))
    if figs.get("orders"):
        print()
        print("solved points (orders q/q', E[ELBO] at each, quadrature error of log p(x), certificate):")
        print("\n".join("  " + s for s in orders_lines(figs["orders"])))
    if results:
        print()
        print(legend(results))
    if args.out:
        out = Path(args.out)
        written = write_report(out, results, seconds, args, figs)
        print(f"wrote {out}/report.md, claims.json, " + ", ".join(written))
    failed = [c for c in results if c.kind in STRICT_KINDS and not (c.holds and c.resolved)]
    print(summary(results, seconds))
    for c in failed:
        word = "FAILED" if c.resolved else "UNRESOLVED"
        at_q = "" if c.measured_coarse is None else f" (at q: {fmt(c.measured_coarse)})"
        print(
            f"{word}: {c.id} {' '.join(c.equations)} on {c.problem}: {fmt(c.measured)}{at_q} vs {fmt(c.threshold)}",
            file=sys.stderr,
        )
    return 1 if failed else 0
