"""Numerical building blocks shared by the paper modules: SPD matrices, chunking, Gauss-Hermite.

Not in the paper.  Float64 NumPy; stacks of matrices are ``(..., n, n)``.
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

# Bound on the elements of one temporary block (float64: 32 MiB) when a
# computation is chunked over examples or query points.
BLOCK_ELEMENTS = 1 << 22


def chunks(M: int, chunk: int):
    """Yield slices of ``range(M)`` of length ``chunk`` (the last may be shorter). Not in the paper."""
    for s in range(0, M, chunk):
        yield slice(s, min(M, s + chunk))


def diag_embed(d: np.ndarray) -> np.ndarray:
    """Diagonal matrices (..., n, n) with the diagonals d (..., n). Not in the paper."""
    out = np.zeros(d.shape + (d.shape[-1],))
    idx = np.arange(d.shape[-1])
    out[..., idx, idx] = d
    return out


def logdet_spd(A: np.ndarray) -> np.ndarray:
    """log|A| (...) of SPD matrices A (..., n, n) through the Cholesky factor. Not in the paper."""
    L = np.linalg.cholesky(A)
    return 2.0 * np.sum(np.log(np.diagonal(L, axis1=-2, axis2=-1)), axis=-1)


def inv_spd(A: np.ndarray) -> np.ndarray:
    """Inverses (..., n, n) of SPD matrices through the Cholesky factor, symmetrised. Not in the paper."""
    L = np.linalg.cholesky(A)
    eye = np.broadcast_to(np.eye(A.shape[-1]), A.shape)
    Linv = np.linalg.solve(L, eye)
    out = np.swapaxes(Linv, -1, -2) @ Linv
    return (out + np.swapaxes(out, -1, -2)) / 2


def trace(A: np.ndarray) -> np.ndarray:
    """Traces (...) of a stack of square matrices (..., n, n). Not in the paper."""
    return np.trace(A, axis1=-2, axis2=-1)


def quad_form(P: np.ndarray, u: np.ndarray) -> np.ndarray:
    """u^T P u for stacks u (..., n) and P (..., n, n), broadcast. Not in the paper."""
    return np.einsum("...i,...ij,...j->...", u, P, u)


def gauss_hermite_rule(n: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Tensor Gauss-Hermite grid for N(0, I_n): nodes (G, n), weights (G,) summing to 1. Not in the paper.

    The one rule of the package (:func:`vaetheory.solver.quadrature.gauss_hermite`
    is its checked form).  Dividing by the computed sum rather than sqrt(2 pi)
    makes the weights sum to 1 to the last bit, so a constant integrates exactly.
    """
    t, w = hermegauss(order)
    w = w / w.sum()
    grids = np.meshgrid(*([t] * n), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=-1)
    weights = np.prod(np.stack(np.meshgrid(*([w] * n), indexing="ij")).reshape(n, -1), axis=0)
    return nodes, weights
