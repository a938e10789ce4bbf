"""Finished runs read back for a figure: final metrics, and the model with its test latents (Sec. 7; Eq. (4)).

:func:`final_metrics` reads a run's last evaluated row; :func:`load_run` loads
its checkpoint on the CPU with the encoded test set and the fitted prior
variance, which :func:`decode_images` and :func:`prior_var` use to draw panels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpvae.experiments import evaluate as E
from mlpvae.experiments import plots as P
from mlpvae.experiments.evaluate import FLOATING
from mlpvae.experiments.run_queue import read_json
from mlpvae.training import checkpoint
from mlpvae.training import config as C
from mlpvae.training import data as D
from mlpvae.training import train as T


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
    info = read_json(directory / "run.json")
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


def decode_images(run: LoadedRun, z) -> np.ndarray:
    """Decoder means of latents ``z (K, n)`` as images in [0, 1] of the run's data scale (Sec. 7)."""
    return E.decode_mean(run.params, np.asarray(z, dtype=run.x_test.dtype), run.mc, run.cfg.scale)


def prior_var(run: LoadedRun, prior: str) -> np.ndarray:
    """Prior variance for sampling (Sec. 7, Eq. (4)).

    ``"standard"``: N(0, I)'s; ``"fitted"``: Eq. (4)'s S^2 on the training set;
    ``"model"``: the model's own (S^2 for a floating-prior posterior, else 1).
    """
    floating = run.mc.posterior in FLOATING
    if prior == "fitted" or (prior == "model" and floating):
        return run.s2_train
    return np.ones(run.mc.n)
