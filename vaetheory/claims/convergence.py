"""Verdicts at two quadrature orders: a claim's rows at order q and q' > q made into one row.

Every stationary point of ``vaetheory verify`` is solved at the Gauss-Hermite
order q (:func:`vaetheory.solver.stationary.default_order`) and again,
warm-started, at the finer order q' (:func:`vaetheory.solver.stationary.fine_order`).
Each claim is measured at both; :func:`combine` keeps the fine row (its
measured value, threshold and verdict), records the coarse value and the
change in ``details``, and marks the verdict *unresolved* when it differs
between the orders: then neither "holds" nor "off" is supported.
"""

from __future__ import annotations

import numpy as np

from vaetheory.claims.registry import Claim
from vaetheory.claims.report import not_finite_reason


def _key(c: Claim) -> tuple:
    return (c.id, c.problem, tuple(c.equations))


def combine(coarse: list[Claim], fine: list[Claim], orders: tuple[int, int]) -> list[Claim]:
    """The fine rows, each with its coarse measurement, their difference and whether the verdict is resolved.

    Not in the paper (numerics: quadrature convergence of the claims).

    Parameters
    ----------
    coarse, fine : the rows of the same claims measured at the coarse and the fine order (matched by id,
        problem and equations, in order).
    orders : ``(q, q_fine)``, recorded in each row's details.

    Returns
    -------
    list of Claim: the fine rows in order, then the rows measured at one order only (kept as they are).
    """
    pending: dict[tuple, list[Claim]] = {}
    for c in coarse:
        pending.setdefault(_key(c), []).append(c)
    out = []
    for f in fine:
        matches = pending.get(_key(f))
        if not matches:
            out.append(f)
            continue
        c = matches.pop(0)
        both_finite = bool(np.isfinite(c.measured) and np.isfinite(f.measured))
        f.measured_coarse = c.measured
        # A row may be unresolved by itself (a confidence interval that straddles its threshold).
        f.resolved = c.resolved and f.resolved and c.holds == f.holds
        f.details = {
            "measured_coarse": c.measured,
            "measured_fine": f.measured,
            "change": f.measured - c.measured if both_finite else None,
            "orders": list(orders),
            "holds_coarse": c.holds,
            **f.details,
        }
        if not np.isfinite(c.measured):
            f.details["coarse_not_finite"] = not_finite_reason(c)
        out.append(f)
    out += [c for rows in pending.values() for c in rows]
    return out


def point_summaries(name: str, coarse, fine, certificates: dict) -> list[dict]:
    """One summary per variant of a problem: the two orders, E[ELBO] at each, the quadrature error of log p(x).

    Not in the paper (numerics).

    Parameters
    ----------
    name : the problem's name.
    coarse, fine : ``((sp_diag, meas_diag), (sp_const, meas_const))`` at the coarse and the fine order
        (:func:`vaetheory.claims.measure.measure` results).
    certificates : variant -> :class:`vaetheory.solver.certificate.Certificate` (may be empty).

    Returns
    -------
    list of dict (diagonal first): ``name``, ``orders``, ``elbo_coarse``, ``elbo_fine``, ``elbo_change`` (nats
    per example, each measured by the converged reference rule of ``measure``), ``logpx_quadrature_error``
    (max over examples of the grid's error estimate at the fine point, nats), ``quadrature_error`` (its sum
    with the ELBO rule's), and the certificate's ``certificate``, ``top``, ``bottom`` and ``symmetries``.
    """
    out = []
    for (spc, mc), (spf, mf) in zip(coarse, fine):
        e_c, e_f = float(np.mean(mc["elbo"])), float(np.mean(mf["elbo"]))
        row = dict(
            name=f"{name} [{spf.variant}]",
            orders=[spc.order, spf.order],
            elbo_coarse=e_c,
            elbo_fine=e_f,
            elbo_change=e_f - e_c,
            logpx_quadrature_error=float(np.max(mf["grid"].error)),
            quadrature_error=float(np.max(mf["quad_err"])),
        )
        cert = certificates.get(spf.variant)
        if cert is not None:
            row.update(certificate=cert.kind, top=cert.top, bottom=cert.bottom, symmetries=list(cert.symmetries))
        out.append(row)
    return out
