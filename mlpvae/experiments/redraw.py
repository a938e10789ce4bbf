"""Redraw a recorded figure's PNGs from the runs on disk, training nothing (``reproduce --plots-only``).

A clone has the recorded runs' ``metrics.csv`` but not their checkpoints:
the curves are redrawn from the metrics, and a per-run PNG that needs a
missing model is kept as it is.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from mlpvae.experiments.figure_schema import check_seeds, default_root, load_figure
from mlpvae.experiments.panels import make_plots
from mlpvae.training import checkpoint
from mlpvae.training.runs import git_sha


def redraw(config: str | Path, root: str | Path | None = None, seeds: list[int] | None = None, log=print) -> dict:
    """Redraw a figure's PNGs from the runs on disk and nothing else; Sec. 7, Appendix C.

    No run is trained and ``run.json``, ``summary.json`` and ``summary.md``
    stay as they are: curves come from each run's ``metrics.csv``, so the
    recorded figures (whose checkpoints a clone lacks) get their curves
    redrawn, while a per-run PNG that needs a missing model is kept.  Writes
    ``ROOT/<figure>/plots.json`` (git SHA, the PNGs drawn and kept) and returns it.
    """
    fig = load_figure(config)
    root = Path(root) if root is not None else default_root(fig, False)
    override = check_seeds(list(seeds), "--seeds") if seeds is not None else None
    kept: list[str] = []
    sha = git_sha()  # before drawing: the PNGs written here are tracked files of a recorded figure

    def note(line: str) -> None:
        if line.startswith("kept "):
            kept.append(line.split(":")[0][len("kept ") :])
        log(line)

    paths = [str(p) for p in make_plots(fig, root, override, note)]
    info = {
        "figure": fig.name,
        "config_path": str(fig.path),
        "root": str(root),
        "git_sha": sha,
        "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "drawn": [p for p in paths if p not in kept],
        "kept_without_checkpoint": kept,
    }
    checkpoint.write_json(root / fig.name / "plots.json", info)
    return info
