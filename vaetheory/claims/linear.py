"""Claims of the linear-Gaussian closed form (:mod:`vaetheory.linear`): the exact cases.

At the closed-form stationary point of a linear VAE the ELBO, the Eq. (16)
Laplace form and the log likelihood coincide, every gradient vanishes, and
latent directions whose data variance is not above the likelihood variance
collapse (Sec. 6).
"""

from __future__ import annotations

import numpy as np

from vaetheory import linear as lin
from vaetheory.claims.registry import Claim, LinearCase, claim, make_claim


@claim("linear", "linear")
def linear_exactness(case: LinearCase) -> list[Claim]:
    """Eqs. (2), (16), (18) exact, and Eqs. (2), (11), (12) stationary, at the linear closed form."""
    x, name, n, mdl = case.problem["x"], case.problem["name"], case.n, case.model
    logp = lin.linear_log_likelihood(mdl, x)
    worst = 0.0
    for kind in ("diagonal", "constant"):
        mu, var = lin.linear_posterior(mdl, x, kind)
        vv = var if var.ndim == 1 else var[0]
        e = lin.linear_elbo(x, mdl.W, mdl.b, mdl.V, vv, mdl.s2)
        worst = max(worst, np.max(np.abs(e - logp)))
    q16 = lin.linear_laplace_log_evidence(mdl, x)
    worst = max(worst, np.max(np.abs(q16 - logp)))
    known = lin.linear_optimal_expected_log_likelihood(mdl.lam, n)
    worst = max(worst, abs(np.mean(logp) - known))
    exact = make_claim(
        "linear",
        ["(2)", "(16)", "(18)"],
        f"{name} linear n={n}",
        worst,
        1e-10,
        "exact",
        "linear-Gaussian stationary point: max |ELBO - log p|, |Eq.16 - log p|, |E log p - known|",
        "linear decoder, unit likelihood, floating prior S^2 = Sigma + M",
        collapsed=mdl.collapsed,
        lam=mdl.lam,
    )
    # Stationarity of the closed form: central differences of the expected ELBO over every parameter.
    params = [mdl.W, mdl.b, mdl.V, mdl.var, mdl.s2]
    h = 1e-5
    g = []
    for k, p in enumerate(params):
        for idx in np.ndindex(p.shape):
            plus = [q.copy() for q in params]
            minus = [q.copy() for q in params]
            plus[k][idx] += h
            minus[k][idx] -= h
            g.append(
                (lin.linear_expected_elbo(case.C, case.b, *plus) - lin.linear_expected_elbo(case.C, case.b, *minus))
                / (2 * h)
            )
    stationary = make_claim(
        "linear",
        ["(2)", "(11)", "(12)"],
        f"{name} linear n={n} stationarity",
        np.max(np.abs(g)),
        1e-7,
        "exact",
        "max |d E[ELBO] / d(W, b, V, Sigma, S^2)| by central differences at the closed form",
        "Tipping & Bishop pPCA with unit noise; collapse where lam <= 1",
    )
    return [exact, stationary]


@claim("collapse", "linear")
def linear_collapse(case: LinearCase) -> list[Claim]:
    """Sec. 6 at the linear closed form: W's columns vanish along directions of data variance <= 1.

    A check, not evidence: the closed form sets those columns to zero by construction.
    """
    mdl, n = case.model, case.n
    if not np.any(mdl.lam[:n] <= 1):
        return []
    return [
        make_claim(
            "collapse",
            ["(16)"],
            f"{case.problem['name']} linear n={n}",
            np.max(np.abs(mdl.W[:, mdl.collapsed])),
            0.0,
            "check",
            "max |W column| of latent directions whose data variance <= 1 (Sec. 6)",
            "data variance not above the likelihood variance",
            lam=mdl.lam[:n],
        )
    ]
