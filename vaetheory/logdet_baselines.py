"""Matvec-only log-determinant baselines: SLQ, Hutch++ and Chebyshev (not in the paper).

All estimators here and in :mod:`vaetheory.logdet` share one call shape,
``f(A_or_matvec, n=None, *, rng, budget, ...) -> LogdetResult``, and count
matrix-vector products the same way: one product per column of every block
handed to the matvec (a block of ``b`` probes costs ``b``).  ``budget`` is a
hard cap on that count; the result's ``matvecs`` is the exact number used.

Symbols: ``A`` (n, n) symmetric positive definite; ``log|A| = tr log A``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vaetheory import validate as V

__all__ = [
    "LogdetResult",
    "Operator",
    "as_operator",
    "lanczos",
    "gauss_quadrature",
    "quadratures",
    "probe_vectors",
    "lanczos_function_apply",
    "slq_logdet",
    "hutchpp_logdet",
    "chebyshev_logdet",
]


@dataclass
class LogdetResult:
    """Not in the paper: the common result of every log-determinant estimator.

    Attributes
    ----------
    estimate : the estimate of ``log|A|``.
    matvecs : exact number of products with ``A`` used (columns of every block).
    bias_floor : for the Eq. (19) estimator, ``min over the parameterisation of
        tr(A Sigma) - log|e Sigma| - log|A| >= 0`` (exact when ``A`` was given as a
        matrix, NaN otherwise); 0 for estimators that are unbiased up to
        quadrature/truncation error.
    method : a short name.
    info : method-specific extras (probes, Lanczos steps, optimisation trace, ...).
    """

    estimate: float
    matvecs: int
    bias_floor: float = 0.0
    method: str = ""
    info: dict = field(default_factory=dict)


class Operator:
    """Not in the paper: an SPD operator that counts its matvecs and enforces the budget.

    ``op(X)`` takes ``X`` (n,) or (n, b) and returns ``A X`` of the same shape;
    each column counts as one product.  ``dense`` is the matrix when one was given.
    """

    def __init__(self, matvec, n: int, dense=None, budget: int | None = None, batched: bool = True):
        self._matvec = matvec
        self.n = n
        self.dense = dense
        self.budget = budget
        self.batched = batched
        self.count = 0

    @property
    def left(self) -> int:
        """Matrix-vector products left in the budget."""
        return self.budget - self.count

    def __call__(self, X):
        X = np.asarray(X, dtype=np.float64)
        b = 1 if X.ndim == 1 else X.shape[1]
        if self.budget is not None and self.count + b > self.budget:
            raise RuntimeError(f"matvec budget {self.budget} exceeded (used {self.count}, asked {b})")
        self.count += b
        if X.ndim == 2 and not self.batched:
            Y = np.stack([np.asarray(self._matvec(X[:, j])) for j in range(b)], axis=1)
        else:
            Y = np.asarray(self._matvec(X), dtype=np.float64)
        if Y.shape != X.shape:
            raise ValueError(f"matvec returned shape {Y.shape} for input {X.shape}")
        return Y


def as_operator(A_or_matvec, n=None, budget=None, batched=True) -> Operator:
    """Not in the paper: wrap a matrix (checked SPD by Cholesky) or a matvec into an :class:`Operator`.

    Parameters
    ----------
    A_or_matvec : (n, n) symmetric positive definite array, or a callable
        ``X -> A X`` for ``X`` (n,) or (n, b) (set ``batched=False`` if it only
        takes vectors).  A matvec is trusted to be symmetric positive definite:
        the Eq. (19) objective is unbounded below for indefinite ``A``.
    n : the size, required for a matvec.
    budget : maximum number of matvecs (>= 1).
    """
    budget = None if budget is None else V.scalar("budget", budget, positive=True, integer=True)
    if callable(A_or_matvec):
        if n is None:
            raise ValueError("n is required when A is given as a matvec")
        n = V.scalar("n", n, positive=True, integer=True)
        return Operator(A_or_matvec, n, None, budget, batched)
    A = V.spd("A", A_or_matvec, ("n", "n"))
    if A.ndim != 2:
        raise ValueError(f"A must have shape (n, n), got {A.shape}")
    if n is not None and int(n) != A.shape[0]:
        raise ValueError(f"n={n} does not match A of shape {A.shape}")
    return Operator(A.__matmul__, A.shape[0], A, budget)


def lanczos(op, V0, steps: int, tol: float | None = None, f=np.log):
    """Not in the paper: batched Lanczos with full reorthogonalisation, one run per column of ``V0``.

    Parameters
    ----------
    op : callable ``X -> A X`` on (n, b) blocks.
    V0 : (n, b) start vectors (any norm).
    steps : maximum Krylov dimension k.
    tol : if given, a column stops once its Gauss quadrature of ``f`` changes
        by less than ``tol * |v|^2`` between steps (checked every step).

    Returns
    -------
    (alpha, beta, ksteps) with alpha (b, k), beta (b, k) and ksteps (b,) the
    Krylov dimension each column reached (breakdown or convergence).
    """
    n, b = V0.shape
    norms = np.linalg.norm(V0, axis=0)
    Q = np.zeros((b, steps, n))  # column-major basis per run: rows are Lanczos vectors
    Q[:, 0] = (V0 / norms).T
    alpha = np.zeros((b, steps))
    beta = np.zeros((b, steps))
    ksteps = np.zeros(b, dtype=int)
    active = np.ones(b, dtype=bool)
    last = np.full(b, np.inf)
    for j in range(steps):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        Qa = Q[:, : j + 1] if idx.size == b else Q[idx, : j + 1]
        Wt = op(Qa[:, j].T).T.copy()
        a = np.einsum("bi,bi->b", Qa[:, j], Wt)
        alpha[idx, j] = a
        ksteps[idx] = j + 1
        _reorthogonalise(Qa, Wt)
        bnext = np.linalg.norm(Wt, axis=1)
        if tol is not None:
            for col in idx:
                q = norms[col] ** 2 * gauss_quadrature(alpha[col, : j + 1], beta[col, :j], f)
                if abs(q - last[col]) < tol * norms[col] ** 2:
                    active[col] = False
                last[col] = q
        broke = bnext <= 1e-12 * np.maximum(np.abs(a), 1e-300)
        active[idx[broke]] = False
        if j + 1 < steps:
            beta[idx, j] = bnext
            ok = ~broke
            Q[idx[ok], j + 1] = Wt[ok] / bnext[ok, None]
    return alpha, beta, ksteps


def _reorthogonalise(Qa, Wt):
    """Full reorthogonalisation, twice ("twice is enough"), of rows ``Wt`` (b, n) against ``Qa`` (b, k, n)."""
    for _ in range(2):
        c = np.matmul(Qa, Wt[:, :, None])
        Wt -= np.matmul(c.transpose(0, 2, 1), Qa)[:, 0, :]


def gauss_quadrature(alpha, beta, f=np.log) -> float:
    """Not in the paper: ``e1^T f(T) e1`` for the Lanczos tridiagonal ``T`` (Gauss quadrature).

    ``alpha`` (k,) is the diagonal (k >= 1), ``beta`` (>= k - 1,) the off-diagonal (entries past k - 1 ignored).
    """
    alpha = V.array("alpha", alpha, ("k",))
    beta = V.array("beta", beta, (None,))
    k = len(alpha)
    if k == 0 or len(beta) < k - 1:
        raise ValueError(f"alpha must have k >= 1 entries and beta at least k - 1, got {len(alpha)} and {len(beta)}")
    T = np.diag(alpha) + np.diag(beta[: k - 1], 1) + np.diag(beta[: k - 1], -1)
    theta, S = np.linalg.eigh(T)
    return float(np.sum(S[0] ** 2 * f(np.maximum(theta, 1e-300))))


def quadratures(alpha, beta, ksteps, norms2, f=np.log):
    """Not in the paper: ``norms2[c] * e1^T f(T_c) e1`` for every Lanczos run ``c`` of :func:`lanczos`."""
    return np.array(
        [norms2[c] * gauss_quadrature(alpha[c, : ksteps[c]], beta[c, : ksteps[c]], f) for c in range(len(ksteps))]
    )


def probe_vectors(rng, n, b, kind):
    """Not in the paper: ``b`` Rademacher or Gaussian probe vectors as the columns of an (n, b) array."""
    if kind == "rademacher":
        return rng.choice(np.array([-1.0, 1.0]), size=(n, b))
    return rng.standard_normal((n, b))


def slq_core(op, rng, probes: str, budget: int, steps: int | None, tol: float, f=np.log):
    """Not in the paper: stochastic Lanczos quadrature of ``tr f(op)`` within ``budget`` matvecs.

    The first probe runs until its quadrature converges (``tol``), fixing the
    Krylov dimension ``k`` (plus 20% and 2 for safety) of the remaining probes
    unless ``steps`` is given.  Returns (estimate, per-probe values, k).
    """
    n = op.n
    vals = []
    if steps is None:
        v = probe_vectors(rng, n, 1, probes)
        a, bt, ks = lanczos(op, v, min(budget, n), tol, f)
        vals += list(quadratures(a, bt, ks, np.sum(v**2, axis=0), f))
        steps = min(n, int(np.ceil(1.2 * ks[0])) + 2)
        budget -= int(ks[0])
    m = budget // steps
    if m > 0:
        Vb = probe_vectors(rng, n, m, probes)
        a, bt, ks = lanczos(op, Vb, steps)
        vals += list(quadratures(a, bt, ks, np.sum(Vb**2, axis=0), f))
    vals = np.array(vals)
    return float(np.mean(vals)), vals, steps


def slq_logdet(A_or_matvec, n=None, *, rng, budget, probes="rademacher", steps=None, tol=1e-5, batched=True):
    """Not in the paper: Hutchinson's trace of ``log A`` with stochastic Lanczos quadrature.

    ``log|A| = tr log A ~ mean_j v_j^T log(A) v_j`` with Gaussian or Rademacher
    probes ``v_j`` (n,); each quadratic form is a k-point Gauss quadrature from
    k Lanczos steps started at ``v_j`` (k matvecs).  Unbiased up to the
    quadrature error, which is driven below ``tol * |v|^2`` per probe.

    Parameters
    ----------
    A_or_matvec : (n, n) SPD matrix or matvec ``X -> A X`` on (n,) / (n, b).
    n : size (for a matvec).
    rng : numpy.random.Generator.
    budget : max matvecs.
    probes : "rademacher" or "gaussian".
    steps : fixed Lanczos steps per probe (default: adapt to the first probe).
    tol : quadrature convergence tolerance.
    """
    rng = V.rng("rng", rng)
    probes = V.choice("probes", probes, ("rademacher", "gaussian"))
    op = as_operator(A_or_matvec, n, V.scalar("budget", budget, positive=True, integer=True), batched)
    est, vals, k = slq_core(op, rng, probes, op.budget, steps, tol)
    info = {"probes": len(vals), "lanczos_steps": k, "values": vals}
    return LogdetResult(est, op.count, 0.0, f"slq-{probes}", info)


def lanczos_function_apply(op, X, steps: int, f=np.log):
    """Not in the paper: ``f(A) X`` column by column from ``steps`` Lanczos steps (Krylov approximation).

    Each column ``x`` gets ``|x| Q_k f(T_k) e_1`` from its own k-step Lanczos run (k matvecs per column).
    """
    n, b = X.shape
    norms = np.linalg.norm(X, axis=0)
    Q = np.zeros((b, steps, n))
    Q[:, 0] = (X / norms).T
    alpha = np.zeros((b, steps))
    beta = np.zeros((b, steps))
    for j in range(steps):
        Wt = op(Q[:, j].T).T.copy()
        alpha[:, j] = np.einsum("bi,bi->b", Q[:, j], Wt)
        _reorthogonalise(Q[:, : j + 1], Wt)
        beta[:, j] = np.linalg.norm(Wt, axis=1)
        if j + 1 < steps:
            Q[:, j + 1] = Wt / np.maximum(beta[:, j], 1e-300)[:, None]
    out = np.zeros((n, b))
    for c in range(b):
        T = np.diag(alpha[c]) + np.diag(beta[c, :-1], 1) + np.diag(beta[c, :-1], -1)
        theta, S = np.linalg.eigh(T)
        coef = S @ (S[0] * f(np.maximum(theta, 1e-300)))
        out[:, c] = norms[c] * (coef @ Q[c])
    return out


def hutchpp_logdet(A_or_matvec, n=None, *, rng, budget, steps=None, tol=1e-5, batched=True):
    """Not in the paper: Hutch++ (Meyer et al. 2021) for ``tr log A`` with Lanczos for ``log(A) x``.

    The budget is split in thirds of probe vectors: ``s`` sketch vectors give
    ``Q = orth(log(A) S)``; ``tr(Q^T log(A) Q)`` is taken exactly column by
    column with Lanczos quadrature; ``s`` Rademacher probes projected onto the
    complement of ``Q`` estimate the rest.  Every ``log(A) x`` or
    ``x^T log(A) x`` costs k matvecs (k fixed from the first probe as in
    :func:`slq_logdet`).  With budget < 3k it falls back to plain SLQ.
    """
    rng = V.rng("rng", rng)
    op = as_operator(A_or_matvec, n, V.scalar("budget", budget, positive=True, integer=True), batched)
    nn = op.n
    pilot = []
    if steps is None:  # a pilot probe fixes k; its value counts as a plain SLQ sample if no sketch fits
        v = probe_vectors(rng, nn, 1, "rademacher")
        a, bt, ks = lanczos(op, v, min(op.budget, nn), tol)
        pilot = list(quadratures(a, bt, ks, np.sum(v**2, axis=0)))
        steps = min(nn, int(np.ceil(1.2 * ks[0])) + 2)
    s = op.left // (3 * steps)
    if s == 0:
        _, vals, k = slq_core(op, rng, "rademacher", op.left, steps, tol) if op.left >= steps else (0, [], steps)
        vals = np.concatenate([pilot, vals])
        info = {"sketch": 0, "probes": len(vals), "lanczos_steps": k}
        return LogdetResult(float(np.mean(vals)), op.count, 0.0, "hutch++", info)
    S = probe_vectors(rng, nn, s, "rademacher")
    Qm, _ = np.linalg.qr(lanczos_function_apply(op, S, steps))
    a, bt, ks = lanczos(op, Qm, steps)
    low = float(np.sum(quadratures(a, bt, ks, np.ones(s))))
    m = op.left // steps
    G = probe_vectors(rng, nn, m, "rademacher")
    G -= Qm @ (Qm.T @ G)
    a, bt, ks = lanczos(op, G, steps)
    rest = float(np.mean(quadratures(a, bt, ks, np.sum(G**2, axis=0)))) if m else 0.0
    info = {"sketch": s, "probes": m, "lanczos_steps": steps, "low_rank_part": low}
    return LogdetResult(low + rest, op.count, 0.0, "hutch++", info)


def chebyshev_coefficients(degree: int, lo: float, hi: float) -> np.ndarray:
    """Not in the paper: Chebyshev interpolant coefficients of ``log`` on ``[lo, hi]``."""
    x = np.cos(np.pi * (np.arange(degree + 1) + 0.5) / (degree + 1))
    fx = np.log((hi - lo) / 2 * x + (hi + lo) / 2)
    nodes = np.pi * (np.arange(degree + 1) + 0.5) / (degree + 1)
    c = 2.0 / (degree + 1) * np.cos(np.outer(np.arange(degree + 1), nodes)) @ fx
    c[0] /= 2
    return c


def chebyshev_logdet(A_or_matvec, n=None, *, rng, budget, bounds, degree=None, tol=1e-4, batched=True):
    """Not in the paper: Chebyshev expansion of ``log`` with Rademacher Hutchinson probes (Han et al. 2015).

    ``log|A| ~ sum_k c_k tr T_k(A~)`` with ``A~ = (2A - (lo+hi) I)/(hi - lo)``;
    ``bounds = (lo, hi)`` must enclose the spectrum (the caller supplies them:
    this method needs them and has no cheap matvec-only way to get a lower
    bound).  Degree d (default: smallest with coefficient tail < ``tol``, at
    most budget/2) costs d matvecs per probe; probes = budget // d.
    """
    rng = V.rng("rng", rng)
    op = as_operator(A_or_matvec, n, V.scalar("budget", budget, positive=True, integer=True), batched)
    if bounds is None or np.ndim(bounds) != 1 or len(bounds) != 2:
        raise ValueError(f"bounds must be a pair (lo, hi), got {bounds!r}")
    lo, hi = (V.scalar("bounds[0]", bounds[0], positive=True), V.scalar("bounds[1]", bounds[1], positive=True))
    if not lo < hi:
        raise ValueError(f"bounds must satisfy 0 < lo < hi, got {bounds}")
    if degree is None:
        dmax = max(1, op.budget // 2)
        c = chebyshev_coefficients(min(dmax, 4000), lo, hi)
        tail = np.cumsum(np.abs(c[::-1]))[::-1]
        ok = np.flatnonzero(tail < tol * max(1.0, abs(c[0])))
        degree = int(ok[0]) if ok.size else len(c) - 1
        degree = max(1, min(degree, dmax))
    c = chebyshev_coefficients(degree, lo, hi)
    m = op.budget // degree
    Z = probe_vectors(rng, op.n, m, "rademacher")
    scale, shift = 2.0 / (hi - lo), (hi + lo) / (hi - lo)
    Tprev, Tcur = Z, scale * op(Z) - shift * Z
    acc = c[0] * np.einsum("ib,ib->b", Z, Tprev) + c[1] * np.einsum("ib,ib->b", Z, Tcur)
    for k in range(2, degree + 1):
        Tprev, Tcur = Tcur, 2 * (scale * op(Tcur) - shift * Tcur) - Tprev
        acc += c[k] * np.einsum("ib,ib->b", Z, Tcur)
    info = {"probes": m, "degree": degree, "values": acc}
    return LogdetResult(float(np.mean(acc)), op.count, 0.0, "chebyshev", info)
