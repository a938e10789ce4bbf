"""Synthetic data sets: seeded, the requested shapes and spectra, argument checks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TOL
from hypothesis import given
from hypothesis import strategies as st
from strategies import SEEDS

from vaetheory.solver import synthetic as syn


@given(seed=SEEDS, m=st.integers(2, 8))
def test_anisotropic_gaussian_covariance_has_the_requested_spectrum(seed, m):
    rng = np.random.default_rng(seed)
    lam = np.exp(rng.uniform(-2, 2, m))
    x, C = syn.anisotropic_gaussian(50, lam, np.random.default_rng(seed))
    assert x.shape == (50, m)
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(C)), np.sort(lam), rtol=TOL["identity_f64"])


def test_anisotropic_gaussian_sample_covariance_converges():
    lam = np.array([4.0, 1.5, 0.5, 0.2])
    x, C = syn.anisotropic_gaussian(200_000, lam, np.random.default_rng(0))
    # Sampling error of a covariance entry ~ lam_max sqrt(2 / N) ~ 0.013.
    np.testing.assert_allclose(np.cov(x.T), C, atol=0.05)


def test_generators_are_reproducible_from_the_generator():
    a = syn.manifold(30, 2, 5, np.random.default_rng(3))
    b = syn.manifold(30, 2, 5, np.random.default_rng(3))
    c = syn.manifold(30, 2, 5, np.random.default_rng(4))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[0], c[0])


@pytest.mark.parametrize("n,m", [(1, 2), (1, 20), (2, 3), (2, 20)])
def test_manifold_without_noise_lies_on_the_paraboloid(n, m):
    x, t = syn.manifold(100, n, m, np.random.default_rng(0), scale=2.0, curvature=0.5, noise=0.0)
    assert x.shape == (100, m) and t.shape == (100, n)
    # The clean points span n + 1 dimensions (n when flat).
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    assert np.sum(s > 1e-8 * s[0]) == n + 1
    flat, _ = syn.manifold(100, n, m, np.random.default_rng(0), curvature=0.0, noise=0.0)
    s = np.linalg.svd(flat, compute_uv=False)
    assert np.sum(s > 1e-8 * s[0]) == n
    # Distances along the embedding are those of the paraboloid (the frame is orthonormal).
    clean = np.concatenate([2.0 * t, 0.25 * 4.0 * np.sum(t**2, 1, keepdims=True)], axis=1)
    d_clean = np.linalg.norm(clean[:, None] - clean[None], axis=2)
    d_x = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.testing.assert_allclose(d_x, d_clean, atol=1e-10)


def test_manifold_noise_has_unit_variance_off_the_manifold():
    x, _ = syn.manifold(50_000, 1, 6, np.random.default_rng(1), curvature=0.0, noise=1.0, scale=3.0)
    lam = np.sort(np.linalg.eigvalsh(np.cov(x.T)))[::-1]
    np.testing.assert_allclose(lam[0], 10.0, rtol=0.05)  # scale^2 + noise^2
    np.testing.assert_allclose(lam[1:], 1.0, rtol=0.05)


def test_gaussian_mixture_labels_and_weights():
    means = np.array([[0.0, 0.0], [10.0, 0.0]])
    x, labels = syn.gaussian_mixture(5000, means, np.random.default_rng(0), std=0.5, weights=[1, 3])
    assert set(np.unique(labels)) == {0, 1}
    assert abs(np.mean(labels) - 0.75) < 0.03
    np.testing.assert_allclose(x[labels == 1].mean(0), means[1], atol=0.05)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda r: syn.manifold(10, 3, 5, r), "n must be 1"),
        (lambda r: syn.manifold(10, 2, 2, r), "m must be at least"),
        (lambda r: syn.anisotropic_gaussian(10, [1.0, -1.0], r), "spectrum"),
        (lambda r: syn.gaussian_mixture(10, np.zeros(3), r), "means"),
        (lambda r: syn.anisotropic_gaussian(10, [1.0], 0), "rng"),
    ],
)
def test_generators_reject_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(np.random.default_rng(0))
