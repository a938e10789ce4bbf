"""The confidence interval of the sweep claims against scipy's t test and a bootstrap by hand."""

import numpy as np
import pytest
from scipy import stats

from vaetheory.claims import sweeps


def test_ratio_interval_is_scipys_one_sample_t_interval_on_log_ratios():
    rng = np.random.default_rng(3)
    r = np.exp(rng.normal(-0.3, 0.2, 7))
    gm, lo, hi = sweeps.ratio_interval(r, level=0.9)
    ci = stats.ttest_1samp(np.log(r), 0.0).confidence_interval(confidence_level=0.9)
    assert np.log(gm) == pytest.approx(np.mean(np.log(r)), rel=1e-12)
    assert (np.log(lo), np.log(hi)) == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_ratio_interval_covers_like_a_bootstrap_of_the_mean_log_ratio():
    # With many draws the t interval and a percentile bootstrap of the mean agree to a few percent of width.
    rng = np.random.default_rng(4)
    lr = rng.normal(0.1, 0.5, 400)
    _, lo, hi = sweeps.ratio_interval(np.exp(lr))
    boot = np.array([np.mean(rng.choice(lr, lr.size)) for _ in range(4000)])
    b_lo, b_hi = np.quantile(boot, [0.025, 0.975])
    width = np.log(hi) - np.log(lo)
    assert abs(np.log(lo) - b_lo) < 0.05 * width and abs(np.log(hi) - b_hi) < 0.05 * width


def test_ratio_interval_refuses_too_few_or_non_positive_ratios():
    with pytest.raises(ValueError, match="ratios"):
        sweeps.ratio_interval([0.5])
    with pytest.raises(ValueError, match="ratios"):
        sweeps.ratio_interval([0.5, -1.0])
    with pytest.raises(ValueError, match="level"):
        sweeps.ratio_interval([0.5, 0.6], level=1.0)
