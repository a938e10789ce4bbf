"""``vaetheory reproduce CONFIG``: every run of one paper figure, its PNGs and its summary (Sec. 7, Appendix C).

A figure config (``validation/figures/*.toml``) is data; unknown keys are errors::

    title = "Fig. 4 (2-D): ..."          # what the figure shows
    paper = "Sec. 7.1, Fig. 4 (a, c)"    # where it is in the paper
    seeds = [0, 1, 2, 3, 4]              # one training run per (method, seed)
    note = "..."                         # optional: what we changed and why

    [defaults]                           # mlpvae.training.config.TrainConfig keys shared by every method
    dataset = "mnist"
    n = 2

    [methods.learned]                    # TrainConfig keys of this method, plus
    label = "learned Sigma, Eq. (1)"     #   legend text
    paper = "-136.5 / -135.0 / -134.4"   #   the paper's number, quoted in summary.md
    posterior = "learned"

    [methods.learned_fig4]
    shared = "fig4_2d.learned"           # the runs of method `learned` of fig4_2d.toml, in that
                                         # figure's folder: trained once, used by both figures

    [[plots]]
    kind = "curves"                      # curves | samples | scatter | variance | manifold | reconstructions
    file = "fig4a_test_elbo.png"
    methods = ["learned", "bilbo"]       # optional: default every method
    seeds = [0]                          # optional (per-run panels): default the first seed
    prior = "model"                      # samples: model | standard | fitted
    latent = "mu"                        # scatter: mu | z
    title = "..."                        # optional

Output under ``--out ROOT`` (default ``validation/results``; with a quick-run
override (``--epochs``, ``--limit``, ``--test-limit``, ``--set``; not
``--seeds``, which changes no run) ``validation/results-quick``): ``ROOT/<figure>/<method>/seed<k>/`` is
an ordinary ``vaetheory train`` run directory (metrics.csv, checkpoint.npz,
run.json); ``ROOT/<figure>/`` holds the PNGs, ``summary.json``,
``summary.md`` and ``run.json`` (config, overrides, git SHA, devices, dtypes,
wall time, what happened to each run).  A finished run is skipped, a stopped
one resumed from its checkpoint, a diverged one kept as a result.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import sys
import textwrap
import time
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlpvae.training.streams import STREAM_FIGURES

FIGURE_KEYS = ("title", "paper", "seeds", "note", "defaults", "methods", "plots")
METHOD_EXTRA_KEYS = ("label", "paper", "shared", "seeds")
PLOT_KEYS = ("kind", "file", "methods", "seeds", "prior", "latent", "title", "yscale")
YSCALES = ("linear", "symlog")  # symlog: a curve that spikes by orders of magnitude stays readable
PLOT_KINDS = ("curves", "samples", "scatter", "variance", "manifold", "reconstructions")
PRIORS = ("model", "standard", "fitted")
# Results roots, beside the configs' folder: validation/figures -> validation/results(-quick)
DEFAULT_ROOT, QUICK_ROOT = "results", "results-quick"
# Per-run settings that a quick run may override; recorded in the figure's run.json.
QUICK_KEYS = ("epochs", "limit", "test_limit")
COLUMN_LABELS = {"test_elbo": "prior N(0, I)", "test_elbo_s2_train": "S^2 from train set",
                 "test_elbo_s2_test": "S^2 from test set"}


@dataclass
class Method:
    """One method of a figure: its runs' settings and where they live (Sec. 7)."""

    name: str  # the method's name in this config
    label: str
    settings: dict
    folder: str  # the figure whose folder holds the runs (another figure's for a shared method)
    run_name: str  # the method's name in that figure: runs are ROOT/folder/run_name/seed<k>
    paper: str | None = None
    shared: str | None = None
    seeds: list[int] | None = None  # this method's seeds when not the figure's


@dataclass
class Figure:
    """A parsed figure config (Sec. 7, Appendix C)."""

    name: str
    path: Path
    title: str
    paper: str
    seeds: list[int]
    methods: dict[str, Method]
    plots: list[dict]
    note: str | None = None
    raw: dict = field(default_factory=dict)


def _unknown(d: dict, valid, where: str) -> None:
    unknown = sorted(set(d) - set(valid))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys are: {', '.join(valid)}")


def _seeds(value, where: str) -> list[int]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)):
        raise ValueError(f"{where}: seeds must be a non-empty list of non-negative integers, got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"{where}: seeds repeat: {value!r}")
    return list(value)


def load_figure(path: str | Path, _seen: tuple = ()) -> Figure:
    """Parse and check a figure config; unknown keys anywhere are errors (Not in the paper).

    Every method's settings are checked by building its
    :class:`mlpvae.training.config.TrainConfig`; a ``shared`` method is resolved to the
    other config (``<stem>.toml`` beside this one) and keeps its folder.
    """
    from mlpvae.training import config as C

    path = Path(path)
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    where = str(path)
    _unknown(raw, FIGURE_KEYS, where)
    for key in ("title", "paper", "seeds", "methods"):
        if key not in raw:
            raise ValueError(f"{where}: missing key {key!r}")
    seeds = _seeds(raw["seeds"], where)
    defaults = raw.get("defaults", {})
    C.check_keys(defaults, f"{where} [defaults]")
    methods: dict[str, Method] = {}
    if not isinstance(raw["methods"], dict) or not raw["methods"]:
        raise ValueError(f"{where}: [methods] must hold at least one [methods.NAME] table")
    shared = {}
    for name, table in raw["methods"].items():
        mw = f"{where} [methods.{name}]"
        if not isinstance(table, dict):
            raise ValueError(f"{mw}: must be a table")
        _unknown(table, (*METHOD_EXTRA_KEYS, *C.valid_keys()), mw)
        if "shared" in table:
            if set(table) - {"shared", "label", "paper", "seeds"}:
                raise ValueError(f"{mw}: a shared method takes only label, paper and seeds; "
                                 f"its settings are the other config's")
            shared[name] = table
            continue
        settings = {**defaults, **{k: v for k, v in table.items() if k not in METHOD_EXTRA_KEYS}}
        if "out" in settings:
            raise ValueError(f"{mw}: 'out' is set by the runner (ROOT/<figure>/<method>/seed<k>)")
        try:
            C.TrainConfig(**settings)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{mw}: {exc}") from None
        methods[name] = Method(name=name, label=table.get("label", name), settings=settings, folder=path.stem,
                               run_name=name, paper=table.get("paper"),
                               seeds=_seeds(table["seeds"], mw) if "seeds" in table else None)
    for name, table in shared.items():
        mw = f"{where} [methods.{name}]"
        other_stem, _, other_method = str(table["shared"]).partition(".")
        if other_stem == path.stem:
            pool = methods  # another method of this same config: one set of runs, two names
        else:
            other_path = path.parent / f"{other_stem}.toml"
            if not other_method or not other_path.exists():
                raise ValueError(f"{mw}: shared = {table['shared']!r} must be 'FIGURE.METHOD' with FIGURE.toml "
                                 f"beside {path.name}")
            if other_path.resolve() in _seen:
                raise ValueError(f"{mw}: shared runs form a cycle through {other_path.name}")
            pool = load_figure(other_path, (*_seen, path.resolve())).methods
        if other_method not in pool:
            raise ValueError(f"{mw}: {other_stem} has no (non-shared) method {other_method!r} "
                             f"(it has {', '.join(pool)})")
        src = pool[other_method]
        methods[name] = Method(name=name, label=table.get("label", src.label), settings=dict(src.settings),
                               folder=src.folder, run_name=src.run_name, paper=table.get("paper", src.paper),
                               shared=f"{src.folder}.{src.run_name}",
                               seeds=_seeds(table["seeds"], mw) if "seeds" in table else None)
    methods = {name: methods[name] for name in raw["methods"]}  # the config's order
    plots = raw.get("plots", [])
    if not isinstance(plots, list):
        raise ValueError(f"{where}: plots must be an array of [[plots]] tables")
    for i, p in enumerate(plots):
        pw = f"{where} [[plots]] #{i + 1}"
        _unknown(p, PLOT_KEYS, pw)
        if p.get("kind") not in PLOT_KINDS or not isinstance(p.get("file"), str) or not p["file"].endswith(".png"):
            raise ValueError(f"{pw}: needs kind in {PLOT_KINDS} and file = 'NAME.png', got {p!r}")
        for m in p.get("methods", []):
            if m not in methods:
                raise ValueError(f"{pw}: unknown method {m!r} (the config has {', '.join(methods)})")
        if "seeds" in p:
            _seeds(p["seeds"], pw)
        if p.get("yscale", "linear") not in YSCALES:
            raise ValueError(f"{pw}: yscale must be one of {YSCALES}, got {p['yscale']!r}")
        if p.get("prior", "model") not in PRIORS or p.get("latent", "mu") not in ("mu", "z"):
            raise ValueError(f"{pw}: prior must be one of {PRIORS} and latent 'mu' or 'z'")
    return Figure(name=path.stem, path=path, title=raw["title"], paper=raw["paper"], seeds=seeds, methods=methods,
                  plots=plots, note=raw.get("note"), raw=raw)


def default_root(fig: Figure, quick: bool) -> Path:
    """``validation/results`` (``validation/results-quick`` for quick runs) beside the config's folder (Not in the paper)."""
    return fig.path.parent.parent / (QUICK_ROOT if quick else DEFAULT_ROOT)


def seeds_of(fig: Figure, method: Method, override: list[int] | None = None) -> list[int]:
    """A method's seeds: the ``--seeds`` override, else its own, else the figure's (Not in the paper)."""
    return list(override) if override is not None else (method.seeds or fig.seeds)


def run_dir(root: Path, method: Method, seed: int) -> Path:
    """The run directory of one (method, seed): ``ROOT/<figure>/<method>/seed<k>`` (Not in the paper)."""
    return Path(root) / method.folder / method.run_name / f"seed{seed}"


def run_config(method: Method, seed: int, overrides: dict):
    """The :class:`mlpvae.training.config.TrainConfig` of one run: the method's settings, its seed, the overrides (Sec. 7)."""
    from mlpvae.training import config as C

    C.check_keys(overrides, "overrides")
    return C.TrainConfig(**{**method.settings, "seed": seed, **{k: v for k, v in overrides.items() if v is not None}})


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def run_state(directory: Path, cfg) -> str:
    """What a run directory holds for ``cfg``: new, stopped, finished or diverged (Not in the paper).

    Raises ValueError when it holds a run with other settings (other than
    those :data:`mlpvae.training.config.RESUMABLE_KEYS` allows to differ).
    """
    from mlpvae.training import config as C

    info = _read_json(directory / "run.json")
    has_ck = (directory / "checkpoint.npz").exists()
    if info is None:
        return "stopped" if has_ck else "new"
    saved = info.get("config", {})
    diff = {k: (saved.get(k), v) for k, v in cfg.to_dict().items() if k not in C.RESUMABLE_KEYS and saved.get(k) != v}
    if diff:
        raise ValueError(f"{directory} holds a run with other settings (saved, wanted): {diff}; "
                         f"choose another --out for these settings")
    if info.get("status") == "diverged":
        return "diverged"  # deterministic: a resume would diverge again
    if not has_ck:
        return "new"
    if info.get("status") == "completed" and int(info.get("epochs_done", 0)) >= cfg.epochs:
        return "finished"
    return "stopped"


def ensure_runs(cfgs: list, directories: list) -> list[tuple[str, dict]]:
    """Train, resume or skip runs that differ only in seed, those to train as one stack (Sec. 7 training).

    Runs in the same state (new, or stopped at the same epoch) are trained
    together by :func:`mlpvae.training.train.train_many`, which gives each exactly what
    training it alone gives.  Returns ``(action, run.json content)`` per run.
    """
    from mlpvae.training import train as T

    results: list = [None] * len(cfgs)
    todo = []
    for i, (cfg, d) in enumerate(zip(cfgs, directories)):
        state = run_state(d, cfg)
        if state in ("finished", "diverged"):
            results[i] = (f"skipped ({state})", _read_json(d / "run.json"))
        else:
            todo.append(i)
    with contextlib.ExitStack() as locks:
        mine = []
        for i in todo:
            try:
                locks.enter_context(_lock(directories[i]))
            except Busy as exc:  # queues side by side: the process that holds the run trains it
                results[i] = (f"skipped ({exc})", _read_json(directories[i] / "run.json") or {})
                continue
            mine.append(i)
        groups: dict = {}
        for i in mine:
            d = directories[i]
            state = run_state(d, cfgs[i])  # another process may have finished it meanwhile
            if state in ("finished", "diverged"):
                results[i] = (f"skipped ({state})", _read_json(d / "run.json"))
                continue
            if state == "new":
                # a run that stopped before its first checkpoint leaves files that a fresh start replaces
                for leftover in ("run.json", "metrics.csv"):
                    (d / leftover).unlink(missing_ok=True)
                key = ("new", 0)
            else:
                key = ("stopped", int((_read_json(d / "run.json") or {}).get("epochs_done", -1)))
            groups.setdefault(key, []).append(i)
        for (state, _), members in groups.items():
            infos = T.train_many([cfgs[i] for i in members], [directories[i] for i in members],
                                 resume=(state == "stopped"))
            for i, info in zip(members, infos):
                results[i] = ("resumed" if state == "stopped" else "trained", info)
    return results


class Busy(RuntimeError):
    """Another live process holds the run's lock (Not in the paper)."""


@contextlib.contextmanager
def _lock(directory: Path):
    """Hold ``directory/.lock`` (our pid) while training, so two processes never train one run.

    A lock whose process is gone (killed, rebooted) is taken over.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ".lock"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                raise Busy(f"{directory} is being trained by process {pid} (remove {path} if it is not)")
            path.unlink(missing_ok=True)
    else:
        raise RuntimeError(f"could not take the lock {path}")
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------
# reading finished runs
# ---------------------------------------------------------------------------
def final_metrics(directory: Path) -> dict:
    """The last evaluated row of a run's ``metrics.csv``: epoch and test ELBO column(s) (Sec. 7)."""
    from mlpvae.experiments import plots as P

    path = directory / "metrics.csv"
    if not path.exists():
        return {}
    m = P.read_metrics(path)
    cols = [c for c in m if c.startswith("test_elbo")]
    if not cols:
        return {}
    ok = np.isfinite(m[cols[0]])
    if not ok.any():
        return {}
    i = int(np.flatnonzero(ok)[-1])
    return {"epoch": int(m["epoch"][i]), **{c: float(m[c][i]) for c in cols},
            "train_objective": float(m["train_objective"][i])}


@dataclass
class LoadedRun:
    """A trained run on the host: model, test latents and the fitted prior (Sec. 7; Eq. (4))."""

    params: dict
    mc: object
    cfg: object
    x_test: np.ndarray
    labels: np.ndarray
    mu: np.ndarray
    var: np.ndarray
    s2_train: np.ndarray


_DATA_CACHE: dict = {}


def load_run(directory: Path) -> LoadedRun | None:
    """Load a run's checkpoint on the CPU and encode its test set; None if it has no checkpoint (Sec. 7).

    ``s2_train (n,)`` is the fitted prior variance ``E[Sigma] + E[diag(mu)^2]``
    on the training set (Eq. (4), diagonal).
    """
    from mlpvae.training import checkpoint
    from mlpvae.training import config as C
    from mlpvae.training import data as D
    from mlpvae.experiments import evaluate as E
    from mlpvae.training import train as T

    info = _read_json(directory / "run.json")
    if info is None or not (directory / "checkpoint.npz").exists():
        return None
    cfg = C.TrainConfig(**{**info["config"], "device": "cpu"})
    ck = checkpoint.load(directory / "checkpoint.npz")
    mc, epoch, dtype = cfg.model_config(), int(ck["epoch"]), np.dtype(cfg.dtype)
    key = (cfg.dataset, cfg.data, cfg.limit, cfg.test_limit, cfg.m, cfg.seed if cfg.dataset == "synthetic" else None)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one data set at a time keeps memory bounded
        _DATA_CACHE[key] = T.load_data(cfg)
    ds = _DATA_CACHE[key]
    x_train = D.targets(ds.train_images, scale=cfg.scale, binarize=cfg.binarize, dtype=dtype,
                        rng=T.generator(cfg.seed, T.STREAM_NOISE, max(epoch - 1, 0)))
    x_test = D.targets(ds.test_images, scale=cfg.scale, binarize=cfg.binarize, dtype=dtype,
                       rng=T.generator(cfg.seed, T.STREAM_TEST, 0))
    s2_train = E.prior_s2(*E.encode_all(ck["params"], x_train, mc))
    mu, var = E.encode_all(ck["params"], x_test, mc)
    return LoadedRun(ck["params"], mc, cfg, x_test, ds.test_labels, np.asarray(mu), np.asarray(var),
                     np.asarray(s2_train, dtype=np.float64))


def _decode_images(run: LoadedRun, z) -> np.ndarray:
    from mlpvae.experiments import evaluate as E

    return E.decode_mean(run.params, np.asarray(z, dtype=run.x_test.dtype), run.mc, run.cfg.scale)


def _prior_var(run: LoadedRun, prior: str) -> np.ndarray:
    """Prior variance for sampling: N(0, I) ("standard"), Eq. (4)'s fitted S^2 ("fitted"), or the model's own."""
    floating = run.mc.posterior in ("constant", "bilbo")
    if prior == "fitted" or (prior == "model" and floating):
        return run.s2_train
    return np.ones(run.mc.n)


# ---------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(f, path: Path) -> Path:
    f.savefig(path, dpi=100)
    _plt().close(f)
    return path


def _mosaic(images, rows: int, cols: int) -> np.ndarray:
    """``rows * cols`` square images ``(K, side^2)`` tiled into one ``(rows*side, cols*side)`` array."""
    images = np.clip(np.asarray(images, dtype=float)[: rows * cols], 0, 1)
    side = math.isqrt(images.shape[1])
    if side * side != images.shape[1]:
        raise ValueError(f"images must be square (m = side^2), got m = {images.shape[1]}")
    return images.reshape(rows, cols, side, side).transpose(0, 2, 1, 3).reshape(rows * side, cols * side)


def _show(ax, images, rows, cols, title):
    ax.imshow(_mosaic(images, rows, cols), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(_wrap(title), fontsize=7)


def _wrap(title: str, width: int = 45) -> str:
    return "\n".join(textwrap.fill(line, width) for line in title.split("\n"))


def _scatter(ax, pts, labels, title):
    pts = np.asarray(pts)
    y = pts[:, 1] if pts.shape[1] > 1 else np.zeros(len(pts))
    ax.scatter(pts[:, 0], y, c=np.asarray(labels), cmap="tab10", vmin=-0.5, vmax=9.5, s=1, alpha=0.6, linewidths=0)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(_wrap(title), fontsize=7)


def _missing(ax, title):
    ax.text(0.5, 0.5, "no checkpoint\n(diverged in epoch 1?)", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)


def plot_curves(fig: Figure, spec: dict, root: Path, path: Path, override: list[int] | None) -> Path:
    """Test ELBO against epoch, mean over seeds and the min-max band per method: Fig. 4 (a, b), Fig. 8 (Sec. 7).

    Floating-prior methods are drawn with S^2 from the training set (Eq. (4));
    runs that diverged contribute the epochs they finished.
    """
    from mlpvae.experiments import plots as P

    plt = _plt()
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
        line, = ax.plot(epochs[ok], mean[ok], marker="." if ok.sum() <= 20 else None,
                        label=f"{method.label} ({len(curves)} seeds)")
        ax.fill_between(epochs[ok], lo[ok], hi[ok], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("epoch")
    symlog = spec.get("yscale") == "symlog"
    if symlog:
        ax.set_yscale("symlog", linthresh=100.0)
    ax.set_ylabel("test ELBO, nats per image" + (" (symlog axis)" if symlog else "") + "\nmean; band: min-max over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(spec.get("title", fig.title), fontsize=9)
    f.tight_layout()
    return _save(f, path)


def _spec_seeds(spec: dict, seeds: list[int], every: bool) -> list[int]:
    """The plot's seeds among those run (a quick run may have fewer); default all of them or the first."""
    chosen = [s for s in spec.get("seeds", seeds if every else seeds[:1]) if s in seeds]
    return chosen or seeds[:1]


def _runs_of(fig: Figure, spec: dict, override: list[int] | None) -> list[tuple[Method, int]]:
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
    plt = _plt()
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
            _missing(row[0], name)
            continue
        rng = np.random.default_rng([seed, STREAM_FIGURES])
        if kind == "samples":
            prior = spec.get("prior", "model")
            v = _prior_var(run, prior)
            zs = np.sqrt(v) * rng.standard_normal((100, run.mc.n))
            which = "N(0, S^2) fitted, Eq. (4)" if v is run.s2_train else "N(0, I)"
            _show(row[0], _decode_images(run, zs), 10, 10, f"{name}\nsamples from {which}")
        elif kind == "scatter":
            pts = run.mu if spec.get("latent", "mu") == "mu" else run.mu + np.sqrt(run.var) * rng.standard_normal(
                run.mu.shape)
            _scatter(row[0], pts, run.labels, f"{name}: {spec.get('latent', 'mu')}")
        elif kind == "variance":
            s2 = _prior_var(run, "model")
            var = np.broadcast_to(run.var, run.mu.shape)
            for k, (vi, mj) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
                if max(vi, mj) >= run.mc.n:
                    continue
                row[k].scatter(run.mu[:, mj] / np.sqrt(s2[mj]), var[:, vi] / s2[vi], s=1, alpha=0.4, linewidths=0)
                row[k].set_xlabel(f"mean {mj + 1} / s", fontsize=7)
                row[k].set_ylabel(f"variance {vi + 1} / s^2", fontsize=7)
                row[k].set_title(name if k == 0 else "", fontsize=8)
        elif kind == "manifold":
            s = np.sqrt(_prior_var(run, "model"))[:2]
            a = np.linspace(-2, 2, 20)
            z1, z2 = np.meshgrid(a * s[0], a[::-1] * s[1] if run.mc.n > 1 else a[::-1])
            grid = np.zeros((400, run.mc.n))
            grid[:, 0] = z1.ravel()
            if run.mc.n > 1:
                grid[:, 1] = z2.ravel()
            _show(row[0], _decode_images(run, grid), 20, 20, f"{name}\nmanifold over +-2 s")
            _scatter(row[1], run.mu, run.labels, "mu")
            _scatter(row[2], run.mu + np.sqrt(run.var) * rng.standard_normal(run.mu.shape), run.labels,
                     "one sample z ~ q(z|x)")
        elif kind == "reconstructions":
            x = run.x_test[:50] / run.cfg.scale
            rec = _decode_images(run, run.mu[:50])
            pairs = np.concatenate([np.stack([x[r * 10:(r + 1) * 10], rec[r * 10:(r + 1) * 10]])
                                    for r in range(len(x) // 10)]).reshape(-1, x.shape[1])
            _show(row[0], pairs, 2 * (len(x) // 10), 10, f"{name}\ninputs (odd rows), reconstructions")
    # wrapped to the figure's width (about 14 characters of 9-point text per inch), room left for its lines
    title = _wrap(spec.get("title", fig.title), max(30, int(f.get_figwidth() * 14)))
    f.suptitle(title, fontsize=9)
    f.tight_layout(rect=(0, 0, 1, 1 - (title.count("\n") + 1) * 9 * 1.4 / 72 / f.get_figheight()))
    return _save(f, path)


def make_plots(fig: Figure, root: Path, override: list[int] | None = None) -> list[Path]:
    """Every ``[[plots]]`` entry of the config as a PNG in ``ROOT/<figure>/`` (Sec. 7, Appendix C).

    ``override`` is the ``--seeds`` override; a plot draws those of its seeds that were run.
    """
    out_dir = Path(root) / fig.name
    out = []
    for spec in fig.plots:
        path = out_dir / spec["file"]
        draw = plot_curves if spec["kind"] == "curves" else plot_panels
        out.append(draw(fig, spec, root, path, override))
    return out


# ---------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------
def _mean_std(values: list[float]) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()) if len(v) else None,
            "std": float(v.std(ddof=1)) if len(v) > 1 else None, "n": int(len(v)), "values": v.tolist()}


def summarize(fig: Figure, root: Path, override: list[int] | None = None) -> dict:
    """Final test ELBO mean +- std over seeds per method, with targets, wall time and device (Sec. 7)."""
    rows = []
    for method in fig.methods.values():
        finals, walls, devices, targets, statuses, epochs = [], [], set(), set(), [], []
        seeds = seeds_of(fig, method, override)
        for seed in seeds:
            d = run_dir(root, method, seed)
            info = _read_json(d / "run.json") or {}
            statuses.append(info.get("status", "missing"))
            # a stack's wall time is in each of its K run.json files: count it once
            walls.append(float(info.get("wall_seconds", 0.0)) / int(info.get("stacked", {}).get("models", 1)))
            if info.get("device"):
                devices.add(info["device"])
            if info.get("targets"):
                targets.add(f"{info.get('data', {}).get('name', '?')}: {info['targets']}")
            fm = final_metrics(d)
            if fm:
                finals.append(fm)
                epochs.append(fm["epoch"])
        cols = sorted({c for fm in finals for c in fm if c.startswith("test_elbo")})
        rows.append({
            "method": method.name, "label": method.label, "shared": method.shared,
            "settings": method.settings, "seeds": seeds, "status": statuses,
            "final_epoch": epochs, "test_elbo": {c: _mean_std([fm[c] for fm in finals if c in fm]) for c in cols},
            "train_objective": _mean_std([fm["train_objective"] for fm in finals]),
            "paper": method.paper, "targets": sorted(targets), "wall_seconds": sum(walls),
            "devices": sorted(devices),
        })
    return {"figure": fig.name, "title": fig.title, "paper": fig.paper, "note": fig.note,
            "units": "nats per image, summed over pixels; test set; final evaluated epoch; "
                     "mean +- sample std over seeds",
            "methods": rows}


def _fmt(ms: dict) -> str:
    if ms["mean"] is None:
        return "not yet run"
    return f"{ms['mean']:.2f}" + (f" +- {ms['std']:.2f}" if ms["std"] is not None else "") + f" (n={ms['n']})"


def summary_markdown(summary: dict) -> str:
    """``summary.md``: the summary as a Markdown table (Not in the paper)."""
    lines = [f"# {summary['title']}", "", f"Paper: {summary['paper']}.  Units: {summary['units']}.", ""]
    if summary.get("note"):
        lines += [summary["note"], ""]
    total = sum(r["wall_seconds"] for r in summary["methods"] if not r["shared"])
    lines += [f"Training wall time of this figure's own runs: {total / 3600:.2f} h "
              f"(shared runs are counted in their own figure).", ""]
    lines += ["| method | test ELBO (ours) | paper | epochs | status | targets | wall time (all seeds) | device |",
              "|---|---|---|---|---|---|---|---|"]
    for r in summary["methods"]:
        if r["test_elbo"]:
            elbo = "<br>".join(f"{COLUMN_LABELS.get(c, c)}: {_fmt(ms)}" for c, ms in r["test_elbo"].items())
        elif set(r["status"]) == {"missing"}:
            elbo = "not yet run"
        else:
            elbo = "no evaluated epoch"  # e.g. diverged in its first epoch
        status = ", ".join(f"{s}x{r['status'].count(s)}" for s in sorted(set(r["status"])))
        epochs = ", ".join(str(e) for e in sorted(set(r["final_epoch"]))) or "-"
        lines.append(f"| {r['label']}{' (shared: ' + r['shared'] + ')' if r['shared'] else ''} | {elbo} | "
                     f"{r['paper'] or '-'} | {epochs} | {status} | {'; '.join(r['targets']) or '-'} | "
                     f"{r['wall_seconds'] / 60:.1f} min | {'; '.join(r['devices']) or '-'} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------
def _only(fig: Figure, names: list[str] | None) -> list[Method]:
    """The figure's methods, or (``--methods``) those named, in the config's order (Not in the paper)."""
    if names is None:
        return list(fig.methods.values())
    unknown = [n for n in names if n not in fig.methods]
    if unknown or not names:
        raise ValueError(f"--methods: unknown method(s) {', '.join(unknown) or '(none given)'}; "
                         f"{fig.name} has {', '.join(fig.methods)}")
    return [m for m in fig.methods.values() if m.name in names]


def _plan(fig: Figure, override, per_run: dict, names: list[str] | None = None):
    """(method, seed, TrainConfig) of every run, each run once (two names may share one run)."""
    seen = set()
    for m in _only(fig, names):
        for s in seeds_of(fig, m, override):
            if (m.folder, m.run_name, s) not in seen:
                seen.add((m.folder, m.run_name, s))
                yield m, s, run_config(m, s, per_run)


def _batches(plan: list, stack: bool):
    """The plan one run at a time, or (``stack``) one method's seeds at a time."""
    if not stack:
        yield from ([p] for p in plan)
        return
    groups: dict = {}
    for p in plan:
        groups.setdefault((p[0].folder, p[0].run_name), []).append(p)
    yield from groups.values()


def reproduce(config: str | Path, root: str | Path | None = None, device: str = "auto",
              seeds: list[int] | None = None, epochs: int | None = None, limit: int | None = None,
              test_limit: int | None = None, sets: dict | None = None, progress: bool | None = None,
              train: bool = True, log=print, stack: bool = False, methods: list[str] | None = None) -> dict:
    """Run every (method x seed) of a figure config, then its PNGs and summary; Sec. 7, Appendix C.

    ``epochs``, ``limit``, ``test_limit`` and ``sets`` (any other TrainConfig
    keys) are quick-run overrides and ``seeds`` a subset of runs, all recorded
    in ``run.json``; without ``root`` the runs go to ``validation/results`` (or
    ``validation/results-quick`` when a quick-run override is given).  A run
    being trained by another process is an error, not a second trainer.  ``train=False``
    only redraws the figures and the summary from what is on disk.  Returns
    the figure's ``run.json`` content.  ``stack`` trains each method's seeds
    together as one batched computation (:func:`mlpvae.training.train.train_many`; the
    same results as one by one, in one process).  ``methods`` trains only
    the methods named (the PNGs and the summary still cover the whole figure,
    with the runs not on disk shown as missing).
    """
    from mlpvae.training import checkpoint
    from mlpvae.training import train as T

    fig = load_figure(config)
    overrides = {"epochs": epochs, "limit": limit, "test_limit": test_limit, **(sets or {})}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    # seeds alone do not change a run, so e.g. seeds in parallel processes are still full runs
    quick = bool(overrides)
    root = Path(root) if root is not None else default_root(fig, quick)
    override = _seeds(list(seeds), "--seeds") if seeds is not None else None
    per_run = {**overrides, "device": device, **({"progress": progress} if progress is not None else {})}
    # every run's settings are checked before the first one starts
    plan = list(_plan(fig, override, per_run, methods))
    out_dir = root / fig.name
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "figure": fig.name, "config_path": str(fig.path), "config": fig.raw,
        "overrides": {**overrides, **({"seeds": override} if override is not None else {}),
                      **({"methods": list(methods)} if methods is not None else {})},
        "quick_run": quick, "root": str(root), "git_sha": T.git_sha(), "device_requested": device,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "status": "running", "runs": [],
    }
    checkpoint.write_json(out_dir / "run.json", info)
    t0 = time.perf_counter()
    try:
        done = 0
        for batch in _batches(plan, stack):
            dirs = [run_dir(root, method, seed) for method, seed, _ in batch]
            t1 = time.perf_counter()
            if train:
                results = ensure_runs([cfg for *_, cfg in batch], dirs)
            else:
                results = [("not trained (--no-train)", _read_json(d / "run.json") or {}) for d in dirs]
            took = time.perf_counter() - t1
            for (method, seed, _), d, (action, rinfo) in zip(batch, dirs, results):
                done += 1
                rinfo = rinfo or {}
                info["runs"].append({"method": method.name, "seed": seed, "dir": str(d), "action": action,
                                     "status": rinfo.get("status", "missing"), "epochs_done": rinfo.get("epochs_done"),
                                     "device": rinfo.get("device"), "dtype": rinfo.get("dtype"),
                                     "run_wall_seconds": rinfo.get("wall_seconds"), "seconds_this_call": took,
                                     "stacked_with": len(batch)})
                log(f"[{done}/{len(plan)}] {d}: {action}, status {rinfo.get('status', 'missing')}, "
                    f"{rinfo.get('epochs_done', 0)} epochs, {took:.1f} s" + (f" (stack of {len(batch)})" if stack else ""))
            checkpoint.write_json(out_dir / "run.json", info)
        info["plots"] = [str(p) for p in make_plots(fig, root, override)]
        summary = summarize(fig, root, override)
        checkpoint.write_json(out_dir / "summary.json", summary)
        (out_dir / "summary.md").write_text(summary_markdown(summary))
        info["status"] = "completed"
    except KeyboardInterrupt:
        info["status"] = "interrupted"
        raise
    finally:
        info["devices"] = sorted({r["device"] for r in info["runs"] if r.get("device")})
        info["dtypes"] = sorted({r["dtype"] for r in info["runs"] if r.get("dtype")})
        info["wall_seconds"] = time.perf_counter() - t0
        info["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        if info["status"] == "running":
            info["status"] = "failed"
        checkpoint.write_json(out_dir / "run.json", info)
    return info


def _parse_set(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--set {text!r}: expected KEY=VALUE")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value  # a bare word, e.g. dataset=synthetic
    return key.strip().replace("-", "_"), parsed


def add_arguments(parser) -> None:
    """The command-line interface (Not in the paper)."""
    import argparse

    parser.add_argument("config", metavar="CONFIG", help="a figure config, e.g. validation/figures/fig4_2d.toml")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="auto: CuPy when it finds a GPU, else NumPy (default auto)")
    parser.add_argument("--seeds", help="comma-separated seeds instead of the config's, e.g. 0,1")
    parser.add_argument("--methods", help="comma-separated method names: train only these (plots cover all)")
    parser.add_argument("--epochs", type=int, help="epochs per run instead of the config's (quick run)")
    parser.add_argument("--limit", type=int, help="use only the first N training images (quick run)")
    parser.add_argument("--test-limit", type=int, help="use only the first N test images (quick run)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any training setting for every run, e.g. --set hidden=32 (repeatable)")
    parser.add_argument("--out", metavar="ROOT",
                        help="results root (default validation/results; validation/results-quick with overrides)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="per-epoch progress of each run (default: the trainer's)")
    parser.add_argument("--no-train", dest="train", action="store_false",
                        help="only redraw the PNGs and the summary from the runs on disk")
    parser.add_argument("--list", action="store_true", help="list the runs and their state; train nothing")
    parser.add_argument("--stack", action="store_true",
                        help="train each method's seeds together as one batched computation (the results of one by one: "
                             "bit for bit on NumPy; on CuPy with VAETHEORY_STACK_EXACT=1, one model at a time)")


def run(args) -> int:
    """The command-line interface (Not in the paper)."""
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
        methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
        sets = dict(_parse_set(s) for s in args.set)
        if args.list:
            return _list(args, seeds, sets, methods)
        info = reproduce(args.config, args.out, args.device, seeds, args.epochs, args.limit, args.test_limit, sets,
                         args.progress, args.train, log=lambda s: print(s, file=sys.stderr), stack=args.stack,
                         methods=methods)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        print(f"vaetheory reproduce: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(info["root"]) / info["figure"]
    print((out_dir / "summary.md").read_text())
    print(f"wrote {out_dir}/ (run.json, summary.json, summary.md, {len(info['plots'])} PNG)")
    return 0


def _list(args, seeds, sets, methods=None) -> int:
    fig = load_figure(args.config)
    overrides = {k: v for k, v in {"epochs": args.epochs, "limit": args.limit, "test_limit": args.test_limit,
                                   **sets}.items() if v is not None}
    root = Path(args.out) if args.out else default_root(fig, bool(overrides))
    for method, seed, cfg in _plan(fig, seeds, {**overrides, "device": args.device}, methods):
        d = run_dir(root, method, seed)
        print(f"{d}: {run_state(d, cfg)} ({cfg.epochs} epochs, {cfg.posterior}, {cfg.likelihood}, n={cfg.n})")
    return 0
