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
    runs that diverged contribute the epochs they finished.
    """
    plt = P.pyplot()
    f, ax = plt.subplots(figsize=(8, 5))
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
        (line,) = ax.plot(
            epochs[ok], mean[ok], marker="." if ok.sum() <= 20 else None, label=f"{method.label} ({len(curves)} seeds)"
        )
        ax.fill_between(epochs[ok], lo[ok], hi[ok], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("epoch")
    symlog = spec.get("yscale") == "symlog"
    if symlog:
        ax.set_yscale("symlog", linthresh=100.0)
    ax.set_ylabel(
        "test ELBO, nats per image" + (" (symlog axis)" if symlog else "") + "\nmean; band: min-max over seeds"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(spec.get("title", fig.title), fontsize=9)
    f.tight_layout()
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
    (Figs. 2, 5, 9, 10, 11); ``variance``: posterior variance / s^2 against
    mean / s, the U shape of Fig. 3; ``manifold``: decoded grid over +-2 prior
    standard deviations beside the mu and z scatters (Figs. 12-15);
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
            P.label_scatter(row[0], pts, run.labels, f"{name}: {spec.get('latent', 'mu')}")
        elif kind == "variance":
            s2 = prior_var(run, "model")
            var = np.broadcast_to(run.var, run.mu.shape)
            for k, (vi, mj) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
                if max(vi, mj) >= run.mc.n:
                    continue
                row[k].scatter(run.mu[:, mj] / np.sqrt(s2[mj]), var[:, vi] / s2[vi], s=1, alpha=0.4, linewidths=0)
                row[k].set_xlabel(f"mean {mj + 1} / s", fontsize=7)
                row[k].set_ylabel(f"variance {vi + 1} / s^2", fontsize=7)
                row[k].set_title(name if k == 0 else "", fontsize=8)
        elif kind == "manifold":
            s = np.sqrt(prior_var(run, "model"))[:2]
            a = np.linspace(-2, 2, 20)
            z1, z2 = np.meshgrid(a * s[0], a[::-1] * s[1] if run.mc.n > 1 else a[::-1])
            grid = np.zeros((400, run.mc.n))
            grid[:, 0] = z1.ravel()
            if run.mc.n > 1:
                grid[:, 1] = z2.ravel()
            P.show_images(row[0], decode_images(run, grid), 20, 20, f"{name}\nmanifold over +-2 s")
            P.label_scatter(row[1], run.mu, run.labels, "mu")
            P.label_scatter(
                row[2],
                run.mu + np.sqrt(run.var) * rng.standard_normal(run.mu.shape),
                run.labels,
                "one sample z ~ q(z|x)",
            )
        elif kind == "reconstructions":
            x = run.x_test[:50] / run.cfg.scale
            rec = decode_images(run, run.mu[:50])
            pairs = np.concatenate(
                [np.stack([x[r * 10 : (r + 1) * 10], rec[r * 10 : (r + 1) * 10]]) for r in range(len(x) // 10)]
            ).reshape(-1, x.shape[1])
            P.show_images(row[0], pairs, 2 * (len(x) // 10), 10, f"{name}\ninputs (odd rows), reconstructions")
    # wrapped to the figure's width (about 14 characters of 9-point text per inch), room left for its lines
    title = P.wrap_title(spec.get("title", fig.title), max(30, int(f.get_figwidth() * 14)))
    f.suptitle(title, fontsize=9)
    f.tight_layout(rect=(0, 0, 1, 1 - (title.count("\n") + 1) * 9 * 1.4 / 72 / f.get_figheight()))
    return P.save(f, path)


def _no_model_panel(ax, title: str, info: dict) -> None:
    """The panel of a recorded run whose checkpoint is absent: it says so, and how to get the panel."""
    text = (
        f"{info.get('status', 'run')}, {info.get('epochs_done', '?')} epochs:\nmetrics recorded, no checkpoint\n"
        "this panel needs the model's parameters\n(reproduce --retrain trains it afresh)"
    )
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=7, transform=ax.transAxes)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)


def make_plots(fig: Figure, root: Path, override: list[int] | None = None, log=print) -> list[Path]:
    """Every ``[[plots]]`` entry of the config as a PNG in ``ROOT/<figure>/`` (Sec. 7, Appendix C).

    ``override`` is the ``--seeds`` override; a plot draws those of its seeds
    that were run.  A per-run PNG that exists is kept as it is (``log`` says
    so) when one of its runs is a recorded result without its checkpoint: it
    could only be redrawn with panels that say the model is missing.
    """
    out_dir = Path(root) / fig.name
    out = []
    for spec in fig.plots:
        path = out_dir / spec["file"]
        if spec["kind"] == "curves":
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
