"""The stationary-point solves behind ``vaetheory verify``, run in parallel processes (Sec. 4, Apps. A-B).

Every problem and sweep draw is solved independently of the others, so
:func:`solve_all` hands each to a process of its own (one BLAS thread each:
the solver's small matrix products gain nothing from more) and returns the
results in the order asked.  A solve draws its kicks from its own seeded
generator, so the results are the same in one process or many.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from vaetheory.claims.measure import measure
from vaetheory.solver.certificate import certify
from vaetheory.solver.stationary import find_stationary_point, fine_order

__all__ = ["solve_pair", "solve_constant", "solve_all", "default_jobs"]


def _kick(seed: int):
    return np.random.default_rng([seed, 7])


def solve_pair(x, n: int, seed: int, gtol: float, certificates: bool = False) -> dict:
    """Eq. (4)'s two posterior families at orders q and q': ``{"orders": {q: (diag, const), q': ...}, "certs"}``.

    Each entry is ``(point, measure(point))``.  At each order the constant
    solve comes first and the diagonal solve starts from it, so the diagonal
    ELBO (a maximisation over a larger family by monotone L-BFGS) is at least
    the constant one and the measured penalty of Eq. (22) is >= 0 at both
    orders; the constant point at q' starts from the one at q.  ``certs``
    holds the second-order certificate of each variant at q (where the fine
    solves start; its cost grows with the order) when ``certificates``.
    """
    kick = _kick(seed)
    sc = find_stationary_point(x, n, rng=kick, variant="constant", gtol=gtol)
    sd = find_stationary_point(x, n, rng=kick, variant="diagonal", gtol=gtol, init=(sc.mu, sc.var.copy(), sc.s2))
    qf = fine_order(n)
    scf = find_stationary_point(
        x, n, rng=kick, variant="constant", order=qf, gtol=gtol, init=(sc.mu, sc.var[0].copy(), sc.s2)
    )
    sdf = find_stationary_point(
        x, n, rng=kick, variant="diagonal", order=qf, gtol=gtol, init=(scf.mu, scf.var.copy(), scf.s2)
    )
    orders = {sc.order: ((sd, measure(sd)), (sc, measure(sc))), qf: ((sdf, measure(sdf)), (scf, measure(scf)))}
    certs = {sp.variant: certify(sp) for sp in (sd, sc)} if certificates else {}
    return {"orders": orders, "certs": certs}


def solve_constant(x, n: int, seed: int, gtol: float) -> list:
    """The constant-variance point at orders q and q' (warm-started from q): ``[(point, measure(point)), ...]``."""
    kick = _kick(seed)
    sc = find_stationary_point(x, n, rng=kick, variant="constant", gtol=gtol)
    scf = find_stationary_point(
        x, n, rng=_kick(seed), variant="constant", order=fine_order(n), gtol=gtol, init=(sc.mu, sc.var[0].copy(), sc.s2)
    )
    return [(sc, measure(sc)), (scf, measure(scf))]


def default_jobs() -> int:
    """Processes for :func:`solve_all` by default: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _limit_blas(threads: int):
    """Limit BLAS to ``threads`` threads (``<= 0`` or no threadpoolctl: leave it); returns the limiter, which
    also serves as a context manager that restores the previous setting."""
    if threads > 0:
        try:
            from threadpoolctl import threadpool_limits  # third-party; without it the limit is skipped
        except ImportError:
            return contextlib.nullcontext()
        return threadpool_limits(limits=threads, user_api="blas")
    return contextlib.nullcontext()


def _keep_heap():
    """Keep freed memory in the process's heap (glibc only; elsewhere nothing changes).

    A gradient of the solver allocates (N q, N) temporaries of a few MB; by
    default glibc maps each one fresh and returns it at free, so every use
    faults its pages in again, which costs as much time as the arithmetic.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest: allocations below it come from the heap
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    libc.mallopt(M_TOP_PAD, 64 << 20)


def _worker_start(threads: int):
    _keep_heap()
    _limit_blas(threads)


def solve_all(tasks, jobs: int = 1, threads: int = 1, done=None, first=()) -> list:
    """Run ``tasks`` (``(function, args)`` pairs) and return their results in order.

    ``jobs`` processes (``jobs <= 1``: in this process), each with its BLAS
    limited to ``threads`` threads (``threads <= 0``: the library's own
    setting); ``done()`` is called as each task finishes (a progress bar).
    The tasks at the indices ``first`` (the longest) are handed out first, so
    that the short ones fill the other processes meanwhile.
    """
    tasks = list(tasks)
    if jobs <= 1 or len(tasks) <= 1:
        out = []
        # The same BLAS threads as in the worker processes: a product's summation order, and so the last bits
        # of a solution, depend on them.
        with _limit_blas(threads):
            for func, args in tasks:
                out.append(func(*args))
                if done:
                    done()
        return out
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding BLAS and tqdm threads
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(tasks)), mp_context=ctx, initializer=_worker_start, initargs=(threads,)
    ) as pool:
        first = [i for i in first if 0 <= i < len(tasks)]
        futures = [None] * len(tasks)
        for i in first + [i for i in range(len(tasks)) if i not in first]:
            func, args = tasks[i]
            futures[i] = pool.submit(func, *args)
        if done:
            for f in futures:
                f.add_done_callback(lambda _f: done())
        return [f.result() for f in futures]
