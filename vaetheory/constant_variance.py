"""Sec. 4.3: the case for constant posterior variances, Eqs. (21)-(22).

With P_x = S^-2 + J_x^T J_x (the true posterior precision, Eq. (25)) and
Pbar = E_x[P_x]:

* Eq. (21): the gap Eq. (18) to second order, 1/4 tr((P Sigma - I)^2), reading
  the paper's tr^2(E) as tr(E E) (docs/conventions.md);
* the optimal constant variance Sigma~ = Pbar^-1;
* Eq. (22): the penalty of a constant variance, 1/4 tr CV^2[P_x] read as the
  matrix relative variance 1/4 E_x[tr((P_x Pbar^-1 - I)^2)] (docs/conventions.md), which is
  the mean of Eq. (21) at Sigma~.
"""

from __future__ import annotations

import numpy as np

from vaetheory import validate as V
from vaetheory.covariance import precision_args, variance_precision_args
from vaetheory.numerics import inv_spd


def _quarter_trace_square(E: np.ndarray) -> np.ndarray:
    """1/4 tr(E E) for a stack (N, n, n): the sum of E_ab E_ba."""
    return 0.25 * np.einsum("kab,kba->k", E, E)


def optimal_constant_variance(s2, J):
    """The optimal shared posterior variance Sigma~ = E_x[S^-2 + J^T J]^-1 that Eq. (22) is evaluated at.

    Parameters
    ----------
    s2 : S^2, diagonal (n,) or full (n, n).  J : (N, m, n) decoder Jacobians
        at the posterior means (the expectation E_x is the mean over N).

    Returns
    -------
    (n, n) symmetric positive definite matrix.
    """
    P = precision_args(s2, J)
    return inv_spd(P.mean(axis=0))


def gap_second_order(var, s2, J):
    """The second-order gap, Eq. (21): log p(x) - ELBO ~= 1/4 tr((P Sigma - I)^2), per example.

    P = S^-2 + J^T J; tr^2(E) is read as tr(E E) (docs/conventions.md).  It agrees with
    the exact gap Eq. (18) up to -1/6 tr((P Sigma - I)^3) + O(4th order).

    Parameters
    ----------
    var : Sigma, diagonal (N, n) / (n,) or full (N, n, n) / (1, n, n) / (n, n).
    s2 : S^2, diagonal (n,) or full (n, n).  J : (N, m, n) decoder Jacobians.

    Returns
    -------
    (N,) values (nats, >= 0).
    """
    var, P = variance_precision_args(var, s2, J)
    E = P @ var.matrix() - np.eye(P.shape[-1])
    return _quarter_trace_square(E)


def cv2_penalty_terms(s2, J):
    """Per-example terms of the constant-variance penalty Eq. (22): 1/4 tr((P_x Pbar^-1 - I)^2).

    Their mean is :func:`cv2_penalty`; each is Eq. (21) at Sigma = Sigma~.

    Parameters
    ----------
    s2 : S^2, diagonal (n,) or full (n, n).  J : (N, m, n) decoder Jacobians.

    Returns
    -------
    (N,) values (nats, >= 0).
    """
    return cv2_penalty_terms_of_precisions(precision_args(s2, J))


def cv2_penalty_terms_of_precisions(P):
    """Eq. (22)'s per-example terms 1/4 tr((P_x Pbar^-1 - I)^2) from the precisions P_x themselves.

    For a likelihood whose curvature is not a Gram J^T G J (BAGGINS, whose Hessian in z has a
    negative rank-one term) P_x = S^-2 + H_x may be indefinite; Eq. (22) needs only Pbar = E_x[P_x]
    positive definite.

    Parameters
    ----------
    P : (N, n, n) symmetric precisions; their mean must be positive definite.

    Returns
    -------
    (N,) values (nats, >= 0).
    """
    P = V.array("P", P, ("N", "n", "n"), dtype=np.float64)
    if len(P) == 0:
        raise ValueError("P must hold at least one precision (N >= 1), got N = 0")
    try:
        Pbar_inv = inv_spd(P.mean(axis=0))
    except np.linalg.LinAlgError:
        raise ValueError("Eq. (22) needs the mean precision E_x[P_x] positive definite; it is not") from None
    return _quarter_trace_square(P @ Pbar_inv - np.eye(P.shape[-1]))


def cv2_penalty(s2, J):
    """The penalty for a constant posterior variance, Eq. (22): 1/4 tr CV^2_x[S^-2 + J^T J].

    Matrix reading (docs/conventions.md): 1/4 E_x[tr((P_x Pbar^-1 - I)^2)] with
    P_x = S^-2 + J_x^T J_x, Pbar = E_x[P_x].  Zero when every J_x^T J_x is
    the same; equal to the paper's alternative form with J^T J S^2 + I in place
    of P_x (the S^2 factors cancel).

    Parameters
    ----------
    s2 : S^2, diagonal (n,) or full (n, n).  J : (N, m, n) decoder Jacobians
        at the posterior means (the expectation is the mean over N).

    Returns
    -------
    float, the expected gap penalty in nats per example.
    """
    return float(np.mean(cv2_penalty_terms(s2, J)))
