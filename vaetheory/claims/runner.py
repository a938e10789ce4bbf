"""Running ``vaetheory verify``: solve each problem, measure, and call the registered claims.

The stages, in the order their claims enter ``claims.json``:

1. ``linear`` claims at the linear closed form of the first problem, n = 1, 2, 3;
2. ``problem`` claims (the gradient check) on the first two problems;
3. per default problem: solve for the constant and then the diagonal
   stationary point, ``point`` claims at each (diagonal first), then ``pair``
   claims;
4. the curvature sweep (solved only when ``smoothness`` is wanted), the
   density sweep and its ``density`` claims, then the ``curvature`` claims.

The shared generator (``rng``) is drawn by the gradient and Eq. (19) claims,
in that order.
"""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

from vaetheory import linear as lin
from vaetheory.claims import linear as linear_claims
from vaetheory.claims import logdet as logdet_claims
from vaetheory.claims import nonparametric as nonparametric_claims
from vaetheory.claims import sweeps as sweep_claims
from vaetheory.claims import variance as variance_claims
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
from vaetheory.solver.stationary import find_stationary_point

# The modules whose ``@claim`` functions the runner calls (importing them registers the claims).
CLAIM_MODULES = (linear_claims, nonparametric_claims, variance_claims, logdet_claims, sweep_claims)

# The errors each sweep tabulates (and plots), in column order.
CURVATURE_COLUMNS = ("nonlinearity", "eq11", "eq12", "gap18", "eq16", "eq11_windowed", "eq12_windowed")
DENSITY_COLUMNS = ("nonlinearity", "eq11", "eq12", "eq25", "gap18", "eq16", "eq11_windowed", "eq12_windowed")


def _run_scope(scope: str, case, wanted) -> list[Claim]:
    out: list[Claim] = []
    for spec in in_scope(scope, wanted):
        out += spec.func(case)
    return out


def run_all(seed: int = 0, quick: bool = False, claims=None, progress: bool = True, gtol: float = 1e-6):
    """Solve, measure, and return ``(claims, figures_data)`` for the claim ids ``claims`` (all by default)."""
    wanted = set(claims or CLAIM_IDS)
    unknown = wanted - set(CLAIM_IDS)
    if unknown:
        raise ValueError(f"unknown claims {sorted(unknown)}; choose from {CLAIM_IDS}")
    problems = default_problems(seed, quick)
    sweep = curvature_sweep(seed, quick) if "smoothness" in wanted else []
    density_problems = density_sweep(seed, quick) if "density" in wanted else []
    needs_solve = wanted - {"linear", "gradient"}
    tasks = len(problems) * (2 if needs_solve else 0) + len(sweep) * 2 + 2 + len(density_problems)
    bar = tqdm(total=tasks, disable=not progress, desc="verify", unit="step", file=sys.stderr)
    rng = np.random.default_rng([seed, 99])
    out: list[Claim] = []
    figs: dict = {"points": [], "sweep": [], "penalty": [], "collapse": [], "estimator": None, "density": []}

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

    def solve_pair(p):
        # The constant solve first; the diagonal solve starts from it, so its ELBO (a maximisation over a
        # larger family, monotone L-BFGS) is at least the constant one and the measured penalty is >= 0.
        sc = find_stationary_point(p["x"], p["n"], rng=np.random.default_rng([seed, 7]), variant="constant", gtol=gtol)
        mc = measure(sc)
        bar.update(1)
        init = (sc.mu, sc.var.copy(), sc.s2)
        sd = find_stationary_point(
            p["x"], p["n"], rng=np.random.default_rng([seed, 7]), variant="diagonal", gtol=gtol, init=init
        )
        bar.update(1)
        return (sd, measure(sd)), (sc, mc)

    if needs_solve:
        for p in problems:
            (sd, md), (sc, mc) = solve_pair(p)
            for variant, sp, meas in (("diagonal", sd, md), ("constant", sc, mc)):
                out += _run_scope("point", PointCase(p["name"], sp, meas, gtol), wanted)
                figs["points"].append(dict(name=f"{p['name']} [{variant}]", elbo=meas["elbo"], log_px=meas["log_px"]))
            out += _run_scope("pair", PairCase(p, sd, md, sc, mc, rng, quick, figs), wanted)
            figs["penalty"].append(dict(name=p["name"], predicted=mc["penalty22"], measured=measured_penalty(md, mc)))
            if "cov" in p:
                lam = np.linalg.eigvalsh(np.cov(p["x"].T, bias=True))[::-1]
                figs["collapse"].append(dict(name=p["name"] + " nonparametric", M_over_s2=md["M"] / sd.s2, lam=lam))

    draws: dict = {}
    sweep_draws = []
    for p in sweep:
        if not p["pair"]:
            # Extra draws for smoothness's confidence interval: the constant variance only.
            sc = find_stationary_point(p["x"], 1, rng=np.random.default_rng([seed, 7]), variant="constant", gtol=gtol)
            errors = sweep_errors(measure(sc), CURVATURE_COLUMNS)
            sweep_draws.append(dict(curvature=p["curvature"], draw=p["draw"], **errors))
            bar.update(2)
            continue
        (sd, md), (sc, mc) = solve_pair(p)
        # Smoothness measures at the constant-variance points: per-example variances add isolated
        # memorising posteriors whose number varies between draws and swamps the trend.
        row = dict(
            **sweep_errors(mc, CURVATURE_COLUMNS),
            penalty_predicted=mc["penalty22"],
            penalty_measured=measured_penalty(md, mc),
        )
        draws.setdefault(p["curvature"], []).append(row)
        sweep_draws.append(dict(curvature=p["curvature"], draw=p["draw"], **sweep_errors(mc, CURVATURE_COLUMNS)))
        figs["penalty"].append(
            dict(name=p["name"], predicted=row["penalty_predicted"], measured=row["penalty_measured"])
        )
    rows = [
        dict(curvature=k, draws=len(v), **{key: float(np.mean([d[key] for d in v])) for key in v[0]})
        for k, v in draws.items()
    ]
    figs["sweep"] = rows

    dens = []
    for p in density_problems:
        sp = find_stationary_point(p["x"], 1, rng=np.random.default_rng([seed, 7]), variant="constant", gtol=gtol)
        md = measure(sp)
        bar.update(1)
        dens.append(dict(N=p["N"], draw=p["draw"], **sweep_errors(md, DENSITY_COLUMNS)))
    # The table and plot: the first draw at every size.
    figs["density"] = [{k: v for k, v in r.items() if k != "draw"} for r in dens if r["draw"] == 0]
    out += _run_scope("density", SweepCase(figs["density"], dens), wanted)
    out += _run_scope("curvature", SweepCase(rows, sweep_draws), wanted)
    bar.close()
    return out, figs
