"""Claims about a constant posterior variance (Sec. 4.3): the Eq. (22) penalty and the main claim.

The measured cost of a constant variance is E[ELBO_diag] - E[ELBO_const] at
the two stationary points of one problem (the diagonal solve starts from the
constant one, so the cost is >= 0).
"""

from __future__ import annotations

import numpy as np

from vaetheory.claims.measure import measured_penalty
from vaetheory.claims.registry import Claim, PairCase, claim, make_claim


@claim("eq22", "pair")
def eq22(case: PairCase) -> list[Claim]:
    """Eqs. (21), (22): the predicted penalty 1/4 tr CV^2[S^-2 + J^T J] against the measured one."""
    meas_d, meas_c = case.meas_d, case.meas_c
    measured = measured_penalty(meas_d, meas_c)
    gap_c = float(np.mean(meas_c["log_px"] - meas_c["elbo"]))
    pred = float(meas_c["penalty22"])
    pred_d = float(meas_d["penalty22"])
    ratio = pred / measured if measured > 0 else np.inf
    return [
        make_claim(
            "eq22",
            ["(22)", "(21)"],
            case.problem["name"],
            abs(np.log(ratio)) if np.isfinite(ratio) and ratio > 0 else np.inf,
            np.log(2.0),
            "approximate",
            "|log(predicted / measured)| penalty: 1/4 tr CV^2[S^-2 + J^T J] vs E[ELBO_diag] - E[ELBO_const]",
            "second order in (P Sigma~ - I) (Eq. (21)); small when J^T J varies little across examples",
            predicted=pred,
            predicted_at_diagonal_solution=pred_d,
            measured_gap_between_variants=measured,
            measured_logp_minus_elbo_constant=gap_c,
        )
    ]


@claim("main", "pair")
def main_claim(case: PairCase) -> list[Claim]:
    """Eqs. (22), (23), the paper's main claim: a constant posterior variance costs little ELBO."""
    pen = measured_penalty(case.meas_d, case.meas_c)
    return [
        make_claim(
            "main",
            ["(22)", "(23)"],
            case.problem["name"],
            pen / abs(float(np.mean(case.meas_d["elbo"]))),
            0.01,
            "approximate",
            (
                "the main claim: (E[ELBO_diag] - E[ELBO_const]) / |E[ELBO_diag]|, "
                "the cost of a constant posterior variance"
            ),
            "low intrinsic rank and modest variation of J^T J across examples (Sec. 4.3)",
            penalty_nats=pen,
        )
    ]
