"""Tiny synthetic training runs shared by the tests of training, stacking, resuming and run packing."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from mlpvae.training import checkpoint
from mlpvae.training import config as C
from mlpvae.training import train as T

SHARED = os.environ.get("VAETHEORY_DATA")
HAVE_MNIST = bool(SHARED) and (Path(SHARED) / "mnist").is_dir()
TINY = dict(
    dataset="synthetic",
    m=16,
    n=2,
    hidden=8,
    layers=3,
    limit=60,
    test_limit=20,
    batch_size=20,
    device="cpu",
    progress=False,
)


def tiny(**kw) -> C.TrainConfig:
    """A tiny synthetic training config (:data:`TINY`) with ``kw`` replaced."""
    return C.TrainConfig(**(TINY | kw))


def rows(path) -> list[dict]:
    """The rows of a metrics.csv as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_same_run(a: Path, b: Path):
    """Two run directories hold bitwise the same parameters and Adam state and the same metrics apart from timings."""
    ca, cb = checkpoint.load(a / "checkpoint.npz"), checkpoint.load(b / "checkpoint.npz")
    for k in ca["params"]:
        np.testing.assert_array_equal(ca["params"][k], cb["params"][k], err_msg=k)  # bitwise
    for k in ca["adam"]:
        if k != "step":
            np.testing.assert_array_equal(ca["adam"][k], cb["adam"][k], err_msg=k)
    assert ca["adam"]["step"] == cb["adam"]["step"]
    drop = ("seconds", "eval_seconds")
    ra = [{k: v for k, v in x.items() if k not in drop} for x in rows(a / "metrics.csv")]
    rb = [{k: v for k, v in x.items() if k not in drop} for x in rows(b / "metrics.csv")]
    assert ra == rb


SYNTHETIC = dict(
    dataset="synthetic",
    m=16,
    n=2,
    hidden=8,
    posterior="constant",
    epochs=3,
    limit=120,
    test_limit=20,
    batch_size=40,
    device="cpu",
    progress=False,
)


def train_synthetic(out, **kw) -> dict:
    """Train a small synthetic run (:data:`SYNTHETIC`, ``kw`` replaced) into ``out``, for the analysis tests."""
    return T.train(C.make_config(**(SYNTHETIC | kw)), out)


def random_problem(n, posterior, B=64, seed=3, dtype=np.float64, **kw):
    """A model's initial parameters, uniform targets and standard-normal noise from ``seed`` (MNIST-sized m)."""
    from mlpvae.nn import model

    mc = model.ModelConfig(n=n, posterior=posterior, **kw)
    rng = np.random.default_rng(seed)
    params = model.init_params(mc, rng, dtype=dtype)
    x = rng.random((B, mc.m)).astype(dtype)
    eps = rng.standard_normal((B, n)).astype(dtype)
    return mc, params, x, eps
