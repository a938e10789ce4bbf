"""The latent gain (the scale of the relative thresholds) against closed forms."""

import numpy as np
import pytest
from scipy import stats

from vaetheory import linear as lin
from vaetheory.claims import scales


def test_collapsed_log_likelihood_is_scipys_unit_gaussian_at_the_mean():
    x = np.random.default_rng(0).standard_normal((30, 5)) * 2.0
    ref = stats.multivariate_normal(x.mean(axis=0), np.eye(5)).logpdf(x)
    assert scales.collapsed_log_likelihood(x) == pytest.approx(ref, rel=1e-12)


def test_latent_gain_of_ppca_is_sum_of_lam_minus_1_minus_log_lam_over_2():
    # The pPCA evidence with unit noise keeps the directions with lam > 1; its gain over the collapsed
    # model is sum_k (lam_k - 1 - log lam_k) / 2 over those directions, in nats per example.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4000, 4)) * np.sqrt([9.0, 4.0, 0.5, 0.3])
    mdl = lin.linear_stationary_point(x, n=2, var=1.0)
    log_px = stats.multivariate_normal(mdl.b, mdl.W @ np.diag(mdl.s2) @ mdl.W.T + np.eye(4)).logpdf(x)
    lam = np.linalg.eigvalsh(np.cov(x.T, bias=True))[::-1][:2]
    assert scales.latent_gain(x, log_px) == pytest.approx(np.sum(lam - 1 - np.log(lam)) / 2, rel=1e-6)


def test_latent_gain_does_not_grow_with_pure_noise_dimensions():
    # Noise dimensions add the same entropy to the model and the collapsed baseline: the gain is unchanged.
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 3))
    lp = scales.collapsed_log_likelihood(x) + 1.5
    extra = rng.standard_normal((50, 40))
    lp_big = lp + scales.collapsed_log_likelihood(extra)
    assert scales.latent_gain(np.hstack([x, extra]), lp_big) == pytest.approx(1.5)
    assert scales.latent_gain(x, lp) == pytest.approx(1.5)


def test_latent_gain_names_a_bad_argument():
    with pytest.raises(ValueError, match="log_px"):
        scales.latent_gain(np.zeros((3, 2)), np.zeros(4))
