"""Seeded synthetic data sets for measuring the paper's claims.

Every generator takes a ``numpy.random.Generator`` and returns float64 data
``x (N, m)``; nothing seeds globally.  The likelihood variance of the paper's
Gaussian VAE is the identity, so "unit Gaussian noise" below is noise with the
same variance as the likelihood.

* :func:`anisotropic_gaussian`: a zero-mean Gaussian with a chosen covariance
  spectrum (Sec. 6 "On Memorization": directions whose variance is not above 1
  collapse).
* :func:`manifold`: a curve (n = 1) or curved surface (n = 2) embedded in m
  dimensions, plus unit Gaussian noise; ``curvature`` is the knob that makes
  the optimal decoder less smooth.
* :func:`gaussian_mixture`: well-separated clusters (where memorization occurs).
"""

from __future__ import annotations

import numpy as np

from vaetheory.validate import array, scalar
from vaetheory.validate import rng as _check_rng

__all__ = ["anisotropic_gaussian", "manifold", "gaussian_mixture", "random_rotation"]


def random_rotation(m: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random orthogonal matrix ``(m, m)``. Not in the paper (a data-set helper).

    Parameters
    ----------
    m : the dimension.
    rng : the random generator.
    """
    m = scalar("m", m, positive=True, integer=True)
    rng = _check_rng("rng", rng)
    Q, R = np.linalg.qr(rng.standard_normal((m, m)))
    # Sign fix so that Q is Haar-distributed rather than biased by the QR convention.
    return Q * np.sign(np.diag(R))


def anisotropic_gaussian(N: int, spectrum, rng: np.random.Generator, *, rotate: bool = True):
    """Samples of N(0, C) with eigenvalues ``spectrum``. Not in the paper (data for Sec. 6).

    Parameters
    ----------
    N : number of samples.
    spectrum : (m,) positive eigenvalues of the covariance C; entries at or
        below 1 (the unit likelihood variance) are the directions Sec. 6 says
        collapse.
    rng : the random generator.
    rotate : if True, C = Q diag(spectrum) Q^T with a random rotation Q;
        otherwise C is diagonal.

    Returns
    -------
    x : (N, m) samples.
    C : (m, m) the population covariance.
    """
    N = scalar("N", N, positive=True, integer=True)
    lam = array("spectrum", spectrum, ("m",), positive=True)
    rng = _check_rng("rng", rng)
    m = lam.shape[0]
    Q = random_rotation(m, rng) if rotate else np.eye(m)
    x = (rng.standard_normal((N, m)) * np.sqrt(lam)) @ Q.T
    C = (Q * lam) @ Q.T
    return x, (C + C.T) / 2


def manifold(
    N: int,
    n: int,
    m: int,
    rng: np.random.Generator,
    *,
    scale: float = 3.0,
    curvature: float = 0.3,
    noise: float = 1.0,
):
    """A noisy curve (n = 1) or curved surface (n = 2) in m dimensions. Not in the paper.

    The intrinsic coordinates are ``t ~ N(0, I_n)``; the clean point is the
    paraboloid ``f(t) = (scale t, curvature/2 scale^2 |t|^2)`` in n + 1
    coordinates, rotated into R^m by a random orthonormal frame, plus
    ``noise`` times standard normal noise in all m dimensions (``noise = 1``
    is the unit likelihood variance).  ``curvature`` is the curvature of the
    clean manifold at the origin (0 gives a flat, linear-Gaussian data set).

    Parameters
    ----------
    N : number of samples.
    n : intrinsic dimension, 1 or 2.
    m : ambient dimension, n + 1 <= m (m = 2..20 in the verification problems).
    rng : the random generator.
    scale : length of one intrinsic standard deviation (in units of the noise).
    curvature : curvature at the origin, in units of 1/noise.
    noise : standard deviation of the isotropic Gaussian noise.

    Returns
    -------
    x : (N, m) noisy samples.
    t : (N, n) the intrinsic coordinates of each sample.
    """
    N = scalar("N", N, positive=True, integer=True)
    n = scalar("n", n, positive=True, integer=True)
    m = scalar("m", m, positive=True, integer=True)
    if n not in (1, 2):
        raise ValueError(f"n must be 1 (a curve) or 2 (a surface), got {n}")
    if m < n + 1:
        raise ValueError(f"m must be at least n + 1 = {n + 1} to hold a curved {n}-manifold, got {m}")
    scale = scalar("scale", scale, positive=True)
    curvature = scalar("curvature", curvature)
    noise = scalar("noise", noise, nonnegative=True)
    rng = _check_rng("rng", rng)
    t = rng.standard_normal((N, n))
    clean = np.concatenate([scale * t, 0.5 * curvature * scale**2 * np.sum(t**2, axis=1, keepdims=True)], axis=1)
    # Centre the bend so the data mean is (nearly) zero, as the VAE's zero-mean prior expects.
    clean[:, n] -= 0.5 * curvature * scale**2 * n
    frame = random_rotation(m, rng)[:, : n + 1]
    x = clean @ frame.T + noise * rng.standard_normal((N, m))
    return x, t


def gaussian_mixture(N: int, means, rng: np.random.Generator, *, std: float = 1.0, weights=None):
    """Samples of an isotropic Gaussian mixture. Not in the paper.

    Parameters
    ----------
    N : number of samples.
    means : (K, m) component means.
    rng : the random generator.
    std : common standard deviation of every component.
    weights : (K,) mixture weights (default uniform); normalised here.

    Returns
    -------
    x : (N, m) samples.
    labels : (N,) the component of each sample.
    """
    N = scalar("N", N, positive=True, integer=True)
    dims: dict = {}
    means = array("means", means, ("K", "m"), dims)
    std = scalar("std", std, nonnegative=True)
    rng = _check_rng("rng", rng)
    K = means.shape[0]
    if weights is None:
        p = np.full(K, 1.0 / K)
    else:
        p = array("weights", weights, ("K",), dims, nonnegative=True)
        if p.sum() <= 0:
            raise ValueError("weights must have a positive sum")
        p = p / p.sum()
    labels = rng.choice(K, size=N, p=p)
    x = means[labels] + std * rng.standard_normal((N, means.shape[1]))
    return x, labels
