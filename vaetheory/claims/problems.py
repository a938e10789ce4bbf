"""The synthetic problems ``vaetheory verify`` solves: the default set and two sweeps; the m >> n problems.

Each problem is a dict: ``name``, data ``x (N, m)``, latent dimension ``n``,
and what the sweep varies (``curvature``, ``N``) or the data covariance
``cov`` where it is known.
"""

from __future__ import annotations

import numpy as np

from vaetheory.solver import synthetic as syn


def default_problems(seed: int, quick: bool) -> list[dict]:
    """The synthetic problems ``verify`` solves (name, data, latent dimension)."""
    N1, N2 = (48, 40) if quick else (192, 120)
    out = []
    rng = np.random.default_rng([seed, 1])
    x, C = syn.anisotropic_gaussian(N2, [6.0, 0.6, 0.4, 0.3], rng)
    out.append(dict(name=f"gauss-m4-n2-N{N2}", x=x, n=2, cov=C, about="anisotropic Gaussian, spectrum (6, .6, .4, .3)"))
    rng = np.random.default_rng([seed, 2])
    x, _ = syn.manifold(N1, 1, 2, rng, scale=3.0, curvature=0.3, noise=1.0)
    out.append(dict(name=f"curve-m2-n1-N{N1}", x=x, n=1, about="parabola, scale 3, curvature 0.3, unit noise"))
    if not quick:
        rng = np.random.default_rng([seed, 5])
        x, _ = syn.manifold(48, 2, 3, rng, scale=3.0, curvature=0.3, noise=1.0)
        out.append(
            dict(name="surface-m3-n2-N48", x=x, n=2, about="paraboloid surface, scale 3, curvature 0.3, unit noise")
        )
        rng = np.random.default_rng([seed, 3])
        x, _ = syn.gaussian_mixture(144, np.array([[-4.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 5.0, 0.0]]), rng)
        out.append(dict(name="mixture-m3-n1-N144", x=x, n=1, about="3 unit-variance clusters 8 apart"))
        out += [curve_in(seed, m, N) for m, N in REGIME_DEFAULT]
    return out


# The m >> n problems of the default run, (m, N): the paper's regime at the sizes a default run solves in time.
REGIME_DEFAULT = ((20, 100), (100, 100))


def curve_in(seed: int, m: int, N: int) -> dict:
    """A parabola (n = 1, scale 3, curvature 0.3) embedded in ``m`` dimensions with unit noise in all of them."""
    rng = np.random.default_rng([seed, 10, m])
    x, _ = syn.manifold(N, 1, m, rng, scale=3.0, curvature=0.3, noise=1.0)
    return dict(name=f"curve-m{m}-n1-N{N}", x=x, n=1, regime=True, about=f"parabola in m = {m}, unit noise")


def curvature_sweep(seed: int, quick: bool) -> list[dict]:
    """The curve problem at increasing curvature (decoder less smooth), several data draws each.

    Draw ``d`` uses the same intrinsic coordinates and noise at every curvature, so the draws pair across
    the sweep.  The first two draws are solved with both posterior variances (the table and the penalty
    plot); the extra draws at the two ends of the sweep (``pair=False``: the constant variance only, which
    is what ``smoothness`` compares) give its confidence interval :data:`SWEEP_DRAWS` draws.
    """
    N = 40 if quick else 96
    kappas = [0.0, 0.4, 1.2] if quick else [0.0, 0.2, 0.4, 0.8, 1.6]
    draws = 1 if quick else 2
    out = []
    for k in kappas:
        for d in range(SWEEP_DRAWS[quick]):
            if d >= draws and k not in (kappas[0], kappas[-1]):
                continue
            rng = np.random.default_rng([seed, 4, d])
            x, _ = syn.manifold(N, 1, 2, rng, scale=3.0, curvature=k, noise=1.0)
            out.append(dict(name=f"curve-k{k:g}-N{N}-draw{d}", x=x, n=1, curvature=k, draw=d, pair=d < draws))
    return out


# Data draws per setting of the sweeps that put a confidence interval on a ratio, by ``quick``.
SWEEP_DRAWS = {False: 4, True: 3}


def density_sweep(seed: int, quick: bool) -> list[dict]:
    """The curve problem with more and more examples (the decoder gets smoother as data gets denser).

    :data:`SWEEP_DRAWS` data draws at the smallest and the largest size (``density`` compares those),
    the first draw also at the sizes between (the table and plot); draw ``d`` of size N holds the first
    N examples of one generator stream, so the draws pair across sizes (the denser set contains the
    sparser one).
    """
    sizes = [24, 48] if quick else [48, 96, 192]
    out = []
    for d in range(SWEEP_DRAWS[quick]):
        x_all, _ = syn.manifold(sizes[-1], 1, 2, np.random.default_rng([seed, 6, d]), scale=3.0, curvature=0.3)
        for N in sizes if d == 0 else (sizes[0], sizes[-1]):
            out.append(dict(name=f"curve-N{N}-draw{d}", x=x_all[:N], n=1, N=N, draw=d))
    return out


def regime_problems(seed: int) -> list[dict]:
    """The paper's own regime (Sec. 4.3, "Magnitude of the Penalty"): a 1- or 2-dimensional manifold in m >> n.

    A curve (n = 1) in m = 20, 50, 100 and a surface (n = 2) in m = 20, each with
    unit Gaussian noise in all m dimensions and N in the hundreds: the study of
    docs/findings.md, "The paper's regime".  With the optimal decoder Eq. (6)
    these data memorise (every example is about sqrt(2 m) noise standard
    deviations from its neighbours) and a solve at N = 200 takes minutes; the
    default run solves the curves of :data:`REGIME_DEFAULT` (N = 100) instead.
    """
    out = [curve_in(seed, m, 200) for m in (20, 50, 100)]
    rng = np.random.default_rng([seed, 11, 20])
    x, _ = syn.manifold(150, 2, 20, rng, scale=3.0, curvature=0.3, noise=1.0)
    out.append(dict(name="surface-m20-n2-N150", x=x, n=2, about="paraboloid surface in m = 20, unit noise"))
    return out
