"""Stationary points of the expected ELBO of the nonparametric VAE (Sec. 4).

The model: N data points ``x_i``, one Gaussian posterior ``N(mu_i, diag(var_i))``
each, the prior ``N(0, diag(s2))`` and the optimal decoder of Eq. (6), built
from all posteriors.  The objective is the expected ELBO, Eq. (2),

    F = sum_i [ -KL(N(mu_i, var_i) | N(0, s2)) + E_{N(z; mu_i, var_i)} log N(x_i; nu(z), I) ],

(the population sum, i.e. N times the expectation over the data) with the
expectation computed by a fixed tensor-product Gauss-Hermite rule, so ``F`` is
a smooth deterministic function of ``(mu, log var, log s2)``.  The prior
variance ``s2`` is a free variable: that Eq. (4) holds at the solution is then
a measured result, not an assumption.

Gradient.  Appendices A and B drop the terms that flow through ``nu``: for the
exact integral, Eq. (6) maximises the objective over the decoder, so by the
envelope argument those terms vanish.  With quadrature they do not (Eq. (6)
is not the maximiser of the quadrature sum), so :func:`elbo_gradient` is the
exact gradient of the quadrature objective: it contains both the moving
quadrature nodes ``z = mu_i + sqrt(var_i) eps_q`` and the dependence of
``nu`` on every ``(mu_j, var_j)`` through the Eq. (6) weights.  The tests
check it against central finite differences.

Shapes: ``x (N, m)``, ``mu (N, n)``, ``var (N, n)`` (per-example diagonal) or
``(n,)`` (one constant variance, Sec. 4.3), ``s2 (n,)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from vaetheory.linear import linear_stationary_point
from vaetheory.solver.polish import newton_polish
from vaetheory.solver.quadrature import gauss_hermite, log_weights_unchecked, softmax_rows
from vaetheory.solver.symmetry import symmetry_directions
from vaetheory.validate import array, choice, scalar
from vaetheory.validate import rng as _check_rng

__all__ = [
    "default_order",
    "fine_order",
    "finer_order",
    "nonparametric_elbo",
    "elbo_gradient",
    "StationaryPoint",
    "find_stationary_point",
]

_LOG2PI = np.log(2 * np.pi)


def default_order(n: int) -> int:
    """Gauss-Hermite nodes per latent dimension used by default. Not in the paper (numerics).

    Chosen so the change from doubling the order is far below the claims'
    tolerances on the default problems (see ``vaetheory verify``), while the
    n = 2 tensor rule (``order**2`` nodes per example) stays cheap.
    """
    return {1: 24, 2: 12}.get(scalar("n", n, positive=True, integer=True), 8)


def fine_order(n: int) -> int:
    """The finer Gauss-Hermite order each stationary point is solved again at. Not in the paper (numerics).

    :func:`finer_order` after :func:`default_order`: 48 for n = 1, 18 per
    dimension for n = 2 (the tensor rule's cost grows with the order squared).
    ``vaetheory verify`` calls a verdict that differs between them unresolved.
    """
    return finer_order(n, default_order(n))


def finer_order(n: int, order: int) -> int:
    """The next finer Gauss-Hermite order after ``order``. Not in the paper (numerics).

    Twice ``order`` for n = 1, one and a half times otherwise; see :func:`fine_order`.
    """
    n = scalar("n", n, positive=True, integer=True)
    order = scalar("order", order, positive=True, integer=True)
    return 2 * order if n == 1 else (3 * order) // 2


def _check(x, mu, var, s2):
    dims: dict = {}
    x = array("x", x, ("N", "m"), dims)
    mu = array("mu", mu, ("N", "n"), dims)
    var = array("var", var, [("N", "n"), ("n",)], dims, positive=True)
    s2 = array("s2", s2, ("n",), dims, positive=True)
    return x, mu, var, s2


def _forward(x, mu, var, s2, eps, w):
    """Quantities shared by the value and the gradient (var is (N, n))."""
    N, n = mu.shape
    Q = w.shape[0]
    sd = np.sqrt(var)
    z = (mu[:, None, :] + sd[:, None, :] * eps[None, :, :]).reshape(N * Q, n)
    a = softmax_rows(log_weights_unchecked(z, mu, var))
    nu = a @ x
    r = (nu.reshape(N, Q, -1) - x[:, None, :]).reshape(N * Q, -1)
    return z, a, nu, r


def _kl(mu, var, s2):
    """KL(N(mu_i, diag var_i) | N(0, diag s2)) per example, (N,)."""
    return 0.5 * np.sum(var / s2 + mu**2 / s2 - 1.0 - np.log(var / s2), axis=1)


def nonparametric_elbo(x, mu, var, s2, *, order: int | None = None):
    """Per-example ELBO, Eq. (2), of the nonparametric VAE with the optimal decoder, Eq. (6).

    ``ELBO_i = -KL_i + E_{N(z; mu_i, var_i)} log N(x_i; nu(z), I)`` where
    ``nu`` is Eq. (6) built from all N posteriors; the expectation is a
    Gauss-Hermite sum with ``order`` nodes per latent dimension.

    Parameters
    ----------
    x : (N, m) data.
    mu : (N, n) posterior means.
    var : (N, n) per-example diagonal posterior variances, or (n,) one
        constant variance shared by every example (Sec. 4.3).
    s2 : (n,) diagonal prior variance S^2.
    order : Gauss-Hermite nodes per dimension (default :func:`default_order`).

    Returns
    -------
    (N,) ELBO of each example, in nats.
    """
    x, mu, var, s2 = _check(x, mu, var, s2)
    var = np.broadcast_to(var, mu.shape)
    eps, w = gauss_hermite(mu.shape[1], default_order(mu.shape[1]) if order is None else order)
    Q = w.shape[0]
    N = mu.shape[0]
    # Blocks of examples keep the (block * Q, N) weight matrix near 4M entries.
    block = max(1, 4_000_000 // (Q * N))
    sq = np.empty(N)
    for i in range(0, N, block):
        sl = slice(i, i + block)
        z = (mu[sl, None, :] + np.sqrt(var[sl, None, :]) * eps[None]).reshape(-1, mu.shape[1])
        nu = softmax_rows(log_weights_unchecked(z, mu, var)) @ x
        r = nu.reshape(-1, Q, x.shape[1]) - x[sl, None, :]
        sq[sl] = np.sum(r**2, axis=2) @ w
    ell = -0.5 * (x.shape[1] * _LOG2PI + sq)
    return ell - _kl(mu, var, s2)


def elbo_gradient(x, mu, var, s2, *, order: int | None = None):
    """Total ELBO ``F = sum_i ELBO_i``, Eq. (2), and its exact gradient: Eqs. (31) and (35) with the nu terms kept.

    The gradient is exact for the quadrature objective (see the module
    docstring): it keeps the terms through the decoder Eq. (6) that the
    envelope argument of Eqs. (31) and (35) drops for the exact integral.

    Parameters
    ----------
    x, mu, var, s2, order : as in :func:`nonparametric_elbo`.

    Returns
    -------
    F : float, the summed ELBO.
    dmu : (N, n) dF/dmu.
    dvar : same shape as ``var``: dF/dvar (summed over examples for a constant variance).
    ds2 : (n,) dF/ds2.
    """
    x, mu, var_in, s2 = _check(x, mu, var, s2)
    var = np.broadcast_to(var_in, mu.shape)
    N, n = mu.shape
    eps, w = gauss_hermite(n, default_order(n) if order is None else order)
    Q = w.shape[0]
    z, a, nu, r = _forward(x, mu, var, s2, eps, w)
    wq = np.tile(w, N)
    sqr = np.sum(r**2, axis=1)
    ell = -0.5 * (x.shape[1] * _LOG2PI * N + wq @ sqr)
    F = float(ell - np.sum(_kl(mu, var, s2)))

    g = -wq[:, None] * r  # dF/dnu at each node, (M, m)
    # dF/dl_j where l_j = log N(z; mu_j, var_j): softmax derivative of Eq. (6).
    c = a * (g @ x.T - np.sum(g * nu, axis=1, keepdims=True))  # (M, N)
    inv = 1.0 / var
    cs = c.sum(axis=0)  # (N,)
    cz = c.T @ z  # (N, n)
    cz2 = c.T @ (z**2)  # (N, n)
    # Through the decoder's parameters (mu_j, var_j) at fixed nodes.
    dmu = (cz - cs[:, None] * mu) * inv
    dvar = 0.5 * ((cz2 - 2.0 * mu * cz + cs[:, None] * mu**2) * inv**2 - cs[:, None] * inv)
    # Through the node positions z = mu_i + sqrt(var_i) eps_q (the decoder Jacobian, Eq. (7)).
    ci = c @ np.concatenate([inv, mu * inv], axis=1)  # (M, 2n)
    dz = -(z * ci[:, :n] - ci[:, n:])  # (M, n)
    dz = dz.reshape(N, Q, n)
    dmu += dz.sum(axis=1)
    dvar += np.einsum("iqk,qk->ik", dz, eps) * 0.5 / np.sqrt(var)
    # -KL terms.
    dmu -= mu / s2
    dvar -= 0.5 * (1.0 / s2 - inv)
    ds2 = 0.5 * np.sum((var + mu**2) / s2**2 - 1.0 / s2, axis=0)
    if var_in.ndim == 1:
        dvar = dvar.sum(axis=0)
    return F, dmu, dvar, ds2


@dataclass
class StationaryPoint:
    """A stationary point of the expected ELBO found by :func:`find_stationary_point`.

    Attributes
    ----------
    x : (N, m) data.
    mu : (N, n) posterior means.
    var : (N, n) posterior variances (rows equal for ``variant="constant"``).
    s2 : (n,) prior variance (a free variable of the solve).
    variant : ``"diagonal"`` or ``"constant"``.
    order : Gauss-Hermite nodes per dimension.
    elbo : (N,) per-example ELBO at the solution (same quadrature).
    grad_norm : max-abs gradient of the summed ELBO w.r.t. ``(mu, log var, log s2)``.
    gtol : the requested gradient-norm tolerance.
    converged : ``grad_norm <= gtol``.
    n_iter, n_eval : L-BFGS-B iterations and function evaluations (all restarts).
    message : the optimiser's last message.
    seconds : wall time of the solve.
    """

    x: np.ndarray
    mu: np.ndarray
    var: np.ndarray
    s2: np.ndarray
    variant: str
    order: int
    elbo: np.ndarray
    grad_norm: float
    gtol: float
    converged: bool
    n_iter: int
    n_eval: int
    message: str
    seconds: float
    history: list = field(default_factory=list)

    @property
    def mean_elbo(self) -> float:
        """E_x[ELBO] at the solution (nats per example)."""
        return float(np.mean(self.elbo))


def _pack(mu, var, s2):
    return np.concatenate([mu.ravel(), np.log(var).ravel(), np.log(s2)])


def _unpack(theta, N, n, constant):
    k = N * n
    mu = theta[:k].reshape(N, n)
    lv = theta[k : k + (n if constant else k)]
    var = np.exp(lv) if constant else np.exp(lv).reshape(N, n)
    s2 = np.exp(theta[-n:])
    return mu, var, s2


def _initial_point(x, n, constant, rng, jitter):
    """PCA (the linear-Gaussian stationary point) plus a small random kick.

    The kick breaks the symmetry of collapsed directions (all ``mu = 0``),
    where the gradient vanishes exactly; the solver may then find a
    non-collapsed solution if one is better.
    """
    lin = linear_stationary_point(x, n=n, var=1.0)
    mu = (x - lin.b) @ lin.V.T
    mu = mu + jitter * np.sqrt(lin.s2) * rng.standard_normal(mu.shape)
    var = lin.var.copy() if constant else np.broadcast_to(lin.var, mu.shape).copy()
    s2 = np.mean(var + mu**2, axis=0)
    return mu, var, s2


def _scale_directions(theta, N, n, constant):
    """The latent-scale symmetry directions at ``theta`` (exact: the polish steps off them), (P, n)."""
    mu, var, s2 = _unpack(theta, N, n, constant)
    scale = [v for name, v in symmetry_directions(mu, var, s2, constant=constant) if name.startswith("latent scale")]
    return np.stack(scale, axis=1)


def find_stationary_point(
    x,
    n: int,
    *,
    rng: np.random.Generator,
    variant: str = "diagonal",
    order: int | None = None,
    gtol: float = 1e-6,
    maxiter: int = 20000,
    restarts: int = 5,
    jitter: float = 0.05,
    init=None,
    polish_max_params: int = 800,
) -> StationaryPoint:
    """Solve for a stationary point of the expected ELBO, Eq. (2), with decoder Eq. (6)
    (Eqs. (4), (11), (12) are then measured).

    Maximises :func:`nonparametric_elbo` summed over examples with SciPy's
    L-BFGS-B over ``(mu, log var, log s2)`` using the exact gradient
    :func:`elbo_gradient`, restarting the quasi-Newton memory when the line
    search stalls, until the max-abs gradient is at most ``gtol``.

    Parameters
    ----------
    x : (N, m) data (N up to a few hundred).
    n : latent dimension (1 or 2 are practical: the rule has ``order**n`` nodes).
    rng : random generator for the initial kick.
    variant : ``"diagonal"`` (per-example diagonal variances) or
        ``"constant"`` (one variance shared by all, Sec. 4.3).
    order : Gauss-Hermite nodes per dimension (default :func:`default_order`).
    gtol : gradient-norm tolerance (max-abs, summed-ELBO units).
    maxiter : iterations per L-BFGS-B run.
    restarts : extra runs allowed when a run stops short of ``gtol``.
    jitter : size of the initial kick, in prior standard deviations.
    init : optional ``(mu, var, s2)`` starting point (``var`` shaped for the variant).
    polish_max_params : when L-BFGS-B stops short of ``gtol`` (the objective
        is flat to float64 before the gradient is small: sharp, memorising
        posteriors), up to 8 Newton steps with a finite-difference Hessian
        (:func:`~vaetheory.solver.polish.newton_polish`, off the latent-scale
        symmetry) follow if there are at most this many parameters.

    Returns
    -------
    StationaryPoint
    """
    x = array("x", x, ("N", "m"))
    n = scalar("n", n, positive=True, integer=True)
    rng = _check_rng("rng", rng)
    variant = choice("variant", variant, ("diagonal", "constant"))
    order = scalar("order", default_order(n) if order is None else order, positive=True, integer=True)
    gtol = scalar("gtol", gtol, positive=True)
    constant = variant == "constant"
    N = x.shape[0]
    if init is None:
        mu, var, s2 = _initial_point(x, n, constant, rng, jitter)
    else:
        mu, var, s2 = init
        mu, var, s2 = _check(x, mu, var, s2)[1:]
        if constant and var.ndim != 1 or not constant and var.ndim != 2:
            raise ValueError(f"init var must have shape {'(n,)' if constant else '(N, n)'} for variant={variant!r}")

    def fun(theta):
        mu_, var_, s2_ = _unpack(theta, N, n, constant)
        F, dmu, dvar, ds2 = elbo_gradient(x, mu_, var_, s2_, order=order)
        grad = np.concatenate([dmu.ravel(), (dvar * var_).ravel(), ds2 * s2_])
        return -F, -grad

    t0 = time.perf_counter()
    theta = _pack(mu, var, s2)
    n_iter = n_eval = 0
    history = []
    message = ""
    for _ in range(restarts + 1):
        res = minimize(
            fun,
            theta,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": maxiter, "maxcor": 30, "gtol": gtol, "ftol": 0.0, "maxls": 50},
        )
        theta = res.x
        n_iter += int(res.nit)
        n_eval += int(res.nfev)
        message = str(res.message)
        grad_norm = float(np.max(np.abs(res.jac)))
        history.append((n_iter, -float(res.fun), grad_norm))
        if grad_norm <= gtol:
            break
    _, g = fun(theta)
    if np.max(np.abs(g)) > gtol and theta.size <= polish_max_params:
        theta, n_pol = newton_polish(fun, theta, gtol, flat=lambda th: _scale_directions(th, N, n, constant))
        n_eval += n_pol
        f, g = fun(theta)
        history.append((n_iter, -float(f), float(np.max(np.abs(g)))))
        message += " + Newton polish"
    mu, var, s2 = _unpack(theta, N, n, constant)
    grad_norm = float(np.max(np.abs(g)))
    var_full = np.broadcast_to(var, mu.shape).copy()
    elbo = nonparametric_elbo(x, mu, var, s2, order=order)
    return StationaryPoint(
        x=x,
        mu=mu,
        var=var_full,
        s2=s2,
        variant=variant,
        order=order,
        elbo=elbo,
        grad_norm=grad_norm,
        gtol=gtol,
        converged=grad_norm <= gtol,
        n_iter=n_iter,
        n_eval=n_eval,
        message=message,
        seconds=time.perf_counter() - t0,
        history=history,
    )
