"""Running ``vaetheory verify``: solve each problem, measure, and call the registered claims.

The stages, in the order their claims enter ``claims.json``:

1. ``linear`` claims at the linear closed form of the first problem, n = 1, 2, 3;
2. ``problem`` claims (the gradient check) on the first two problems;
3. per default problem (the full run includes two of the paper's regime,
   a curve in m = 20 and m = 100 dimensions, :data:`~vaetheory.claims.problems.REGIME_DEFAULT`,
   whose solves start first as the longest): solve for the constant and then the diagonal
   stationary point at the Gauss-Hermite order q, then each again at the
   finer order q' warm-started from its own solution; the second-order
   certificate of both points at q; ``point`` claims at each point (diagonal
   first), then ``pair`` claims, at both orders, combined into one row each
   (:mod:`vaetheory.claims.convergence`: a verdict that differs between the
   orders is unresolved); a point with an unresolved claim is solved once
   more at a finer order q'' and its point claims reported at q'' against q';
4. the curvature sweep (solved only when ``smoothness`` is wanted), the
   density sweep and its ``density`` claims, then the ``curvature`` claims,
   each sweep solved and its claims measured at both orders the same way.

The shared generator (``rng``) is drawn by the gradient and Eq. (19) claims,
in that order.
"""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

from vaetheory import linear as lin
from vaetheory.claims import certificate as certificate_claims
from vaetheory.claims import linear as linear_claims
from vaetheory.claims import logdet as logdet_claims
from vaetheory.claims import nonparametric as nonparametric_claims
from vaetheory.claims import sweeps as sweep_claims
from vaetheory.claims import variance as variance_claims
from vaetheory.claims.convergence import combine, point_summaries
from vaetheory.claims.measure import measure, measured_penalty, sweep_errors
from vaetheory.claims.problems import curvature_sweep, default_problems, density_sweep
from vaetheory.claims.registry import (
    CLAIM_IDS,
    Claim,
    LinearCase,
    PairCase,
    PointCase,
    ProblemCase,
    SweepCase,
    in_scope,
)
from vaetheory.claims.solves import solve_all, solve_constant, solve_pair
from vaetheory.solver.stationary import default_order, find_stationary_point, fine_order, finer_order

# The modules whose ``@claim`` functions the runner calls (importing them registers the claims).
CLAIM_MODULES = (
    linear_claims,
    nonparametric_claims,
    certificate_claims,
    variance_claims,
    logdet_claims,
    sweep_claims,
)

# The errors each sweep tabulates (and plots), in column order.
CURVATURE_COLUMNS = ("nonlinearity", "eq11", "eq12", "gap18", "eq16", "eq11_windowed", "eq12_windowed")
DENSITY_COLUMNS = ("nonlinearity", "eq11", "eq12", "eq25", "gap18", "eq16", "eq11_windowed", "eq12_windowed")


def _run_scope(scope: str, case, wanted) -> list[Claim]:
    out: list[Claim] = []
    for spec in in_scope(scope, wanted):
        out += spec.func(case)
    return out


def run_all(
    seed: int = 0,
    quick: bool = False,
    claims=None,
    progress: bool = True,
    gtol: float = 1e-6,
    jobs: int = 1,
    threads: int = 1,
):
    """Solve, measure, and return ``(claims, figures_data)`` for the claim ids ``claims`` (all by default).

    The solves run in ``jobs`` processes with ``threads`` BLAS threads each
    (:func:`vaetheory.claims.solves.solve_all`); the results do not depend on ``jobs``.
    """
    wanted = set(claims or CLAIM_IDS)
    unknown = wanted - set(CLAIM_IDS)
    if unknown:
        raise ValueError(f"unknown claims {sorted(unknown)}; choose from {CLAIM_IDS}")
    problems = default_problems(seed, quick)
    sweep = curvature_sweep(seed, quick) if "smoothness" in wanted else []
    density_problems = density_sweep(seed, quick) if "density" in wanted else []
    needs_solve = wanted - {"linear", "gradient"}
    steps = (len(problems) if needs_solve else 0) + len(sweep) + len(density_problems) + 2
    bar = tqdm(total=steps, disable=not progress, desc="verify", unit="solve", file=sys.stderr)
    rng = np.random.default_rng([seed, 99])
    out: list[Claim] = []
    figs: dict = {
        "points": [],
        "sweep": [],
        "penalty": [],
        "collapse": [],
        "estimator": None,
        "density": [],
        "orders": [],
    }

    if "linear" in wanted or "collapse" in wanted:
        x = problems[0]["x"]
        C, b = np.cov(x.T, bias=True), x.mean(axis=0)
        for n in (1, 2, 3):
            mdl = lin.linear_stationary_point(x, n=n, var=0.5)
            out += _run_scope("linear", LinearCase(problems[0], n, mdl, C, b), wanted)
        mdl = lin.linear_stationary_point(x, n=x.shape[1], var=1.0)
        figs["collapse"].append(dict(name=problems[0]["name"], lam=mdl.lam, w2s2=np.sum(mdl.W**2, 0) * mdl.s2))
    bar.update(1)
    for p in problems[:2]:
        out += _run_scope("problem", ProblemCase(p, rng), wanted)
    bar.update(1)

    def refine_unresolved(p, sp, meas, rows, summ):
        """Where a point claim of ``sp`` is unresolved between q and q', solve that point once more at a finer
        order q'' (warm-started from q') and report its point claims at q'' against q'."""
        tag = f"{p['name']} [{sp.variant}]"
        if all(c.resolved for c in rows if c.problem == tag):
            return rows
        qr = finer_order(p["n"], sp.order)
        init = (sp.mu, sp.var[0].copy() if sp.variant == "constant" else sp.var.copy(), sp.s2)
        kick = np.random.default_rng([seed, 7])
        spr = find_stationary_point(p["x"], p["n"], rng=kick, variant=sp.variant, order=qr, gtol=gtol, init=init)
        mr = measure(spr)
        point = lambda s, m: _run_scope("point", PointCase(p["name"], s, m, gtol), wanted)
        refined = {(c.id, tuple(c.equations)): c for c in combine(point(sp, meas), point(spr, mr), (sp.order, qr))}
        summ.update(orders=summ["orders"] + [qr], elbo_refined=float(np.mean(mr["elbo"])))
        return [refined.get((c.id, tuple(c.equations)), c) if c.problem == tag else c for c in rows]

    # Every solve up front, in parallel processes; the results are then read in the order of the problems.
    tasks = [(solve_pair, (p["x"], p["n"], seed, gtol, "hessian" in wanted)) for p in (problems if needs_solve else [])]
    tasks += [
        (solve_pair, (p["x"], 1, seed, gtol)) if p["pair"] else (solve_constant, (p["x"], 1, seed, gtol)) for p in sweep
    ]
    tasks += [(solve_constant, (p["x"], 1, seed, gtol)) for p in density_problems]
    longest = [i for i, p in enumerate(problems if needs_solve else []) if p.get("regime")]
    results = iter(solve_all(tasks, jobs, threads, done=lambda: bar.update(1), first=longest))

    if needs_solve:
        for p in problems:
            pair = next(results)
            solved, certs = pair["orders"], pair["certs"]
            (q, coarse), (qf, fine) = solved.items()
            per_order = {}
            for order, ((sd, md), (sc, mc)) in solved.items():
                rows = []
                for sp, meas in ((sd, md), (sc, mc)):
                    cert = certs.get(sp.variant) if order == q else None
                    rows += _run_scope("point", PointCase(p["name"], sp, meas, gtol, cert), wanted)
                rows += _run_scope("pair", PairCase(p, sd, md, sc, mc, rng, quick, figs), wanted)
                per_order[order] = rows
            rows = combine(per_order[q], per_order[qf], (q, qf))
            summaries = point_summaries(p["name"], coarse, fine, certs)
            for (sp, meas), summ in zip(fine, summaries):
                rows = refine_unresolved(p, sp, meas, rows, summ)
            out += rows
            (sd, md), (sc, mc) = fine
            for variant, meas in (("diagonal", md), ("constant", mc)):
                figs["points"].append(dict(name=f"{p['name']} [{variant}]", elbo=meas["elbo"], log_px=meas["log_px"]))
            figs["orders"] += summaries
            figs["penalty"].append(dict(name=p["name"], predicted=mc["penalty22"], measured=measured_penalty(md, mc)))
            if "cov" in p:
                lam = np.linalg.eigvalsh(np.cov(p["x"].T, bias=True))[::-1]
                figs["collapse"].append(dict(name=p["name"] + " nonparametric", M_over_s2=md["M"] / sd.s2, lam=lam))

    draws: dict = {}
    sweep_draws: dict = {}
    for p in sweep:
        solved = next(results)
        if not p["pair"]:
            # Extra draws for smoothness's confidence interval: the constant variance only, at both orders.
            for point, meas in solved:
                errors = sweep_errors(meas, CURVATURE_COLUMNS)
                sweep_draws.setdefault(point.order, []).append(dict(curvature=p["curvature"], draw=p["draw"], **errors))
            continue
        for order, ((_, md), (_, mc)) in solved["orders"].items():
            # Smoothness measures at the constant-variance points: per-example variances add isolated
            # memorising posteriors whose number varies between draws and swamps the trend.
            row = dict(
                **sweep_errors(mc, CURVATURE_COLUMNS),
                penalty_predicted=mc["penalty22"],
                penalty_measured=measured_penalty(md, mc),
            )
            draws.setdefault(order, {}).setdefault(p["curvature"], []).append(row)
            errors = sweep_errors(mc, CURVATURE_COLUMNS)
            sweep_draws.setdefault(order, []).append(dict(curvature=p["curvature"], draw=p["draw"], **errors))
            if order == fine_order(p["n"]):
                figs["penalty"].append(
                    dict(name=p["name"], predicted=row["penalty_predicted"], measured=row["penalty_measured"])
                )
    sweep_rows = {
        order: [
            dict(curvature=k, draws=len(v), **{key: float(np.mean([d[key] for d in v])) for key in v[0]})
            for k, v in by_k.items()
        ]
        for order, by_k in draws.items()
    }
    rows = sweep_rows.get(fine_order(1), [])
    figs["sweep"] = rows

    dens: dict = {}
    for p in density_problems:
        for point, meas in next(results):
            errors = sweep_errors(meas, DENSITY_COLUMNS)
            dens.setdefault(point.order, []).append(dict(N=p["N"], draw=p["draw"], **errors))
    q1, qf1 = default_order(1), fine_order(1)
    # The table and plot: the first draw at every size; the claim: every draw.
    first_draw = lambda rows: [{k: v for k, v in r.items() if k != "draw"} for r in rows if r["draw"] == 0]
    figs["density"] = first_draw(dens.get(qf1, []))
    out += combine(
        _run_scope("density", SweepCase(first_draw(dens.get(q1, [])), dens.get(q1, [])), wanted),
        _run_scope("density", SweepCase(figs["density"], dens.get(qf1, [])), wanted),
        (q1, qf1),
    )
    out += combine(
        _run_scope("curvature", SweepCase(sweep_rows.get(q1, []), sweep_draws.get(q1, [])), wanted),
        _run_scope("curvature", SweepCase(rows, sweep_draws.get(qf1, [])), wanted),
        (q1, qf1),
    )
    bar.close()
    return out, figs
