"""The paper's figures for a trained model, as PNG files (Sec. 7, Figs. 2-5 and 12-15).

Every figure function takes host (NumPy) arrays, writes one PNG of a fixed
pixel size (``figsize * DPI``) and returns its path.  The panel helpers
(:func:`show_images`, :func:`label_scatter`, :func:`missing_panel`,
:func:`wrap_title`) draw into an axes of a figure another module lays out, and
:func:`save` writes every PNG of the package at the one ``DPI``.  Matplotlib is
imported on first use (:func:`pyplot`, the Agg backend), so importing this
module is cheap and needs no display.
"""

from __future__ import annotations

import csv
import math
import textwrap
from pathlib import Path

import numpy as np

DPI = 100


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, imported on the first call (Not in the paper).

    Matplotlib is optional for the rest of the package and needs no display here.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save(fig, path) -> Path:
    """Write ``fig`` to ``path`` as a PNG at :data:`DPI`, close it and return the path (Not in the paper)."""
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return path


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


def wrap_title(title: str, width: int = 45) -> str:
    """``title`` with each of its lines wrapped at ``width`` characters (Not in the paper)."""
    return "\n".join(textwrap.fill(line, width) for line in title.split("\n"))


def show_images(ax, images, rows: int, cols: int, title: str) -> None:
    """Draw ``rows x cols`` images (:func:`tile`) into ``ax``, with a small wrapped title (Not in the paper)."""
    ax.imshow(tile(images, rows, cols), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(wrap_title(title), fontsize=7)


def label_scatter(ax, pts, labels, title: str) -> None:
    """Draw the first two coordinates of ``pts (N, n)`` into ``ax``, coloured by digit label (Not in the paper).

    A 1-D latent space is drawn along the x axis.
    """
    pts = np.asarray(pts)
    y = pts[:, 1] if pts.shape[1] > 1 else np.zeros(len(pts))
    ax.scatter(pts[:, 0], y, c=np.asarray(labels), cmap="tab10", vmin=-0.5, vmax=9.5, s=1, alpha=0.6, linewidths=0)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(wrap_title(title), fontsize=7)


def missing_panel(ax, title: str) -> None:
    """Mark ``ax`` as the panel of a run without a checkpoint (Not in the paper)."""
    ax.text(0.5, 0.5, "no checkpoint\n(diverged in epoch 1?)", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)


def latent_scatter(mu, labels, path, title: str = "", size=(6.0, 6.0)) -> Path:
    """Posterior means coloured by label, Figs. 2 and 5 (and the mu / z panels of Figs. 12-15) (Sec. 7).

    ``mu (N, n)``: the first two latent dimensions are plotted (the paper's
    latent spaces are 2-D); ``labels (N,)`` digits 0-9.
    """
    plt = pyplot()
    mu = np.asarray(mu)
    fig, ax = plt.subplots(figsize=size)
    sc = ax.scatter(
        mu[:, 0],
        mu[:, 1] if mu.shape[1] > 1 else np.zeros(len(mu)),
        c=np.asarray(labels),
        cmap="tab10",
        vmin=-0.5,
        vmax=9.5,
        s=2,
        alpha=0.7,
        linewidths=0,
    )
    fig.colorbar(sc, ax=ax, ticks=range(10), label="label")
    ax.set_xlabel("dimension 1")
    ax.set_ylabel("dimension 2")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title)
    fig.tight_layout()
    return save(fig, path)


def variance_vs_mean(mu, var, path, s2=None, title: str = "", size=(8.0, 8.0)) -> Path:
    """Posterior variances against posterior means, relative to the prior scale, Fig. 3 (Sec. 7).

    Panel (i, j) plots ``var[:, i] / s2_i`` against ``mu[:, j] / s_j`` for the
    first two latent dimensions; ``s2 (n,)`` is the prior variance (1 for
    the N(0, I) prior of Eq. (1)).  A U shape in the diagonal panels is the
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
            ax.scatter(mu[:, j] / np.sqrt(s2[j]), var[:, i] / s2[i], s=2, alpha=0.5, linewidths=0)
            ax.set_xlabel(f"mean {j + 1} / s")
            ax.set_ylabel(f"variance {i + 1} / s^2")
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


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


def training_curves(runs: dict[str, str | Path], path, size=(8.0, 5.0), title: str = "") -> Path:
    """Test ELBO (nats per image) against epoch for several runs, Fig. 4 (a, b) (Sec. 7).

    ``runs`` maps a legend label to a ``metrics.csv``.  Every ``test_elbo*``
    column is drawn (floating-prior models have one per source of S^2), and the
    training objective dashed.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=size)
    for label, csv_path in runs.items():
        m = read_metrics(csv_path)
        for col in sorted(c for c in m if c.startswith("test_elbo")):
            ok = np.isfinite(m[col])  # epochs without evaluation, a diverged row
            ax.plot(m["epoch"][ok], m[col][ok], label=f"{label}: {col}")
        if "train_objective" in m:
            ok = np.isfinite(m["train_objective"])
            ax.plot(m["epoch"][ok], m["train_objective"][ok], "--", alpha=0.6, label=f"{label}: train objective")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
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
    ax.set_title(title)
    fig.tight_layout()
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


def manifold_grid(
    decode_mean, path, s=(1.0, 1.0), steps: int = 20, span: float = 2.0, title: str = "", size=(6.0, 6.0)
) -> Path:
    """The decoded latent manifold of a 2-D latent space, Figs. 12-15 (left panel) (Sec. 7).

    ``decode_mean`` maps ``z (K, 2)`` to images ``(K, 784)`` in [0, 1]; the
    grid spans ``+-span`` prior standard deviations ``s (2,)`` per dimension,
    dimension 1 across, dimension 2 up.
    """
    s = np.broadcast_to(np.asarray(s, dtype=float), (2,))
    a = np.linspace(-span, span, steps)
    z1, z2 = np.meshgrid(a * s[0], a[::-1] * s[1])
    z = np.stack([z1.ravel(), z2.ravel()], axis=1)
    return image_grid(decode_mean(z), path, steps, steps, title or f"latent manifold (+-{span} s)", size)
