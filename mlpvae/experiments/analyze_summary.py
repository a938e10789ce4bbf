"""The analyses of many runs: constant against learned Sigma (Eq. (22)) and the mean and spread over seeds (Secs. 4-5).

Reads the ``analysis.json`` files that :func:`mlpvae.experiments.analyze.analyze_run`
writes; not in the paper.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from mlpvae.experiments.plots import pyplot, save, set_title
from mlpvae.experiments.report import mean_std, natural_key
from vaetheory.plotting import legend_outside, math_label


def compare_runs(constant_dir, learned_dir) -> dict:
    """Eq. (22)'s predicted penalty next to the measured ELBO difference between two runs (Sec. 4.3).

    Reads both runs' ``analysis.json`` (run :func:`analyze_run` first); the
    standard errors of the differences are paired over the same test images
    when both runs' ``analysis_per_image.npz`` cover the same images.
    Reading: with the learned model's decoder, Eq. (22) predicts that the best
    constant Sigma loses ``cv2 - gap18`` nats of ELBO against its own learned
    Sigma (``gap18``: Eq. (18) with the learned Sigma), so the predicted
    ELBO(constant) - ELBO(learned) is ``gap18_learned - cv2_learned`` if both
    models had the same log p(x).  Measured: the test ELBO difference, and the
    IWAE log p(x) difference that separates how good the models are from how
    tight their bounds are.  Also, for the constant model, the measured gap
    IWAE - ELBO next to Eq. (18) with its Sigma and Eq. (22)'s minimum over
    constant Sigma.
    """
    a = json.loads((Path(constant_dir) / "analysis.json").read_text())
    b = json.loads((Path(learned_dir) / "analysis.json").read_text())
    paired = {}
    try:
        with (
            np.load(Path(constant_dir) / "analysis_per_image.npz") as pa,
            np.load(Path(learned_dir) / "analysis_per_image.npz") as pb,
        ):
            if len(pa["elbo"]) == len(pb["elbo"]):
                for key in ("elbo", "iwae_log_px"):
                    d = pa[key] - pb[key]
                    paired[f"paired_sem_{key}_difference"] = float(d.std() / math.sqrt(len(d)))
    except FileNotFoundError:
        pass
    return paired | {
        "constant_run": str(constant_dir),
        "learned_run": str(learned_dir),
        "constant_posterior": a["posterior"],
        "learned_posterior": b["posterior"],
        "measured_elbo_difference": a["elbo"]["mean"] - b["elbo"]["mean"],
        "measured_elbo_difference_sem": math.hypot(a["elbo"]["sem"], b["elbo"]["sem"]),
        "measured_log_px_difference": a["iwae_log_px"]["mean"] - b["iwae_log_px"]["mean"],
        "measured_gap_difference": a["gap_iwae_minus_elbo"]["mean"] - b["gap_iwae_minus_elbo"]["mean"],
        "predicted_elbo_difference_same_decoder": b["gap_eq18"]["mean"] - b["cv2_penalty_eq22"],
        "cv2_penalty_learned_model": b["cv2_penalty_eq22"],
        "cv2_penalty_constant_model": a["cv2_penalty_eq22"],
        "constant_model_gap_iwae": a["gap_iwae_minus_elbo"]["mean"],
        "constant_model_gap_eq18": a["gap_eq18"]["mean"],
        "learned_model_gap_iwae": b["gap_iwae_minus_elbo"]["mean"],
        "learned_model_gap_eq18": b["gap_eq18"]["mean"],
    }


# (label, value of one analysis.json) rows of the summary over seeds
SUMMARY_ROWS = (
    ("ELBO", lambda a: a["elbo"]["mean"]),
    ("IWAE log p(x)", lambda a: a["iwae_log_px"]["mean"]),
    ("measured gap log p - ELBO", lambda a: a["gap_iwae_minus_elbo"]["mean"]),
    ("Eq. (18) predicted gap", lambda a: a["gap_eq18"]["mean"]),
    ("Eq. (16) at mu", lambda a: a["log_evidence_eq16"]["mean"]),
    ("Eq. (16) - IWAE", lambda a: a["eq16_minus_iwae"]["mean"]),
    ("Eq. (22) penalty, 1/4 tr CV^2", lambda a: a["cv2_penalty_eq22"]),
    ("Eq. (6) decoder ELBO", lambda a: a["optimal_decoder_eq6"]["opt_elbo"]),
    ("network ELBO (same samples)", lambda a: a["optimal_decoder_eq6"]["net_elbo"]),
)
COMPARISON_ROWS = (
    ("measured ELBO difference", "measured_elbo_difference"),
    ("measured log p(x) difference", "measured_log_px_difference"),
    ("measured gap difference", "measured_gap_difference"),
    ("Eq. (22) predicted ELBO difference (same decoder)", "predicted_elbo_difference_same_decoder"),
)


def summarize(root) -> dict:
    """Mean and spread over seeds of every analysed run under ``root`` (Secs. 4-5 claims on trained models).

    Runs are grouped by (latent size n, posterior), and for a Gaussian-family
    likelihood also by the likelihood, its t or tau and the data scale
    lambda; every ``comparison.json`` (constant vs learned Sigma, Eq. (22)) by
    n.  Not in the paper.
    """
    groups: dict = {}
    for f in sorted(Path(root).rglob("analysis.json")):
        a = json.loads(f.read_text())
        groups.setdefault(group_key(a), []).append(a)
    if not groups:
        raise FileNotFoundError(f"no analysis.json under {root} (run `vaetheory analyze RUN_DIR` first)")
    comparisons: dict = {}
    for f in sorted(Path(root).rglob("comparison.json")):
        n = json.loads((f.parent / "analysis.json").read_text())["n"]
        comparisons.setdefault(f"n={n}, constant - learned", []).append(json.loads(f.read_text()))
    out = {"units": "nats per image", "groups": {}, "comparisons": {}}
    for key, runs in sorted(groups.items(), key=lambda kv: natural_key(kv[0])):
        out["groups"][key] = {
            "runs": [a["run"] for a in runs],
            "test_images": sorted({a["test_images"] for a in runs}),
            **{label: mean_std([get(a) for a in runs]) for label, get in SUMMARY_ROWS},
        }
    for key, comps in comparisons.items():
        out["comparisons"][key] = {label: mean_std([c[k] for c in comps]) for label, k in COMPARISON_ROWS}
    return out


def group_key(a: dict) -> str:
    """The summary group of one analysis: ``n=2, learned``; ``n=2, bilbo, baggins tau 0.2, lambda 4``."""
    key = f"n={a['n']}, {a['posterior']}"
    like = a.get("likelihood", "bernoulli")
    if like == "bernoulli":
        return key
    param = {"gaussian": "t", "baggins": "tau"}.get(like)
    key += f", {like}" + (f" {param} {a[param]:g}" if param in a else "")
    return key + (f", lambda {a['scale']:g}" if "scale" in a else "")


def summary_md(summary: dict) -> str:
    """The :func:`summarize` result as two Markdown tables, mean +- sample std over seeds (Not in the paper)."""

    def cell(d):
        return f"{d['mean']:.2f}" + (f" +- {d['std']:.2f}" if d["std"] is not None else "") + f" (n={d['n']})"

    lines = []
    for title, table, labels in (
        ("per model", summary["groups"], [r[0] for r in SUMMARY_ROWS]),
        ("constant minus learned Sigma, same seed", summary["comparisons"], [r[0] for r in COMPARISON_ROWS]),
    ):
        if not table:
            continue
        keys = list(table)
        lines += [
            f"### {title} ({summary['units']}; mean +- std over seeds)",
            "",
            "| | " + " | ".join(keys) + " |",
            "|---" * (len(keys) + 1) + "|",
        ]
        if title == "per model":
            lines.append(
                "| test images | " + " | ".join(", ".join(map(str, table[k]["test_images"])) for k in keys) + " |"
            )
        lines += [f"| {label} | " + " | ".join(cell(table[k][label]) for k in keys) + " |" for label in labels]
        lines.append("")
    return "\n".join(lines)


def summary_plot(summary: dict, path) -> Path:
    """The over-seeds summary as two scatter panels, one point per model (Eqs. (18) and (22) on trained models).

    Left: the measured gap log p(x) - ELBO against Eq. (18)'s prediction;
    right: the measured constant-minus-learned ELBO difference against Eq.
    (22)'s same-decoder prediction.  The diagonal is where prediction and
    measurement agree.  Not in the paper.
    """
    plt = pyplot()
    panels = [
        p
        for p in (
            (
                summary["groups"],
                "Eq. (18) predicted gap",
                "measured gap log p - ELBO",
                "gap log p(x) - ELBO: Eq. (18) vs IWAE (k as analysed)",
            ),
            (
                summary["comparisons"],
                "Eq. (22) predicted ELBO difference (same decoder)",
                "measured ELBO difference",
                "constant minus learned Sigma: Eq. (22) vs measured",
            ),
        )
        if p[0]
    ]  # no constant-vs-learned pairs (e.g. Gaussian-likelihood runs): one panel
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 7.0), squeeze=False)
    for ax, (table, xkey, ykey, title) in zip(axes[0], panels):
        lo, hi = np.inf, -np.inf
        for key, rows in table.items():
            x, y = np.asarray(rows[xkey]["values"]), np.asarray(rows[ykey]["values"])
            ax.scatter(x, y, label=f"{math_label(key)} ({len(x)} models)", alpha=0.8)
            lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
        if np.isfinite(lo):
            pad = 0.05 * (hi - lo) + 0.1
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.5", linewidth=1, label="prediction = measured")
            ax.axhline(0.0, color="0.8", linewidth=0.8)
            ax.axvline(0.0, color="0.8", linewidth=0.8)
        ax.set_xlabel(f"{xkey} ({summary['units']})")
        ax.set_ylabel(f"{ykey} ({summary['units']})")
        set_title(ax, title)
        legend_outside(ax, where="below", ncols=1)
    return save(fig, path)
