"""Eq. (22) against the measured cost of a shared Sigma by medians over the images (both fixed-decoder studies).

Not in the paper: Eq. (22)'s per-image terms are heavy-tailed (a second-order expansion in the ratio of an
image's posterior width to the shared one, used where that ratio is far from 1), so a few images can carry the
mean of the terms; the median over the images, with its paired bootstrap interval
(:func:`mlpvae.experiments.intervals.paired_bootstrap_median`), says what Eq. (22) does on the typical image.
"""

from __future__ import annotations

import numpy as np

from mlpvae.experiments.intervals import paired_bootstrap_median


def eq22_medians(per: dict, seed: int = 0) -> dict:
    """Medians over the images, with paired bootstrap intervals, of the cost of a shared Sigma, of Eq. (22)'s
    per-image terms and of their difference (Eq. (22); the terms are heavy-tailed, a few images carry the means).

    ``per``: the per-image arrays of either study (``elbo_diagonal``, ``elbo_constant``, ``eq22_terms``; its
    ``.npz``); a generator of its own, so the report's mean intervals do not depend on whether these are taken.
    """
    rng = np.random.default_rng([seed, 22])
    cost = np.asarray(per["elbo_diagonal"]) - np.asarray(per["elbo_constant"])
    terms = np.asarray(per["eq22_terms"])
    zero = np.zeros_like(cost)
    return {
        "constant_cost": paired_bootstrap_median(cost, zero, rng),
        "eq22": paired_bootstrap_median(terms, zero, rng),
        "constant_cost_minus_eq22": paired_bootstrap_median(cost, terms, rng),
    }


def median_text(x: dict) -> str:
    """A median with its interval, ``+0.123 [-0.045, +0.290]`` (nats)."""
    return f"{x['median']:+.3f} [{x['lo']:+.3f}, {x['hi']:+.3f}]"


def medians_line(r: dict) -> list[str]:
    """The report's line of medians (none for a summary written before they were taken)."""
    med = r.get("medians")
    if not med:
        return []
    return [
        f"- medians over the images (Eq. (22)'s terms are heavy-tailed): the cost of a shared Sigma "
        f"{median_text(med['constant_cost'])}; Eq. (22) {median_text(med['eq22'])}; measured minus predicted "
        f"{median_text(med['constant_cost_minus_eq22'])}"
    ]
