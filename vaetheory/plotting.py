"""The project's one plotting style and the helpers every figure of vaetheory and mlpvae uses (Not in the paper).

The style is a matplotlib style file shipped in the package, ``vaetheory.mplstyle``
(:data:`STYLE`): 11-point text, lines of 1.8 points, the Okabe-Ito colour cycle
(safe for the common colour-vision deficiencies), a light grid and constrained
layout, so that labels, colour bars and legends placed outside the axes get room.
:func:`pyplot` imports matplotlib on first use (Agg backend, no display) with the
style applied; :func:`save` writes every PNG at the one :data:`DPI`.

The helpers say what a figure of this project does: :func:`math_label` writes
the paper's symbols with matplotlib's mathtext ("Sigma" as $\\Sigma$),
:func:`legend_outside` puts a legend beside or below the axes (never over the
data), :func:`integer_ticks` keeps counts (epochs, indices) on whole numbers,
:func:`digit_legend` names the colours of a scatter coloured by class label, and
:func:`distinct_style` draws a curve identical to an earlier one dashed with
markers, so that neither hides the other.  mlpvae uses this module; it imports
nothing of the project.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

STYLE = Path(__file__).with_name("vaetheory.mplstyle")
DPI = 120
# The colours of class labels 0-9 in every latent scatter (matplotlib's tab10): ten classes have no
# colour-blind-safe palette, so a scatter always carries its digit_legend as well.
LABEL_CMAP = "tab10"

_SYMBOL = re.compile(r"\b(Sigma|sigma|lambda|tau|mu|nu)\b(\^2)?|\b([Ss])\^2\b")
_REPLACE = (("+-", "\u00b1"), ("<=", "\u2264"), (">=", "\u2265"))


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend with :data:`STYLE` applied (Not in the paper).

    Imported on the first call, so that the rest of the project needs neither
    matplotlib nor a display; every call re-applies the style, so a figure
    drawn after other code changed ``rcParams`` still looks like the others.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.style.use(STYLE)
    return plt


def save(fig, path) -> Path:
    """Write ``fig`` to ``path`` as a PNG of ``figsize * DPI`` pixels, close it, return the path (Not in the paper).

    A log axis spanning a decade or more keeps labels at its decades only.
    """
    path = Path(path)
    decade_labels(fig)
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return path


def decade_labels(fig) -> None:
    """Label each log axis of ``fig`` that spans a decade or more at its decades only (Not in the paper).

    Matplotlib labels minor ticks too when an axis spans little more than a
    decade, and those labels collide; :func:`save` calls this on every figure.
    """
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log" and np.ptp(np.log10(np.abs(axis.get_view_interval()))) >= 1:
                axis.set_minor_formatter("")


def math_label(text: str) -> str:
    """``text`` with the paper's symbols in mathtext: "Sigma" -> $\\Sigma$, "+-" -> "±" (Not in the paper).

    Whole words only (``Sigma``, ``sigma``, ``lambda``, ``tau``, ``mu``, ``nu``,
    each optionally squared, and ``S^2`` / ``s^2``); text already inside ``$...$``
    is left as it is, so the function may be applied twice.
    """
    parts = str(text).split("$")
    for i in range(0, len(parts), 2):  # even parts are outside $...$
        seg = parts[i]
        for a, b in _REPLACE:
            seg = seg.replace(a, b)
        parts[i] = _SYMBOL.sub(_to_math, seg)
    return "$".join(parts)


def _to_math(m: re.Match) -> str:
    if m.group(3):
        return f"${m.group(3)}^2$"
    return f"$\\{m.group(1)}{m.group(2) or ''}$"


def integer_ticks(axis) -> None:
    """Put the major ticks of ``axis`` (``ax.xaxis`` or ``ax.yaxis``) on whole numbers only (Not in the paper)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def legend_outside(ax, where: str = "right", **kwargs):
    """A legend of ``ax`` outside its data area, to the right or below (Not in the paper).

    ``where`` is ``"right"`` (top-aligned beside the axes) or ``"below"``
    (centred under the x label, entries in ``ncols`` columns, default 2).
    Returns the legend, or None when ``ax`` has nothing labelled.
    """
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    if where == "right":
        return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)
    if where == "below":
        kwargs.setdefault("ncols", 2)
        return ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), borderaxespad=0.0, **kwargs)
    raise ValueError(f"where must be 'right' or 'below', got {where!r}")


def digit_legend(owner, labels, name: str = "digit", **kwargs):
    """A legend naming the colour of each class label present in ``labels`` (Not in the paper).

    ``owner`` is an axes (legend beside it) or a figure (legend at its right,
    outside every panel).  The colours are those :func:`label_colours` gives
    the scatter points.  ``name`` is the legend's title ("digit" for MNIST,
    "class" for Fashion-MNIST).
    """
    plt = pyplot()
    present = sorted({int(v) for v in np.asarray(labels).ravel()})
    cmap = plt.get_cmap(LABEL_CMAP)
    handles = [plt.Line2D([], [], ls="", marker="o", ms=6, color=cmap(k % 10), label=str(k)) for k in present]
    if hasattr(owner, "get_legend_handles_labels"):  # an axes
        return owner.legend(
            handles=handles, title=name, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs
        )
    return owner.legend(handles=handles, title=name, loc="outside right upper", **kwargs)


def label_colours(labels) -> np.ndarray:
    """RGBA colours ``(N, 4)`` of class labels 0-9 in :data:`LABEL_CMAP` (Not in the paper)."""
    return pyplot().get_cmap(LABEL_CMAP)(np.asarray(labels).astype(int) % 10)


def distinct_style(index: int) -> dict:
    """Line keywords for the ``index``-th of identical curves: solid, then dashed with markers (Not in the paper).

    The later curve is drawn over the earlier one with a dashed line and open
    markers spaced along it, so that both stay visible where they coincide.
    """
    if index == 0:
        return {"linestyle": "-"}
    markers = ("o", "s", "^", "D")
    return {
        "linestyle": (0, (4, 3)),
        "marker": markers[(index - 1) % len(markers)],
        "markevery": 0.08,
        "markerfacecolor": "none",
        "zorder": 3 + index,
    }


MIN_FONT = 8.0  # points: the smallest text a figure of the project may carry


def layout_problems(fig) -> list[str]:
    """What breaks the project's style in ``fig``: unlabelled axes, legends over data, tiny text (Not in the paper).

    Draws the figure, then lists: every visible axes that shows data (lines,
    collections, patches or an image, with its axis on) and lacks an x or y
    label; every legend (of an axes or of the figure) whose box intersects the
    data area of a visible axes; every visible text smaller than
    :data:`MIN_FONT` points.  An empty list is a figure in style.
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    axes = [ax for ax in fig.axes if ax.get_visible()]
    boxes = [(ax, ax.get_window_extent(renderer)) for ax in axes if ax.axison]
    for i, ax in enumerate(axes):
        shows = ax.lines or ax.collections or ax.patches or ax.images
        if ax.axison and shows and not _is_twin(ax):
            for which, label in (("x", ax.get_xlabel()), ("y", ax.get_ylabel())):
                if not label.strip():
                    problems.append(f"axes {i} ({ax.get_title()!r}): no {which} label")
    legends = [ax.get_legend() for ax in axes if ax.get_legend() is not None] + list(fig.legends)
    for leg in legends:
        lb = leg.get_window_extent(renderer)
        for ax, box in boxes:
            if lb.overlaps(box):
                problems.append(f"legend {leg.get_title().get_text()!r} over the data of axes {ax.get_title()!r}")
    for text in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text")):
        if text.get_visible() and text.get_text().strip() and text.get_fontsize() < MIN_FONT:
            problems.append(f"text {text.get_text()[:30]!r} at {text.get_fontsize():g} pt")
    return problems


def _is_twin(ax) -> bool:
    """Whether ``ax`` shares its x axis with another axes (a twin: its x label is the other's)."""
    return len(ax.get_shared_x_axes().get_siblings(ax)) > 1
