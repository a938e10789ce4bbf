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
import textwrap
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
    finish(fig)
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return path


def finish(fig) -> None:
    """What :func:`save` does to every figure before writing it: :func:`decade_labels`, :func:`refit_titles`."""
    decade_labels(fig)
    refit_titles(fig)


def wrap_title(title: str, width: int = 45) -> str:
    """``title`` with each of its lines wrapped at ``width`` characters (Not in the paper)."""
    return "\n".join(textwrap.fill(line, width) for line in str(title).split("\n"))


def fit_title(fig, title: str, width_px: float, fontsize) -> str:
    """``title`` in mathtext, wrapped at the longest line length whose rendering fits ``width_px`` (Not in the paper).

    Counting characters is not enough: how wide a line renders depends on the
    font, its size and the mathtext in it, so each candidate wrap is drawn with
    ``fig``'s renderer and measured.  ``fontsize`` is anything matplotlib takes
    (points or a name such as ``"large"``).
    """
    renderer = fig.canvas.get_renderer()
    probe = fig.text(0, 0, "", fontsize=fontsize)
    try:
        for width in range(max(20, len(str(title))), 9, -2):
            text = math_label(wrap_title(title, width))
            probe.set_text(text)
            if probe.get_window_extent(renderer).width <= width_px:
                break
    finally:
        probe.remove()
    return text


def set_title(ax, title: str, fontsize=None):
    """Give ``ax`` the title ``title`` (mathtext, wrapped), refitted to its final width on save (Not in the paper).

    The width an axes gets is known only after the layout engine has run, so
    the raw title is kept on the axes and :func:`refit_titles` wraps it again
    then.
    """
    size = fontsize if fontsize is not None else pyplot().rcParams["axes.titlesize"]
    ax._vaetheory_title = (str(title), size)
    width = ax.get_position().width * ax.figure.bbox.width
    return ax.set_title(fit_title(ax.figure, title, width, size), fontsize=size)


def set_suptitle(fig, title: str):
    """Give ``fig`` the suptitle ``title`` (mathtext), wrapped to fit beside the figure's legends (Not in the paper)."""
    size = pyplot().rcParams["figure.titlesize"]
    fig._vaetheory_suptitle = (str(title), size)
    return fig.suptitle(fit_title(fig, title, 0.96 * fig.bbox.width, size), fontsize=size)


def refit_titles(fig) -> None:
    """Wrap every title set by :func:`set_title` / :func:`set_suptitle` to the width it has (Not in the paper).

    After a layout pass, an axes title gets its axes' width (or the figure's,
    whichever is smaller), and the suptitle the figure's width less that of
    the legends placed outside at the figure's right, centred over what is
    left, so that no title runs past the figure's edge or under a legend.
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    W = fig.bbox.width
    for ax in fig.axes:
        if getattr(ax, "_vaetheory_title", None) and ax.get_visible():
            title, size = ax._vaetheory_title
            width = min(ax.get_window_extent(renderer).width, 0.98 * W)
            ax.set_title(fit_title(fig, title, width, size), fontsize=size)
    if getattr(fig, "_vaetheory_suptitle", None):
        title, size = fig._vaetheory_suptitle
        right = min([lg.get_window_extent(renderer).x0 for lg in fig.legends] + [W])
        left = 0.02 * W
        right = right - 0.02 * W if right < W else 0.98 * W
        fig.suptitle(fit_title(fig, title, right - left, size), fontsize=size, x=(left + right) / 2 / W)


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
    page = fig.bbox
    titles = [ax.title for ax in axes] + ([fig._suptitle] if fig._suptitle is not None else [])
    for text in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text")):
        if not (text.get_visible() and text.get_text().strip()):
            continue
        if text.get_fontsize() < MIN_FONT:
            problems.append(f"text {text.get_text()[:30]!r} at {text.get_fontsize():g} pt")
    # Tick labels are left out: matplotlib keeps labels of ticks outside the view limits and does not draw them.
    placed = titles + list(fig.texts) + [t for leg in legends for t in [leg.get_title(), *leg.get_texts()]]
    for ax in axes:
        placed += [ax.xaxis.label, ax.yaxis.label, *ax.texts]
    for text in placed:
        if not (text.get_visible() and text.get_text().strip()):
            continue
        tb = text.get_window_extent(renderer)
        if tb.x0 < page.x0 - 1 or tb.x1 > page.x1 + 1 or tb.y0 < page.y0 - 1 or tb.y1 > page.y1 + 1:
            problems.append(f"text {text.get_text()[:30]!r} runs past the figure's edge")
    for title in titles:
        if title.get_visible() and title.get_text().strip():
            tb = title.get_window_extent(renderer)
            for leg in legends:
                if tb.overlaps(leg.get_window_extent(renderer)):
                    problems.append(f"title {title.get_text()[:30]!r} under legend {leg.get_title().get_text()!r}")
    return problems


def _is_twin(ax) -> bool:
    """Whether ``ax`` shares its x axis with another axes (a twin: its x label is the other's)."""
    return len(ax.get_shared_x_axes().get_siblings(ax)) > 1
