"""Where AIS falls below the IWAE on the Fig. 4 100-D models: the IWAE's own spread and weight tail (issue 27).

    python validation/scripts/ais_iwae_tail.py [--runs validation/results/figures-local/fig4_100d]
        [--dir validation/results/analysis/ais-100d-fig4] [--repeats 10] [--k 5000] [--ais-chains 16]

For every model with `DIR/<method>/seed<s>/ais_evidence_per_image.npz` (`vaetheory analyze RUN --ais`) and
its checkpoint in `RUNS/<method>/seed<s>/`, on the same first test images: `--repeats` independent IWAE
estimates with k samples each (noise `numpy.random.default_rng([seed, 27, r])` for repeat r, a stream
no analysis uses), their pooled estimate (log-mean-exp over all repeats x k weights), and the Pareto
tail shape k-hat of the pooled weights (mlpvae.evidence.iwae.pareto_khat; above 0.7 a single k-sample
IWAE value can land far above log p(x) now and then). On every image where the recorded AIS is below
the recorded IWAE by more than three AIS standard errors, AIS is rerun from q(z|x) alone (`--ais-chains`
chains, T = 1,000, noise `default_rng([seed, 27, 100])`) as a check of the start; on every image where it
is below the pooled IWAE by more than three standard errors, AIS is rerun at the recorded start and chains
with `--long-steps` intermediate distributions (noise `default_rng([seed, 27, 200])`), a check of T. Writes
`DIR/<method>/seed<s>/iwae_tail.npz` and `iwae_tail.json` (with the code's git SHA) and prints a summary
(also `DIR/iwae_tail.txt` with `--out`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

from mlpvae.evidence.ais import ais_log_px
from mlpvae.evidence.iwae import iwae_log_px, pareto_khat, tail_size
from mlpvae.evidence.laplace import training_priors
from mlpvae.experiments.report import emit
from mlpvae.nn.batched import FLOATING, encode_all
from mlpvae.training.runs import git_sha, load_run

ROOT = Path(__file__).resolve().parents[2]
DIR = ROOT / "validation" / "results" / "analysis" / "ais-100d-fig4"
RUNS = ROOT / "validation" / "results" / "figures-local" / "fig4_100d"
STREAM = 27  # this script's noise stream, beside the seed


def below(d) -> np.ndarray:
    """The images where AIS is below the recorded IWAE by more than three AIS standard errors."""
    return np.flatnonzero(d["ais_log_px"] < d["iwae"] - 3 * d["ais_se"])


def ais_on(run, s2, s2_train, images: np.ndarray, substream: int, **opts) -> tuple[np.ndarray, np.ndarray]:
    """AIS log p(x) and its standard error on the test ``images``; noise ``default_rng([seed, 27, substream])``."""
    x = run.x_test[images]
    mu, var = encode_all(run.params, x, run.mc)
    rng = np.random.default_rng([run.cfg.seed, STREAM, substream])
    a = ais_log_px(
        run.params, x, run.mc, s2, rng, mu=mu, var=np.broadcast_to(var, mu.shape), baggins_s2=s2_train, **opts
    )
    return a["log_px"], a["se"]


def measure(run_dir: Path, d: dict, repeats: int, k: int, ais_chains: int) -> dict:
    """Repeated IWAE, pooled IWAE, k-hat per image; AIS from q on the flagged images."""
    N = len(d["ais_log_px"])
    run = load_run(run_dir, test_limit=N, float64=True)
    mc, p, x = run.mc, run.params, run.x_test
    _, _, s2, s2_train = training_priors(run)
    floating = mc.posterior in FLOATING
    M = tail_size(repeats * k)
    reps, tops = np.empty((repeats, N)), []
    for r in range(repeats):
        rng = np.random.default_rng([run.cfg.seed, STREAM, r])
        reps[r], top = iwae_log_px(p, x, mc, rng, k, s2=s2 if floating else None, baggins_s2=s2_train, top=M + 1)
        tops.append(top)
    pooled_top = -np.sort(-np.concatenate(tops, axis=1), axis=1)[:, : M + 1]
    out = {"iwae_repeats": reps, "iwae_pooled": logsumexp(reps, axis=0) - np.log(repeats)}
    out["khat"] = pareto_khat(pooled_top)
    flagged = below(d)
    out["flagged"] = flagged
    out["ais_q"], out["ais_q_se"] = np.full(N, np.nan), np.full(N, np.nan)
    if len(flagged):
        out["ais_q"][flagged], out["ais_q_se"][flagged] = ais_on(
            run, s2, s2_train, flagged, 100, chains=ais_chains, init="q"
        )
    return out


def lengthen(run_dir: Path, d: dict, t: dict, steps: int, chains: int, init: str) -> dict:
    """AIS with ``steps`` intermediate distributions on the images below the pooled IWAE."""
    N = len(d["ais_log_px"])
    t = dict(t, ais_long=np.full(N, np.nan), ais_long_se=np.full(N, np.nan), long_steps=steps)
    low = np.flatnonzero(d["ais_log_px"] < t["iwae_pooled"] - 3 * d["ais_se"])
    if len(low):
        run = load_run(run_dir, test_limit=N, float64=True)
        _, _, s2, s2_train = training_priors(run)
        t["ais_long"][low], t["ais_long_se"][low] = ais_on(
            run, s2, s2_train, low, 200, chains=chains, steps=steps, init=init
        )
    return t


def describe(name: str, d: dict, t: dict) -> list[str]:
    ais, iw, se = d["ais_log_px"], d["iwae"], d["ais_se"]
    reps, pooled, kh = t["iwae_repeats"], t["iwae_pooled"], t["khat"]
    still = np.flatnonzero(ais < pooled - 3 * se)
    L = [
        f"  {name}: k-hat median {np.median(kh):.2f}, above 0.7 on {int((kh > 0.7).sum())} of {len(kh)} images; "
        f"AIS - pooled IWAE {np.mean(ais - pooled):+.3f} on average, AIS below the pooled IWAE by more than 3 "
        f"standard errors on {len(still)} image(s)" + (f" ({', '.join(map(str, still))})" if len(still) else "")
    ]
    if "ais_long" in t:
        L += [
            f"    image {i} (below the pooled IWAE): AIS {ais[i]:.2f} +- {se[i]:.2f}, "
            f"with T = {int(t['long_steps']):,} "
            f"{t['ais_long'][i]:.2f} +- {t['ais_long_se'][i]:.2f}; pooled IWAE {pooled[i]:.2f}, k-hat {kh[i]:.2f}"
            for i in still
        ]
    L.append("    recorded IWAE above AIS by more than 3 standard errors:" if len(t["flagged"]) else "")
    for i in t["flagged"]:
        rank = int((reps[:, i] >= iw[i]).sum())
        L.append(
            f"    image {i}: AIS {ais[i]:.2f} +- {se[i]:.2f}, "
            f"from q alone {t['ais_q'][i]:.2f} +- {t['ais_q_se'][i]:.2f}; "
            f"recorded IWAE {iw[i]:.2f}, repeats {np.median(reps[:, i]):.2f} median ({reps[:, i].min():.2f} to "
            f"{reps[:, i].max():.2f}; {rank} of {len(reps)} at or above the recorded), pooled {pooled[i]:.2f}; "
            f"k-hat {kh[i]:.2f}"
        )
    return L


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=DIR)
    ap.add_argument("--runs", type=Path, default=RUNS)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--k", type=int, default=5000)
    ap.add_argument("--ais-chains", type=int, default=16)
    ap.add_argument("--long-steps", type=int, default=10000, help="T of the AIS rerun below the pooled IWAE")
    ap.add_argument("--models", default="", help="comma-separated <method>/seed<s> to measure (default: all)")
    ap.add_argument("--out", type=Path, default=None, help="also write the summary here")
    a = ap.parse_args()
    sha = git_sha()
    lines = [
        f"IWAE repeated {a.repeats} x k = {a.k} on the AIS images, pooled over {a.repeats * a.k:,} weights; "
        f"k-hat of the pooled weights (largest {tail_size(a.repeats * a.k)}); AIS from q with {a.ais_chains} chains "
        "on the images where AIS is below the recorded IWAE by more than 3 standard errors:"
    ]
    chosen = set(filter(None, a.models.split(",")))
    for f in sorted(a.dir.glob("*/seed*/ais_evidence_per_image.npz")):
        name = f"{f.parent.parent.name}/{f.parent.name}"
        if chosen and name not in chosen:
            continue
        d = dict(np.load(f))
        out = f.parent / "iwae_tail.npz"
        if out.exists():
            t = dict(np.load(out))
        else:
            t = measure(a.runs / f.parent.parent.name / f.parent.name, d, a.repeats, a.k, a.ais_chains)
            np.savez(out, **t)
            meta = {"git_sha": sha, "repeats": a.repeats, "k": a.k, "ais_chains": a.ais_chains, "stream": STREAM}
            (f.parent / "iwae_tail.json").write_text(json.dumps(meta, indent=1) + "\n")
        if "ais_long" not in t and a.long_steps:
            rec = json.loads((f.parent / "ais_evidence.json").read_text())
            run_dir = a.runs / f.parent.parent.name / f.parent.name
            t = lengthen(run_dir, d, t, a.long_steps, int(rec["chains"]), rec["init"])
            np.savez(out, **t)
            meta = json.loads((f.parent / "iwae_tail.json").read_text())
            meta.update(long_steps=a.long_steps, long_git_sha=sha)
            (f.parent / "iwae_tail.json").write_text(json.dumps(meta, indent=1) + "\n")
        lines += describe(name, d, t)
    emit(lines, a.out)


if __name__ == "__main__":
    main()
