"""Second-order certificate of a stationary point: is it a local maximum, a saddle, or flat?

The extreme eigenvalues of the Hessian of the expected ELBO, Eq. (2), at a
solution of :func:`vaetheory.solver.stationary.find_stationary_point`, in the
solver's coordinates ``theta = (mu, log var, log s2)``.  The Hessian is never
formed from second derivatives of the objective: each product ``H v`` is a
central difference of the analytic gradient
(:func:`vaetheory.solver.stationary.elbo_gradient`) along ``v`` (a forward
difference: one gradient per product).  Small
problems get the whole matrix (one product per coordinate), larger ones
Lanczos (ARPACK) on the products.  The signs of the eigenvalues at a
stationary point do not depend on the coordinates (Sylvester's law of
inertia), so the verdict is a property of the point, not of the
parametrisation.

Symmetries give zero eigenvalues that say nothing about the point:

* latent scale (always): ``z_k -> a z_k`` maps ``mu_k -> a mu_k``,
  ``var_k -> a^2 var_k``, ``s2_k -> a^2 s2_k`` and leaves the optimal
  decoder Eq. (6) (its weights are Gaussians in ``z``) and every KL term
  unchanged, so ``F`` is constant along it: one flat direction per latent
  dimension;
* latent rotation (when the prior and every posterior variance are isotropic
  in a pair of latent dimensions ``k, l``): rotating ``mu`` in that plane
  leaves the exact integral unchanged; the tensor Gauss-Hermite rule breaks
  it by its quadrature error, which the symmetry residual then shows.

Sign flips and permutations of the latent dimensions are discrete symmetries:
they make several equivalent maxima, not a zero eigenvalue.  The certificate
projects the symmetry directions out, reports how far ``H`` is from
annihilating them (a measure of the finite-difference and stationarity
error), and classifies by the largest eigenvalue left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from vaetheory.solver.stationary import StationaryPoint, elbo_gradient
from vaetheory.solver.symmetry import symmetry_directions
from vaetheory.validate import array, scalar

__all__ = ["Certificate", "hessian_extremes", "symmetry_directions", "certify"]


@dataclass
class Certificate:
    """The second-order verdict at a stationary point.

    Attributes
    ----------
    kind : ``"local maximum"`` (every eigenvalue off the symmetries below
        ``-tol``), ``"saddle"`` (one above ``tol``) or ``"flat directions"``
        (the largest within ``tol`` of zero, not explained by a listed symmetry).
    top : the largest eigenvalue of the Hessian off the symmetry directions.
    bottom : the smallest (most negative) eigenvalue.
    tol : the magnitude below which an eigenvalue counts as zero.
    symmetries : names of the symmetry directions projected out.
    symmetry_residual : max over them of ``||H s|| / ||s||`` (zero for an
        exact symmetry at an exact stationary point).
    method : ``"dense"`` or ``"lanczos"``.
    products : Hessian-vector products used (one gradient each, besides the one at the point).
    parameters : the number of coordinates.
    """

    kind: str
    top: float
    bottom: float
    tol: float
    symmetries: list = field(default_factory=list)
    symmetry_residual: float = 0.0
    method: str = "dense"
    products: int = 0
    parameters: int = 0


def _orthonormal(S):
    if S.shape[1] == 0:
        return S
    Q, R = np.linalg.qr(S)
    keep = np.abs(np.diag(R)) > 1e-12 * max(1.0, np.abs(R).max())
    return Q[:, keep]


def hessian_extremes(grad, theta, *, symmetries=(), h: float = 1e-6, dense_max: int = 400, rtol: float = 1e-6):
    """Extreme Hessian eigenvalues off the symmetry directions, by differences of ``grad``. Not in the paper.

    Parameters
    ----------
    grad : callable ``theta -> gradient`` of the objective being maximised.
    theta : (P,) the point (a stationary point of the objective).
    symmetries : sequence of ``(name, (P,) direction)`` along which the
        objective is invariant; they are projected out.
    h : step of the forward differences (``theta`` units, along unit vectors).
    dense_max : at most this many coordinates: the whole Hessian (exact up to
        the differences); more: Lanczos for the two extreme eigenvalues.
    rtol : eigenvalues within ``rtol`` times the spectral radius of zero count
        as zero (besides the measured symmetry residual).

    Returns
    -------
    Certificate
    """
    if not callable(grad):
        raise ValueError(f"grad must be a callable theta -> gradient, got {type(grad).__name__}")
    theta = array("theta", theta, ("P",))
    h = scalar("h", h, positive=True)
    P = theta.size
    names = [name for name, _ in symmetries]
    S = _orthonormal(np.stack([np.asarray(v, float) for _, v in symmetries], axis=1) if names else np.zeros((P, 0)))
    count = [0]
    g0 = grad(theta)

    def hv(v):
        count[0] += 1
        return (grad(theta + h * v) - g0) / h

    residual = max((np.linalg.norm(hv(S[:, j])) for j in range(S.shape[1])), default=0.0)
    project = lambda v: v - S @ (S.T @ v)
    if P <= dense_max:
        H = np.stack([hv(e) for e in np.eye(P)], axis=1)
        H = (H + H.T) / 2
        # An orthonormal basis of the complement of the symmetry directions.
        full = np.linalg.qr(np.concatenate([S, np.eye(P)], axis=1))[0][:, :P]
        B = full[:, S.shape[1] :]
        lam = np.linalg.eigvalsh(B.T @ H @ B)
        bottom, top, method = float(lam[0]), float(lam[-1]), "dense"
    else:
        op = LinearOperator((P, P), matvec=lambda v: project(hv(project(np.ravel(v)))), dtype=float)
        bottom = float(_lanczos(op, "SA", 1e-2)[0])
        # Push the symmetry directions (zero eigenvalues of the projected operator) below the spectrum.
        shift = 2.0 * abs(bottom) + 1.0
        shifted = LinearOperator((P, P), matvec=lambda v: op.matvec(v) - shift * (S @ (S.T @ np.ravel(v))), dtype=float)
        top = float(_lanczos(shifted, "LA", 1e-3)[0])
        method = "lanczos"
    tol = max(rtol * max(abs(bottom), abs(top)), 10.0 * residual, 1e-9)
    kind = "local maximum" if top < -tol else ("saddle" if top > tol else "flat directions")
    return Certificate(kind, top, bottom, tol, names, float(residual), method, count[0], P)


def _lanczos(op, which, tol):
    try:
        return eigsh(op, k=1, which=which, tol=tol, ncv=min(op.shape[0], 40), maxiter=400, return_eigenvectors=False)
    except ArpackNoConvergence as exc:  # the best Ritz value found; good enough for a sign
        if len(exc.eigenvalues):
            return exc.eigenvalues
        raise


def certify(sp: StationaryPoint, *, order: int | None = None, dense_max: int = 400) -> Certificate:
    """Second-order certificate of a solution of the expected ELBO, Eq. (2) with decoder Eq. (6).

    Parameters
    ----------
    sp : the stationary point (its ``variant`` fixes the coordinates).
    order : Gauss-Hermite order of the objective (default: the solve's).
    dense_max : see :func:`hessian_extremes`.

    Returns
    -------
    Certificate
    """
    x, mu, s2 = sp.x, sp.mu, sp.s2
    N, n = mu.shape
    constant = sp.variant == "constant"
    var = sp.var[0].copy() if constant else sp.var
    order = sp.order if order is None else scalar("order", order, positive=True, integer=True)
    k = N * n
    nv = n if constant else k

    def grad(theta):
        mu_ = theta[:k].reshape(N, n)
        lv = theta[k : k + nv]
        var_ = np.exp(lv) if constant else np.exp(lv).reshape(N, n)
        s2_ = np.exp(theta[-n:])
        _, dmu, dvar, ds2 = elbo_gradient(x, mu_, var_, s2_, order=order)
        return np.concatenate([dmu.ravel(), (dvar * var_).ravel(), ds2 * s2_])

    theta = np.concatenate([mu.ravel(), np.log(var).ravel(), np.log(s2)])
    sym = symmetry_directions(mu, var, s2, constant=constant)
    return hessian_extremes(grad, theta, symmetries=sym, dense_max=dense_max)
