"""Finished runs read back for a figure: final metrics, and the model with its test latents (Sec. 7; Eq. (4)).

:func:`final_metrics` reads a run's last evaluated row; :func:`load_run` loads
its checkpoint on the CPU with the encoded test set and the fitted prior
variance, which :func:`decode_images` and :func:`prior_var` use to draw panels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpvae.experiments import plots as P
from mlpvae.experiments.run_queue import read_json
from mlpvae.nn.batched import FLOATING, decode_mean, encode_all, prior_s2
from mlpvae.training import runs
from mlpvae.training.data import load_data


def final_metrics(directory: Path) -> dict:
    """The last evaluated row of a run's ``metrics.csv``: epoch and test ELBO column(s) (Sec. 7)."""
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
    return {
        "epoch": int(m["epoch"][i]),
        **{c: float(m[c][i]) for c in cols},
        "train_objective": float(m["train_objective"][i]),
    }


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
    info = read_json(directory / "run.json")
    if info is None or not (directory / "checkpoint.npz").exists():
        return None
    _, cfg = runs.read_config(directory, device="cpu")
    key = (cfg.dataset, cfg.data, cfg.limit, cfg.test_limit, cfg.m, cfg.seed if cfg.dataset == "synthetic" else None)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one data set at a time keeps memory bounded
        _DATA_CACHE[key] = load_data(cfg)
    run = runs.load_run(directory, device="cpu", data=_DATA_CACHE[key])
    s2_train = prior_s2(*encode_all(run.params, run.x_train, run.mc))
    mu, var = encode_all(run.params, run.x_test, run.mc)
    return LoadedRun(
        run.params,
        run.mc,
        run.cfg,
        run.x_test,
        run.labels_test,
        np.asarray(mu),
        np.asarray(var),
        np.asarray(s2_train, dtype=np.float64),
    )


def decode_images(run: LoadedRun, z) -> np.ndarray:
    """Decoder means of latents ``z (K, n)`` as images in [0, 1] of the run's data scale (Sec. 7)."""
    return decode_mean(run.params, np.asarray(z, dtype=run.x_test.dtype), run.mc, run.cfg.scale)


def prior_var(run: LoadedRun, prior: str) -> np.ndarray:
    """Prior variance for sampling (Sec. 7, Eq. (4)).

    ``"standard"``: N(0, I)'s; ``"fitted"``: Eq. (4)'s S^2 on the training set;
    ``"model"``: the model's own (S^2 for a floating-prior posterior, else 1).
    """
    floating = run.mc.posterior in FLOATING
    if prior == "fitted" or (prior == "model" and floating):
        return run.s2_train
    return np.ones(run.mc.n)
