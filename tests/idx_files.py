"""Small IDX data sets written for the tests of data loading and its faults (not MNIST: random images)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from mlpvae.training import idx


def idx_bytes(a: np.ndarray, code: int = 0x08) -> bytes:
    """The IDX file of ``a``: magic (two zero bytes, type code, rank), big-endian shape, data."""
    head = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return head + a.astype(idx.IDX_TYPES[code]).tobytes()


def write_set(d: Path, n_train=7, n_test=3, gz=False, seed=0) -> dict[str, np.ndarray]:
    """The four files of an MNIST-shaped set of random images in ``d`` (gzipped with ``gz``); returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    d.mkdir(parents=True, exist_ok=True)
    for stem, a in arrays.items():
        b = idx_bytes(a)
        if gz:
            (d / (stem + ".gz")).write_bytes(gzip.compress(b))
        else:
            (d / stem).write_bytes(b)
    return arrays
