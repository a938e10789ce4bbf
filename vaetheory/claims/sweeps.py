"""Claims read off the sweeps: errors shrink as the decoder gets smoother or the data denser.

Both sweeps solve the curve problem with a constant posterior variance; their
rows (errors per setting, from :func:`vaetheory.claims.measure.sweep_errors`)
are also the report's tables and plots.
"""

from __future__ import annotations

from vaetheory.claims.registry import Claim, SweepCase, claim, make_claim

# The errors the density claim compares between the fewest and the most examples.
DENSITY_KEYS = ("eq11", "eq12", "eq25", "gap18", "eq16")


@claim("smoothness", "curvature")
def smoothness(case: SweepCase) -> list[Claim]:
    """Eqs. (11), (12), (18) (Appendices A-B): their errors shrink as the decoder gets smoother."""
    rows = case.rows
    if not rows:
        return []
    r0, r1 = rows[0], rows[-1]
    return [
        make_claim(
            "smoothness",
            ["(11)", "(12)", "(18)"],
            f"curve sweep curvature {r0['curvature']:g} -> {r1['curvature']:g}",
            max(r0["eq11"] / r1["eq11"], r0["eq12"] / r1["eq12"], r0["gap18"] / r1["gap18"]),
            1.0,
            "approximate",
            (
                "max ratio (smoothest / least smooth) of the Eq. 11, 12, 18 errors: "
                "< 1 means errors shrink as the decoder gets smoother"
            ),
            "errors come from decoder nonlinearity over the posterior (App. A-B)",
            sweep=rows,
        )
    ]


@claim("density", "density")
def density(case: SweepCase) -> list[Claim]:
    """Eqs. (11), (12), (16), (18), (25): their errors shrink as the data get denser."""
    dens = case.rows
    if not dens:
        return []
    return [
        make_claim(
            "density",
            ["(11)", "(12)", "(16)", "(18)", "(25)"],
            f"curve, constant Sigma, N {dens[0]['N']} -> {dens[-1]['N']}",
            max(dens[-1][k] / dens[0][k] for k in DENSITY_KEYS),
            1.0,
            "approximate",
            (
                "max ratio (most / fewest examples) of the Eq. 11, 12, 25, 18, 16 errors: "
                "< 1 means they shrink as the data get denser"
            ),
            "the optimal decoder is smoother (closer to locally linear) when examples are dense",
            sweep=dens,
        )
    ]
