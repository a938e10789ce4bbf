"""Hypothesis strategies shared by the property tests.

Inputs are bounded and well conditioned by construction, so a failure means
an identity does not hold rather than that float64 ran out of digits.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def dims(draw, n_max: int = 3, m_max: int = 6, N_max: int = 8):
    """(N, n, m) with m >= n."""
    n = draw(st.integers(1, n_max))
    m = draw(st.integers(n, max(n, m_max)))
    N = draw(st.integers(1, N_max))
    return N, n, m


@st.composite
def spd_matrices(draw, k: int, cond_max: float = 1e3, scale_range=(0.1, 10.0)):
    """A (k, k) symmetric positive definite matrix with condition number <= cond_max."""
    rng = np.random.default_rng(draw(SEEDS))
    Q, _ = np.linalg.qr(rng.standard_normal((k, k)))
    lo, hi = scale_range
    top = draw(st.floats(lo, hi))
    log_eigs = rng.uniform(np.log(top / cond_max), np.log(top), size=k)
    A = (Q * np.exp(log_eigs)) @ Q.T
    return (A + A.T) / 2


@st.composite
def positive_arrays(draw, shape, lo: float = 0.05, hi: float = 5.0):
    """Positive float64 array (e.g. diagonal variances) of the given shape."""
    rng = np.random.default_rng(draw(SEEDS))
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size=shape))


@st.composite
def normal_arrays(draw, shape, scale: float = 1.0):
    """Bounded float64 array with standard-normal entries times ``scale``."""
    rng = np.random.default_rng(draw(SEEDS))
    return np.clip(rng.standard_normal(shape), -5, 5) * scale
