"""The figures of ``vaetheory verify``, drawn in the project's style (:mod:`vaetheory.plotting`).

Each function draws one PNG from the figure data :func:`vaetheory.claims.runner.run_all`
returns (``figs``): every axis labelled with its unit, legends beside or below
the axes, the paper's symbols in mathtext.  :func:`write_plots` draws those the
data allows and returns the names written, in the order of :data:`PLOTS`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaetheory.plotting import integer_ticks, legend_outside, pyplot, save, set_suptitle, set_title

# The plots write_plots draws, in the order report.md lists them.
PLOTS = [
    "elbo_vs_log_evidence.png",
    "gap_vs_curvature.png",
    "penalty.png",
    "collapse.png",
    "estimator.png",
    "errors_vs_N.png",
]
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
TINY = 1e-12  # floor of values drawn on a log axis (an exact zero has no place there)


def elbo_vs_log_evidence(points: list[dict], path: Path) -> Path:
    """Eq. (18): the ELBO at each stationary point against the true log p(x), one point per example.

    ``points``: dicts with ``name`` ("problem [variant]"), ``log_px`` and ``elbo``
    (nats).  A problem keeps its colour; the variant (diagonal or constant
    Sigma) is the marker.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    problems = list(dict.fromkeys(p["name"].split(" [")[0] for p in points))
    for p in points:
        base, _, variant = p["name"].partition(" [")
        diag = variant.startswith("diagonal")
        ax.scatter(
            p["log_px"],
            p["elbo"],
            s=12,
            marker="o" if diag else "x",
            color=f"C{problems.index(base) % 8}",
            linewidths=1 if not diag else 0,
            label=f"{base}, {'diagonal' if diag else 'constant'} $\\Sigma$",
        )
    lo = min(min(p["log_px"].min(), p["elbo"].min()) for p in points)
    hi = max(max(p["log_px"].max(), p["elbo"].max()) for p in points)
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="ELBO = $\\log p(x)$")
    ax.set_xlabel("true $\\log p(x)$, latent grid quadrature (nats)")
    ax.set_ylabel("ELBO at the stationary point (nats)")
    set_title(ax, "Eq. (18): ELBO against log evidence, per example")
    legend_outside(ax, markerscale=1.5)
    return save(fig, path)


def gap_vs_curvature(rows: list[dict], path: Path) -> Path:
    """Errors of Eqs. (11), (12), (16), (18) against the decoder's nonlinearity (the curvature sweep).

    ``rows``: dicts with ``curvature``, ``nonlinearity``, ``eq11``, ``eq12``,
    ``gap18`` and ``eq16``.  The curvature of each point is named in the
    legend's title, left to right, instead of beside the points.
    """
    plt = pyplot()
    rows = sorted(rows, key=lambda r: r["nonlinearity"])
    xs = [r["nonlinearity"] for r in rows]
    fig, ax = plt.subplots(figsize=(9.5, 5))
    for i, (key, label) in enumerate(
        (
            ("eq11", "Eq. (11) relative residual"),
            ("eq12", "Eq. (12) relative residual"),
            ("gap18", "$\\log p(x)$ - ELBO (nats)"),
            ("eq16", "|Eq. (16) - $\\log p(x)$| (nats)"),
        )
    ):
        ax.loglog(xs, [max(r[key], TINY) for r in rows], marker=MARKERS[i], label=label)
    ax.set_xlabel(
        "decoder nonlinearity over the posterior (dimensionless)\n"
        "$E\\,|\\nu - $local linear fit$|^2 \\,/\\, \\mathrm{tr}(J \\Sigma J^T)$"
    )
    ax.set_ylabel("error (relative, or nats)")
    set_title(ax, "Errors against decoder curvature\n(curve problem, constant $\\Sigma$, mean over data draws)")
    ks = ", ".join(f"{r['curvature']:g}" for r in rows)
    legend_outside(ax, title=f"points, left to right:\ncurvature k = {ks}")
    return save(fig, path)


def penalty(points: list[dict], path: Path) -> Path:
    """Eq. (22): the measured constant-variance penalty against its prediction, on log axes.

    ``points``: dicts with ``name``, ``predicted`` and ``measured`` (nats).  Each
    default problem has its own marker and legend entry; the curvature sweep's
    problems (names starting ``curve-k``) are grey.  A measured penalty that is
    not positive is drawn at 1e-6 nats.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    named = [p for p in points if not p["name"].startswith("curve-k")]
    sweep = [p for p in points if p["name"].startswith("curve-k")]
    if sweep:
        ax.scatter(
            [p["predicted"] for p in sweep],
            [max(p["measured"], 1e-6) for p in sweep],
            c="0.6",
            s=16,
            label="curvature sweep (curve problem)"
            + (" (measured $\\leq$ 0: drawn at $10^{-6}$)" if any(p["measured"] <= 0 for p in sweep) else ""),
        )
    for i, p in enumerate(named):
        note = " (measured $\\leq$ 0: drawn at $10^{-6}$)" if p["measured"] <= 0 else ""
        ax.scatter(
            p["predicted"],
            max(p["measured"], 1e-6),
            s=40,
            marker=MARKERS[i % 8],
            color=f"C{i % 8}",
            label=p["name"] + note,
            zorder=3,
        )
    vals = [v for p in points for v in (p["predicted"], p["measured"]) if v > 0]
    lo, hi = min(vals) / 1.5, max(vals) * 1.5
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="measured = predicted")
    ax.plot([lo, hi], [lo / 2, hi / 2], "k:", lw=1, label="measured = predicted x 2 or / 2")
    ax.plot([lo, hi], [lo * 2, hi * 2], "k:", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted penalty, Eq. (22) (nats)")
    ax.set_ylabel("measured $E[$ELBO$_{diag}] - E[$ELBO$_{const}]$ (nats)")
    set_title(ax, "Constant posterior variance penalty, Eq. (22)")
    legend_outside(ax)
    return save(fig, path)


def collapse(panels: list[dict], path: Path) -> Path:
    """Sec. 6: the data's principal variances against what each model keeps along them, one panel per model.

    ``panels``: dicts with ``name``, ``lam`` (the data covariance's eigenvalues,
    largest first) and either ``w2s2`` (linear VAE: the variance
    ``|W_k|^2 S^2_k`` its decoder puts along direction ``k``, same units) or
    ``M_over_s2`` (nonparametric: ``E[mu_k^2] / S^2_k``, the fraction of the
    prior variance the posterior means carry, drawn on its own axis at right).
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 5.2), squeeze=False)
    for ax, c in zip(axes[0], panels):
        k = np.arange(1, len(c["lam"]) + 1)
        ax.bar(k, c["lam"], color="0.75", label="data variance $\\lambda_k$ (eigenvalue)")
        ax.axhline(1.0, color="C1", lw=1.5, ls="--", label="likelihood variance (1)")
        handles, labels = ax.get_legend_handles_labels()
        if "w2s2" in c:
            (h,) = ax.plot(k[: len(c["w2s2"])], c["w2s2"], "o", color="C0", ms=8, label="linear VAE: $|W_k|^2 S^2_k$")
            handles.append(h)
        else:
            tw = ax.twinx()
            tw.grid(False)
            (h,) = tw.plot(
                k[: len(c["M_over_s2"])],
                c["M_over_s2"],
                "s",
                color="C2",
                ms=8,
                label="nonparametric: $E[\\mu_k^2] / S^2_k$ (right axis)",
            )
            tw.set_ylim(0, 1.05)
            tw.set_ylabel("$E[\\mu_k^2] / S^2_k$ (fraction; 0: collapsed)")
            handles.append(h)
        ax.set_xlabel("principal direction $k$ of the data (largest variance first)")
        ax.set_ylabel("variance along direction $k$ (squared data units)")
        integer_ticks(ax.xaxis)
        ax.set_xticks(k)
        set_title(ax, c["name"])
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=1)
    set_suptitle(fig, "Sec. 6: directions whose data variance is at most the likelihood variance collapse")
    return save(fig, path)


def estimator(e: dict, path: Path) -> Path:
    """Eq. (19): the relative error of the trace estimator against its budget of probes.

    ``e``: ``budgets`` (probes) and ``errors`` (RMS relative error over runs).
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.2))
    ax.loglog(e["budgets"], e["errors"], "o-", label="Eq. (19) estimator, diagonal $\\Sigma$")
    b = np.array(e["budgets"], float)
    ax.loglog(b, e["errors"][0] * np.sqrt(b[0] / b), "k:", label="slope of $1/\\sqrt{\\mathrm{probes}}$")
    ax.set_xlabel("probes (matrix-vector products)")
    ax.set_ylabel("RMS relative error of $\\sum_i \\log|I + S J_i^T J_i S|$")
    set_title(ax, "Eq. (19): trace estimator of the log-determinant")
    legend_outside(ax, where="below", ncols=1)
    return save(fig, path)


def errors_vs_n(rows: list[dict], path: Path) -> Path:
    """Errors of Eqs. (11), (12), (25), (16), (18) against the number of examples (the density sweep).

    ``rows``: dicts with ``N``, ``eq11``, ``eq12``, ``eq25``, ``gap18`` and ``eq16``.
    """
    plt = pyplot()
    Ns = [r["N"] for r in rows]
    fig, ax = plt.subplots(figsize=(9.5, 5))
    for i, (key, label) in enumerate(
        (
            ("eq11", "Eq. (11) relative residual"),
            ("eq12", "Eq. (12) relative residual"),
            ("eq25", "Eq. (25) relative covariance error"),
            ("gap18", "$\\log p(x)$ - ELBO (nats)"),
            ("eq16", "|Eq. (16) - $\\log p(x)$| (nats)"),
        )
    ):
        ax.loglog(Ns, [max(r[key], TINY) for r in rows], marker=MARKERS[i], label=label)
    ax.set_xlabel("number of examples $N$")
    ax.set_xticks(Ns, [str(n) for n in Ns])
    ax.xaxis.set_minor_formatter("")
    ax.set_ylabel("error (relative, or nats)")
    set_title(ax, "Errors against data density\n(curve problem, constant $\\Sigma$)")
    legend_outside(ax)
    return save(fig, path)


def write_plots(figs: dict, out: Path) -> list[str]:
    """Draw the report's figures from ``figs`` (as :func:`vaetheory.claims.runner.run_all`
    returns it) into ``out``; return the file names, in the order of :data:`PLOTS`."""
    out = Path(out)
    draw = (
        (figs.get("points"), elbo_vs_log_evidence),
        (figs.get("sweep"), gap_vs_curvature),
        (figs.get("penalty"), penalty),
        (figs.get("collapse"), collapse),
        (figs.get("estimator"), estimator),
        (figs.get("density"), errors_vs_n),
    )
    written = []
    for name, (data, function) in zip(PLOTS, draw):
        if data:
            function(data, out / name)
            written.append(name)
    return written
