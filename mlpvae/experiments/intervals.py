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
    n = len(d)
    means = np.empty(resamples)
    for s in range(0, resamples, 1000):
        k = min(1000, resamples - s)
        means[s : s + k] = d[rng.integers(0, n, size=(k, n))].mean(axis=1)
    lo, hi = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return dict(mean=float(d.mean()), lo=float(lo), hi=float(hi), se=float(means.std(ddof=1)), n=n)


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
