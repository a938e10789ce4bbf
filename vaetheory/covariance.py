"""Sigma, S^2 and J as every module of Secs. 3-5 accepts them: validation and normalisation.

Not in the paper: the readings live here so they are fixed in one place
(docs/conventions.md).  A 2-D ``var`` whose shape is ``(N, n)`` is a stack of
diagonals, even when ``N == n``; a shared full Sigma is passed as
``(1, n, n)`` (or ``(N, n, n)``) when ``N == n`` to avoid that reading.

Each ``*_arg``/``*_args`` function validates against the dimension letters
bound so far in ``dims`` (binding the new ones) and raises ``ValueError``
naming the argument.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vaetheory import validate as v
from vaetheory.numerics import diag_embed, inv_spd, logdet_spd


@dataclass(frozen=True)
class Cov:
    """A validated stack of covariances: ``a`` is (N, n) diagonals or (N, n, n) full. Not in the paper."""

    a: np.ndarray
    full: bool

    def matrix(self) -> np.ndarray:
        """(N, n, n) full matrices."""
        if self.full:
            return self.a
        return diag_embed(self.a)

    def diagonal(self) -> np.ndarray:
        """(N, n) diagonals."""
        return np.diagonal(self.a, axis1=-2, axis2=-1) if self.full else self.a

    def logdet(self) -> np.ndarray:
        """(N,) log-determinants (Cholesky for full matrices)."""
        return logdet_spd(self.a) if self.full else np.sum(np.log(self.a), axis=-1)

    def inverse(self) -> np.ndarray:
        """(N, n, n) inverses (Sigma^-1)."""
        return inv_spd(self.a) if self.full else diag_embed(1.0 / self.a)

    def chol(self) -> np.ndarray:
        """(N, n, n) lower Cholesky factors L with Sigma = L L^T."""
        return np.linalg.cholesky(self.a) if self.full else diag_embed(np.sqrt(self.a))

    def whitener(self) -> np.ndarray | None:
        """The stack of L^-1 (Sigma = L L^T) for full matrices; None for diagonals (divide by ``a`` instead)."""
        if not self.full:
            return None
        L = self.chol()
        return np.linalg.solve(L, np.broadcast_to(np.eye(L.shape[-1]), L.shape))


def posterior_var(name: str, var, dims: dict, k: str = "n") -> Cov:
    """Validate Sigma against bound ``N`` and ``n``; return it as a length-N stack. Not in the paper.

    Accepts diagonals (N, n) / (n,) and full (N, n, n) / (1, n, n) / (n, n).
    A 2-D array of shape (N, n) is read as diagonals even when N == n.  ``k``
    names the dimension letter (``"m"`` for a likelihood variance T).
    """
    a = v.array(name, var)
    N, n = dims.get("N"), dims.get(k)
    if (a.ndim == 2 and a.shape not in ((N, n), (n, n))) or a.ndim not in (1, 2, 3):
        raise ValueError(
            f"{name} must have shape (N, {k}) or ({k},) (diagonal) or (N, {k}, {k}), (1, {k}, {k}), ({k}, {k}) (full)"
            f" with N={N}, {k}={n}, got {tuple(a.shape)}"
        )
    if a.ndim == 1 or (a.ndim == 2 and a.shape == (N, n)):
        a = v.array(name, a, [("N", k), (k,)], dims, positive=True)
        return Cov(np.broadcast_to(a, (dims["N"], dims[k])) if a.ndim == 1 else a, False)
    a = v.spd(name, a, [("N", k, k), (1, k, k), (k, k)], dims)
    return Cov(np.broadcast_to(a, (dims["N"], dims[k], dims[k])), True)


def prior_var(name: str, s2, dims: dict) -> Cov:
    """Validate S^2: (n,) positive diagonal or (n, n) SPD; returned as a stack of one. Not in the paper."""
    a = v.array(name, s2)
    if a.ndim == 1:
        a = v.array(name, a, ("n",), dims, positive=True)
        return Cov(a[None], False)
    a = v.spd(name, a, ("n", "n"), dims)
    return Cov(a[None], True)


def jacobian_arg(name: str, J, dims: dict) -> np.ndarray:
    """Validate decoder Jacobians J (N, m, n) against ``dims``. Not in the paper."""
    return v.array(name, J, ("N", "m", "n"), dims)


def posterior_precision(s2: Cov, J: np.ndarray) -> np.ndarray:
    """P = S^-2 + J^T J, (N, n, n): the true posterior precision of Eqs. (12), (18), (25), from validated inputs."""
    return s2.inverse() + np.swapaxes(J, -1, -2) @ J


def precision_args(s2, J, dims: dict | None = None) -> np.ndarray:
    """Validate S^2 and J (binding N, m, n in ``dims``); return P = S^-2 + J^T J, (N, n, n) (Eq. (12))."""
    dims = {} if dims is None else dims
    J = jacobian_arg("J", J, dims)
    return posterior_precision(prior_var("s2", s2, dims), J)


def variance_precision_args(var, s2, J) -> tuple[Cov, np.ndarray]:
    """Validate Sigma, S^2 and J against each other; return Sigma and P = S^-2 + J^T J.

    The arguments of every formula in Sigma and P: Eqs. (10), (12), (18), (21).
    """
    dims: dict = {}
    J = jacobian_arg("J", J, dims)
    var = posterior_var("var", var, dims)
    return var, precision_args(s2, J, dims)
