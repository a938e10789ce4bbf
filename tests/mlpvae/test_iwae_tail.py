"""The Pareto tail shape k-hat of importance weights (PSIS diagnostic), and the IWAE's largest weights.

Known answers: a generalized Pareto sample of known shape; scipy's maximum-likelihood GPD fit of the
same exceedances; and a linear-Gaussian model in n = 2 whose proposal is the exact posterior with its
standard deviation scaled by s, where w = p(x) r exp(u / 2 (1 - s^2)) with u ~ chi^2_2 exponential, so
P(w > t) is exactly a power law in t and the weights' tail shape is k = 1 - s^2.
"""

import numpy as np
import pytest
from linear_models import linear_gaussian
from scipy import stats
from scipy.special import logsumexp

from mlpvae.evidence.iwae import iwae_log_px, pareto_khat, tail_size


@pytest.mark.parametrize("xi", [0.2, 0.6, 0.9])
def test_khat_recovers_the_shape_of_a_generalized_pareto_sample_and_agrees_with_scipys_fit(xi):
    rng = np.random.default_rng(int(xi * 10))
    S = 20000
    M = tail_size(S)
    w = stats.genpareto(c=xi).rvs(S, random_state=rng) + 1.0
    top = np.sort(np.log(w))[::-1][: M + 1]
    k = pareto_khat(top)
    se = (1 + xi) / np.sqrt(M)  # the asymptotic standard error of the MLE of the shape
    assert abs(k - xi) < 4 * se
    y = np.exp(top[:-1] - top[-1]) - 1.0
    c_mle, _, _ = stats.genpareto.fit(y, floc=0.0)
    assert abs(k - c_mle) < 2 * se


def test_khat_is_order_free_and_takes_a_batch_of_images():
    rng = np.random.default_rng(3)
    lw = rng.standard_normal((3, 60)) * np.array([[0.1], [1.0], [3.0]])
    k = pareto_khat(lw)
    assert k.shape == (3,)
    np.testing.assert_allclose(k, pareto_khat(rng.permuted(lw, axis=1)), rtol=1e-12)
    assert k[0] < k[2]  # the heavier the lognormal tail, the larger k-hat
    # the shape is scale-free: shifting every log weight changes nothing, and a spread of log weights far
    # beyond what exp can hold stays finite
    np.testing.assert_allclose(pareto_khat(lw + 800.0), k, rtol=1e-12)
    wide = pareto_khat(np.array([0.0, -1.0, -5.0, -300.0, -800.0, -900.0, -1000.0]))
    assert np.isfinite(wide)
    with pytest.raises(ValueError, match="at least 6 finite"):
        pareto_khat(np.array([0.0, 1.0, np.nan, 2.0, 3.0, 4.0]))


@pytest.mark.parametrize("s, k_true", [(0.5, 0.75), (1.5, -1.25)])
def test_khat_of_the_iwae_weights_of_a_scaled_exact_posterior(s, k_true):
    params, mc, x, s2, exact = linear_gaussian("learned", seed=1)
    post_sd = np.log1p(np.exp(params["enc_std_b"]))
    params = dict(params, enc_std_b=np.log(np.expm1(s * post_sd)))
    S = 20000
    M = tail_size(S)
    lp, top = iwae_log_px(params, x[:4], mc, np.random.default_rng(0), k=S, s2=s2, rows=7000, top=M + 1)
    assert top.shape == (4, M + 1) and np.all(np.diff(top, axis=1) <= 0)
    k = pareto_khat(top)
    if k_true > 0:
        assert np.all(np.abs(k - k_true) < 4 * (1 + k_true) / np.sqrt(M))
    else:
        assert np.all(k < 0)  # bounded weights: a finite upper end point


def test_the_top_weights_are_the_iwae_weights():
    # with top = k every weight comes back, so their log-mean-exp is the estimate itself, whatever the chunking
    params, mc, x, s2, exact = linear_gaussian("learned", seed=2)
    params = dict(params, enc_std_b=params["enc_std_b"] + 0.7)
    k = 300
    lp, top = iwae_log_px(params, x, mc, np.random.default_rng(4), k=k, s2=s2, rows=128, top=k)
    np.testing.assert_allclose(logsumexp(top, axis=1) - np.log(k), lp, rtol=1e-12)
    lp2, top5 = iwae_log_px(params, x, mc, np.random.default_rng(4), k=k, s2=s2, rows=128, top=5)
    np.testing.assert_allclose(lp2, lp, rtol=1e-12)
    np.testing.assert_allclose(top5, top[:, :5], rtol=1e-12)
    with pytest.raises(ValueError, match="top must be between"):
        iwae_log_px(params, x, mc, np.random.default_rng(4), k=10, s2=s2, top=11)
