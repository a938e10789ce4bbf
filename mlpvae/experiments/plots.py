"""The paper's figures for a trained model, as PNG files (Sec. 7, Figs. 2-5 and 12-15).

Every figure function takes host (NumPy) arrays, writes one PNG of a fixed
pixel size (``figsize * DPI``) and returns its path.  The panel helpers
(:func:`show_images`, :func:`label_scatter`, :func:`missing_panel`,
:func:`vaetheory.plotting.set_title`) draw into an axes of a figure another module lays out.
Style, ``DPI``, :func:`pyplot` and :func:`save` are the project's one plotting
style, :mod:`vaetheory.plotting`: matplotlib is imported on first use (the Agg
backend), so importing this module is cheap and needs no display.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from vaetheory.plotting import (
    DPI,
    digit_legend,
    distinct_style,
    integer_ticks,
    label_colours,
    legend_outside,
    math_label,
    pyplot,
    save,
    set_suptitle,
    set_title,
)

__all__ = ["DPI", "pyplot", "save"]  # the style's lazy pyplot and saver, used by every figure module here


def tile(images, rows: int, cols: int) -> np.ndarray:
    """The first ``rows * cols`` square images ``(K, side^2)`` tiled into one array (Not in the paper).

    The result is ``(rows * side, cols * side)``, clipped to [0, 1].  Row-major:
    image ``k`` is at row ``k // cols``, column ``k % cols``; cells without an
    image stay 1.
    """
    images = np.clip(np.asarray(images, dtype=float)[: rows * cols], 0, 1)
    side = math.isqrt(images.shape[1])
    if side * side != images.shape[1]:
        raise ValueError(f"images must be square (m = side^2, 784 for MNIST), got m = {images.shape[1]}")
    images = images.reshape(-1, side, side)
    canvas = np.ones((rows * side, cols * side))
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        canvas[r * side : (r + 1) * side, c * side : (c + 1) * side] = im
    return canvas


def show_images(ax, images, rows: int, cols: int, title: str) -> None:
    """Draw ``rows x cols`` images (:func:`tile`) into ``ax``, with a wrapped title (Not in the paper)."""
    ax.imshow(tile(images, rows, cols), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    set_title(ax, title, fontsize=9)


def label_scatter(ax, pts, labels, title: str, latent: str = "z") -> None:
    """Draw the first two coordinates of ``pts (N, n)`` into ``ax``, coloured by class label (Not in the paper).

    The axes are labelled ``latent``'s first two coordinates in mathtext
    (``"z"``: $z_1$, $z_2$; ``"mu"``: $\\mu_1$, $\\mu_2$), in the latent space's
    own units; a 1-D latent space is drawn along the x axis.  The colours are
    :func:`vaetheory.plotting.label_colours`'; the figure names them with
    :func:`vaetheory.plotting.digit_legend`.
    """
    pts = np.asarray(pts)
    y = pts[:, 1] if pts.shape[1] > 1 else np.zeros(len(pts))
    ax.scatter(pts[:, 0], y, c=label_colours(labels), s=1, alpha=0.6, linewidths=0, rasterized=True)
    ax.set_aspect("equal", adjustable="datalim")
    sym = "\\mu" if latent == "mu" else latent
    ax.set_xlabel(f"${sym}_1$")
    ax.set_ylabel(f"${sym}_2$" if pts.shape[1] > 1 else "(1-D latent)")
    set_title(ax, title, fontsize=9)


def missing_panel(ax, title: str) -> None:
    """Mark ``ax`` as the panel of a run without a checkpoint (Not in the paper)."""
    ax.text(0.5, 0.5, "no checkpoint\n(diverged in epoch 1?)", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    set_title(ax, title, fontsize=9)


def latent_scatter(mu, labels, path, title: str = "", size=(6.0, 5.0), latent: str = "mu", name: str = "digit") -> Path:
    """Posterior means coloured by label, Figs. 2 and 5 (and the mu / z panels of Figs. 12-15) (Sec. 7).

    ``mu (N, n)``: the first two latent dimensions are plotted (the paper's
    latent spaces are 2-D), labelled $\\mu_1$, $\\mu_2$ (``latent="z"``: $z_1$,
    $z_2$ for a sample); ``labels (N,)`` classes 0-9, named in a legend
    beside the axes titled ``name``.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=size)
    label_scatter(ax, mu, labels, title, latent)
    set_title(ax, title)
    digit_legend(ax, labels, name, markerscale=1.2)
    return save(fig, path)


def variance_vs_mean(mu, var, path, s2=None, title: str = "", size=(8.0, 8.0)) -> Path:
    """Posterior variances against posterior means, relative to the prior scale, Fig. 3 (Sec. 7).

    Panel (i, j) plots ``var[:, i] / s2_i`` against ``mu[:, j] / s_j`` for the
    first two latent dimensions; ``s2 (n,)`` is the prior variance (1 for
    the N(0, I) prior of Eq. (1)) and ``s_j`` its square root, the prior
    standard deviation.  A U shape in the diagonal panels is the
    "inflated variances at the fringes" of Sec. 4.3.
    """
    plt = pyplot()
    mu, var = np.asarray(mu), np.asarray(var)
    if var.ndim == 1:
        var = np.broadcast_to(var, mu.shape)
    k = min(2, mu.shape[1])
    s2 = np.ones(mu.shape[1]) if s2 is None else np.broadcast_to(np.asarray(s2, dtype=float), (mu.shape[1],))
    fig, axes = plt.subplots(k, k, figsize=size, squeeze=False)
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            ax.scatter(mu[:, j] / np.sqrt(s2[j]), var[:, i] / s2[i], s=2, alpha=0.5, linewidths=0, rasterized=True)
            ax.set_xlabel(mean_label(j))
            ax.set_ylabel(variance_label(i))
    set_suptitle(fig, (title + "\n" if title else "") + PRIOR_SCALE_NOTE)
    return save(fig, path)


PRIOR_SCALE_NOTE = "$s_k$: prior standard deviation of latent $k$ (1 for N(0, I); Eq. (4)'s fitted $S_k$ otherwise)"


def mean_label(j: int) -> str:
    """The x label of a variance-against-mean panel: posterior mean of latent ``j`` (from 0) over the prior scale."""
    return f"posterior mean $\\mu_{j + 1} / s_{j + 1}$"


def variance_label(i: int) -> str:
    """The y label of a variance-against-mean panel: posterior variance of latent ``i`` (from 0) over the prior's."""
    return f"posterior variance $\\sigma^2_{i + 1} / s^2_{i + 1}$"


def read_metrics(path) -> dict[str, np.ndarray]:
    """Columns of a ``metrics.csv`` as float arrays (empty cells are NaN) (Not in the paper)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cols = rows[0].keys() if rows else []
    out = {}
    for c in cols:
        try:
            out[c] = np.array([float(r[c]) if r[c] != "" else np.nan for r in rows])
        except ValueError:
            continue  # text columns (status)
    return out


COLUMN_NAMES = {
    "test_elbo": "test ELBO",
    "test_elbo_s2_train": "test ELBO, $S^2$ of the training set",
    "test_elbo_s2_test": "test ELBO, $S^2$ of the test set",
}


def training_curves(runs: dict[str, str | Path], path, size=(10.0, 5.0), title: str = "") -> Path:
    """Test ELBO (nats per image) against epoch for several runs, Fig. 4 (a, b) (Sec. 7).

    ``runs`` maps a legend label to a ``metrics.csv``.  Every ``test_elbo*``
    column is drawn (floating-prior models have one per source of S^2), and the
    training objective dashed, in the run's colour.  A curve equal to one
    drawn before it is drawn dashed with markers over it and its legend entry
    says so.  The legend sits beside the axes.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=size)
    drawn: list[tuple[np.ndarray, np.ndarray, str]] = []
    for r, (label, csv_path) in enumerate(runs.items()):
        m = read_metrics(csv_path)
        colour = f"C{r % 8}"
        for col in sorted(c for c in m if c.startswith("test_elbo")):
            ok = np.isfinite(m[col])  # epochs without evaluation, a diverged row
            x, y = m["epoch"][ok], m[col][ok]
            name = f"{math_label(label)}: {COLUMN_NAMES.get(col, col)}"
            same = [d for d in drawn if np.array_equal(d[0], x) and np.array_equal(d[1], y)]
            style = distinct_style(len(same))
            if same:
                name += f"\n(identical to {same[0][2]}, drawn dashed)"
            ax.plot(x, y, color=colour, label=name, **style)
            drawn.append((x, y, name.split("\n")[0]))
        if "train_objective" in m:
            ok = np.isfinite(m["train_objective"])
            ax.plot(
                m["epoch"][ok],
                m["train_objective"][ok],
                ":",
                color=colour,
                alpha=0.7,
                label=f"{math_label(label)}: training objective",
            )
    ax.set_xlabel("epoch")
    integer_ticks(ax.xaxis)
    ax.set_ylabel("nats per image")
    legend_outside(ax)
    set_title(ax, title)
    return save(fig, path)


def image_grid(images, path, rows: int = 10, cols: int = 10, title: str = "", size=(6.0, 6.0)) -> Path:
    """A grid of square images: generative samples, Fig. 4c, or reconstructions, Fig. 16 (Sec. 7).

    Images are 28 x 28 for MNIST.

    ``images (K, 784)`` with values in [0, 1] (decoder means / Bernoulli
    probabilities); values outside are clipped for display.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=size)
    ax.imshow(tile(images, rows, cols), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    set_title(ax, title)
    return save(fig, path)


def reconstruction_grid(x, x_hat, path, count: int = 50, cols: int = 10, title: str = "", size=(6.0, 6.0)) -> Path:
    """Inputs and their reconstructions in alternating rows, Fig. 16 (and Fig. 7 a-d) (Sec. 7)."""
    count = min(count, len(x)) // cols * cols
    rows = count // cols
    pairs = np.empty((2 * count, np.asarray(x).shape[1]))
    for r in range(rows):
        pairs[2 * r * cols : (2 * r + 1) * cols] = np.asarray(x)[r * cols : (r + 1) * cols]
        pairs[(2 * r + 1) * cols : (2 * r + 2) * cols] = np.asarray(x_hat)[r * cols : (r + 1) * cols]
    return image_grid(pairs, path, 2 * rows, cols, title or "inputs (odd rows) and reconstructions (even rows)", size)


def show_manifold(ax, images, steps: int, span: float, title: str) -> None:
    """Draw a ``steps x steps`` decoded grid into ``ax`` with its latent coordinates on the axes (Not in the paper).

    The axes run over $z_k / s_k$ from ``-span`` to ``+span``: latent
    coordinate ``k`` in units of the prior standard deviation $s_k$.
    """
    half = span * (1 + 1 / (steps - 1)) if steps > 1 else span  # image edges half a cell beyond the outer centres
    ax.imshow(
        tile(images, steps, steps),
        cmap="gray_r",
        vmin=0,
        vmax=1,
        interpolation="antialiased",
        extent=(-half, half, -half, half),
    )
    ax.grid(False)
    ax.set_xlabel("$z_1 / s_1$")
    ax.set_ylabel("$z_2 / s_2$")
    set_title(ax, title, fontsize=9)


def manifold_grid(
    decode_mean, path, s=(1.0, 1.0), steps: int = 20, span: float = 2.0, title: str = "", size=(6.0, 6.4)
) -> Path:
    """The decoded latent manifold of a 2-D latent space, Figs. 12-15 (left panel) (Sec. 7).

    ``decode_mean`` maps ``z (K, 2)`` to images ``(K, 784)`` in [0, 1]; the
    grid spans ``+-span`` prior standard deviations ``s (2,)`` per dimension,
    dimension 1 across, dimension 2 up; the axes say so ($z_k / s_k$).
    """
    s = np.broadcast_to(np.asarray(s, dtype=float), (2,))
    a = np.linspace(-span, span, steps)
    z1, z2 = np.meshgrid(a * s[0], a[::-1] * s[1])
    z = np.stack([z1.ravel(), z2.ravel()], axis=1)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=size)
    show_manifold(ax, decode_mean(z), steps, span, title or f"decoded manifold, $z_k$ within \u00b1{span:g} $s_k$")
    fig.supxlabel("$s_k$: prior standard deviation of latent $k$", fontsize=9)
    return save(fig, path)


def analysis_evidence(lp, log_evidence, gap_iwae, gap_eq18, cv_terms, res: dict, path, size=(16.0, 6.0)) -> Path:
    """``vaetheory analyze``'s three panels per test image: Eqs. (16), (18) and (22) on a trained model (Sec. 4).

    ``lp (N,)`` the IWAE log p(x) with ``res["iwae_k"]`` samples,
    ``log_evidence (N,)`` Eq. (16) at the posterior mean, ``gap_iwae (N,)``
    log p(x) - ELBO, ``gap_eq18 (N,)`` Eq. (18)'s gap, ``cv_terms (N,)`` the
    terms of Eq. (22) (mean ``res["cv2_penalty_eq22"]``); all in nats per image.
    """
    plt = pyplot()
    fig, ax = plt.subplots(1, 3, figsize=size)
    ax[0].scatter(lp, log_evidence, s=3, alpha=0.5, rasterized=True)
    lo, hi = float(min(lp.min(), log_evidence.min())), float(max(lp.max(), log_evidence.max()))
    ax[0].plot([lo, hi], [lo, hi], "k--", lw=1, label="equal")
    ax[0].set(
        xlabel=f"$\\log p(x)$, IWAE k = {res['iwae_k']} (nats per image)",
        ylabel="log evidence, Eq. (16) at $\\mu$ (nats per image)",
        title="Eq. (16) against importance sampling",
    )
    legend_outside(ax[0], where="below", ncols=1)
    ax[1].hist(gap_iwae, bins=60, alpha=0.6, label="$\\log p(x)$ - ELBO (IWAE)")
    ax[1].hist(gap_eq18, bins=60, alpha=0.6, label="Eq. (18), own $\\Sigma$")
    ax[1].set(xlabel="gap (nats per image)", ylabel="test images", title="the ELBO gap per image")
    legend_outside(ax[1], where="below", ncols=1)
    # The terms are heavy-tailed (most images in the first bin, a few tens of nats out): counts on a log
    # axis keep the tail visible.
    ax[2].hist(cv_terms, bins=60)
    ax[2].set_yscale("log")
    ax[2].set(
        xlabel="$\\frac{1}{4}\\,\\mathrm{tr}((P_x \\bar{P}^{-1} - I)^2)$ (nats per image)",
        ylabel="test images (log scale)",
        title=f"Eq. (22) terms, mean {res['cv2_penalty_eq22']:.3f} nats",
    )
    return save(fig, path)
