"""log p(x) by AIS on the 100-D Gaussian-likelihood models of Figs. 6/10/11: T = I and BAGGINS across lambda (issue 27).

    python validation/scripts/ais_fig6_summary.py [--dir validation/results/analysis/ais-100d-fig6]
        [--runs validation/results/figures-local/fig6_10_11_14_15] [--out FILE]

Reads DIR/<method>/seed<s>/ais_evidence_per_image.npz and .json (written by `vaetheory analyze RUN --ais`,
the same first test images for every model, scaled by each model's lambda) and run.json (the model's
settings). Eq. (16) at the encoder's mean and Eq. (18)'s gap on the same images come from
mlpvae.evidence.laplace.laplace_evidence (the quantities `vaetheory analyze RUN` reports on more images);
they need the run's checkpoint under RUNS/<method>/seed<s>/ and are computed once into
DIR/<method>/seed<s>/laplace_per_image.npz (with the git SHA of the code that computed them), which later
calls read instead. Checkpoints are not committed, so a clean checkout reads the committed file.

Prints, per model: the mean AIS log p(x) and log p(x) + m log lambda (a factor lambda in x adds -m log lambda),
the estimator's tail (largest standard error, effective sample sizes), the BDMC sandwich width on
simulated images (for BAGGINS on its Gaussian twin, mlpvae.evidence.bdmc.gaussian_twin) and the same upper
bounds against the mixture estimator's forward run (in the per-image file, or DIR/<method>/seed<s>/
bdmc_mixture.json from validation/scripts/bdmc_mixture_width.py), each mean width with its bootstrap interval
over the simulated images, the same at T = 3,000 where DIR/<method>/seed<s>/T3000/ holds that run, and on the test
images, with paired bootstrap intervals over the images (mlpvae.experiments.intervals, 10,000 resamples,
seed 0): the IWAE's error (AIS - IWAE), the measured gap (AIS - ELBO), Eq. (18)'s prediction of that gap,
and Eq. (16) - AIS. Across lambda, per likelihood: log p(x) + m log lambda at lambda = 4 and 16 minus
lambda = 1, paired over the same images. Then every model analysed at a further seed (DIR/<method>/seed<s>/,
s > 0; its Laplace cache from RUNS/<method>/seed<s>/) in the same form, with the per-seed means of the IWAE's
error and of Eq. (18) - measured gap side by side.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from mlpvae.experiments.ais_report import width_interval
from mlpvae.experiments.intervals import describe, paired_bootstrap
from mlpvae.experiments.report import emit

ROOT = Path(__file__).resolve().parents[2]
DIR = ROOT / "validation" / "results" / "analysis" / "ais-100d-fig6"
RUNS = ROOT / "validation" / "results" / "figures-local" / "fig6_10_11_14_15"
FAMILIES = {"T = I": "d100_T1_lambda{}", "BAGGINS tau = 1/5": "d100_baggins_lambda{}"}
LAMBDAS = (1, 4, 16)
LONGER = "T3000"  # the same BDMC with three times the intermediate distributions, where it was run


def laplace_per_image(model: Path, runs: Path, images: int) -> dict:
    """Eq. (16) ``log_evidence`` and Eq. (18) ``gap_eq18`` (images,) of one model, cached in ``model``."""
    cache = model / "laplace_per_image.npz"
    if cache.exists():
        return dict(np.load(cache))
    from mlpvae.evidence.laplace import laplace_evidence, training_priors
    from mlpvae.nn.batched import encode_all
    from mlpvae.training.runs import git_sha, load_run

    run_dir = runs / model.parent.name / model.name
    if not (run_dir / "checkpoint.npz").exists():
        raise SystemExit(f"{cache} is missing and {run_dir} has no checkpoint to compute it from")
    status = json.loads((run_dir / "run.json").read_text()).get("status")
    if status != "completed":  # a run still training has a checkpoint of an earlier epoch
        raise SystemExit(f"{run_dir} is not a completed run (status {status!r}); finish its training first")
    sha = git_sha()
    run = load_run(run_dir, device="cpu", test_limit=images, float64=True)
    _, _, s2, _ = training_priors(run)
    mu, var = encode_all(run.params, run.x_test, run.mc)
    lap = laplace_evidence(run.params, run.x_test, mu, np.broadcast_to(var, mu.shape), run.mc, s2)
    out = {"log_evidence": lap["log_evidence"], "gap_eq18": lap["gap_eq18"], "git_sha": np.array(sha or "")}
    np.savez(cache, **out)
    print(f"wrote {cache}")
    return out


def width_line(w: np.ndarray) -> str:
    """Mean sandwich width with its 95% bootstrap interval over the simulated images, and its range."""
    r = width_interval(w)
    return (
        f"width {w.mean():+.3f} [{r['bdmc_width_lo']:+.3f}, {r['bdmc_width_hi']:+.3f}] on average (95%, bootstrap "
        f"over the images; from {w.min():+.3f} to {w.max():+.3f})"
    )


def width_lines(name: str, d: dict, s: dict) -> list[str]:
    """The sandwich's two width lines of one BDMC run (per-image values ``d``, its JSON ``s``)."""
    twin = f" on its Gaussian twin (t = {s['bdmc_twin_t']:.4g})" if "bdmc_twin_t" in s else ""
    labels = {
        "bdmc_width": f"{name}{twin}, {len(d.get('bdmc_width', ()))} simulated images",
        "bdmc_mixture_width": f"the same upper bounds against forward AIS from p0 = {s['init']} "
        "(the test images' estimator)",
    }
    return [f"- {label}: {width_line(d[key])}" for key, label in labels.items() if key in d]


def model_lines(name: str, d: dict, s: dict, lap: dict, scale: float, m: int, rng, longer: dict) -> list[str]:
    """One model's block of the summary; ``longer`` the T3000/ rerun's ``per`` image values and ``json`` (or empty)."""
    lp = d["ais_log_px"]
    shift = m * math.log(scale)
    L = [
        f"## {name} (lambda = {scale:g}; {len(lp)} test images; {s['chains']} chains, T = {s['steps']}, "
        f"p0 = {s['init']}; code {str(s.get('git_sha'))[:7]})",
        f"- AIS log p(x) {lp.mean():.2f}; + m log lambda: {lp.mean() + shift:.2f}; largest standard error "
        f"{d['ais_se'].max():.3f}, effective sample size {d['ais_ess'].min():.1f} to median "
        f"{np.median(d['ais_ess']):.1f} of {s['chains']}; acceptance {d['ais_accept'].mean():.2f}",
    ]
    L += width_lines("BDMC sandwich", d, s)
    if longer:
        L += width_lines(f"T = {longer['json']['steps']}, the same sandwich", longer["per"], longer["json"])
    n = len(lp)
    zero = np.zeros(n)
    rows = {
        "IWAE's error, AIS - IWAE (k = 5000)": (lp - d["iwae"], zero),
        "measured gap, AIS - ELBO": (lp - d["elbo"], zero),
        "Eq. (18)'s gap": (lap["gap_eq18"][:n], zero),
        "Eq. (18) - measured gap": (lap["gap_eq18"][:n], lp - d["elbo"]),
        "Eq. (16) at the encoder's mean - AIS": (lap["log_evidence"][:n], lp),
    }
    for label, (a, b) in rows.items():
        L.append(f"- {label}: {describe(paired_bootstrap(a, b, rng), 'paired bootstrap over images')}")
    return L


def load_model(model: Path, runs: Path) -> tuple[dict, dict, dict, dict, dict]:
    """One analysed model's per-image values, AIS JSON, run config, Eq. (16)/(18) values and T3000/ rerun."""
    d = dict(np.load(model / "ais_evidence_per_image.npz"))
    mixture = model / "bdmc_mixture.json"  # validation/scripts/bdmc_mixture_width.py, for runs analysed before
    if "bdmc_mixture_width" not in d and mixture.exists():
        d["bdmc_mixture_width"] = np.array(json.loads(mixture.read_text())["width"])
    s = json.loads((model / "ais_evidence.json").read_text())
    cfg = json.loads((model / "run.json").read_text())["config"]
    lap = laplace_per_image(model, runs, len(d["ais_log_px"]))
    longer = {}
    if (model / LONGER / "ais_evidence_per_image.npz").exists():
        longer["per"] = dict(np.load(model / LONGER / "ais_evidence_per_image.npz"))
        longer["json"] = json.loads((model / LONGER / "ais_evidence.json").read_text())
    return d, s, cfg, lap, longer


def further_seeds(a, L: list[str]) -> None:
    """The models analysed at seeds other than 0: their blocks, then per method the per-seed means side by side."""
    rng = np.random.default_rng(0)  # its own stream: seed 0's intervals above do not move when a seed is added
    for family, pattern in FAMILIES.items():
        for lam in LAMBDAS:
            method = a.dir / pattern.format(lam)
            seeds = sorted(int(p.name[4:]) for p in method.glob("seed*") if (p / "ais_evidence_per_image.npz").exists())
            if seeds == [0] or not seeds:
                continue
            means: dict[str, list[float]] = {}
            for seed in seeds:
                d, s, cfg, lap, longer = load_model(method / f"seed{seed}", a.runs)
                if seed:
                    name = f"{family}, lambda = {lam}, seed {seed}"
                    L += model_lines(name, d, s, lap, cfg["scale"], cfg["m"], rng, longer) + [""]
                lp, n = d["ais_log_px"], len(d["ais_log_px"])
                for label, v in (
                    ("AIS - IWAE", lp - d["iwae"]),
                    ("Eq. (18) - measured gap", lap["gap_eq18"][:n] - (lp - d["elbo"])),
                ):
                    means.setdefault(label, []).append(float(v.mean()))
            L.append(f"## {family}, lambda = {lam}: per-seed means over the same {n} images (seeds {seeds})")
            for label, v in means.items():
                L.append(f"- {label}: " + ", ".join(f"{x:+.3f}" for x in v))
            L.append("")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, default=DIR)
    ap.add_argument("--runs", type=Path, default=RUNS)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    L = [
        "# log p(x) by AIS, 100-D Gaussian-likelihood models of Figs. 6/10/11, seed 0 (nats per image; 95% intervals)",
        "",
    ]
    shifted: dict[str, dict[int, np.ndarray]] = {}
    for family, pattern in FAMILIES.items():
        for lam in LAMBDAS:
            model = a.dir / pattern.format(lam) / "seed0"
            if not (model / "ais_evidence_per_image.npz").exists():
                L += [f"## {family}, lambda = {lam}: not run", ""]
                continue
            d, s, cfg, lap, longer = load_model(model, a.runs)
            L += model_lines(f"{family}, lambda = {lam}", d, s, lap, cfg["scale"], cfg["m"], rng, longer) + [""]
            shifted.setdefault(family, {})[lam] = d["ais_log_px"] + cfg["m"] * math.log(cfg["scale"])
    L.append("## Across lambda: log p(x) + m log lambda minus lambda = 1's, on the same images")
    for family, by in shifted.items():
        for lam in LAMBDAS[1:]:
            if 1 in by and lam in by:
                r = paired_bootstrap(by[lam], by[1], rng)
                L.append(f"- {family}, lambda = {lam}: {describe(r, 'paired bootstrap over images')}")
    L.append("")
    further_seeds(a, L)
    emit(L[:-1] if L[-1] == "" else L, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
