"""A run directory written by ``vaetheory train``, read back: its config, checkpoint, data and targets (Sec. 7).

Every command that works on a trained model (evaluate, analyze, the per-image
evidence reports, reproduce) reads a run through :func:`load_run`, so that
all of them see the targets the model was trained on, drawn from the same
random streams: the training targets of the last epoch (dynamic binarization
draws them afresh each epoch) and the test targets of the per-epoch test ELBO.
Also :func:`git_sha`, the provenance recorded in ``run.json``.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpvae.accel import device as dev
from mlpvae.nn import jacobian as Jac
from mlpvae.nn.model import ModelConfig
from mlpvae.training import checkpoint
from mlpvae.training import config as C
from mlpvae.training import data as D
from mlpvae.training.streams import STREAM_NOISE, STREAM_TEST, generator

#: Tracked folders of outputs, not code: a change there does not make the code that runs differ from its commit.
OUTPUTS = ("validation/results",)


def git_sha(root: str | Path | None = None, outputs: tuple[str, ...] = OUTPUTS) -> str | None:
    """The commit of the code that runs, with ``-dirty`` when tracked files differ from it; None outside git.

    Files under ``outputs`` (recorded results) are not code: redrawing one
    figure rewrites its tracked PNGs and ``plots.json``, which must not mark
    the next figure's redraw as computed by uncommitted code.
    """
    try:
        root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."] + [f":(exclude){p}" for p in outputs],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def read_config(
    run_dir, *, device: str | None = None, limit: int | None = None, test_limit: int | None = None
) -> tuple[dict, C.TrainConfig]:
    """A run's ``run.json`` and its training config, with ``device``, ``limit`` and ``test_limit`` replaced if given."""
    info = json.loads((Path(run_dir) / "run.json").read_text())
    cfg_d = dict(info["config"])
    for key, val in (("device", device), ("limit", limit), ("test_limit", test_limit)):
        if val is not None:
            cfg_d[key] = val
    return info, C.TrainConfig(**cfg_d)


@dataclass
class Run:
    """A trained run loaded for evaluation: parameters and targets on the run's device (Sec. 7)."""

    run_dir: Path
    info: dict  # run.json
    cfg: C.TrainConfig
    mc: ModelConfig
    params: dict
    xp: object
    device: str  # the device's description
    epoch: int  # epochs trained (the checkpoint's)
    x_train: object  # (N, m) training targets of the last epoch
    x_test: object  # (N_test, m) test targets
    labels_test: np.ndarray  # (N_test,) on the host
    targets: str | None  # run.json's description of the targets


def load_run(
    run_dir,
    *,
    device: str | None = None,
    limit: int | None = None,
    test_limit: int | None = None,
    float64: bool = False,
    data: D.Dataset | None = None,
) -> Run:
    """Load a run directory's checkpoint and the targets it was trained and tested on (Sec. 7).

    ``device`` (``cpu``, ``gpu`` or ``auto``; default the run's own), ``limit``
    and ``test_limit`` (the first training / test images; default the run's)
    override the run's config.  The training targets are those of the last
    epoch (stream :data:`~mlpvae.training.streams.STREAM_NOISE` at epoch
    ``epoch - 1``), the test targets those of training (``STREAM_TEST``, epoch
    0).  ``float64`` casts parameters and targets to float64 (otherwise the
    run's dtype).  ``data`` is the run's data set when the caller already holds
    it (:func:`mlpvae.training.data.load_data` of the config, same limits).
    """
    run_dir = Path(run_dir)
    info, cfg = read_config(run_dir, device=device, limit=limit, test_limit=test_limit)
    xp, desc = dev.select(cfg.device)
    ck = checkpoint.load(run_dir / "checkpoint.npz", xp)
    epoch = int(ck["epoch"])
    dtype = np.float64 if float64 else np.dtype(cfg.dtype)
    ds = D.load_data(cfg) if data is None else data
    x_train = D.targets(
        xp.asarray(ds.train_images),
        scale=cfg.scale,
        binarize=cfg.binarize,
        dtype=dtype,
        rng=generator(cfg.seed, STREAM_NOISE, max(epoch - 1, 0), xp),
    )
    x_test = D.targets(
        xp.asarray(ds.test_images),
        scale=cfg.scale,
        binarize=cfg.binarize,
        dtype=dtype,
        rng=generator(cfg.seed, STREAM_TEST, 0, xp),
    )
    params = Jac.cast_params(ck["params"], np.float64) if float64 else ck["params"]
    return Run(
        run_dir,
        info,
        cfg,
        cfg.model_config(),
        params,
        xp,
        desc,
        epoch,
        x_train,
        x_test,
        np.asarray(ds.test_labels),
        info.get("targets"),
    )
