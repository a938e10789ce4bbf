"""Claims read off the sweeps: errors shrink as the decoder gets smoother or the data denser.

Both sweeps solve the curve problem with a constant posterior variance; their
rows (errors per setting, from :func:`vaetheory.claims.measure.sweep_errors`)
are also the report's tables and plots.

Each claim compares two settings of a sweep over several data draws, paired
by draw (the same intrinsic coordinates and noise at both settings).  Per draw
the statistic is the largest ratio of the errors (the one that shrinks least),
and the verdict comes from a two-sided 95% one-sample Student t interval on
the mean of the log ratios over draws (:func:`ratio_interval`): "holds" when
the interval's upper end is below ratio 1 (every error shrinks, supported by
the draws), "off" when its lower end is above 1, unresolved otherwise (the
draws do not decide; :attr:`vaetheory.claims.registry.Claim.resolved` False).
The measured value is the geometric mean ratio.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from vaetheory.claims.registry import Claim, SweepCase, claim, make_claim

# The errors each claim compares between the two ends of its sweep.
SMOOTHNESS_KEYS = ("eq11", "eq12", "gap18")
DENSITY_KEYS = ("eq11", "eq12", "eq25", "gap18", "eq16")

# The confidence level of the intervals the sweep claims decide by.
LEVEL = 0.95


def ratio_interval(ratios, level: float = LEVEL) -> tuple[float, float, float]:
    """Geometric mean of positive ratios and its Student t confidence interval. Not in the paper (statistics).

    The interval is the two-sided one-sample t interval on the mean of ``log ratios``, mapped back by exp.

    Parameters
    ----------
    ratios : (D,) positive ratios, one per data draw, D >= 2.
    level : the confidence level, in (0, 1).

    Returns
    -------
    (geometric mean, lower end, upper end).
    """
    r = np.asarray(ratios, dtype=float)
    if r.ndim != 1 or r.size < 2:
        raise ValueError(f"ratios must be a 1-D array of at least 2 values, got shape {r.shape}")
    if not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ValueError("ratios must be finite and positive")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    lr = np.log(r)
    mean = float(np.mean(lr))
    half = float(stats.t.ppf(0.5 + level / 2, lr.size - 1) * np.std(lr, ddof=1) / np.sqrt(lr.size))
    return float(np.exp(mean)), float(np.exp(mean - half)), float(np.exp(mean + half))


def paired_ratios(draws: list, key: str, before, after, errors) -> list[float]:
    """Per data draw, the largest ratio ``error(after) / error(before)`` over ``errors``. Not in the paper.

    Parameters
    ----------
    draws : dicts with ``key`` (the sweep setting), ``draw`` (the data draw) and the errors.
    key : the sweep's setting, e.g. ``"curvature"`` or ``"N"``.
    before, after : the two settings compared.
    errors : the error names whose ratios are taken.

    Returns
    -------
    list of ratios, one per draw present at both settings, in draw order.
    """
    at = {(r[key], r["draw"]): r for r in draws}
    common = sorted(d for (s, d) in at if s == before and (after, d) in at)
    return [max(at[(after, d)][e] / at[(before, d)][e] for e in errors) for d in common]


def _interval_claim(id, equations, problem, ratios, description, condition, **details) -> list[Claim]:
    gm, lo, hi = ratio_interval(ratios)
    c = make_claim(
        id,
        equations,
        problem,
        gm,
        1.0,
        "approximate",
        description,
        condition,
        ratios=ratios,
        interval=[lo, hi],
        level=LEVEL,
        test="two-sided one-sample Student t interval on the mean log ratio, paired by data draw",
        **details,
    )
    # The verdict from the interval: holds if it lies below 1, off if above, unresolved if it straddles 1.
    c.holds = bool(hi < 1.0)
    c.resolved = bool(hi < 1.0 or lo > 1.0)
    return [c]


@claim("smoothness", "curvature")
def smoothness(case: SweepCase) -> list[Claim]:
    """Eqs. (11), (12), (18) (Appendices A-B): their errors shrink as the decoder gets smoother."""
    rows = case.rows
    if not rows or not case.draws:
        return []
    k_smooth, k_rough = rows[0]["curvature"], rows[-1]["curvature"]
    ratios = paired_ratios(case.draws, "curvature", k_rough, k_smooth, SMOOTHNESS_KEYS)
    if len(ratios) < 2:
        return []
    return _interval_claim(
        "smoothness",
        ["(11)", "(12)", "(18)"],
        f"curve sweep curvature {k_smooth:g} vs {k_rough:g}, {len(ratios)} paired draws",
        ratios,
        (
            "geometric mean over data draws of the largest ratio (smoothest / least smooth) of the Eq. 11, 12, 18 "
            f"errors; holds if its {LEVEL:.0%} t interval lies below 1, off if above, else unresolved"
        ),
        "errors come from decoder nonlinearity over the posterior (App. A-B)",
        sweep=rows,
    )


@claim("density", "density")
def density(case: SweepCase) -> list[Claim]:
    """Eqs. (11), (12), (16), (18), (25): their errors shrink as the data get denser."""
    if not case.draws:
        return []
    sizes = sorted({r["N"] for r in case.draws})
    ratios = paired_ratios(case.draws, "N", sizes[0], sizes[-1], DENSITY_KEYS)
    if len(ratios) < 2:
        return []
    return _interval_claim(
        "density",
        ["(11)", "(12)", "(16)", "(18)", "(25)"],
        f"curve, constant Sigma, N {sizes[0]} vs {sizes[-1]}, {len(ratios)} paired draws",
        ratios,
        (
            "geometric mean over data draws of the largest ratio (most / fewest examples) of the Eq. 11, 12, 25, "
            f"18, 16 errors; holds if its {LEVEL:.0%} t interval lies below 1, off if above, else unresolved"
        ),
        "the optimal decoder is smoother (closer to locally linear) when examples are dense",
        sweep=case.rows,
    )
