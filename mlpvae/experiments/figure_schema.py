"""Figure configs of ``vaetheory reproduce``: their TOML schema, parsing and the runs they name (Sec. 7, Appendix C).

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

:func:`load_figure` parses and checks a config into a :class:`Figure`;
:func:`seeds_of`, :func:`run_dir` and :func:`run_config` give each
(method, seed) its seeds, run directory and training settings.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mlpvae.training import config as C

FIGURE_KEYS = ("title", "paper", "seeds", "note", "defaults", "methods", "plots")
METHOD_EXTRA_KEYS = ("label", "paper", "shared", "seeds")
PLOT_KEYS = ("kind", "file", "methods", "seeds", "prior", "latent", "title", "yscale")
YSCALES = ("linear", "symlog")  # symlog: a curve that spikes by orders of magnitude stays readable
PLOT_KINDS = ("curves", "samples", "scatter", "variance", "manifold", "reconstructions")
PRIORS = ("model", "standard", "fitted")
# Results roots, beside the configs' folder: validation/figures -> validation/results/figures(-quick).
# results/figures holds the recorded (committed) results; when it exists, full runs go to results/figures-local
# (gitignored) unless --out names a root, so that a plain run never writes into the record.
DEFAULT_ROOT, QUICK_ROOT, LOCAL_ROOT = "results/figures", "results/figures-quick", "results/figures-local"
# Per-run settings that a quick run may override; recorded in the figure's run.json.
QUICK_KEYS = ("epochs", "limit", "test_limit")


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
    """ValueError naming the keys of ``d`` not in ``valid``, and the valid ones."""
    unknown = sorted(set(d) - set(valid))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys are: {', '.join(valid)}")


def check_seeds(value, where: str) -> list[int]:
    """``value`` as a list of distinct non-negative integer seeds (Not in the paper).

    Raises ValueError naming ``where`` otherwise.
    """
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
    ):
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
    path = Path(path)
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    where = str(path)
    _unknown(raw, FIGURE_KEYS, where)
    for key in ("title", "paper", "seeds", "methods"):
        if key not in raw:
            raise ValueError(f"{where}: missing key {key!r}")
    seeds = check_seeds(raw["seeds"], where)
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
                raise ValueError(
                    f"{mw}: a shared method takes only label, paper and seeds; its settings are the other config's"
                )
            shared[name] = table
            continue
        settings = {**defaults, **{k: v for k, v in table.items() if k not in METHOD_EXTRA_KEYS}}
        if "out" in settings:
            raise ValueError(f"{mw}: 'out' is set by the runner (ROOT/<figure>/<method>/seed<k>)")
        try:
            C.TrainConfig(**settings)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{mw}: {exc}") from None
        methods[name] = Method(
            name=name,
            label=table.get("label", name),
            settings=settings,
            folder=path.stem,
            run_name=name,
            paper=table.get("paper"),
            seeds=check_seeds(table["seeds"], mw) if "seeds" in table else None,
        )
    for name, table in shared.items():
        mw = f"{where} [methods.{name}]"
        other_stem, _, other_method = str(table["shared"]).partition(".")
        if other_stem == path.stem:
            pool = methods  # another method of this same config: one set of runs, two names
        else:
            other_path = path.parent / f"{other_stem}.toml"
            if not other_method or not other_path.exists():
                raise ValueError(
                    f"{mw}: shared = {table['shared']!r} must be 'FIGURE.METHOD' with FIGURE.toml beside {path.name}"
                )
            if other_path.resolve() in _seen:
                raise ValueError(f"{mw}: shared runs form a cycle through {other_path.name}")
            pool = load_figure(other_path, (*_seen, path.resolve())).methods
        if other_method not in pool:
            raise ValueError(
                f"{mw}: {other_stem} has no (non-shared) method {other_method!r} (it has {', '.join(pool)})"
            )
        src = pool[other_method]
        methods[name] = Method(
            name=name,
            label=table.get("label", src.label),
            settings=dict(src.settings),
            folder=src.folder,
            run_name=src.run_name,
            paper=table.get("paper", src.paper),
            shared=f"{src.folder}.{src.run_name}",
            seeds=check_seeds(table["seeds"], mw) if "seeds" in table else None,
        )
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
            check_seeds(p["seeds"], pw)
        if p.get("yscale", "linear") not in YSCALES:
            raise ValueError(f"{pw}: yscale must be one of {YSCALES}, got {p['yscale']!r}")
        if p.get("prior", "model") not in PRIORS or p.get("latent", "mu") not in ("mu", "z"):
            raise ValueError(f"{pw}: prior must be one of {PRIORS} and latent 'mu' or 'z'")
    return Figure(
        name=path.stem,
        path=path,
        title=raw["title"],
        paper=raw["paper"],
        seeds=seeds,
        methods=methods,
        plots=plots,
        note=raw.get("note"),
        raw=raw,
    )


def recorded_root(fig: Figure) -> Path:
    """The root of the recorded results, ``validation/results/figures``, beside the config's folder."""
    return fig.path.parent.parent / DEFAULT_ROOT


def default_root(fig: Figure, quick: bool) -> Path:
    """The results root for ``fig`` without ``--out``, beside the config's folder (Not in the paper).

    ``validation/results/figures-quick`` for quick runs; for full runs
    ``validation/results/figures-local`` when the recorded root
    (:func:`recorded_root`) exists, else ``validation/results/figures``.
    """
    if quick:
        return fig.path.parent.parent / QUICK_ROOT
    recorded = recorded_root(fig)
    return fig.path.parent.parent / LOCAL_ROOT if recorded.is_dir() else recorded


def seeds_of(fig: Figure, method: Method, override: list[int] | None = None) -> list[int]:
    """A method's seeds: the ``--seeds`` override, else its own, else the figure's (Not in the paper)."""
    return list(override) if override is not None else (method.seeds or fig.seeds)


def run_dir(root: Path, method: Method, seed: int) -> Path:
    """The run directory of one (method, seed): ``ROOT/<figure>/<method>/seed<k>`` (Not in the paper)."""
    return Path(root) / method.folder / method.run_name / f"seed{seed}"


def run_config(method: Method, seed: int, overrides: dict):
    """The :class:`mlpvae.training.config.TrainConfig` of one run: the method's settings,
    its seed, the overrides (Sec. 7)."""
    C.check_keys(overrides, "overrides")
    return C.TrainConfig(**{**method.settings, "seed": seed, **{k: v for k, v in overrides.items() if v is not None}})
