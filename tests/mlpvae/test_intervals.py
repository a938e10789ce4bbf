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


def scipy_paired_percentile(a, b, statistic):
    """scipy's paired percentile bootstrap of ``statistic`` (20,000 resamples), the reference the tests compare with."""
    return stats.bootstrap(
        (a, b),
        statistic,
        paired=True,
        vectorized=False,
        n_resamples=20000,
        method="percentile",
        random_state=np.random.default_rng(2),
    )


def test_paired_bootstrap_matches_scipy_percentile_interval():
    # the same resampling scheme as scipy.stats.bootstrap(paired=True, method="percentile"); the two draw
    # different resamples, so the ends agree to the Monte Carlo error of a 20,000-resample quantile
    rng = np.random.default_rng(0)
    a = rng.standard_normal(200) + 0.3 * rng.standard_exponential(200)
    b = a - 0.2 + 0.5 * rng.standard_normal(200)
    r = I.paired_bootstrap(a, b, np.random.default_rng(1), resamples=20000)
    ref = scipy_paired_percentile(a, b, lambda x, y: np.mean(x - y))
    se = ref.standard_error
    assert r["se"] == pytest.approx(se, rel=0.05)
    assert abs(r["lo"] - ref.confidence_interval.low) < 0.05 * se * 4
    assert abs(r["hi"] - ref.confidence_interval.high) < 0.05 * se * 4
    # and the normal approximation for a mean of 200 differences
    d = a - b
    assert r["se"] == pytest.approx(d.std(ddof=0) / np.sqrt(200), rel=0.05)


def test_paired_bootstrap_median_matches_scipy_percentile_interval():
    # the median's bootstrap distribution sits on the order statistics of the differences: ours and scipy's
    # percentile ends (different resamples) fall within two order statistics of each other
    rng = np.random.default_rng(3)
    a = rng.standard_normal(201) + rng.standard_exponential(201) ** 2  # heavy right tail
    b = a - 0.2 - 0.5 * rng.standard_normal(201)
    r = I.paired_bootstrap_median(a, b, np.random.default_rng(4), resamples=20000)
    ref = scipy_paired_percentile(a, b, lambda x, y: np.median(x - y))
    d = np.sort(a - b)
    rank = lambda v: int(np.searchsorted(d, v))  # noqa: E731
    assert abs(rank(r["lo"]) - rank(ref.confidence_interval.low)) <= 2
    assert abs(rank(r["hi"]) - rank(ref.confidence_interval.high)) <= 2
    assert r["median"] == d[100] and r["lo"] < r["median"] < r["hi"] and r["n"] == 201
    # a few images far out move the mean's interval, not the median's
    b2 = b.copy()
    b2[:10] -= 500.0
    assert I.paired_bootstrap(a, b2, np.random.default_rng(4))["lo"] > 5.0
    r2 = I.paired_bootstrap_median(a, b2, np.random.default_rng(4))
    assert r["lo"] <= r2["lo"] < r2["hi"] <= d[rank(r["hi"]) + 10]


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


@given(st.integers(2, 10), st.integers(0, 2**16))
def test_ratio_t_is_the_log_t_interval_taken_back(n, seed):
    # independent: scipy's one-sample t interval of log(a / b), exponentiated by hand
    rng = np.random.default_rng(seed)
    b = rng.uniform(0.5, 5.0, n)
    a = b * np.exp(0.3 + 0.2 * rng.standard_normal(n))
    r = I.ratio_t(a, b)
    ci = stats.ttest_1samp(np.log(a / b), 0.0).confidence_interval(0.95)
    assert (r["lo"], r["hi"]) == pytest.approx((np.exp(ci.low), np.exp(ci.high)), rel=1e-10)
    assert r["mean"] == pytest.approx(np.exp(np.mean(np.log(a / b))), rel=1e-12)
    assert r["lo"] <= r["mean"] <= r["hi"]


def test_ratio_t_of_a_constant_ratio_is_that_ratio():
    b = np.array([1.0, 2.0, 7.0])
    r = I.ratio_t(3.0 * b, b)
    assert (r["mean"], r["lo"], r["hi"]) == pytest.approx((3.0, 3.0, 3.0), rel=1e-12)
    with pytest.raises(ValueError, match="positive"):
        I.ratio_t([1.0, -1.0], [1.0, 1.0])


def test_sd_ratio_f_covers_the_true_ratio_95_percent_of_the_time():
    # Monte Carlo coverage with normal samples (3 and 5 values, true sd ratio 4): the F interval is exact
    rng = np.random.default_rng(0)
    trials = 4000
    hits = 0
    for _ in range(trials):
        r = I.sd_ratio_f(4.0 * rng.standard_normal(3), rng.standard_normal(5))
        hits += r["lo"] <= 4.0 <= r["hi"]
    se = np.sqrt(0.95 * 0.05 / trials)
    assert abs(hits / trials - 0.95) < 4 * se
    # the ends against scipy's F quantiles written out independently
    a, b = np.array([0.0, 1.0, 3.0]), np.array([0.0, 0.1, 0.3, 0.2])
    f = a.var(ddof=1) / b.var(ddof=1)
    r = I.sd_ratio_f(a, b)
    assert r["lo"] ** 2 == pytest.approx(f * stats.f.ppf(0.025, 3, 2), rel=1e-12)
    assert r["hi"] ** 2 == pytest.approx(f * stats.f.ppf(0.975, 3, 2), rel=1e-12)


def test_bootstrap_ratio_matches_scipy_percentile_interval():
    rng = np.random.default_rng(3)
    b = 10.0 + rng.standard_normal(100)
    a = 2.0 * b + rng.standard_normal(100)
    r = I.bootstrap_ratio(a, b, np.random.default_rng(1), resamples=20000)
    ref = scipy_paired_percentile(a, b, lambda x, y: np.mean(x) / np.mean(y))
    se = ref.standard_error
    assert r["mean"] == pytest.approx(a.mean() / b.mean(), rel=1e-14)
    assert abs(r["lo"] - ref.confidence_interval.low) < 0.2 * se
    assert abs(r["hi"] - ref.confidence_interval.high) < 0.2 * se
    with pytest.raises(ValueError, match="changes sign"):
        I.bootstrap_ratio([1.0, 1.0, 1.0], [-1.0, 1.0, 0.5], np.random.default_rng(0))
