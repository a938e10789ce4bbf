"""Boundary checks: bad input raises ValueError naming the argument."""

from __future__ import annotations

import numpy as np
import pytest

from vaetheory import validate as v


def test_shape_letters_bind_across_arguments():
    dims = {}
    v.array("mu", np.zeros((3, 2)), ("N", "n"), dims)
    with pytest.raises(ValueError, match=r"x must have shape \(N, m\) with N=3"):
        v.array("x", np.zeros((4, 5)), ("N", "m"), dims)


def test_alternative_shapes():
    dims = {"N": 3, "n": 2}
    assert v.array("var", np.ones(2), [("N", "n"), ("n",)], dims).shape == (2,)
    with pytest.raises(ValueError, match="var must have shape"):
        v.array("var", np.ones(3), [("N", "n"), ("n",)], dims)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_is_rejected(bad):
    with pytest.raises(ValueError, match="x contains NaN"):
        v.array("x", np.array([1.0, bad]))


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_non_positive_variance_is_rejected(bad):
    with pytest.raises(ValueError, match="var must be strictly positive"):
        v.array("var", np.array([1.0, bad]), positive=True)


def test_integers_become_float64_and_complex_is_rejected():
    assert v.array("x", [1, 2]).dtype == np.float64
    with pytest.raises(ValueError, match="real floating"):
        v.array("x", np.array([1j]))


def test_spd_check():
    v.spd("A", np.eye(3))
    with pytest.raises(ValueError, match="A must be positive definite"):
        v.spd("A", -np.eye(3))
    with pytest.raises(ValueError, match="A must be symmetric"):
        v.spd("A", np.array([[1.0, 2.0], [0.0, 1.0]]))


def test_rng_must_be_a_generator():
    v.rng("rng", np.random.default_rng(0))
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator"):
        v.rng("rng", 0)
