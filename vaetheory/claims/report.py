"""The report of ``vaetheory verify``: the console table, report.md, claims.json (PNGs: ``claims.plots``)."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from pathlib import Path

import numpy as np

from vaetheory.claims.plots import write_plots
from vaetheory.claims.registry import Claim


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
    "hessian": "curvature of the summed ELBO in the coordinates (mu, log Sigma, log S^2)",
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


def not_finite(c: Claim) -> bool:
    """Whether ``c``'s measured value, or its value at the coarse quadrature order, is inf or nan."""
    return not np.isfinite(c.measured) or (c.measured_coarse is not None and not np.isfinite(c.measured_coarse))


def footnotes(claims: list[Claim]) -> dict[int, int]:
    """Footnote numbers (from 1) of the rows whose measured value (at either order) is inf or nan, by row index."""
    rows = [i for i, c in enumerate(claims) if not_finite(c)]
    return {i: k + 1 for k, i in enumerate(rows)}


def footnote_lines(claims: list[Claim]) -> list[str]:
    """One line per footnote marker of :func:`table`: the row and why its measured value is not finite."""
    out = []
    for i, k in footnotes(claims).items():
        c = claims[i]
        parts = []
        if not np.isfinite(c.measured):
            parts.append(f"measured {fmt(c.measured)}: {not_finite_reason(c)}")
        if c.measured_coarse is not None and not np.isfinite(c.measured_coarse):
            why = c.details.get("coarse_not_finite", "not finite: see claims.json details of this row")
            parts.append(f"at q {fmt(c.measured_coarse)}: {why}")
        out.append(f"[{k}] {c.id} on {c.problem}: " + "; ".join(parts))
    return out


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
    head = ["claim", "equations", "problem", "measured", "at q", "change", "threshold", "kind", "verdict"]
    notes = footnotes(claims)
    rows = [
        [
            c.id,
            " ".join(c.equations),
            c.problem,
            fmt(c.measured) + (f" [{notes[i]}]" if i in notes and not np.isfinite(c.measured) else ""),
            *coarse_columns(c, notes.get(i)),
            ("<= " if c.kind in STRICT_KINDS else "~ ") + fmt(c.threshold),
            c.kind,
            verdict(c),
        ]
        for i, c in enumerate(claims)
    ]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "  ".join(s.ljust(w) for s, w in zip(r, widths)).rstrip()
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def coarse_columns(c: Claim, note: int | None = None) -> list[str]:
    """The measured value at the coarse quadrature order q and the change to the fine order q' (``-`` for a
    claim measured at one order only)."""
    if c.measured_coarse is None:
        return ["-", "-"]
    change = c.measured - c.measured_coarse
    mark = f" [{note}]" if note is not None and not np.isfinite(c.measured_coarse) else ""
    return [fmt(c.measured_coarse) + mark, fmt(change) if np.isfinite(change) else "-"]


def verdict(c: Claim) -> str:
    """``holds``, ``FAILS`` (an exact claim or a check), ``off`` (an approximate claim outside its promised order)
    or ``unresolved`` (the verdict differs between the quadrature orders q and q')."""
    if not c.resolved:
        return "unresolved"
    return "holds" if c.holds else ("FAILS" if c.kind in STRICT_KINDS else "off")


# What the two extra columns of the table are.
ORDERS_NOTE = (
    "measured: at the finer Gauss-Hermite order q' (each stationary point solved again there, warm-started "
    "from its solution at q; n = 1: q = 24, q' = 48; n = 2: q = 12, q' = 18 per dimension); at q: the same claim "
    "at order q; change = measured - at q; a verdict that differs between the orders is unresolved, and its point "
    "is solved at q'' (96; 27) and reported at q'' against q' (each row's details name its orders)"
)


def orders_lines(rows: list[dict]) -> list[str]:
    """One line per solved point: the orders, E[ELBO] at each and its change, the quadrature error of log p(x),
    and the second-order certificate."""
    out = []
    for r in rows:
        line = (
            f"{r['name']}: orders {'/'.join(map(str, r['orders']))}, E[ELBO] {r['elbo_coarse']:.5f} -> "
            f"{r['elbo_fine']:.5f} (change {r['elbo_change']:+.2e} nats)"
        )
        if "elbo_refined" in r:
            line += f" -> {r['elbo_refined']:.5f} (point claims reported at order {r['orders'][-1]})"
        line += f", log p(x) quadrature error {fmt(r['logpx_quadrature_error'])} nats"
        if "certificate" in r:
            sym = ", ".join(r["symmetries"]) or "none"
            line += (
                f"; {r['certificate']}: Hessian eigenvalues in [{fmt(r['bottom'])}, {fmt(r['top'])}] "
                f"off the symmetries ({sym}; zero there)"
            )
        out.append(line)
    return out


def legend(claims: list[Claim]) -> str:
    """The table's legend for the terminal: what each kind means, what measured is per claim id, then the
    footnotes."""
    lines = ["kind:"] + [f"  {k}: {KINDS[k]}" for k in kinds_present(claims)]
    if any(c.measured_coarse is not None for c in claims):
        lines += ["columns:", "  " + ORDERS_NOTE]
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
    count = lambda kind, holds: sum(1 for c in claims if c.kind == kind and c.resolved and c.holds == holds)
    unresolved = sum(1 for c in claims if not c.resolved)
    return (
        f"{len(claims)} claims in {seconds:.1f} s: exact {count('exact', True)} held, {count('exact', False)} failed; "
        f"checks {count('check', True)} passed, {count('check', False)} failed; "
        f"approximate {count('approximate', True)} held, {count('approximate', False)} off; "
        f"{unresolved} unresolved "
        "(off = outside the order the paper's argument promises; unresolved = the verdict differs between "
        "quadrature orders q and q', or a confidence interval over data draws straddles the threshold; "
        "docs/findings.md)"
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
        ORDERS_NOTE + ".",
        "",
        "| claim | equations | problem | measured | at q | change | threshold | kind | verdict | condition |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(claims):
        v = f"**{verdict(c)}**" if verdict(c) in ("FAILS", "unresolved") else verdict(c)
        measured = fmt(c.measured) + (f" [{notes[i]}]" if i in notes and not np.isfinite(c.measured) else "")
        at_q, change = coarse_columns(c, notes.get(i))
        lines.append(
            f"| {c.id} | {' '.join(c.equations)} | {c.problem} | {measured} | {at_q} | {change} | {fmt(c.threshold)} | "
            f"{c.kind} | {v} | {c.condition} |"
        )
    if notes:
        lines += [""] + [s + "  " for s in footnote_lines(claims)]
    lines += ["", "## What each kind means", ""]
    lines += [f"- {k}: {KINDS[k]}." for k in kinds_present(claims)]
    lines += ["", "## What each claim measures (unit)", ""]
    lines += [f"- {s}." for s in legend_lines(claims)]
    figs = figs or {}
    if figs.get("orders"):
        lines += ["", "## Each solved point: quadrature convergence and the second-order certificate", ""]
        lines += [f"- {s}" for s in orders_lines(figs["orders"])]
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


def write_report(out: Path, claims: list[Claim], seconds: float, args, figs: dict) -> list[str]:
    """Write claims.json, report.md and the plots into ``out`` (created); return the plots written."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "claims.json").write_text(json.dumps([asdict(c) for c in claims], indent=1) + "\n")
    written = write_plots(figs, out)
    (out / "report.md").write_text(report_markdown(claims, seconds, args, figs, written))
    return written
