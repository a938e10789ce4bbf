"""Sec. 4.2: the trace identity Eqs. (19)-(20) and the stochastic log-determinant estimator it gives.

Eq. (19): ``min over Sigma of tr(A Sigma) - log|e Sigma| = log|A|``, attained at
``Sigma = A^-1``.  Reading of the paper: it says "any Hermitian A", but the
identity needs ``A`` symmetric positive definite; for an indefinite ``A`` the
objective is unbounded below (push ``Sigma`` along a negative eigenvector), so
every function here validates ``A`` by Cholesky when it is given as a matrix.

The estimator probes ``v^T A v`` with ``v ~ N(0, Sigma)`` (so ``E v^T A v =
tr(A Sigma)``) and takes stochastic gradient steps on ``Sigma``.  For every fixed
``Sigma`` the objective is >= log|A| (Stein's loss ``tr B - log|B| - n >= 0`` with
``B = Sigma^1/2 A Sigma^1/2``), so the estimate is a stochastic *upper bound*:
its mean lies above ``log|A|`` by at least the *bias floor* of the chosen
parameterisation (AM-GM for a scalar Sigma, Hadamard for a diagonal one, zero
for a full one).  :func:`preconditioned_slq_logdet` (not in the paper) removes
that floor by using the learned Sigma as a preconditioner for Lanczos quadrature.

Symbols: ``A`` (n, n) SPD; ``Sigma`` (n, n) SPD; ``J`` (m, n) decoder Jacobian;
``s2`` (n,) diagonal prior variances ``S^2``.

The module is longer than most (about 500 lines) because the estimator's
Sigma families and the preconditioned SLQ share one machinery (mirror descent,
the Krylov low-rank factor, the learned-Sigma preconditioner); the baselines,
which share none of it, live in :mod:`vaetheory.logdet_baselines`.
"""

from __future__ import annotations

import numpy as np

from vaetheory import validate as V
from vaetheory.logdet_baselines import (
    LogdetResult,
    as_operator,
    chebyshev_logdet,
    hutchpp_logdet,
    slq_core,
    slq_logdet,
)
from vaetheory.numerics import logdet_spd

PARAMETERIZATIONS = ("scalar", "diagonal", "diag+lowrank", "full")

# The public API: this module's estimators and, re-exported so that every
# log-det estimator is imported from one place, the baselines of
# vaetheory.logdet_baselines (LogdetResult, slq_logdet, hutchpp_logdet,
# chebyshev_logdet).
__all__ = [
    "LogdetResult",
    "PARAMETERIZATIONS",
    "trace_identity_objective",
    "trace_identity_minimiser",
    "trace_identity_ref",
    "trace_identity_eq20",
    "trace_identity_bias_floor",
    "logdet_trace_estimator",
    "preconditioned_slq_logdet",
    "slq_logdet",
    "hutchpp_logdet",
    "chebyshev_logdet",
]


def _symmetric(name, A):
    A = V.array(name, A)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"{name} must be a square matrix (..., n, n), got {A.shape}")
    if not np.allclose(A, np.swapaxes(A, -1, -2), rtol=0, atol=1e-10 * max(1.0, float(np.abs(A).max()))):
        raise ValueError(f"{name} must be symmetric")
    return A


def trace_identity_objective(A, Sigma):
    """Eq. (19): the objective ``tr(A Sigma) - log|e Sigma| = tr(A Sigma) - n - log|Sigma|``.

    Parameters
    ----------
    A : (..., n, n) symmetric matrix.  For SPD ``A`` the objective is >= log|A|
        with equality at ``Sigma = A^-1``; for indefinite ``A`` it is unbounded below.
    Sigma : (..., n, n) symmetric positive definite (validated by Cholesky).

    Returns
    -------
    float or (...) array.
    """
    A = _symmetric("A", A)
    Sigma = V.spd("Sigma", Sigma)
    if Sigma.shape[-1] != A.shape[-1]:
        raise ValueError(f"Sigma must have shape (..., {A.shape[-1]}, {A.shape[-1]}), got {Sigma.shape}")
    n = A.shape[-1]
    tr = np.einsum("...ij,...ji->...", A, Sigma)
    out = tr - n - logdet_spd(Sigma)
    return float(out) if np.ndim(out) == 0 else out


def trace_identity_minimiser(A):
    """Eq. (19): the exact minimiser ``Sigma* = A^-1`` of ``tr(A Sigma) - log|e Sigma|``.

    Parameters
    ----------
    A : (..., n, n) symmetric positive definite.  Raises ``ValueError`` for an
        indefinite ``A``, where the minimum is ``-inf`` (no minimiser).
    """
    A = V.spd("A", A)
    n = A.shape[-1]
    L = np.linalg.cholesky(A)
    Linv = np.linalg.solve(L, np.broadcast_to(np.eye(n), A.shape))
    return np.swapaxes(Linv, -1, -2) @ Linv


def trace_identity_ref(A):
    """Eq. (19): the right-hand side ``log|A|`` by Cholesky (the reference the estimators target).

    Parameters
    ----------
    A : (..., n, n) symmetric positive definite.
    """
    A = V.spd("A", A)
    out = logdet_spd(A)
    return float(out) if np.ndim(out) == 0 else out


def trace_identity_eq20(J, s2):
    """Eq. (20): ``min_Sigma tr((S^-2 + J^T J) Sigma) - log|e S^-2 Sigma|`` and ``log|J^T J S^2 + I|``.

    The minimiser is ``Sigma = (S^-2 + J^T J)^-1``, the posterior covariance of
    the linearised model; both sides are returned so a caller can compare them.
    ``log|J^T J S^2 + I|`` is computed as ``log|I + S J^T J S|`` (Sylvester).

    Parameters
    ----------
    J : (..., m, n) decoder Jacobian.
    s2 : (..., n) diagonal of the prior covariance ``S^2`` (positive).

    Returns
    -------
    (minimum, logdet, Sigma): the objective at its minimiser, the right-hand
    side, and the minimiser (..., n, n).
    """
    J = V.array("J", J)
    if J.ndim < 2:
        raise ValueError(f"J must have shape (..., m, n), got {J.shape}")
    s2 = V.array("s2", s2, positive=True)
    n = J.shape[-1]
    if s2.shape[-1] != n:
        raise ValueError(f"s2 must have shape (..., {n}), got {s2.shape}")
    JtJ = np.swapaxes(J, -1, -2) @ J
    A = JtJ + np.eye(n) / s2[..., None, :] * np.eye(n)
    Sigma = trace_identity_minimiser(A)
    s = np.sqrt(s2)
    minimum = np.einsum("...ij,...ji->...", A, Sigma) - n - logdet_spd(Sigma) + np.sum(np.log(s2), axis=-1)
    rhs = logdet_spd(np.eye(n) + s[..., :, None] * JtJ * s[..., None, :])
    return minimum, rhs, Sigma


def trace_identity_bias_floor(A, parameterization):
    """Eq. (19): the bias floor ``min over the class of Sigma of the objective, minus log|A|``.

    scalar ``Sigma = s I``: ``n log(tr A / n) - log|A|`` (AM-GM, zero iff
    ``A = c I``); diagonal: ``sum_i log A_ii - log|A|`` (Hadamard's inequality,
    zero iff ``A`` is diagonal); full: 0.  For "diag+lowrank" the class floor
    has no closed form; it lies between 0 and the diagonal floor, which is
    returned as an upper bound.

    Parameters
    ----------
    A : (n, n) symmetric positive definite.
    parameterization : one of ``PARAMETERIZATIONS``.
    """
    A = V.spd("A", A, ("n", "n"))
    p = V.choice("parameterization", parameterization, PARAMETERIZATIONS)
    n = A.shape[0]
    ld = logdet_spd(A)
    if p == "scalar":
        return float(n * np.log(np.trace(A) / n) - ld)
    if p == "full":
        return 0.0
    return float(np.sum(np.log(np.diag(A))) - ld)


# ---------------------------------------------------------------------------
# The stochastic estimator.
# ---------------------------------------------------------------------------


def _mirror_descent(op, rng, budget, batch, scalar):
    """Eq. (19) over a scalar or diagonal ``Sigma = diag(d)`` by stochastic natural-gradient steps.

    The natural gradient of Eq. (19) in precision coordinates gives the step
    ``Sigma_{t+1}^-1 = (1 - eta_t) Sigma_t^-1 + eta_t a_t`` with
    ``a_t = eps * (A v) / sqrt(d)`` an unbiased estimate of ``diag(A)`` from
    probes ``v = sqrt(d) eps``, and the schedule ``eta_t = 1/(t+1)``
    (Robbins-Monro: the precision is the running mean of the ``a_t``).  The
    first step sets the scalar ``mean(a_0) > 0`` (one block is too noisy per
    coordinate), and later steps may change a precision by at most a factor 2,
    which keeps it positive (single-probe ``a_t`` can be negative).  Each step first
    records an unbiased value of the objective at ``Sigma_t``.  Returns
    (d, values per step, shrunk precisions for preconditioning).
    """
    n = op.n
    d = np.ones(n)
    prec = np.ones(n)
    values, a_sum, a_sq = [], np.zeros(n), np.zeros(n)
    t = 0
    while budget - batch * t >= batch:
        E = rng.standard_normal((n, batch))
        sq = np.sqrt(d)
        AV = op(sq[:, None] * E)
        quad = np.einsum("ib,ib->b", sq[:, None] * E, AV)
        values.append(float(np.mean(quad - np.sum(E**2, axis=0))) - float(np.sum(np.log(d))))
        a_t = np.mean(E * AV, axis=1) / sq
        if t > 0:
            a_sum += a_t
            a_sq += a_t**2
        if scalar or t == 0:
            a_t = np.full(n, np.mean(a_t))
        if t == 0:  # the scalar minimiser n / E[eps^T A eps] > 0: the start, not a clipped step
            prec = a_t
        else:
            eta = 1.0 / (t + 1)
            prec = np.clip((1 - eta) * prec + eta * a_t, prec / 2, 2 * prec)
        d = 1.0 / prec
        t += 1
    return d, np.array(values), _shrunk(prec, a_sum, a_sq, t - 1)


def _shrunk(prec, a_sum, a_sq, T):
    """James-Stein shrinkage of the learned precisions towards their mean (for preconditioning).

    The spread of the precisions across coordinates is kept only in the
    proportion not explained by probe noise (estimated from the per-step
    estimates), so a constant diagonal is not replaced by a noisy one.
    """
    m = float(np.mean(prec))
    if T < 2:
        return np.full_like(prec, m)
    noise = float(np.mean(np.maximum(a_sq / T - (a_sum / T) ** 2, 0.0))) / (T - 1)
    spread = float(np.var(prec))
    lam = max(0.0, 1.0 - noise / spread) if spread > 0 else 0.0
    return m + lam * (prec - m)


def _relative_gradient(op, rng, budget, batch, eta0, t0):
    """Eq. (19) over a full ``Sigma = L L^T`` by relative (natural) stochastic gradient steps.

    Step: ``L <- L (I - eta_t G)`` with ``G = sym(L^T A V E^T)/b - I`` an
    unbiased estimate of ``L^T A L - I`` from probes ``V = L E``; schedule
    ``eta_t = eta0 / (1 + t/t0)``, shrunk so that ``eta_t ||G||_F <= 1/2``
    (keeps ``L`` invertible).  ``log|L|`` is updated by the matrix determinant
    lemma, so a step costs O(n^2 b).  Returns (L, values per step).
    """
    n = op.n
    # The first block sets the scale (the scalar minimiser), so steps start near the optimum.
    E = rng.standard_normal((n, batch))
    quad = np.einsum("ib,ib->b", E, op(E))
    values = [float(np.mean(quad - np.sum(E**2, axis=0)))]
    s = n / max(float(np.mean(quad)), 1e-300)
    L = np.sqrt(s) * np.eye(n)
    logdetL = 0.5 * n * np.log(s)
    t = 1
    while budget - batch * t >= batch:
        E = rng.standard_normal((n, batch))
        AV = op(L @ E)
        quad = np.einsum("ib,ib->b", L @ E, AV)
        values.append(float(np.mean(quad - np.sum(E**2, axis=0))) - 2 * logdetL)
        P = L.T @ AV
        G = (P @ E.T + E @ P.T) / (2 * batch) - np.eye(n)
        eta = min(eta0 / (1 + t / t0), 0.5 / max(np.linalg.norm(G), 1e-300))
        # I - eta G = (1 + eta) I - c U W^T with U = [P, E], W = [E, P]
        U, W = np.hstack([P, E]), np.hstack([E, P])
        c = eta / (2 * batch)
        small = np.eye(2 * batch) - (c / (1 + eta)) * (W.T @ U)
        sign, ld = np.linalg.slogdet(small)
        logdetL += n * np.log1p(eta) + ld
        L = L - eta * (L @ G)
        t += 1
    return L, np.array(values)


def _krylov_preconditioner(op, rng, d, budget, depth=None, complement="eq19", trace_share=0.25):
    """Low-rank part of Sigma: the exact Eq. (19) minimiser given a block-Krylov subspace.

    With ``B0 = D^1/2 A D^1/2`` and an orthonormal basis ``Q`` (n, r) of the
    block Krylov space ``[W, B0 W, ..., B0^(q-1) W]`` (``W`` Gaussian, q*b
    matvecs, ``1 - trace_share`` of ``budget``), Eq. (19) over
    ``M = Q X Q^T + alpha (I - Q Q^T)`` is minimised by ``X = (Q^T B0 Q)^-1``
    and ``alpha = (n - r) / tr((I - QQ^T) B0)``.  The trace of the complement
    is estimated by Hutchinson with the remaining probes projected onto it
    (never by subtracting the Ritz values from a trace estimate, which cancels
    catastrophically when the spectrum is dominated by its top).  Returns
    ``(Q R, theta, alpha)`` with Ritz vectors ``Q R`` and Ritz values ``theta``.
    ``complement="ritz"`` instead sets ``alpha = 1 / min(theta)`` (the complement
    at the smallest Ritz value, as Nystrom preconditioners do) and spends the
    whole budget on the Krylov space: the same preconditioner without Eq. (19).
    """
    n = op.n
    sq = np.sqrt(d)
    n_tr = max(1, int(trace_share * budget)) if complement == "eq19" else 0
    kb = budget - n_tr
    q = max(1, min(kb, depth if depth else int(round(np.sqrt(kb / 2)))))
    b = max(1, kb // q)
    Vs, BVs = [], []
    X = rng.standard_normal((n, b))
    for _ in range(q):
        if Vs:
            Qall = np.hstack(Vs)
            for _ in range(2):
                X = X - Qall @ (Qall.T @ X)
        Qj, R = np.linalg.qr(X)
        keep = np.abs(np.diag(R)) > 1e-10 * max(1.0, np.abs(np.diag(R)).max())
        Qj = Qj[:, keep][:, : n - sum(v.shape[1] for v in Vs)]
        if Qj.shape[1] == 0:
            break
        BQ = sq[:, None] * op(sq[:, None] * Qj)
        Vs.append(Qj)
        BVs.append(BQ)
        X = BQ
    Qm, BQm = np.hstack(Vs), np.hstack(BVs)
    T = Qm.T @ BQm
    theta, S = np.linalg.eigh((T + T.T) / 2)
    theta = np.maximum(theta, 1e-12 * max(theta.max(), 1e-300))
    r = Qm.shape[1]
    alpha = 1.0 / float(theta.min())
    if r < n and complement == "eq19":  # otherwise Q spans everything and there is no complement to scale
        G = rng.standard_normal((n, n_tr))
        G -= Qm @ (Qm.T @ G)
        rest = float(np.mean(np.einsum("ib,ib->b", G, sq[:, None] * op(sq[:, None] * G))))
        alpha = (n - r) / max(rest, 1e-300)
    return Qm @ S, theta, alpha


class _Preconditioned:
    """``B = Sigma^1/2' A Sigma^1/2`` for ``Sigma^1/2 = D^1/2 (Q diag(theta^-1/2) Q^T + sqrt(alpha) (I - QQ^T))``."""

    def __init__(self, op, d, Q, theta, alpha):
        self.op, self.n = op, op.n
        self.sq, self.Q, self.alpha = np.sqrt(d), Q, alpha
        self.c = theta**-0.5 - np.sqrt(alpha)
        self.logdet_sigma = float(np.sum(np.log(d)) - np.sum(np.log(theta)) + (op.n - Q.shape[1]) * np.log(alpha))

    def half(self, X):
        """``Sigma^1/2 X``"""
        Y = np.sqrt(self.alpha) * X + self.Q @ (self.c[:, None] * (self.Q.T @ X))
        return self.sq[:, None] * Y

    def half_t(self, X):
        """``(Sigma^1/2)^T X``"""
        Y = self.sq[:, None] * X
        return np.sqrt(self.alpha) * Y + self.Q @ (self.c[:, None] * (self.Q.T @ Y))

    def __call__(self, X):
        one = X.ndim == 1
        X2 = X[:, None] if one else X
        Y = self.half_t(self.op(self.half(X2)))
        return Y[:, 0] if one else Y


def _learn_dlr(op, rng, budget_diag, budget_krylov, batch, depth=None, trace_share=0.25):
    _, values, prec = _mirror_descent(op, rng, budget_diag, batch, scalar=False)
    d = 1.0 / prec
    Q, theta, alpha = _krylov_preconditioner(op, rng, d, budget_krylov, depth, trace_share=trace_share)
    return _Preconditioned(op, d, Q, theta, alpha), values


def _stein_gap(A, half):
    """Exact ``f(Sigma) - log|A| = tr B - log|B| - n`` for a dense ``A`` (O(n^3))."""
    B = half.half_t(A @ half.half(np.eye(A.shape[0])))
    lam = np.linalg.eigvalsh((B + B.T) / 2)
    return float(np.sum(lam - 1 - np.log(lam)))


def logdet_trace_estimator(
    A_or_matvec,
    n=None,
    *,
    rng,
    budget,
    parameterization="diagonal",
    batch=None,
    eta0=0.5,
    t0=10.0,
    fractions=(0.4, 0.3),
    batched=True,
):
    """Eq. (19): ``log|A|`` from probes ``v^T A v``, ``v ~ N(0, Sigma)``, minimising over Sigma by SGD.

    Each step draws ``b`` probes ``v = Sigma_t^1/2 eps`` at the current
    ``Sigma_t``, records the unbiased value ``mean(v^T A v - eps^T eps) -
    log|Sigma_t|`` of the objective (``eps^T eps``, mean n, is a control
    variate: it removes the probe variance 2n that ``v^T A v`` keeps even at
    ``Sigma = A^-1``), then takes a stochastic gradient step.  The estimate is
    the mean recorded value over the second half of the steps, so
    ``E[estimate] = mean_t f(Sigma_t) >= log|A| + bias_floor``: an upper bound
    in expectation.  Schedules:

    - "scalar", "diagonal": natural-gradient steps in precision coordinates with
      ``eta_t = 1/(t+1)`` (:func:`_mirror_descent`).
    - "full" (``Sigma = L L^T``): relative-gradient steps
      ``L <- L (I - eta_t G)``, ``eta_t = eta0/(1 + t/t0)`` capped by
      ``1/(2 ||G||_F)``.  Needs many more probes than n to beat "diagonal".
    - "diag+lowrank": a diagonal phase (``fractions[0]`` of the budget; the
      learned diagonal is then shrunk towards its mean by the share of its
      spread that probe noise explains), the exact Eq. (19) minimiser over a
      block-Krylov subspace (``fractions[1]``), then fresh probes at the final
      Sigma for the value (the rest).

    Parameters
    ----------
    A_or_matvec : (n, n) SPD matrix (checked by Cholesky) or matvec
        ``X -> A X`` for X (n,) or (n, b); a matvec must be SPD: Eq. (19) is
        unbounded below for indefinite ``A``.
    n : size when a matvec is given.
    rng : numpy.random.Generator.
    budget : maximum number of matvecs (one per probe).
    parameterization : one of ``PARAMETERIZATIONS``.
    batch : probes per step (default ``max(1, budget // 50)``).

    Returns
    -------
    LogdetResult with ``bias_floor`` from :func:`trace_identity_bias_floor`
    when ``A`` is a matrix (for "diag+lowrank": the exact gap at the learned
    Sigma), NaN for a matvec; ``info["values"]`` is the optimisation trace.
    """
    rng = V.rng("rng", rng)
    p = V.choice("parameterization", parameterization, PARAMETERIZATIONS)
    op = as_operator(A_or_matvec, n, V.scalar("budget", budget, positive=True, integer=True), batched)
    b = max(1, op.budget // 50) if batch is None else V.scalar("batch", batch, positive=True, integer=True)
    if op.budget < 2 * b:
        raise ValueError(f"budget must be at least 2 * batch = {2 * b}, got {op.budget}")
    info: dict = {"parameterization": p, "batch": b}
    floor = np.nan
    if p in ("scalar", "diagonal"):
        d, values, _ = _mirror_descent(op, rng, op.budget, b, scalar=p == "scalar")
        info["sigma_diag"] = d
    elif p == "full":
        L, values = _relative_gradient(op, rng, op.budget, b, eta0, t0)
        info["sigma_factor"] = L
    else:
        if op.budget < 10:
            raise ValueError(f"budget must be at least 10 for diag+lowrank, got {op.budget}")
        nd, nk = int(fractions[0] * op.budget), int(fractions[1] * op.budget)
        pre, values = _learn_dlr(op, rng, nd, nk, b)
        m = op.left
        E = rng.standard_normal((op.n, m))
        quad = np.einsum("ib,ib->b", E, pre(E))
        info.update(rank=pre.Q.shape[1], diag_values=values, eval_probes=m)
        values = quad - np.sum(E**2, axis=0) - pre.logdet_sigma
        if op.dense is not None:
            floor = _stein_gap(op.dense, pre)
        est = float(np.mean(values))
        info["values"] = values
        return LogdetResult(est, op.count, floor, "eq19-" + p, info)
    if op.dense is not None:
        floor = trace_identity_bias_floor(op.dense, p)
    tail = values[len(values) // 2 :]
    info["values"] = values
    return LogdetResult(float(np.mean(tail)), op.count, floor, "eq19-" + p, info)


def preconditioned_slq_logdet(
    A_or_matvec,
    n=None,
    *,
    rng,
    budget,
    fractions=(0.1, 0.4),
    probes="rademacher",
    batch=None,
    steps=None,
    tol=1e-5,
    depth=None,
    complement="eq19",
    trace_share=0.25,
    batched=True,
):
    """Not in the paper (built on Eq. (19)): SLQ preconditioned by the Sigma that Eq. (19) learns.

    ``log|A| = -log|Sigma| + log|Sigma^1/2 A Sigma^1/2|``: learn
    ``Sigma = D^1/2 (Q X Q^T + alpha (I - QQ^T)) D^1/2`` as in
    :func:`logdet_trace_estimator` "diag+lowrank" (diagonal phase
    ``fractions[0]`` of the budget, block-Krylov phase ``fractions[1]``), then
    run :func:`slq_logdet` on ``B = Sigma^1/2 A Sigma^1/2`` with the rest.
    Unbiased up to quadrature error: no bias floor, and ``B`` is closer to I
    than ``A``, so fewer Lanczos steps and smaller probe variance.

    Parameters are those of :func:`slq_logdet` plus ``fractions``, ``batch``
    (probes per diagonal step) and ``depth`` (block-Krylov depth q; default
    ``round(sqrt(m/2))`` for m Krylov matvecs, block size m/q).  ``budget``
    must be at least 10.  ``complement="ritz"`` (with ``fractions[0] = 0``) is
    the ablation without Eq. (19): the complement of the Krylov space is scaled
    by the smallest Ritz value instead of the Eq. (19) minimiser.  ``trace_share``
    is the share of the Krylov phase spent on the Hutchinson probes of the
    complement's trace that give the Eq. (19) scale ``alpha``.
    """
    rng = V.rng("rng", rng)
    probes = V.choice("probes", probes, ("rademacher", "gaussian"))
    complement = V.choice("complement", complement, ("eq19", "ritz"))
    trace_share = V.scalar("trace_share", trace_share, positive=True)
    if trace_share >= 1:
        raise ValueError(f"trace_share must be in (0, 1), got {trace_share}")
    op = as_operator(A_or_matvec, n, V.scalar("budget", budget, positive=True, integer=True), batched)
    if op.budget < 10:
        raise ValueError(f"budget must be at least 10 for the preconditioned estimator, got {op.budget}")
    b = max(1, op.budget // 50) if batch is None else V.scalar("batch", batch, positive=True, integer=True)
    nd, nk = int(fractions[0] * op.budget), int(fractions[1] * op.budget)
    nd = nd if nd >= 2 * b and complement == "eq19" else 0
    if nd:
        pre, _ = _learn_dlr(op, rng, nd, nk, b, depth, trace_share)
    else:  # too small a budget for a diagonal phase: D = I
        Q, theta, alpha = _krylov_preconditioner(op, rng, np.ones(op.n), nk, depth, complement, trace_share)
        pre = _Preconditioned(op, np.ones(op.n), Q, theta, alpha)
    est_B, vals, k = slq_core(pre, rng, probes, op.left, steps, tol)
    info = {"rank": pre.Q.shape[1], "probes": len(vals), "lanczos_steps": k, "logdet_sigma": pre.logdet_sigma}
    return LogdetResult(est_B - pre.logdet_sigma, op.count, 0.0, f"pslq-{probes}", info)
