"""Matvec-only log-determinant baselines that deflate or precondition (not in the paper).

- :func:`xtrace_logdet`: XTrace (Epperly, Tropp & Webber 2024), the exchangeable
  low-rank-plus-Hutchinson trace estimator, applied to ``log(A)`` through
  Lanczos (every ``log(A) x`` costs k matvecs).
- :func:`pchol_slq_logdet`, :func:`nystrom_slq_logdet`: SLQ on
  ``B = C^-1 A C^-T`` for a preconditioner ``P = C C^T``, with
  ``log|A| = log|P| + log|B|``; ``P`` from a pivoted partial Cholesky of rank k
  plus the diagonal of its Schur complement (Harbrecht et al. 2012; the GP
  preconditioner of Gardner et al. 2018), or from a randomized Nystrom
  approximation of rank k with the complement scaled by its smallest kept
  eigenvalue (Frangella, Tropp & Udell 2023).  They are the opponents of
  :func:`vaetheory.logdet.preconditioned_slq_logdet`, whose ``P`` comes from
  Eq. (19).

The call shape and the matvec counting are those of :mod:`vaetheory.logdet_baselines`.
"""

from __future__ import annotations

import numpy as np

from vaetheory import validate as V
from vaetheory.logdet_baselines import (
    LogdetResult,
    as_operator,
    lanczos_function_apply,
    probe_vectors,
    slq_core,
)

__all__ = ["xtrace_logdet", "partial_cholesky", "pchol_slq_logdet", "nystrom_slq_logdet"]


def xtrace_logdet(A_or_matvec, n=None, *, rng, budget, steps=20, probes="rademacher", batched=True):
    """Not in the paper: XTrace (Epperly, Tropp & Webber 2024) for ``tr log A``, ``log(A) x`` by Lanczos.

    With ``s = budget // (2 k)`` probes ``Omega``, ``Y = log(A) Omega`` and
    ``Q R = Y``: for each probe ``i``, ``Q_i`` spans ``Y`` without column i and
    the estimate is ``mean_i tr(Q_i^T F Q_i) + w_i^T F w_i`` with
    ``w_i = (I - Q_i Q_i^T) omega_i`` and ``F = log A`` (all from ``Q^T F Q``
    and ``F Q``: ``Q_i = Q (I - s_i s_i^T)`` with ``s_i`` the normalised i-th
    column of ``R^-T``).  Unbiased up to the Lanczos error, because probe i is
    independent of ``Q_i``; exact when ``log A`` has rank < s.  Costs 2 s k matvecs.

    Parameters
    ----------
    A_or_matvec : (n, n) SPD matrix or matvec.  n : size (for a matvec).
    rng : numpy.random.Generator.  budget : max matvecs (>= 4 k).
    steps : Lanczos steps k per ``log(A) x``.  probes : "rademacher" or "gaussian".
    """
    rng = V.rng("rng", rng)
    probes = V.choice("probes", probes, ("rademacher", "gaussian"))
    op = as_operator(A_or_matvec, n, V.scalar("budget", budget, positive=True, integer=True), batched)
    k = min(V.scalar("steps", steps, positive=True, integer=True), op.n)
    s = min(op.budget // (2 * k), op.n)
    if s < 2:
        raise ValueError(f"budget must be at least 4 * steps = {4 * k} for XTrace, got {op.budget}")
    Om = probe_vectors(rng, op.n, s, probes)
    Y = lanczos_function_apply(op, Om, k)
    Q, R = np.linalg.qr(Y)
    Z = lanczos_function_apply(op, Q, k)  # F Q
    H = Q.T @ Z
    H = (H + H.T) / 2
    W = Q.T @ Om  # coordinates of the probes in range(Q)
    # A rank-deficient Y (log A of rank < s, or a repeated Rademacher probe, likely for small n) makes R
    # singular: its zero pivots are raised to a tiny one, so that inv(R)^T's normalised columns pick the
    # null directions as they do for a nearly singular R
    tiny = 1e-14 * max(float(np.abs(np.diag(R)).max()), 1e-300)
    pivots = np.diag(R)
    R = R + np.diag(np.where(np.abs(pivots) < tiny, np.where(pivots < 0, -tiny, tiny) - pivots, 0.0))
    S = np.linalg.inv(R).T
    S /= np.linalg.norm(S, axis=0)
    T = Z.T @ Om  # Q^T F omega_i (F symmetric)
    PW = W - S * np.sum(S * W, axis=0)  # (I - s_i s_i^T) w_i
    quad = np.einsum("ij,ij->j", Om, Y)  # omega_i^T F omega_i
    vals = np.trace(H) - np.einsum("ij,ik,kj->j", S, H, S) + quad - 2 * np.sum(PW * T, axis=0)
    vals += np.einsum("ij,ik,kj->j", PW, H, PW)
    info = {"probes": s, "lanczos_steps": k, "values": vals}
    return LogdetResult(float(np.mean(vals)), op.count, 0.0, "xtrace", info)


def partial_cholesky(op, diag, rank: int):
    """Not in the paper: pivoted partial Cholesky ``A ~ L L^T`` of ``rank`` columns (greedy largest pivot).

    Column ``p`` of ``A`` is the matvec ``A e_p`` (one product); ``diag`` is
    ``diag(A)``.  Returns ``(L (n, r), d)`` with ``d = diag(A - L L^T) >= 0``
    (r < rank when the Schur complement vanishes).
    """
    d = np.array(diag, dtype=np.float64)
    n = d.size
    Lm = np.zeros((n, min(rank, n)))
    r = 0
    while r < Lm.shape[1]:
        p = int(np.argmax(d))
        if d[p] <= 1e-12 * max(float(np.max(diag)), 1e-300):
            break
        e = np.zeros(n)
        e[p] = 1.0
        col = (op(e) - Lm[:, :r] @ Lm[p, :r]) / np.sqrt(d[p])
        Lm[:, r] = col
        d = np.maximum(d - col**2, 0.0)
        d[p] = 0.0
        r += 1
    return Lm[:, :r], d


class _Whitened:
    """``B = C^-1 A C^-T`` for ``P = C C^T = D^1/2 (I + U diag(g) U^T) D^1/2`` (U orthonormal, g > -1)."""

    def __init__(self, op, dvec, U, g):
        self.op, self.n = op, op.n
        self.isd, self.U = 1.0 / np.sqrt(dvec), U
        self.c = (1.0 + g) ** -0.5 - 1.0
        self.logdet_p = float(np.sum(np.log(dvec)) + np.sum(np.log1p(g)))

    def _m(self, X):
        return X + self.U @ (self.c[:, None] * (self.U.T @ X))

    def __call__(self, X):
        one = X.ndim == 1
        X2 = X[:, None] if one else X
        Y = self._m(self.isd[:, None] * self.op(self.isd[:, None] * self._m(X2)))
        return Y[:, 0] if one else Y


def _slq_on(pre, rng, op, probes, steps, tol, name, info):
    est_B, vals, k = slq_core(pre, rng, probes, op.left, steps, tol)
    info.update(probes=len(vals), lanczos_steps=k, logdet_p=pre.logdet_p)
    return LogdetResult(est_B + pre.logdet_p, op.count, 0.0, name, info)


def _rank(fraction, budget, n):
    f = V.scalar("fraction", fraction)
    if not 0 <= f < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    return min(int(f * budget), n - 1)


def pchol_slq_logdet(
    A_or_matvec, n=None, *, rng, budget, diag, fraction=0.25, probes="rademacher", steps=None, tol=1e-5, batched=True
):
    """Not in the paper: SLQ preconditioned by a pivoted partial Cholesky of rank ``fraction * budget``.

    ``P = L L^T + diag(A - L L^T)`` (Gardner et al. 2018 add the noise
    variance instead; the Schur-complement diagonal needs no model), ``log|P|``
    by the determinant lemma, and :func:`vaetheory.logdet_baselines.slq_core`
    on ``B = C^-1 A C^-T`` with the matvecs left.  ``diag`` = ``diag(A)`` is
    taken as given (as kernel codes read it off the kernel), not counted.

    Parameters are those of :func:`vaetheory.logdet_baselines.slq_logdet` plus
    ``diag`` (n,) positive and ``fraction`` in [0, 1) of the budget spent on columns.
    """
    rng = V.rng("rng", rng)
    probes = V.choice("probes", probes, ("rademacher", "gaussian"))
    op = as_operator(A_or_matvec, n, V.scalar("budget", budget, positive=True, integer=True), batched)
    diag = V.array("diag", diag, (op.n,), positive=True)
    Lm, d = partial_cholesky(op, diag, _rank(fraction, op.budget, op.n))
    d = np.maximum(d, 1e-10 * float(np.max(diag)))
    U, sv, _ = np.linalg.svd(Lm / np.sqrt(d)[:, None], full_matrices=False)
    pre = _Whitened(op, d, U, sv**2)
    return _slq_on(pre, rng, op, probes, steps, tol, "pchol-slq", {"rank": Lm.shape[1]})


def nystrom_slq_logdet(
    A_or_matvec, n=None, *, rng, budget, fraction=0.25, probes="rademacher", steps=None, tol=1e-5, batched=True
):
    """Not in the paper: SLQ preconditioned by a randomized Nystrom approximation of rank ``fraction * budget``.

    ``A_nys = U diag(lam) U^T`` from ``Y = A Omega`` (Gaussian ``Omega``, with the
    stabilising shift of Tropp et al. 2017), ``P = U diag(lam) U^T + lam_min (I - U U^T)``
    (the complement at the smallest kept eigenvalue, Frangella, Tropp & Udell 2023),
    then SLQ on ``B = P^-1/2 A P^-1/2``.  Parameters as :func:`pchol_slq_logdet`, without ``diag``.
    """
    rng = V.rng("rng", rng)
    probes = V.choice("probes", probes, ("rademacher", "gaussian"))
    op = as_operator(A_or_matvec, n, V.scalar("budget", budget, positive=True, integer=True), batched)
    r = _rank(fraction, op.budget, op.n)
    U, g, alpha = np.zeros((op.n, 0)), np.zeros(0), 1.0
    if r >= 1:
        Om, _ = np.linalg.qr(rng.standard_normal((op.n, r)))
        Y = op(Om)
        nu = np.sqrt(op.n) * np.finfo(float).eps * np.linalg.norm(Y)
        Y = Y + nu * Om
        C = np.linalg.cholesky((Om.T @ Y + Y.T @ Om) / 2)
        U, sv, _ = np.linalg.svd(np.linalg.solve(C, Y.T).T, full_matrices=False)
        lam = np.maximum(sv**2 - nu, 0.0)
        alpha = max(float(lam[-1]), 1e-12 * float(lam[0]), 1e-300)
        g = np.maximum(lam, alpha) / alpha - 1.0
    pre = _Whitened(op, np.full(op.n, alpha), U, g)
    return _slq_on(pre, rng, op, probes, steps, tol, "nystrom-slq", {"rank": U.shape[1]})
