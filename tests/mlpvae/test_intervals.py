"""mlpvae.experiments.intervals against scipy.stats (Not in the paper)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from mlpvae.experiments import intervals as I


@given(st.integers(2, 12), st.integers(0, 2**16), st.floats(-3.0, 3.0))
def test_paired_t_matches_scipy(n, seed, shift):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n) + shift
    b = a - shift + 0.5 * rng.standard_normal(n)
    r = I.paired_t(a, b)
    ref = stats.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert r["t"] == pytest.approx(ref.statistic, rel=1e-10) and r["p"] == pytest.approx(ref.pvalue, rel=1e-8)
    assert (r["lo"], r["hi"]) == pytest.approx((ci.low, ci.high), rel=1e-10, abs=1e-12)
    assert r["df"] == n - 1 and r["positive"] == int((a > b).sum())


@given(st.integers(2, 12), st.integers(2, 12), st.integers(0, 2**16))
def test_welch_matches_scipy(na, nb, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(na), 3.0 * rng.standard_normal(nb) + 1.0
    r = I.welch(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert r["t"] == pytest.approx(ref.statistic, rel=1e-10) and r["p"] == pytest.approx(ref.pvalue, rel=1e-8)
    assert (r["lo"], r["hi"]) == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_paired_bootstrap_matches_scipy_percentile_interval():
    # the same resampling scheme as scipy.stats.bootstrap(paired=True, method="percentile"); the two draw
    # different resamples, so the ends agree to the Monte Carlo error of a 20,000-resample quantile
    rng = np.random.default_rng(0)
    a = rng.standard_normal(200) + 0.3 * rng.standard_exponential(200)
    b = a - 0.2 + 0.5 * rng.standard_normal(200)
    r = I.paired_bootstrap(a, b, np.random.default_rng(1), resamples=20000)
    ref = stats.bootstrap(
        (a, b),
        lambda x, y: np.mean(x - y),
        paired=True,
        vectorized=False,
        n_resamples=20000,
        method="percentile",
        random_state=np.random.default_rng(2),
    )
    se = ref.standard_error
    assert r["se"] == pytest.approx(se, rel=0.05)
    assert abs(r["lo"] - ref.confidence_interval.low) < 0.05 * se * 4
    assert abs(r["hi"] - ref.confidence_interval.high) < 0.05 * se * 4
    # and the normal approximation for a mean of 200 differences
    d = a - b
    assert r["se"] == pytest.approx(d.std(ddof=0) / np.sqrt(200), rel=0.05)


def test_intervals_reject_bad_input():
    with pytest.raises(ValueError, match="same length"):
        I.paired_t([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="two pairs"):
        I.paired_t([1.0], [2.0])
    with pytest.raises(ValueError, match="finite"):
        I.paired_bootstrap([1.0, np.nan], [1.0, 2.0], np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least two"):
        I.welch([1.0], [1.0, 2.0])
    assert "paired t" in I.describe(I.paired_t([1.0, 2.0, 4.0], [0.0, 0.5, 1.0]), "paired t")
