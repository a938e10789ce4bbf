"""The PNGs of a figure config's ``[[plots]]`` entries, drawn from the runs on disk (Sec. 7, Appendix C).

:func:`plot_curves` draws test ELBO curves over seeds (from the metrics alone),
:func:`plot_panels` one panel (or row of panels) per (method, seed) (from the
model: they need its checkpoint); :func:`make_plots` draws every entry, and
keeps a PNG it could only redraw with panels that lack their model.  Drawing
goes through :mod:`mlpvae.experiments.plots`.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from mlpvae.experiments import plots as P
from mlpvae.experiments.figure_runs import decode_images, load_run, prior_var
from mlpvae.experiments.figure_schema import Figure, Method, run_dir, seeds_of
from mlpvae.experiments.run_queue import recorded_without_checkpoint
from mlpvae.training.streams import STREAM_FIGURES


def plot_curves(fig: Figure, spec: dict, root: Path, path: Path, override: list[int] | None) -> Path:
    """Test ELBO against epoch, mean over seeds and the min-max band per method: Fig. 4 (a, b), Fig. 8 (Sec. 7).

    Floating-prior methods are drawn with S^2 from the training set (Eq. (4));
    runs that diverged contribute the epochs they finished.  A method whose
    runs equal, epoch for epoch, those of a method drawn before it (constant
    Sigma and BILBO train identically) is drawn dashed with markers over it,
    and its legend entry says so.  The legend sits beside the axes.
    """
    plt = P.pyplot()
    f, ax = plt.subplots(figsize=(11, 5))
    drawn: list[tuple[np.ndarray, str]] = []
    for name in spec.get("methods", list(fig.methods)):
        method = fig.methods[name]
        curves = []
        for seed in _spec_seeds(spec, seeds_of(fig, method, override), True):
            csv_path = run_dir(root, method, seed) / "metrics.csv"
            if not csv_path.exists():
                continue
            m = P.read_metrics(csv_path)
            col = "test_elbo" if "test_elbo" in m else "test_elbo_s2_train"
            if col in m:
                curves.append((m["epoch"], m[col]))
        if not curves:
            continue
        E = int(max(e.max() for e, _ in curves))
        grid = np.full((len(curves), E), np.nan)
        for k, (e, v) in enumerate(curves):
            grid[k, e.astype(int) - 1] = v
        epochs = np.arange(1, E + 1)
        ok = np.isfinite(grid).any(axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # epochs that no seed reached stay NaN
            mean, lo, hi = np.nanmean(grid, 0), np.nanmin(grid, 0), np.nanmax(grid, 0)
        label = f"{P.math_label(method.label)} ({len(curves)} seeds)"
        same = [d for d in drawn if d[0].shape == grid.shape and np.array_equal(d[0], grid, equal_nan=True)]
        style = P.distinct_style(len(same))
        if same:
            label += f"\nidentical, seed for seed, to {same[0][1]}:\ndrawn dashed over it"
        elif ok.sum() <= 20:
            style["marker"] = "."
        (line,) = ax.plot(epochs[ok], mean[ok], label=label, **style)
        if not same:  # an identical band would only darken the first
            ax.fill_between(epochs[ok], lo[ok], hi[ok], color=line.get_color(), alpha=0.2, linewidth=0)
        drawn.append((grid, P.math_label(method.label.split(",")[0])))  # its short name
    ax.set_xlabel("epoch")
    P.integer_ticks(ax.xaxis)
    symlog = spec.get("yscale") == "symlog"
    if symlog:
        ax.set_yscale("symlog", linthresh=100.0)
    ax.set_ylabel("test ELBO (nats per image)" + ("\nsymlog axis" if symlog else ""))
    P.legend_outside(ax, title="mean over seeds;\nband: min to max over seeds")
    P.set_title(ax, spec.get("title", fig.title))
    return P.save(f, path)


def _spec_seeds(spec: dict, seeds: list[int], every: bool) -> list[int]:
    """The plot's seeds among those run (a quick run may have fewer); default all of them or the first."""
    chosen = [s for s in spec.get("seeds", seeds if every else seeds[:1]) if s in seeds]
    return chosen or seeds[:1]


def _runs_of(fig: Figure, spec: dict, override: list[int] | None) -> list[tuple[Method, int]]:
    """The (method, seed) panels of a per-run plot: its methods (default all), each with its chosen seeds."""
    methods = [fig.methods[m] for m in spec.get("methods", list(fig.methods))]
    return [(m, s) for m in methods for s in _spec_seeds(spec, seeds_of(fig, m, override), False)]


def plot_panels(fig: Figure, spec: dict, root: Path, path: Path, override: list[int] | None) -> Path:
    """One panel (or row of panels) per (method, seed) of a per-run figure kind (Sec. 7, Appendix C).

    ``samples``: 10 x 10 decoder means of z from the prior (Figs. 4c, 6, 17);
    ``scatter``: test posterior means or one sample z coloured by label
    (Figs. 2, 5, 9, 10, 11), with one legend of the label colours beside the
    panels; ``variance``: posterior variance / s^2 against mean / s (s the
    prior standard deviation), the U shape of Fig. 3; ``manifold``: decoded
    grid over +-2 prior standard deviations beside the mu and z scatters (Figs. 12-15);
    ``reconstructions``: inputs and decoded means, alternating rows (Fig. 16).
    """
    plt = P.pyplot()
    kind = spec["kind"]
    runs = _runs_of(fig, spec, override)
    per_row = {"manifold": 3, "variance": 4}.get(kind)
    if per_row:
        nrows, ncols = len(runs), per_row
    else:
        ncols = min(len(runs), 4)
        nrows = math.ceil(len(runs) / ncols)
    side = 3.2
    f, axes = plt.subplots(nrows, ncols, figsize=(side * ncols, side * nrows + 0.4), squeeze=False)
    for a in axes.ravel():
        a.set_visible(False)
    labels_shown: list[tuple[np.ndarray, str]] = []  # the class labels of every scatter panel, for one legend
    notes: set[str] = set()  # symbols the panels use, defined once under them
    seen: list[tuple[dict, str]] = []  # (parameters, short name) of the panels drawn so far
    for i, (method, seed) in enumerate(runs):
        name = f"{method.label}, seed {seed}"
        row = axes[i] if per_row else [axes[i // ncols, i % ncols]]
        for a in row:
            a.set_visible(True)
        run = load_run(run_dir(root, method, seed))
        if run is None:
            recorded = recorded_without_checkpoint(run_dir(root, method, seed))
            if recorded is None:
                P.missing_panel(row[0], name)
            else:
                _no_model_panel(row[0], name, recorded)
            continue
        twin = next((short for params, short in seen if same_parameters(params, run.params)), None)
        seen.append((run.params, f"{method.label.split(',')[0]}, seed {seed}"))
        if twin is not None:  # two methods that train identically would look like one panel drawn twice
            name += f"\n(parameters bit for bit those of {twin})"
            notes.add("panels marked 'bit for bit' are one model trained under two names (docs/findings.md)")
        rng = np.random.default_rng([seed, STREAM_FIGURES])
        if kind == "samples":
            prior = spec.get("prior", "model")
            v = prior_var(run, prior)
            zs = np.sqrt(v) * rng.standard_normal((100, run.mc.n))
            which = "N(0, S^2) fitted, Eq. (4)" if v is run.s2_train else "N(0, I)"
            P.show_images(row[0], decode_images(run, zs), 10, 10, f"{name}\nsamples from {which}")
        elif kind == "scatter":
            pts = (
                run.mu
                if spec.get("latent", "mu") == "mu"
                else run.mu + np.sqrt(run.var) * rng.standard_normal(run.mu.shape)
            )
            latent = spec.get("latent", "mu")
            what = "posterior means" if latent == "mu" else "one sample z ~ q(z|x)"
            P.label_scatter(row[0], pts, run.labels, f"{name}: {what}", "mu" if latent == "mu" else "z")
            labels_shown.append((run.labels, run.cfg.dataset))
        elif kind == "variance":
            s2 = prior_var(run, "model")
            var = np.broadcast_to(run.var, run.mu.shape)
            for k, (vi, mj) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
                if max(vi, mj) >= run.mc.n:
                    continue
                row[k].scatter(
                    run.mu[:, mj] / np.sqrt(s2[mj]), var[:, vi] / s2[vi], s=1, alpha=0.4, linewidths=0, rasterized=True
                )
                row[k].set_xlabel(P.mean_label(mj), fontsize=9)
                row[k].set_ylabel(P.variance_label(vi), fontsize=9)
                P.set_title(row[k], name if k == 0 else "", fontsize=9)
            notes.add(P.PRIOR_SCALE_NOTE)
        elif kind == "manifold":
            s = np.sqrt(prior_var(run, "model"))[:2]
            a = np.linspace(-2, 2, 20)
            z1, z2 = np.meshgrid(a * s[0], a[::-1] * s[1] if run.mc.n > 1 else a[::-1])
            grid = np.zeros((400, run.mc.n))
            grid[:, 0] = z1.ravel()
            if run.mc.n > 1:
                grid[:, 1] = z2.ravel()
            P.show_manifold(
                row[0], decode_images(run, grid), 20, 2.0, f"{name}\ndecoded $z$, $z_k$ within \u00b12 $s_k$"
            )
            P.label_scatter(row[1], run.mu, run.labels, "posterior means", "mu")
            P.label_scatter(
                row[2],
                run.mu + np.sqrt(run.var) * rng.standard_normal(run.mu.shape),
                run.labels,
                "one sample z ~ q(z|x)",
                "z",
            )
            labels_shown.append((run.labels, run.cfg.dataset))
            notes.add("$s_k$: prior standard deviation of latent $k$")
        elif kind == "reconstructions":
            x = run.x_test[:50] / run.cfg.scale
            rec = decode_images(run, run.mu[:50])
            pairs = np.concatenate(
                [np.stack([x[r * 10 : (r + 1) * 10], rec[r * 10 : (r + 1) * 10]]) for r in range(len(x) // 10)]
            ).reshape(-1, x.shape[1])
            P.show_images(row[0], pairs, 2 * (len(x) // 10), 10, f"{name}\ninputs (odd rows), reconstructions")
    if labels_shown:  # one legend of the class colours for every scatter, outside the panels
        classes = "digit" if labels_shown[0][1] == "mnist" else "class"
        P.digit_legend(f, np.concatenate([lab for lab, _ in labels_shown]), classes)
    if notes:
        f.supxlabel("; ".join(sorted(notes)), fontsize=9)
    P.set_suptitle(f, spec.get("title", fig.title))
    return P.save(f, path)


def same_parameters(a: dict, b: dict) -> bool:
    """Whether two models' parameters are equal bit for bit (same names, shapes and values) (Not in the paper)."""

    def bits(v):
        v = np.ascontiguousarray(v)
        return v.dtype.str, v.shape, v.tobytes()

    return a.keys() == b.keys() and all(bits(a[k]) == bits(b[k]) for k in a)


def _no_model_panel(ax, title: str, info: dict) -> None:
    """The panel of a recorded run whose checkpoint is absent: it says so, and how to get the panel."""
    text = (
        f"{info.get('status', 'run')}, {info.get('epochs_done', '?')} epochs:\nmetrics recorded, no checkpoint\n"
        "this panel needs the model's parameters\n(reproduce --retrain trains it afresh)"
    )
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, transform=ax.transAxes)
    ax.set_axis_off()
    P.set_title(ax, title, fontsize=9)


def make_plots(fig: Figure, root: Path, override: list[int] | None = None, log=print) -> list[Path]:
    """Every ``[[plots]]`` entry of the config as a PNG in ``ROOT/<figure>/`` (Sec. 7, Appendix C).

    ``override`` is the ``--seeds`` override; a plot draws those of its seeds
    that were run.  A per-run PNG that exists is kept as it is (``log`` says
    so) when one of its runs is a recorded result without its checkpoint: it
    could only be redrawn with panels that say the model is missing; a
    curves PNG that exists is kept when none of its runs' metrics are on disk,
    and one that does not is not drawn.
    """
    out_dir = Path(root) / fig.name
    out = []
    for spec in fig.plots:
        path = out_dir / spec["file"]
        if spec["kind"] == "curves":
            have = [
                m
                for m in spec.get("methods", list(fig.methods))
                for s in seeds_of(fig, fig.methods[m], override)
                if (run_dir(root, fig.methods[m], s) / "metrics.csv").exists()
            ]
            if not have and path.exists():
                log(f"kept {path}: none of its runs' metrics.csv is under {root} to redraw it from")
                out.append(path)
                continue
            if not have:  # empty axes would look like a result
                log(f"not drawn {path}: none of its runs' metrics.csv is under {root}")
                continue
            out.append(plot_curves(fig, spec, root, path, override))
            continue
        lacking = [
            run_dir(root, m, s)
            for m, s in _runs_of(fig, spec, override)
            if recorded_without_checkpoint(run_dir(root, m, s)) is not None
        ]
        if lacking and path.exists():
            log(f"kept {path}: {len(lacking)} of its runs have no checkpoint ({lacking[0]}, ...) to redraw it from")
            out.append(path)
            continue
        out.append(plot_panels(fig, spec, root, path, override))
    return out
