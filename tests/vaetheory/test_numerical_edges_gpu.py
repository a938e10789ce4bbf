"""The numerical edge cases of test_numerical_edges.py on CuPy: the same answers as NumPy's (GPU only)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import CUPY, needs_gpu

from vaetheory import objectives as O
from vaetheory import optimal as opt

pytestmark = needs_gpu


@pytest.mark.parametrize("shape", [(64, 5), (3, 64, 5)])
@pytest.mark.parametrize("var", [0.5, 1.0])
def test_bilbo_kl_unchecked_on_cupy_is_the_plain_formula_where_nothing_overflows_eq24(shape, var):
    cp = CUPY
    mu = cp.asarray(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    got = O.bilbo_kl_unchecked(cp, mu, var)
    B = mu.shape[-2]
    M = cp.mean(mu * mu, axis=-2)
    assert bool(cp.all(got.value == 0.5 * cp.sum(cp.log1p(M / var), axis=-1)))
    assert bool(cp.all(got.d_mu == mu / (B * (var + M)[..., None, :])))


def test_bilbo_kl_overflow_on_cupy_matches_numpy_eq24():
    cp = CUPY
    mu = 1e160 * np.random.default_rng(1).normal(size=(4, 2))
    a, b = O.bilbo_kl(cp.asarray(mu), 1.0), O.bilbo_kl(mu, 1.0)
    assert math.isfinite(float(a.value))
    assert math.isclose(float(a.value), float(b.value), rel_tol=1e-13)
    np.testing.assert_allclose(cp.asnumpy(a.d_mu), b.d_mu, rtol=1e-13)


def test_optimal_decoder_with_subnormal_variance_on_cupy_matches_numpy_eq6():
    cp = CUPY
    rng = np.random.default_rng(2)
    mu, x, z = rng.normal(size=(4, 2)), rng.normal(size=(4, 3)), rng.normal(size=(5, 2))
    var = np.full((4, 2), 1e-310)
    got = opt.optimal_decoder(cp.asarray(z), cp.asarray(mu), cp.asarray(var), cp.asarray(x))
    np.testing.assert_array_equal(cp.asnumpy(got), opt.optimal_decoder(z, mu, var, x))
