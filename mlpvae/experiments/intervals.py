"""Confidence intervals for comparisons between methods: paired over seeds, paired bootstrap over images, Welch.

Not in the paper: the statistics by which the project words its comparisons
(docs/findings.md).  A comparison of two methods trained from the same seeds is
paired over the seeds (Student's t on the per-seed differences); where the
methods were evaluated on the same images, a paired bootstrap over the images
gives the interval of one model pair's mean difference; two sets of runs
without a pairing get Welch's t.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

LEVEL = 0.95  # the confidence level of every interval the project quotes


def _pairs(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be 1-D of the same length, got shapes {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError(f"a and b need at least two pairs, got {len(a)}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("a and b must be finite")
    return a - b


def paired_t(a, b, level: float = LEVEL) -> dict:
    """Student's t interval for the mean of ``a - b`` over pairs (seeds) (Not in the paper).

    Returns ``mean``, ``sd`` (of the differences), ``se``, ``t``, ``p`` (two-sided,
    H0: mean difference 0), ``df``, ``lo``, ``hi`` (the ``level`` interval), ``n``
    and ``positive`` (how many differences are > 0).
    """
    d = _pairs(a, b)
    n = len(d)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    q = float(stats.t.ppf(0.5 + level / 2, n - 1))
    t = mean / se if se > 0 else math.copysign(math.inf, mean) if mean else 0.0
    p = float(2 * stats.t.sf(abs(t), n - 1)) if se > 0 else float(mean == 0)
    return dict(
        mean=mean,
        sd=sd,
        se=se,
        t=t,
        p=p,
        df=n - 1,
        lo=mean - q * se,
        hi=mean + q * se,
        n=n,
        positive=int((d > 0).sum()),
    )


def paired_bootstrap(a, b, rng: np.random.Generator, resamples: int = 10000, level: float = LEVEL) -> dict:
    """Percentile bootstrap interval for the mean of ``a - b`` over paired items (images) (Not in the paper).

    Items are resampled with replacement, the pair kept together; returns
    ``mean``, ``lo``, ``hi``, ``se`` (the bootstrap standard deviation), ``n``.
    """
    d = _pairs(a, b)
    means = _resampled(d, np.mean, rng, resamples)
    lo, hi = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return dict(mean=float(d.mean()), lo=float(lo), hi=float(hi), se=float(means.std(ddof=1)), n=len(d))


def paired_bootstrap_median(a, b, rng: np.random.Generator, resamples: int = 10000, level: float = LEVEL) -> dict:
    """Percentile bootstrap interval for the median of ``a - b`` over paired items (images) (Not in the paper).

    For per-image differences with heavy tails, where a few images carry the
    mean; resampled as :func:`paired_bootstrap`.  Returns ``median``, ``lo``,
    ``hi``, ``n``.
    """
    d = _pairs(a, b)
    medians = _resampled(d, np.median, rng, resamples)
    lo, hi = np.quantile(medians, [0.5 - level / 2, 0.5 + level / 2])
    return dict(median=float(np.median(d)), lo=float(lo), hi=float(hi), n=len(d))


def _resampled(d: np.ndarray, statistic, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """``statistic`` of ``resamples`` resamples of ``d`` with replacement, drawn in blocks of 1,000."""
    n = len(d)
    out = np.empty(resamples)
    for s in range(0, resamples, 1000):
        k = min(1000, resamples - s)
        out[s : s + k] = statistic(d[rng.integers(0, n, size=(k, n))], axis=1)
    return out


def ratio_t(a, b, level: float = LEVEL) -> dict:
    """Student's t interval for the geometric-mean ratio ``a / b`` over pairs (seeds) (Not in the paper).

    The t interval of the mean of ``log a - log b``, taken back through exp, so the
    ratio's interval is not symmetric and cannot reach zero.  ``a`` and ``b`` must be
    positive.  Returns what :func:`paired_t` returns, ``mean``, ``lo`` and ``hi``
    as ratios (``positive`` counts the pairs with ``a > b``).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not (np.all(a > 0) and np.all(b > 0)):
        raise ValueError("a ratio interval needs positive a and b")
    r = paired_t(np.log(a), np.log(b), level)
    return dict(r, mean=math.exp(r["mean"]), lo=math.exp(r["lo"]), hi=math.exp(r["hi"]))


def bootstrap_ratio(a, b, rng: np.random.Generator, resamples: int = 10000, level: float = LEVEL) -> dict:
    """Percentile bootstrap interval for ``mean(a) / mean(b)`` over paired items (images) (Not in the paper).

    Items are resampled with replacement, the pair kept together; ``mean(b)`` must
    not change sign over the resamples (else the ratio has no interval and this
    raises).  Returns ``mean`` (the ratio on all items), ``lo``, ``hi``, ``n``.
    """
    _pairs(a, b)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = len(a)
    idx = rng.integers(0, n, size=(resamples, n))
    den = b[idx].mean(axis=1)
    if np.any(den == 0) or np.any(np.sign(den) != np.sign(den[0])):
        raise ValueError("mean(b) changes sign over the resamples: the ratio has no interval")
    lo, hi = np.quantile(a[idx].mean(axis=1) / den, [0.5 - level / 2, 0.5 + level / 2])
    return dict(mean=float(a.mean() / b.mean()), lo=float(lo), hi=float(hi), n=n)


def sd_ratio_f(a, b, level: float = LEVEL) -> dict:
    """The F-test interval for the ratio of standard deviations ``sd(a) / sd(b)`` (Not in the paper).

    Two independent normal samples: ``(s_a^2 / s_b^2) / (sigma_a^2 / sigma_b^2)`` is
    F(n_a - 1, n_b - 1).  Returns ``mean`` (the sample ratio), ``lo``, ``hi``, ``n``
    (the smaller sample size).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1 or len(a) < 2 or len(b) < 2:
        raise ValueError(f"a and b must be 1-D with at least two values each, got shapes {a.shape} and {b.shape}")
    va, vb = float(a.var(ddof=1)), float(b.var(ddof=1))
    if not (va > 0 and vb > 0):
        raise ValueError("both samples need a positive variance")
    dfa, dfb = len(a) - 1, len(b) - 1
    f = va / vb
    lo = f / float(stats.f.ppf(0.5 + level / 2, dfa, dfb))
    hi = f / float(stats.f.ppf(0.5 - level / 2, dfa, dfb))
    return dict(mean=math.sqrt(f), lo=math.sqrt(lo), hi=math.sqrt(hi), n=min(len(a), len(b)))


def welch(a, b, level: float = LEVEL) -> dict:
    """Welch's t interval for ``mean(a) - mean(b)`` of two unpaired samples (Not in the paper).

    Returns ``mean``, ``se``, ``t``, ``p`` (two-sided), ``df`` (Welch-Satterthwaite), ``lo``, ``hi``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1 or len(a) < 2 or len(b) < 2:
        raise ValueError(f"a and b must be 1-D with at least two values each, got shapes {a.shape} and {b.shape}")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    mean = float(a.mean() - b.mean())
    q = float(stats.t.ppf(0.5 + level / 2, df))
    t = mean / se
    return dict(mean=mean, se=se, t=t, p=float(2 * stats.t.sf(abs(t), df)), df=df, lo=mean - q * se, hi=mean + q * se)


def describe(r: dict, test: str) -> str:
    """One line: the mean difference, its interval, the test and its size (``n`` seeds or images)."""
    extra = f", t = {r['t']:.2f}, p = {r['p']:.3g}" if "t" in r else ""
    pos = f", {r['positive']} of {r['n']} positive" if "positive" in r else ""
    size = f", n = {r['n']}" if "n" in r else ""
    return f"{r['mean']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] ({int(LEVEL * 100)}%, {test}{size}{extra}{pos})"


def describe_ratio(r: dict, test: str) -> str:
    """One line for a ratio: its value, its interval, the test and its size."""
    size = f", n = {r['n']}" if "n" in r else ""
    return f"{r['mean']:.3g} [{r['lo']:.3g}, {r['hi']:.3g}] ({int(LEVEL * 100)}%, {test}{size})"
