"""Test matrices and a counting matvec, shared by the log-determinant tests (Eqs. (19)-(20) and baselines)."""

from __future__ import annotations

import numpy as np


def spd(n, seed, lo=-1.0, hi=1.0, scale_diag=0.0):
    """A random symmetric positive definite matrix: eigenvalues exp(U(lo, hi)), then a diagonal scaling."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q * np.exp(rng.uniform(lo, hi, n))) @ Q.T
    s = np.exp(scale_diag * rng.standard_normal(n))
    A = s[:, None] * A * s[None, :]
    return (A + A.T) / 2


class Counter:
    """A matvec that counts its own products, independently of the estimators."""

    def __init__(self, A):
        self.A, self.count = A, 0

    def __call__(self, X):
        self.count += 1 if X.ndim == 1 else X.shape[1]
        return self.A @ X
