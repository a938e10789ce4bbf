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


# --- Secs. 3-5 (gaussian, optimal, optimality, evidence, constant_variance) ---
@st.composite
def vae_cases(draw, n_max: int = 3, m_max: int = 5, N_max: int = 6, full_var=None, full_s2=None):
    """A linear-decoder Gaussian VAE case: dict of N, n, m, W (m, n), b (m,), mu (N, n),
    var (Sigma: (N, n) diagonals or (N, n, n) SPD), s2 (S^2: (n,) or (n, n) SPD), x (N, m),
    full_var, full_s2.  ``full_var`` / ``full_s2`` None lets Hypothesis choose."""
    N, n, m = draw(dims(n_max=n_max, m_max=m_max, N_max=N_max))
    fv = draw(st.booleans()) if full_var is None else full_var
    fs = draw(st.booleans()) if full_s2 is None else full_s2
    rng = np.random.default_rng(draw(SEEDS))
    if fv:
        var = np.stack([draw(spd_matrices(n, cond_max=30.0, scale_range=(0.1, 2.0))) for _ in range(N)])
    else:
        var = np.exp(rng.uniform(np.log(0.05), np.log(3.0), size=(N, n)))
    s2 = draw(spd_matrices(n, cond_max=30.0, scale_range=(0.3, 4.0))) if fs else np.exp(rng.uniform(-1, 1.5, n))
    return dict(
        N=N,
        n=n,
        m=m,
        full_var=fv,
        full_s2=fs,
        W=np.clip(rng.standard_normal((m, n)), -3, 3),
        b=np.clip(rng.standard_normal(m), -3, 3),
        mu=np.clip(rng.standard_normal((N, n)), -3, 3),
        x=np.clip(rng.standard_normal((N, m)), -3, 3) * 2.0,
        var=var,
        s2=s2,
    )


# --- Secs. 4.3, 4.4, 5.1 (objectives: floating prior, BILBO, BAGGINS) ---
@st.composite
def batch_cases(draw, B_max: int = 8, n_max: int = 4, m_max: int = 8):
    """A batch for the objectives: dict of B, n, m, mu (B, n), var (learned Sigma, (B, n)),
    sigma2 (constant Sigma: a float or (n,)), x, nu (B, m) (|x - nu| bounded away from 0
    by construction), tau, lam (a data scale factor)."""
    B = draw(st.integers(1, B_max))
    n = draw(st.integers(1, n_max))
    m = draw(st.integers(2, m_max))
    rng = np.random.default_rng(draw(SEEDS))
    sigma2 = float(np.exp(rng.uniform(-2, 1))) if draw(st.booleans()) else np.exp(rng.uniform(-2, 1, n))
    nu = np.clip(rng.standard_normal((B, m)), -3, 3)
    d = np.clip(rng.standard_normal((B, m)), -3, 3)
    d *= np.maximum(1.0, 0.3 * np.sqrt(m) / np.linalg.norm(d, axis=1, keepdims=True))
    return dict(
        B=B,
        n=n,
        m=m,
        mu=np.clip(rng.standard_normal((B, n)), -3, 3) * np.exp(rng.uniform(-1, 1, n)),
        var=np.exp(rng.uniform(-2, 1, (B, n))),
        sigma2=sigma2,
        x=nu + d,
        nu=nu,
        tau=draw(st.floats(0.05, 5.0)),
        lam=draw(st.sampled_from([0.01, 0.5, 3.0, 100.0])),
    )


# --- stationary points (linear closed form, nonparametric solver) ---
@st.composite
def linear_problems(draw, m_max: int = 6):
    """Data for the linear-Gaussian VAE: dict of x (N, m) with a spectrum straddling the
    unit likelihood variance (some eigenvalues below 1), n, and a posterior variance var."""
    m = draw(st.integers(2, m_max))
    n = draw(st.integers(1, m))
    rng = np.random.default_rng(draw(SEEDS))
    lam = np.exp(rng.uniform(np.log(0.2), np.log(8.0), m))
    Q, _ = np.linalg.qr(rng.standard_normal((m, m)))
    N = draw(st.integers(3 * m, 60))
    x = (rng.standard_normal((N, m)) * np.sqrt(lam)) @ Q.T + rng.uniform(-2, 2, m)
    var = float(np.exp(rng.uniform(-2, 1))) if draw(st.booleans()) else np.exp(rng.uniform(-2, 1, n))
    return dict(x=x, n=n, var=var)


@st.composite
def nonparametric_problems(draw, N_max: int = 14, n_max: int = 2, N_min: int = 4, scale: float = 2.5):
    """Small data sets for the nonparametric VAE solver: dict of x (N, m), n, and a random
    (mu, var, s2) away from any stationary point (for gradient checks).  A noisy curved
    n-manifold of intrinsic size ``scale`` (noise sd 0.5, below the likelihood's 1)."""
    n = draw(st.integers(1, n_max))
    m = draw(st.integers(n + 1, 4))
    N = draw(st.integers(N_min, N_max))
    rng = np.random.default_rng(draw(SEEDS))
    t = rng.standard_normal((N, n))
    frame, _ = np.linalg.qr(rng.standard_normal((m, m)))
    clean = np.concatenate([scale * t, 0.4 * np.sum(t**2, axis=1, keepdims=True)], axis=1)
    x = clean @ frame[:, : n + 1].T + 0.5 * rng.standard_normal((N, m))
    return dict(
        x=x,
        n=n,
        mu=np.clip(rng.standard_normal((N, n)), -3, 3) * 1.5,
        var=np.exp(rng.uniform(-1.0, 0.5, (N, n))),
        s2=np.exp(rng.uniform(0.0, 1.5, n)),
        seed=int(rng.integers(2**31)),
    )
