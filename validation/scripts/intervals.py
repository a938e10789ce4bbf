"""Confidence intervals of the comparisons quoted in README.md and docs/findings.md, from the committed numbers.

    python validation/scripts/intervals.py              # print every comparison
    python validation/scripts/intervals.py --out FILE   # and write the same text to FILE

Reads only committed results (validation/results/figures*/**/summary.json, the per-seed
analysis.json of validation/results/analysis/all-seeds, the per-image grid values of
validation/results/analysis/grid-2d, validation/results/verify/claims.json) and prints, for each
comparison, the mean difference with its 95% interval: paired t over seeds (the same seed
trained by both methods), a paired bootstrap over the same test images where per-image values
exist (mlpvae.experiments.intervals, 10,000 resamples, seed 0), Welch's t where a statement used it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from mlpvae.experiments.intervals import (
    bootstrap_ratio,
    describe,
    describe_ratio,
    paired_bootstrap,
    paired_t,
    ratio_t,
    sd_ratio_f,
    welch,
)
from mlpvae.experiments.report import emit
from mlpvae.training.runs import git_sha

ROOT = Path(__file__).resolve().parents[2]
RES = ROOT / "validation" / "results"
M = 784  # pixels: a Gaussian test ELBO on data scaled by lambda carries -m log lambda


def summary_entry(fig: str, method: str, folder: str = "figures") -> dict:
    """One method's entry in a figure's recorded summary.json."""
    d = json.loads((RES / folder / fig / "summary.json").read_text())
    (m,) = [m for m in d["methods"] if m["method"] == method]
    return m


def elbo(fig: str, method: str, folder: str = "figures", s2: str = "train") -> np.ndarray:
    """A method's final test ELBO per seed (S^2 from the training set for floating-prior methods)."""
    t = summary_entry(fig, method, folder)["test_elbo"]
    return np.array((t.get(f"test_elbo_s2_{s2}") or t["test_elbo"])["values"], dtype=float)


def completed(fig: str, method: str, folder: str = "figures") -> bool:
    """Whether every seed of a method ran to the end (a stopped run's last ELBO is not its result)."""
    status = summary_entry(fig, method, folder)["status"]
    return bool(status) and all(s == "completed" for s in status)


def analysis(fig: str, method: str, key: str) -> np.ndarray:
    """Per seed: the mean over all test images of ``key`` in the recorded analysis.json."""
    base = RES / "analysis" / "all-seeds" / fig / method
    return np.array([json.loads((base / f"seed{k}" / "analysis.json").read_text())[key]["mean"] for k in range(5)])


def per_seed(folder: str, name: str, f) -> np.ndarray:
    """Per seed: ``f(analysis.json)`` of every recorded seed of one model under analysis/<folder>/<name>/."""
    base = RES / "analysis" / folder / name
    seeds = sorted(base.glob("seed*/analysis.json"), key=lambda p: int(p.parent.name[4:]))
    return np.array([f(json.loads(p.read_text())) for p in seeds], dtype=float)


def mean(a: dict, key: str) -> float:
    """The mean over the test images of ``key`` in an analysis.json."""
    return a[key]["mean"]


def eq6_minus_net(a: dict) -> float:
    """The Eq. (6) closed-form decoder's test ELBO minus the trained network's, on the same posteriors."""
    return a["optimal_decoder_eq6"]["opt_elbo"] - a["optimal_decoder_eq6"]["net_elbo"]


def lines() -> list[str]:
    out: list[str] = []
    say = out.append
    pt = "paired t over seeds"

    say("# Fig. 4: constant minus learned Sigma (test ELBO, all 10,000 images; same seeds 0-4)")
    for fig in ("fig4_2d", "fig4_100d"):
        r = paired_t(elbo(fig, "constant"), elbo(fig, "learned"))
        say(f"{fig} CPU: {describe(r, pt)}")
    d = elbo("fig4_2d", "constant") - elbo("fig4_2d", "learned")
    r = paired_t(elbo("fig4_2d", "constant")[1:], elbo("fig4_2d", "learned")[1:])
    say(f"fig4_2d CPU per seed {np.round(d, 2).tolist()}; without seed 0: {describe(r, pt)}")
    r = paired_t(elbo("fig4_2d", "constant", "figures-h200"), elbo("fig4_2d", "learned", "figures-h200"))
    say(f"fig4_2d H200 sample: {describe(r, pt)}")
    say("")
    say("# Fig. 4 analyses (all-seeds, 10,000 images): constant minus learned, per-seed means")
    for fig in ("fig4_2d", "fig4_100d"):
        for key in ("elbo", "iwae_log_px", "gap_iwae_minus_elbo"):
            r = paired_t(analysis(fig, "constant", key), analysis(fig, "learned", key))
            say(f"{fig} {key}: {describe(r, pt)}")
    say("")
    say("# Exact log p(x) of the 2-D Fig. 4 models (grid-2d, first 200 test images): constant minus learned")
    grid = RES / "analysis" / "grid-2d"
    per_seed_c, per_seed_l = [], []
    for k in range(5):
        c = np.load(grid / f"fig4_2d_constant_seed{k}.npz")
        lr = np.load(grid / f"fig4_2d_learned_seed{k}.npz")
        per_seed_c.append(c["grid_log_px"].mean())
        per_seed_l.append(lr["grid_log_px"].mean())
        r = paired_bootstrap(c["grid_log_px"], lr["grid_log_px"], np.random.default_rng(0))
        rb = paired_bootstrap(c["iwae"], lr["iwae"], np.random.default_rng(0))
        say(f"seed {k}: exact {describe(r, 'paired bootstrap over images')}; IWAE {describe(rb, 'same')}")
    say(f"over seeds: exact {describe(paired_t(per_seed_c, per_seed_l), pt)}")
    say("")
    say("# Fig. 8: BILBO sigma = c minus the best other sigma, and learned Sigma minus sigma = 1 (S^2 train)")
    names = {"0.1": "0p1", "1": "1", "10": "10"}
    for c, cn in names.items():
        own = elbo("fig8", f"c{cn}_sigma{cn}")
        others = {s: elbo("fig8", f"c{cn}_sigma{sn}") for s, sn in names.items() if s != c}
        best = max(others, key=lambda s: others[s].mean())
        r = paired_t(own, others[best])
        say(f"c = {c}: sigma = c minus sigma = {best}: {describe(r, pt)}; per seed {np.round(own - others[best], 2)}")
        learned = elbo("fig8", f"c{cn}_learned")
        for sg, sn in names.items():
            r = paired_t(learned, elbo("fig8", f"c{cn}_sigma{sn}"))
            say(f"c = {c}: learned Sigma minus sigma = {sg}: {describe(r, pt)}")
    say("")
    say("# Figs. 6/10/11: BAGGINS tau = 1/5 across lambda, test ELBO + m log lambda (S^2 train), minus lambda = 1")
    for d in ("d100", "d2"):
        base = elbo("fig6_10_11_14_15", f"{d}_baggins_lambda1")
        for lam in (4, 16):
            other = elbo("fig6_10_11_14_15", f"{d}_baggins_lambda{lam}") + M * math.log(lam)
            r = paired_t(other, base)
            say(f"{d} lambda = {lam}: {describe(r, pt)}; per seed {np.round(other - base, 1).tolist()}")
    say("")
    say("# Figs. 6/10/11: BAGGINS across tau at lambda = 1, test ELBO (S^2 train), seeds 0-2")
    for d in ("d2", "d100"):
        for a, b in (("tau5", "tau1"), ("tau1", "tau0p05")):
            r = paired_t(elbo("fig6_10_11_14_15", f"{d}_{a}"), elbo("fig6_10_11_14_15", f"{d}_{b}"))
            say(f"{d} {a} minus {b}: {describe(r, pt)}")
    say("")
    say("# Fig. 9 (the Fig. 8 runs at c = 1): BILBO Sigma = I/100, I, 100 I (sigma = 0.1, 1, 10), S^2 train")
    nine = {"I/100": "c1_sigma0p1", "I": "c1_sigma1", "100 I": "c1_sigma10"}
    for a, b in (("I", "100 I"), ("I/100", "100 I"), ("I/100", "I")):
        say(f"{a} minus {b}: {describe(paired_t(elbo('fig8', nine[a]), elbo('fig8', nine[b])), pt)}")
    say("")
    say("# Fig. 8 on the H200 (figures-h200): learned Sigma minus sigma, where both methods completed every seed")
    for c, sg in (("0p1", "0p1"), ("0p1", "1"), ("0p1", "10"), ("1", "1")):
        a, b = f"c{c}_learned", f"c{c}_sigma{sg}"
        label = f"c = {c.replace('p', '.')}: learned minus sigma = {sg.replace('p', '.')}"
        unfinished = [m for m in (a, b) if not completed("fig8", m, "figures-h200")]
        if unfinished:
            say(f"{label}: not compared ({', '.join(unfinished)} did not finish every seed)")
            continue
        say(f"{label}: {describe(paired_t(elbo('fig8', a, 'figures-h200'), elbo('fig8', b, 'figures-h200')), pt)}")
    say("")
    say("# Fig. 4 analyses (all-seeds, 10,000 images): Eqs. (16) and (6) per model, mean over seeds 0-4")
    zero = np.zeros(5)
    for fig in ("fig4_2d", "fig4_100d"):
        for meth in ("learned", "constant"):
            f = {
                k: per_seed("all-seeds", f"{fig}/{meth}", lambda a, k=k: mean(a, k))
                for k in ("eq16_minus_iwae", "eq16_minus_elbo")
            }
            f["eq6_minus_network"] = per_seed("all-seeds", f"{fig}/{meth}", eq6_minus_net)
            f["eq18_share_of_iwae_gap"] = per_seed(
                "all-seeds", f"{fig}/{meth}", lambda a: mean(a, "gap_eq18") / mean(a, "gap_iwae_minus_elbo")
            )
            for k, v in f.items():
                say(f"{fig} {meth} {k}: {describe(paired_t(v, zero), 't over seeds')}")
    say("")
    say("# Gaussian-likelihood Fig. 6 models (analysis/gaussian-2d, -100d; seeds 0-2): per model, mean over seeds")
    for folder, names in (
        ("gaussian-2d", ("d2_T1_lambda1", "d2_baggins_lambda1", "d2_baggins_lambda4", "d2_baggins_lambda16")),
        ("gaussian-100d", ("d100_T1_lambda1", "d100_baggins_lambda1")),
    ):
        for name in names:
            e6 = per_seed(folder, name, eq6_minus_net)
            e16 = per_seed(folder, name, lambda a: mean(a, "eq16_minus_iwae"))
            z = np.zeros(len(e6))
            say(f"{name}: Eq. (6) minus network {describe(paired_t(e6, z), 't over seeds')}")
            say(f"{name}: Eq. (16) minus IWAE {describe(paired_t(e16, z), 't over seeds')}")
    say("# BAGGINS tau = 1/5 in 2-D: the gap (IWAE - ELBO) and Eq. (18)'s share of it, lambda = 4, 16 minus lambda = 1")
    gap = {
        lam: per_seed("gaussian-2d", f"d2_baggins_lambda{lam}", lambda a: mean(a, "gap_iwae_minus_elbo"))
        for lam in (1, 4, 16)
    }
    share = {
        lam: per_seed(
            "gaussian-2d", f"d2_baggins_lambda{lam}", lambda a: mean(a, "gap_eq18") / mean(a, "gap_iwae_minus_elbo")
        )
        for lam in (1, 4, 16)
    }
    for lam in (4, 16):
        say(f"lambda = {lam}: gap {describe(paired_t(gap[lam], gap[1]), pt)}")
        say(f"lambda = {lam}: Eq. (18)'s share {describe(paired_t(share[lam], share[1]), pt)}")
    say("")
    say("# Fig. 8 by the exact log p(x) (grid-2d, seed 0, first 200 test images): paired bootstrap over images")
    for c in ("0p1", "10"):
        g = {
            k: np.load(grid / f"fig8_c{c}_{k}_seed0.npz")["grid_log_px"]
            for k in ("learned", "sigma0p1", "sigma1", "sigma10")
        }
        own = f"sigma{c}"
        best = max((k for k in g if k not in ("learned", own)), key=lambda k: g[k].mean())
        for a, b in ((own, best), ("learned", "sigma1")):
            r = paired_bootstrap(g[a], g[b], np.random.default_rng(0))
            say(f"c = {c.replace('p', '.')}: {a} minus {b}: {describe(r, 'paired bootstrap over images')}")
    say("# The exact log p(x) minus the IWAE (k = 5000) on the 2-D Fig. 4 models, per-seed means, seeds 0-4")
    for meth in ("learned", "constant"):
        ex = [np.load(grid / f"fig4_2d_{meth}_seed{k}.npz") for k in range(5)]
        r = paired_t([g["grid_log_px"].mean() for g in ex], [g["iwae"].mean() for g in ex])
        say(f"{meth}: {describe(r, pt)}")
    say("")
    say("# Fashion-MNIST (16-D, seeds 0-2): BILBO minus the standard ELBO (S^2 train)")
    std = elbo("fashion_mnist", "elbo")
    for m in ("bilbo_I", "bilbo_I100"):
        b = elbo("fashion_mnist", m)
        say(f"{m}: {describe(paired_t(b, std), pt)}; Welch {describe(welch(b, std), 'Welch t')}")
    r = paired_t(elbo("fashion_mnist", "bilbo_I"), elbo("fashion_mnist", "bilbo_I100"))
    say(f"bilbo_I minus bilbo_I100: {describe(r, pt)}")
    say("")
    say("# S^2 from the test set against the training set: largest |difference of the seed means| per figure")
    for path in sorted(RES.glob("figures/*/summary.json")):
        d = json.loads(path.read_text())
        diffs = {}
        for m in d["methods"]:
            t = m["test_elbo"]
            if "test_elbo_s2_test" in t and "test_elbo_s2_train" in t:
                diffs[m["method"]] = abs(t["test_elbo_s2_test"]["mean"] - t["test_elbo_s2_train"]["mean"])
        if diffs:
            worst = max(diffs, key=diffs.get)
            say(
                f"{path.parent.name}: largest {diffs[worst]:.3f} ({worst}); "
                + ", ".join(f"{k} {v:.2f}" for k, v in sorted(diffs.items()))
            )
    say("")
    say("# Constant Sigma against BILBO (Fig. 4): largest |difference| of the final test ELBOs over the seeds")
    for fig in ("fig4_2d", "fig4_100d"):
        c, b = elbo(fig, "constant"), elbo(fig, "bilbo")
        say(f"{fig}: {np.abs(c - b).max():.2g} nats; the seed-to-seed sd of either: {c.std(ddof=1):.2f} nats")
    say("")
    out += more_lines()
    say("")
    claims = json.loads((RES / "verify" / "claims.json").read_text())
    rows = claims if isinstance(claims, list) else claims.get("claims", claims.get("rows", []))
    # The best-case matrix (zero Hadamard floor) carries the error-against-budget sweep; the rotated one does not.
    (eq19,) = [r for r in rows if r.get("id") == "eq19" and "budgets" in r.get("details", {})]
    det = eq19["details"]
    steps = np.diff(np.log(det["errors"])) / np.diff(np.log(det["budgets"]))
    say(
        f"# verify Eq. (19): RMS relative error {eq19['measured']:.2g} at {det['budgets'][-1]} probes, "
        f"log-log slope {det['log_log_slope']:.2f} (successive: {np.round(steps, 2).tolist()})"
    )
    return out


def more_lines() -> list[str]:
    """The comparisons whose intervals the docs quote besides the ones above (ratios, spreads, the paper's values)."""
    out: list[str] = []
    say = out.append
    pt, ts = "paired t over seeds", "t over seeds"
    grid = RES / "analysis" / "grid-2d"
    say("# The IWAE's error (exact log p(x) minus IWAE, grid-2d, 200 images) by method: constant minus learned")
    err = {
        m: [(lambda g: g["grid_log_px"] - g["iwae"])(np.load(grid / f"fig4_2d_{m}_seed{k}.npz")) for k in range(5)]
        for m in ("learned", "constant")
    }
    for k in range(5):
        r = paired_bootstrap(err["constant"][k], err["learned"][k], np.random.default_rng(0))
        say(f"seed {k}: {describe(r, 'paired bootstrap over images')}")
    r = paired_t([e.mean() for e in err["constant"]], [e.mean() for e in err["learned"]])
    say(f"over seeds: {describe(r, pt)}")
    say("")
    say("# Eq. (16) at the posterior mode minus the exact log p(x), every grid-2d model (200 images)")
    for path in sorted(grid.glob("*.npz")):
        g = np.load(path)
        if "eq16_at_mode" in g:
            r = paired_bootstrap(g["eq16_at_mode"], g["grid_log_px"], np.random.default_rng(0))
            say(f"{path.stem}: {describe(r, 'bootstrap over images')}")
    say("")
    say("# Fig. 4 analyses (all-seeds, 10,000 images): the IWAE gap over Eq. (18)'s, per-seed ratio")
    for fig in ("fig4_2d", "fig4_100d"):
        for meth in ("learned", "constant"):
            gap = per_seed("all-seeds", f"{fig}/{meth}", lambda a: mean(a, "gap_iwae_minus_elbo"))
            e18 = per_seed("all-seeds", f"{fig}/{meth}", lambda a: mean(a, "gap_eq18"))
            say(f"{fig} {meth}: {describe_ratio(ratio_t(gap, e18), 't on per-seed log ratios')}")
    say("")
    say("# Fig. 4 final test ELBO (S^2 train), mean over seeds 0-4 against the paper's single runs")
    say("(paper: learned -136.5, -135.0, -134.4 (Fig. 2); constant -134.2 (Fig. 5b); BILBO -134.3 (Fig. 5c))")
    for fig in ("fig4_2d", "fig4_100d"):
        for meth in ("learned", "constant"):
            e = elbo(fig, meth)
            r = {k: v for k, v in paired_t(e, np.zeros(len(e))).items() if k in ("mean", "lo", "hi", "n")}
            say(f"{fig} {meth}: {describe(r, ts)}")
    say("")
    say("# Fig. 6 100-D BAGGINS tau = 1/5, seed 0, 30 images: lambda = 4, 16 minus 1 (+ m log lambda), AIS vs ELBO")
    ais = RES / "analysis" / "ais-100d-fig6"
    z = {lam: np.load(ais / f"d100_baggins_lambda{lam}" / "seed0" / "ais_evidence_per_image.npz") for lam in (1, 4, 16)}
    for lam in (4, 16):
        c = M * math.log(lam)
        d_ais = z[lam]["ais_log_px"] + c - z[1]["ais_log_px"]
        d_elbo = z[lam]["elbo"] + c - z[1]["elbo"]
        zero = np.zeros(len(d_ais))
        for name, d in (("AIS log p(x)", d_ais), ("ELBO", d_elbo)):
            say(f"lambda = {lam}: {name} {describe(paired_bootstrap(d, zero, np.random.default_rng(0)), 'bootstrap')}")
        r = paired_bootstrap(d_ais, d_elbo, np.random.default_rng(0))
        say(f"lambda = {lam}: AIS minus ELBO change {describe(r, 'paired bootstrap over images')}")
        r = bootstrap_ratio(d_ais, d_elbo, np.random.default_rng(0))
        say(f"lambda = {lam}: AIS change over ELBO change {describe_ratio(r, 'paired bootstrap over images')}")
    say("")
    say("# Fig. 6 2-D, T = I across lambda (gaussian-2d, 1,000 images, seeds 0-2): per 4x in lambda")
    for a, b in ((4, 1), (16, 4)):
        f = {
            name: [per_seed("gaussian-2d", f"d2_T1_lambda{lam}", g) for lam in (a, b)]
            for name, g in (
                ("IWAE gap", lambda x: mean(x, "gap_iwae_minus_elbo")),
                ("|Eq. (16) - IWAE|", lambda x: abs(mean(x, "eq16_minus_iwae"))),
                ("Eq. (18)'s share", lambda x: mean(x, "gap_eq18") / mean(x, "gap_iwae_minus_elbo")),
            )
        }
        for name in ("IWAE gap", "|Eq. (16) - IWAE|"):
            say(f"lambda {a} over {b}: {name} x {describe_ratio(ratio_t(*f[name]), 't on per-seed log ratios')}")
        share = paired_t(*f["Eq. (18)'s share"])
        say(f"lambda {a} minus {b}: Eq. (18)'s share of the gap {describe(share, pt)}")
    say("")
    say("# Fig. 8: the cost of a mismatched sigma, sigma = c minus the worst sigma (S^2 train, seeds 0-2)")
    for c, worst in (("0p1", "10"), ("1", "10"), ("10", "0p1")):
        r = paired_t(elbo("fig8", f"c{c}_sigma{c}"), elbo("fig8", f"c{c}_sigma{worst}"))
        say(f"c = {c.replace('p', '.')}: sigma = c minus sigma = {worst.replace('p', '.')}: {describe(r, pt)}")
    say("")
    say("# Fashion-MNIST: the seed spread of the standard ELBO over BILBO's (sd ratio, 3 seeds each)")
    std = elbo("fashion_mnist", "elbo")
    for m in ("bilbo_I", "bilbo_I100"):
        say(f"sd(elbo) / sd({m}): {describe_ratio(sd_ratio_f(std, elbo('fashion_mnist', m)), 'F test')}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="also write the text to this file")
    args = ap.parse_args(argv)
    emit([f'"git_sha": "{git_sha()}" (python validation/scripts/intervals.py)', "", *lines()], args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
