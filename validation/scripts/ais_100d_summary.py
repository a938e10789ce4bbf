"""log p(x) by AIS on the Fig. 4 100-D models, learned against constant Sigma, with intervals (issue 27).

    python validation/scripts/ais_100d_summary.py [--dir validation/results/analysis/ais-100d-fig4] [--out FILE]

Reads DIR/<method>/seed<s>/ais_evidence_per_image.npz (written by `vaetheory analyze RUN --ais`, the same
first test images for every model) and prints, per model: the mean AIS log p(x), IWAE and ELBO, the
estimator's tail (largest standard error, smallest effective sample size) and the BDMC sandwich width on
the simulated images (its mean with a bootstrap interval over them); per seed: constant minus learned
Sigma on the same images (paired bootstrap over the images, mlpvae.experiments.intervals, 10,000
resamples, seed 0); over the seeds present for both methods:
the same differences paired by seed (Student's t), and whether the IWAE's error (AIS - IWAE) depends on
the method. Where DIR/<method>/seed<s>/iwae_tail.npz exists (validation/scripts/ais_iwae_tail.py), also the
IWAE's own spread and weight tail on those images, and the two checks of AIS where an IWAE lands above it
(AIS from q alone; AIS with more intermediate distributions).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mlpvae.experiments.ais_report import width_interval
from mlpvae.experiments.intervals import describe, paired_bootstrap, paired_t
from mlpvae.experiments.report import emit

ROOT = Path(__file__).resolve().parents[2]
DIR = ROOT / "validation" / "results" / "analysis" / "ais-100d-fig4"
ALL = ROOT / "validation" / "results" / "analysis" / "all-seeds" / "fig4_100d"  # IWAE on all 10,000 test images
METHODS = ("learned", "constant")
#: per-image quantities compared between the methods: name -> f(npz)
QUANTITIES = {
    "AIS log p(x)": lambda d: d["ais_log_px"],
    "IWAE (k = 5000)": lambda d: d["iwae"],
    "ELBO": lambda d: d["elbo"],
    "gap, AIS - ELBO": lambda d: d["ais_log_px"] - d["elbo"],
    "IWAE error, AIS - IWAE": lambda d: d["ais_log_px"] - d["iwae"],
}


def load(root: Path) -> dict[tuple[str, int], dict]:
    """(method, seed) -> the per-image arrays of every finished model under ``root``."""
    runs = {}
    for m in METHODS:
        for p in sorted((root / m).glob("seed*/ais_evidence_per_image.npz")):
            runs[(m, int(p.parent.name[4:]))] = dict(np.load(p))
            tail = p.parent / "iwae_tail.npz"
            if tail.exists():
                runs[(m, int(p.parent.name[4:]))]["tail"] = dict(np.load(tail))
    return runs


def _below(d) -> str:
    """The images where AIS is below the IWAE bound by more than three AIS standard errors, with the amount."""
    low = np.flatnonzero(d["ais_log_px"] < d["iwae"] - 3 * d["ais_se"])
    return ", ".join(f"image {i} ({d['ais_log_px'][i] - d['iwae'][i]:+.2f})" for i in low) or "no image"


def tails(runs: dict[tuple[str, int], dict]) -> list[str]:
    """The IWAE's spread and Pareto tail on the AIS images, and AIS's two checks where an IWAE is above it."""
    have = {k: d for k, d in runs.items() if "tail" in d}
    if not have:
        return []
    r0 = next(iter(have.values()))["tail"]["iwae_repeats"]
    lines = [f"the IWAE (k = 5000) repeated {len(r0)} times on the same images, and its weights' Pareto k-hat:"]
    q_diff, long_diff, n_img, above_med, n_still, over = [], [], 0, 0, 0, []
    for (m, s), d in sorted(have.items()):
        t, ais, se = d["tail"], d["ais_log_px"], d["ais_se"]
        med = np.median(t["iwae_repeats"], axis=0)
        still = ais < t["iwae_pooled"] - 3 * se
        fl = t["flagged"].astype(int)
        over += [int((t["iwae_repeats"][:, i] >= d["iwae"][i]).sum()) for i in fl]
        n_img, above_med, n_still = n_img + len(ais), above_med + int((ais > med).sum()), n_still + int(still.sum())
        q_diff += list(t["ais_q"][fl] - ais[fl])
        if "ais_long" in t:
            long_diff += list(t["ais_long"][still] - ais[still])
        lines.append(
            f"  {m:8s} seed {s}: k-hat median {np.median(t['khat']):.2f}, above 0.7 on {int((t['khat'] > 0.7).sum())} "
            f"of {len(ais)}; AIS - median IWAE {np.mean(ais - med):+.3f}, AIS - pooled IWAE "
            f"{np.mean(ais - t['iwae_pooled']):+.3f}; AIS below the pooled IWAE by more than 3 standard errors on "
            f"{int(still.sum())} image(s)"
        )
    q_diff, long_diff = np.array(q_diff), np.array(long_diff)
    lines.append(f"  AIS above the median of the IWAE repeats on {above_med} of {n_img} images")
    if len(q_diff):
        lines.append(
            f"  on the {len(q_diff)} images with the recorded IWAE above AIS by more than 3 standard errors: a "
            f"median of {np.median(over):.0f} of the {len(r0)} repeats reach the recorded IWAE (none reaches it on "
            f"{sum(o == 0 for o in over)}); AIS from q alone minus AIS {q_diff.mean():+.3f} on average "
            f"(largest |difference| {np.abs(q_diff).max():.3f})"
        )
    if len(long_diff):
        T = int(next(d["tail"]["long_steps"] for d in have.values() if "long_steps" in d["tail"]))
        lines.append(
            f"  on the {n_still} images with AIS below the pooled IWAE by more than 3 standard errors: AIS at "
            f"T = {T:,} minus at T = 1,000 {long_diff.mean():+.3f} on average (largest |difference| "
            f"{np.abs(long_diff).max():.3f})"
        )
    return lines


def _interval(w: np.ndarray) -> str:
    """The mean width's 95% bootstrap interval over the simulated images, as ``[lo, hi]``."""
    r = width_interval(w)
    return f"[{r['bdmc_width_lo']:+.3f}, {r['bdmc_width_hi']:+.3f}]"


def summarize(runs: dict[tuple[str, int], dict]) -> list[str]:
    lines = ["per model (first test images; BDMC on simulated images):"]
    for (m, s), d in sorted(runs.items()):
        w = d["bdmc_width"]
        lines.append(
            f"  {m:8s} seed {s}: {len(d['ais_log_px'])} images, AIS {d['ais_log_px'].mean():.3f}, "
            f"IWAE {d['iwae'].mean():.3f}, ELBO {d['elbo'].mean():.3f}; AIS - IWAE "
            f"{(d['ais_log_px'] - d['iwae']).mean():+.3f} (from {(d['ais_log_px'] - d['iwae']).min():+.3f}); "
            f"largest standard error {d['ais_se'].max():.3f}, smallest ESS {d['ais_ess'].min():.1f}; "
            f"AIS below the IWAE by more than 3 of its standard errors on "
            f"{_below(d)}; "
            f"BDMC width {w.mean():+.3f} {_interval(w)} on average (from {w.min():+.3f} to {w.max():+.3f}, "
            f"{len(w)} images)"
        )
    w = np.concatenate([d["bdmc_width"] for d in runs.values()])
    lines.append(
        f"  BDMC sandwich over all {len(runs)} models: {w.mean():+.3f} {_interval(w)} per image on average, "
        f"largest {w.max():+.3f}, "
        f"{int((np.abs(w) > 0.15).sum())} of {len(w)} images beyond 0.15 nat"
    )
    lines += tails(runs)
    seeds = sorted({s for (m, s) in runs if all((k, s) in runs for k in METHODS)})
    for name, f in QUANTITIES.items():
        lines.append(f"constant minus learned Sigma, {name}:")
        for s in seeds:
            c, le = f(runs[("constant", s)]), f(runs[("learned", s)])
            r = paired_bootstrap(c, le, np.random.default_rng(0))
            lines.append(f"  seed {s}: " + describe(r, "paired bootstrap over images"))
        if len(seeds) >= 2:
            c = [f(runs[("constant", s)]).mean() for s in seeds]
            le = [f(runs[("learned", s)]).mean() for s in seeds]
            lines.append(f"  over seeds {seeds}: " + describe(paired_t(c, le), "paired t over seeds"))
    lines += combined(runs, seeds)
    return lines


def combined(runs: dict[tuple[str, int], dict], seeds: list[int]) -> list[str]:
    """log p(x) difference on all test images: the IWAE's there, corrected by its error measured here.

    ``E[AIS_c - AIS_l] = E[IWAE_c - IWAE_l] + E[(AIS - IWAE)_c - (AIS - IWAE)_l]``: the first term on
    all 10,000 test images (``ALL``, the recorded analyses), the second on the AIS images; per seed,
    then a paired t over the seeds; and the second term's image-sampling interval (a paired bootstrap
    over the AIS images of the per-image error difference averaged over the seeds).
    """
    have = [s for s in seeds if all((ALL / m / f"seed{s}" / "analysis.json").exists() for m in METHODS)]
    if len(have) < 2:
        return []
    iw = {
        m: np.array(
            [json.loads((ALL / m / f"seed{s}" / "analysis.json").read_text())["iwae_log_px"]["mean"] for s in have]
        )
        for m in METHODS
    }
    err = {m: np.array([runs[(m, s)]["ais_log_px"] - runs[(m, s)]["iwae"] for s in have]) for m in METHODS}
    d_iw = iw["constant"] - iw["learned"]
    d_err = err["constant"].mean(axis=1) - err["learned"].mean(axis=1)
    n_img = err["constant"].shape[1]
    boot = paired_bootstrap(err["constant"].mean(axis=0), err["learned"].mean(axis=0), np.random.default_rng(0))
    return [
        "constant minus learned Sigma, log p(x) on all 10,000 test images = IWAE difference there + IWAE error "
        f"difference on the {n_img} AIS images:",
        "  per seed " + ", ".join(f"{s}: {a:+.3f} {b:+.3f}" for s, a, b in zip(have, d_iw, d_err)),
        f"  over seeds {have}: " + describe(paired_t(d_iw + d_err, np.zeros(len(have))), "paired t over seeds"),
        "  the error term over the images (seed-averaged per image): " + describe(boot, "paired bootstrap over images"),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=DIR)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    runs = load(args.dir)
    if not runs:
        raise SystemExit(f"no ais_evidence_per_image.npz under {args.dir}/{{learned,constant}}/seed*/")
    emit(summarize(runs), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
