"""Central finite differences along random directions, the check for every hand-written gradient.

For a scalar function f of several arrays and a gradient g_i per array, draw a
random direction d_i per array and compare sum_i <g_i, d_i> with
(f(p + h d) - f(p - h d)) / 2h.  One projection tests every entry of g at
once (a wrong entry survives only on a measure-zero set of directions), which
is what makes the check affordable for the MLP's large weight matrices.
"""

from __future__ import annotations

import numpy as np


def directional_check(f, arrays: dict, grads: dict, rng: np.random.Generator, h: float = 1e-6):
    """Return ``(analytic, numeric, scale)`` for one random direction.

    ``f(arrays) -> float`` is evaluated at ``arrays +- h d`` (float64 copies);
    ``scale = sum_i |g_i| . |d_i|`` is the size of the terms of the inner
    product, the yardstick for a relative tolerance that cancellation between
    terms cannot fool.
    """
    d = {k: rng.standard_normal(np.shape(a)) for k, a in arrays.items()}
    plus = {k: np.asarray(a, dtype=np.float64) + h * d[k] for k, a in arrays.items()}
    minus = {k: np.asarray(a, dtype=np.float64) - h * d[k] for k, a in arrays.items()}
    numeric = (float(f(plus)) - float(f(minus))) / (2 * h)
    analytic = float(sum(np.sum(np.asarray(grads[k]) * d[k]) for k in arrays))
    scale = float(sum(np.sum(np.abs(np.asarray(grads[k])) * np.abs(d[k])) for k in arrays))
    return analytic, numeric, scale


def assert_gradient(f, arrays: dict, grads: dict, rng: np.random.Generator, rtol: float, h: float = 1e-6, what=""):
    """Assert the directional derivative agrees to ``rtol`` relative to :func:`directional_check`'s scale."""
    analytic, numeric, scale = directional_check(f, arrays, grads, rng, h)
    err = abs(analytic - numeric)
    assert err <= rtol * max(scale, 1e-3), (
        f"{what}: analytic {analytic!r} vs finite difference {numeric!r} (|diff| {err:.3e}, scale {scale:.3e})"
    )
    return err / max(scale, 1e-3)
