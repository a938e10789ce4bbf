"""The report of ``vaetheory verify``: the console table, report.md, claims.json and the PNG plots."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from pathlib import Path

import numpy as np

from vaetheory.claims.registry import Claim

# The plots write_plots draws, in the order report.md lists them.
PLOTS = [
    "elbo_vs_log_evidence.png",
    "gap_vs_curvature.png",
    "penalty.png",
    "collapse.png",
    "estimator.png",
    "errors_vs_N.png",
]


def fmt(v: float) -> str:
    """``v`` to three significant digits, in scientific notation outside [1e-3, 1e4)."""
    if v == 0 or not np.isfinite(v):
        return f"{v:g}"
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.2e}"


# What each kind of claim is, as report.md and the terminal legend say it.
KINDS = {
    "exact": "must hold to numerical tolerance; evidence for the paper",
    "check": "a consistency check of the computation, true by construction; not evidence for the paper "
    "(a failing check means the machinery broke)",
    "approximate": "the size of the error against the order we read the paper's argument to promise",
}

# Kinds whose failure is a failure (FAILS, nonzero exit status) rather than "off".
STRICT_KINDS = ("exact", "check")


# The unit of each claim's "measured" column, read from its description in the claim modules.
UNITS = {
    "linear": "nats; the stationarity rows: absolute gradient",
    "solver": "absolute gradient",
    "gradient": "relative",
    "eq4": "relative",
    "appendix": "relative",
    "eq11": "relative",
    "eq12": "relative",
    "bound": "nats",
    "eq18": "relative, a fraction of the latent gain (nats the latent code adds over the collapsed model)",
    "eq16": "relative, a fraction of the latent gain (nats the latent code adds over the collapsed model)",
    "eq22": "absolute log ratio; log 2 = a factor of 2",
    "main": "nats per example",
    "eq25": "relative",
    "collapse": "absolute weight; the nonparametric rows: ratio",
    "eq19": "relative",
    "smoothness": "geometric mean ratio over paired data draws",
    "density": "geometric mean ratio over paired data draws",
}


def not_finite_reason(c: Claim) -> str:
    """Why ``c.measured`` is inf or nan, from the claim's details (or where to look when that says nothing)."""
    d = c.details
    if c.id == "eq22" and "measured_gap_between_variants" in d and "predicted" in d:
        gap, pred = d["measured_gap_between_variants"], d["predicted"]
        if gap <= 0:
            return (
                f"the measured penalty E[ELBO_diag] - E[ELBO_const] is {fmt(gap)} nats, not positive, "
                f"so log(predicted / measured) is undefined (predicted {fmt(pred)} nats)"
            )
        if pred <= 0:
            return f"the predicted penalty is {fmt(pred)} nats, not positive, so log(predicted / measured) is undefined"
    return "not finite: see claims.json details of this row"


def footnotes(claims: list[Claim]) -> dict[int, int]:
    """Footnote numbers (from 1) of the rows whose measured value is inf or nan, keyed by row index."""
    rows = [i for i, c in enumerate(claims) if not np.isfinite(c.measured)]
    return {i: k + 1 for k, i in enumerate(rows)}


def footnote_lines(claims: list[Claim]) -> list[str]:
    """One line per footnote marker of :func:`table`: the row and why its measured value is not finite."""
    return [
        f"[{k}] {claims[i].id} on {claims[i].problem}: measured {fmt(claims[i].measured)}: "
        f"{not_finite_reason(claims[i])}"
        for i, k in footnotes(claims).items()
    ]


def legend_lines(claims: list[Claim]) -> list[str]:
    """One line per claim id present, in table order: ``id: what measured is (unit)``."""
    descriptions: dict[str, list[str]] = {}
    for c in claims:
        seen = descriptions.setdefault(c.id, [])
        if c.description not in seen:
            seen.append(c.description)
    return [f"{i}: {'; '.join(d)} ({UNITS.get(i, 'see claims.json')})" for i, d in descriptions.items()]


def table(claims: list[Claim]) -> str:
    """The claims as a fixed-width text table (one row per claim, with its verdict).

    A measured value that is inf or nan carries a footnote marker ``[k]``; :func:`footnote_lines` says why.
    """
    head = ["claim", "equations", "problem", "measured", "threshold", "kind", "verdict"]
    notes = footnotes(claims)
    rows = [
        [
            c.id,
            " ".join(c.equations),
            c.problem,
            fmt(c.measured) + (f" [{notes[i]}]" if i in notes else ""),
            ("<= " if c.kind in STRICT_KINDS else "~ ") + fmt(c.threshold),
            c.kind,
            verdict(c),
        ]
        for i, c in enumerate(claims)
    ]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "  ".join(s.ljust(w) for s, w in zip(r, widths)).rstrip()
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def verdict(c: Claim) -> str:
    """``holds``, ``FAILS`` (an exact claim or a check) or ``off`` (an approximate claim outside its promised order)."""
    return "holds" if c.holds else ("FAILS" if c.kind in STRICT_KINDS else "off")


def legend(claims: list[Claim]) -> str:
    """The table's legend for the terminal: what each kind means, what measured is per claim id, then the
    footnotes."""
    lines = ["kind:"] + [f"  {k}: {KINDS[k]}" for k in kinds_present(claims)]
    lines += ["measured, per claim (unit):"] + ["  " + s for s in legend_lines(claims)]
    notes = footnote_lines(claims)
    if notes:
        lines += ["not finite:"] + ["  " + s for s in notes]
    return "\n".join(lines)


def kinds_present(claims: list[Claim]) -> list[str]:
    """The kinds of :data:`KINDS` that ``claims`` has, in :data:`KINDS` order."""
    present = {c.kind for c in claims}
    return [k for k in KINDS if k in present]


def summary(claims: list[Claim], seconds: float) -> str:
    """The closing line: held / failed exact claims, passed / failed checks (counted apart: they are not
    evidence), held / off approximate claims, where ``off`` is explained."""
    count = lambda kind, holds: sum(1 for c in claims if c.kind == kind and c.holds == holds)
    return (
        f"{len(claims)} claims in {seconds:.1f} s: exact {count('exact', True)} held, {count('exact', False)} failed; "
        f"checks {count('check', True)} passed, {count('check', False)} failed; "
        f"approximate {count('approximate', True)} held, {count('approximate', False)} off "
        "(off = outside the order the paper's argument promises; docs/findings.md)"
    )


def command_line(args) -> str:
    """The ``vaetheory verify`` command line that reproduces this run, every option that shapes it given."""
    parts = ["vaetheory", "verify"]
    if args.quick:
        parts.append("--quick")
    if args.claims:
        parts += ["--claims", args.claims]
    parts += ["--seed", str(args.seed), "--gtol", f"{args.gtol:g}", "--threads", str(args.threads)]
    if args.out:
        parts += ["--out", str(args.out)]
    return shlex.join(parts)


def _sweep_table(rows: list[dict], first: str) -> list[str]:
    keys = [first] + [k for k in rows[0] if k != first]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(float(r[k])) for k in keys) + " |" for r in rows]
    return lines


def report_markdown(
    claims: list[Claim], seconds: float, args, figs: dict | None = None, plots: list[str] | None = None
) -> str:
    """report.md: the command, the claims table, what each claim measures, the sweep tables, and the
    names of the plots written (``plots``)."""
    notes = footnotes(claims)
    lines = [
        "# vaetheory verify: the paper's claims at real stationary points",
        "",
        f"Command: `{command_line(args)}`; "
        f"run time {seconds:.1f} s. Exact claims must hold to numerical tolerance; approximate claims report the "
        "size of the error against the order we read the paper's argument to promise; checks are consistency "
        "checks of the computation, true by construction, and not evidence for the paper (a failing check "
        "means the machinery broke).",
        "",
        summary(claims, seconds) + ".",
        "",
        "| claim | equations | problem | measured | threshold | kind | verdict | condition |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(claims):
        v = "**FAILS**" if verdict(c) == "FAILS" else verdict(c)
        measured = fmt(c.measured) + (f" [{notes[i]}]" if i in notes else "")
        lines.append(
            f"| {c.id} | {' '.join(c.equations)} | {c.problem} | {measured} | {fmt(c.threshold)} | "
            f"{c.kind} | {v} | {c.condition} |"
        )
    if notes:
        lines += [""] + [s + "  " for s in footnote_lines(claims)]
    lines += ["", "## What each kind means", ""]
    lines += [f"- {k}: {KINDS[k]}." for k in kinds_present(claims)]
    lines += ["", "## What each claim measures (unit)", ""]
    lines += [f"- {s}." for s in legend_lines(claims)]
    figs = figs or {}
    if figs.get("sweep"):
        lines += ["", "## Errors vs manifold curvature (curve, constant Sigma, mean over data draws)", ""]
        lines += _sweep_table(figs["sweep"], "curvature")
    if figs.get("density"):
        lines += ["", "## Errors vs number of examples (curve, constant Sigma)", ""]
        lines += _sweep_table(figs["density"], "N")
    lines += [
        "",
        "Columns: `nonlinearity` = E_q|nu(z) - nu(mu) - J (z - mu)|^2 / tr(J Sigma J^T) (what Appendices A-B "
        "neglect); `eq11`, `eq12` relative residuals; `eq25` relative error of the Eq. (25) covariance; `gap18` = "
        "mean log p - ELBO (nats); `eq16` = mean |Eq. (16) - log p| (nats); penalties in nats.",
        "",
        "Plots: " + (", ".join(f"`{p}`" for p in plots) if plots else "none written"),
        "",
    ]
    return "\n".join(lines)


def write_plots(figs: dict, out: Path) -> list[str]:
    """Draw the report's figures from ``figs`` (as :func:`vaetheory.claims.runner.run_all`
    returns it) into ``out``; return the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        written.append(name)

    if figs["points"]:
        fig, ax = plt.subplots(figsize=(5.5, 5))
        for p in figs["points"]:
            ax.scatter(p["log_px"], p["elbo"], s=8, label=p["name"])
        lo = min(min(p["log_px"].min(), p["elbo"].min()) for p in figs["points"])
        hi = max(max(p["log_px"].max(), p["elbo"].max()) for p in figs["points"])
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="ELBO = log p(x)")
        ax.set_xlabel("true log p(x) (latent grid quadrature)")
        ax.set_ylabel("ELBO at the stationary point")
        ax.set_title("Eq. (18): ELBO vs log evidence, per example")
        ax.legend(fontsize=6)
        save(fig, PLOTS[0])
    if figs["sweep"]:
        rows = figs["sweep"]
        xs = [r["nonlinearity"] for r in rows]
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for key, label in (
            ("eq11", "Eq. (11) rel. residual"),
            ("eq12", "Eq. (12) rel. residual"),
            ("gap18", "log p - ELBO (nats)"),
            ("eq16", "|Eq. (16) - log p| (nats)"),
        ):
            ax.loglog(xs, [max(r[key], 1e-12) for r in rows], "o-", label=label)
        for r in rows:
            ax.annotate(f"k={r['curvature']:g}", (r["nonlinearity"], max(r["gap18"], 1e-12)), fontsize=6)
        ax.set_xlabel(
            "decoder nonlinearity over the posterior\nE|nu - local linear fit|^2 / tr(J Sigma J^T)", fontsize=8
        )
        ax.set_title("Errors vs decoder curvature\n(curve, constant Sigma, mean over data draws)", fontsize=9)
        ax.legend(fontsize=7)
        save(fig, PLOTS[1])
    if figs["penalty"]:
        fig, ax = plt.subplots(figsize=(5.5, 5))
        for p in figs["penalty"]:
            sweep = p["name"].startswith("curve-k")
            ax.scatter(p["predicted"], max(p["measured"], 1e-6), c="0.6" if sweep else "C0", s=14 if sweep else 30)
            if not sweep:
                ax.annotate(p["name"], (p["predicted"], max(p["measured"], 1e-6)), fontsize=6)
        vals = [v for p in figs["penalty"] for v in (p["predicted"], p["measured"]) if v > 0]
        lo, hi = min(vals) / 1.5, max(vals) * 1.5
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="measured = predicted")
        ax.plot([lo, hi], [lo / 2, hi / 2], "k:", lw=0.6, label="factor 2")
        ax.plot([lo, hi], [lo * 2, hi * 2], "k:", lw=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.scatter([], [], c="0.6", s=14, label="curvature sweep")
        ax.legend(fontsize=7)
        ax.set_xlabel("predicted penalty, Eq. (22)  (nats)")
        ax.set_ylabel("measured E[ELBO_diag] - E[ELBO_const]  (nats)")
        ax.set_title("Constant posterior variance penalty")
        save(fig, PLOTS[2])
    if figs["collapse"]:
        fig, axes = plt.subplots(1, len(figs["collapse"]), figsize=(5 * len(figs["collapse"]), 4), squeeze=False)
        for ax, c in zip(axes[0], figs["collapse"]):
            ax.bar(np.arange(len(c["lam"])), c["lam"], color="0.7", label="data eigenvalues")
            ax.axhline(1.0, color="r", lw=0.8, label="likelihood variance")
            if "w2s2" in c:
                ax.plot(np.arange(len(c["w2s2"])), c["w2s2"], "ko", label="linear VAE: |W_k|^2 S^2_k")
            else:
                ax.plot(np.arange(len(c["M_over_s2"])), c["M_over_s2"], "bs", label="nonparametric: E[mu_k^2]/S^2_k")
            ax.set_title(c["name"], fontsize=8)
            ax.legend(fontsize=6)
        fig.suptitle("Sec. 6: directions with variance <= 1 collapse")
        save(fig, PLOTS[3])
    if figs["estimator"]:
        e = figs["estimator"]
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.loglog(e["budgets"], e["errors"], "o-", label="Eq. (19) estimator (diagonal Sigma)")
        b = np.array(e["budgets"], float)
        ax.loglog(b, e["errors"][0] * np.sqrt(b[0] / b), "k:", label="1/sqrt(probes)")
        ax.set_xlabel("probes (matvecs)")
        ax.set_ylabel("relative error of sum log|I + S J^T J S|")
        ax.legend(fontsize=7)
        save(fig, PLOTS[4])
    if figs.get("density"):
        rows = figs["density"]
        Ns = [r["N"] for r in rows]
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for key, label in (
            ("eq11", "Eq. (11) rel. residual"),
            ("eq12", "Eq. (12) rel. residual"),
            ("eq25", "Eq. (25) rel. cov. error"),
            ("gap18", "log p - ELBO (nats)"),
            ("eq16", "|Eq. (16) - log p| (nats)"),
        ):
            ax.loglog(Ns, [max(r[key], 1e-12) for r in rows], "o-", label=label)
        ax.set_xlabel("number of examples N")
        ax.set_title("Errors vs data density (curve, constant Sigma)")
        ax.legend(fontsize=7)
        save(fig, PLOTS[5])
    return written


def write_report(out: Path, claims: list[Claim], seconds: float, args, figs: dict) -> list[str]:
    """Write claims.json, report.md and the plots into ``out`` (created); return the plots written."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "claims.json").write_text(json.dumps([asdict(c) for c in claims], indent=1) + "\n")
    written = write_plots(figs, out)
    (out / "report.md").write_text(report_markdown(claims, seconds, args, figs, written))
    return written
