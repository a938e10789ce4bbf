"""Every quantity the claims need at one stationary point (:func:`measure`), and the sweeps' summaries.

``measure`` evaluates the optimal decoder (Eqs. (6)-(8)), the true log
evidence by latent grid quadrature, the Eq. (16) Laplace form, the Eq. (18)
gap, the Eq. (11)-(12) residuals (with the point and the posterior-windowed
Jacobian), the exact-integral conditions of Appendices A-B, the Eq. (25)
covariance error, the Eq. (22) penalty, and the decoder's nonlinearity over
each posterior.
"""

from __future__ import annotations

import numpy as np

from vaetheory.constant_variance import cv2_penalty
from vaetheory.evidence import evidence_gap, log_evidence, true_posterior_covariance
from vaetheory.optimal import optimal_decoder_jacobian
from vaetheory.optimality import mean_condition_residual, windowed_jacobian
from vaetheory.solver.quadrature import decoder_mean, gauss_hermite, grid_log_evidence
from vaetheory.solver.stationary import StationaryPoint, nonparametric_elbo

# The highest Gauss-Hermite order measure uses: numpy.polynomial.hermite_e.hermegauss's weights overflow
# to nan above about 300 nodes (384 gives nan).
MAX_ORDER = 256


def measure(sp: StationaryPoint) -> dict:
    """Every quantity the claims need at one stationary point (Eqs. (6)-(8), (11), (12), (16), (18), (22), (25)).

    Returns a dict of arrays over examples and scalars; :mod:`vaetheory.claims` reads it.
    """
    x, mu, var, s2 = sp.x, sp.mu, sp.var, sp.s2
    N, n = mu.shape
    nu, J = optimal_decoder_jacobian(mu, mu, var, x)
    # A converged reference ELBO: the solve's rule at 2x and 4x the order (3x for n = 2), each at most
    # MAX_ORDER, where NumPy's Gauss-Hermite weights are still finite.
    e2 = nonparametric_elbo(x, mu, var, s2, order=min(2 * sp.order, MAX_ORDER // 2))
    e4 = nonparametric_elbo(x, mu, var, s2, order=min(4 * sp.order if n == 1 else 3 * sp.order, MAX_ORDER))
    ge = grid_log_evidence(x, mu, var, s2, per_sd=6.0)
    quad_err = np.abs(e4 - e2) + ge.error
    P = np.linalg.inv(true_posterior_covariance(s2, J))
    Pd = np.diagonal(P, axis1=1, axis2=2)
    if sp.variant == "constant":
        target = np.broadcast_to(np.mean(Pd, axis=0), Pd.shape)  # Sigma~^-1 read on the diagonal
    else:
        target = Pd
    eq12 = np.max(np.abs(var * target - 1.0), axis=1)
    r11 = mean_condition_residual(mu, s2, nu, x, J)
    eq11 = np.sqrt(np.sum(r11**2) / max(np.sum(mu**2), 1e-300))
    # Where the Eq. (11) residual sits: the outermost decile of |mu| (where the decoder saturates).
    radius = np.sqrt(np.sum(mu**2 / s2, axis=1))
    outer = radius >= np.quantile(radius, 0.9)
    sq11 = np.sum(r11**2, axis=1)
    eq11_outer_share = float(np.sum(sq11[outer]) / max(np.sum(sq11), 1e-300))
    eq11_median = float(np.median(np.sqrt(sq11)) / np.sqrt(max(np.mean(np.sum(mu**2, axis=1)), 1e-300)))
    cov25 = true_posterior_covariance(s2, J)
    err25 = np.linalg.norm(ge.cov - cov25, axis=(1, 2)) / np.linalg.norm(ge.cov, axis=(1, 2))
    mode_err = np.sqrt(np.sum((ge.mean - mu) ** 2, axis=1) / np.trace(ge.cov, axis1=1, axis2=2))
    # Decoder nonlinearity within each posterior window: E_q|nu(z) - nu(mu) - J (z - mu)|^2 / tr(J Sigma J^T),
    # the quantity Appendices A-B neglect.
    eps, w = gauss_hermite(n, min(2 * sp.order, MAX_ORDER) if n == 1 else sp.order)
    sd = np.sqrt(var)
    z = (mu[:, None, :] + sd[:, None, :] * eps[None]).reshape(-1, n)
    nz, _ = decoder_mean(z, mu, var, x)
    lin_pred = nu[:, None, :] + np.einsum("imk,iqk->iqm", J, (z.reshape(N, -1, n) - mu[:, None, :]))
    dev = np.sum((nz.reshape(N, -1, x.shape[1]) - lin_pred) ** 2, axis=2) @ w
    spread = np.einsum("imk,ik,imk->i", J, var, J)
    nonlin = float(np.sum(dev) / max(np.sum(spread), 1e-300))
    # Eqs. (11)-(12) again with J as Appendices A-B define it, the linear fit windowed by the posterior
    # (E_q[d nu/dz]), instead of the point Jacobian of Eq. (8) at mu.
    Jw = windowed_jacobian(nz.reshape(N, -1, x.shape[1]), nu, eps, w, var)
    r11w = mean_condition_residual(mu, s2, nu, x, Jw)
    eq11_windowed = float(np.sqrt(np.sum(r11w**2) / max(np.sum(mu**2), 1e-300)))
    Pdw = np.diagonal(np.linalg.inv(true_posterior_covariance(s2, Jw)), axis1=1, axis2=2)
    if sp.variant == "constant":
        Pdw = np.broadcast_to(np.mean(Pdw, axis=0), Pdw.shape)
    eq12_windowed = float(np.mean(np.max(np.abs(var * Pdw - 1.0), axis=1)))
    # The exact-integral conditions of Appendices A-B (Eqs. (31), (35) plus the KL terms), by the same
    # Gauss-Hermite nodes: what Eqs. (9)-(12) linearise.
    zr = z.reshape(N, -1, n)
    sq = np.sum((nz.reshape(N, -1, x.shape[1]) - x[:, None, :]) ** 2, axis=2)
    u = (zr - mu[:, None, :]) / var[:, None, :]
    g31 = -0.5 * np.einsum("iq,q,iqk->ik", sq, w, u) - mu / s2
    g35 = -0.25 * np.einsum("iq,q,iqk->ik", sq, w, u**2 - 1.0 / var[:, None, :]) + 0.5 * (1.0 / var - 1.0 / s2)
    if sp.variant == "constant":
        g35 = np.broadcast_to(g35.mean(axis=0), g35.shape)
    app_a = np.sqrt(np.sum((g31 * s2) ** 2) / max(np.sum(mu**2), 1e-300))
    app_b = float(np.mean(np.max(np.abs(2.0 * var * g35), axis=1)))
    return dict(
        app_a=app_a,
        app_b=app_b,
        nu=nu,
        J=J,
        elbo=e4,
        elbo_solve=sp.elbo,
        log_px=ge.log_px,
        quad_err=quad_err,
        grid=ge,
        eq16=log_evidence(x, mu, nu, J, s2),
        gap18=evidence_gap(var, s2, J),
        eq11=eq11,
        eq11_outer_share=eq11_outer_share,
        eq11_median=eq11_median,
        eq12=eq12,
        eq11_windowed=eq11_windowed,
        eq12_windowed=eq12_windowed,
        err25=err25,
        mode_err=mode_err,
        penalty22=cv2_penalty(s2, J),
        nonlin=nonlin,
        M=np.mean(mu**2, axis=0),
    )


# One number per measured error, as the curvature and density sweeps tabulate them.
SWEEP_ERRORS = {
    "nonlinearity": lambda meas: meas["nonlin"],
    "eq11": lambda meas: meas["eq11"],
    "eq11_windowed": lambda meas: meas["eq11_windowed"],
    "eq12_windowed": lambda meas: meas["eq12_windowed"],
    "eq12": lambda meas: float(np.mean(meas["eq12"])),
    "eq25": lambda meas: float(np.mean(meas["err25"])),
    "gap18": lambda meas: float(np.mean(meas["log_px"] - meas["elbo"])),
    "eq16": lambda meas: float(np.mean(np.abs(meas["eq16"] - meas["log_px"]))),
}


def sweep_errors(meas: dict, keys) -> dict:
    """The ``keys`` of :data:`SWEEP_ERRORS` measured at one stationary point, in that order."""
    return {k: SWEEP_ERRORS[k](meas) for k in keys}


def measured_penalty(meas_d: dict, meas_c: dict) -> float:
    """E[ELBO_diag] - E[ELBO_const] (nats): the measured cost of a constant posterior variance."""
    return float(np.mean(meas_d["elbo"]) - np.mean(meas_c["elbo"]))
