"""Newton steps that finish a solve the quasi-Newton optimiser cannot (sharp optima of Sec. 4's expected ELBO)."""

from __future__ import annotations

import numpy as np

from vaetheory.validate import array, scalar

__all__ = ["newton_polish"]


def newton_polish(fun, theta, gtol, *, flat=None, steps: int = 8, h: float = 1e-6, rcond: float = 1e-9):
    """Newton steps on the gradient alone, for when L-BFGS-B stops short of ``gtol``. Not in the paper (numerics).

    Near a sharp optimum (a memorising posterior with a tiny variance) the
    objective stops changing in float64 before the gradient is below
    ``gtol``, so a line search on F stalls; Newton's step uses only gradients
    (Hessian by forward differences, symmetrised) and is accepted only if it
    reduces the gradient.  The step is taken in the eigenbasis of the Hessian,
    keeping the eigenvalues above ``rcond`` times the largest in magnitude:
    the flat latent-scale direction (a symmetry of the objective) and the
    directions the finite differences cannot resolve are left alone.

    Parameters
    ----------
    fun : callable ``theta -> (value, gradient)`` of the objective minimised.
    theta : (P,) the starting point.
    gtol : stop when the max-abs gradient is at most this.
    flat : optional callable ``theta -> (P, k)`` directions along which the
        objective is exactly constant (symmetries); the step is taken in
        their orthogonal complement.
    steps : at most this many Newton steps (one Hessian each: ``P`` gradients).
    h : forward-difference step of the Hessian.
    rcond : eigenvalues of magnitude below ``rcond`` times the largest are dropped.

    Returns
    -------
    ``(theta, gradient evaluations)``.
    """
    if not callable(fun):
        raise ValueError(f"fun must be a callable theta -> (value, gradient), got {type(fun).__name__}")
    theta = array("theta", theta, ("P",))
    gtol = scalar("gtol", gtol, positive=True)
    g = fun(theta)[1]
    evals = 1
    for _ in range(steps):
        if np.max(np.abs(g)) <= gtol:
            break
        H = np.empty((theta.size, theta.size))
        for j in range(theta.size):
            e = theta.copy()
            e[j] += h
            H[:, j] = (fun(e)[1] - g) / h
        evals += theta.size
        H = (H + H.T) / 2
        if flat is not None:
            # Project the symmetry directions out: their eigenvalues become exact zeros, dropped below.
            U = np.linalg.qr(flat(theta))[0]
            proj = np.eye(theta.size) - U @ U.T
            H = proj @ H @ proj
        lam, V = np.linalg.eigh(H)
        keep = np.abs(lam) > rcond * np.max(np.abs(lam))
        step = -V[:, keep] @ ((V[:, keep].T @ g) / lam[keep])
        for t in (1.0, 0.5, 0.25, 0.125):
            g_new = fun(theta + t * step)[1]
            evals += 1
            if np.max(np.abs(g_new)) < np.max(np.abs(g)):
                theta, g = theta + t * step, g_new
                break
        else:
            break
    return theta, evals
