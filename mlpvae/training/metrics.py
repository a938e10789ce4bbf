"""A run's ``metrics.csv``: its columns, one appended row per epoch, and rows dropped past a checkpoint (Sec. 7).

Written by :mod:`mlpvae.training.train`; read by the plots and summaries of
:mod:`mlpvae.experiments`.  Floats are written with six decimals, so a resumed
run's file equals an uninterrupted one's.
"""

from __future__ import annotations

import csv
from pathlib import Path

from mlpvae.nn.batched import FLOATING
from mlpvae.training import checkpoint


def metric_columns(posterior: str) -> list[str]:
    """The columns of ``metrics.csv`` for a posterior: two labelled test ELBOs for floating-prior models, else one."""
    tests = ["test_elbo_s2_train", "test_elbo_s2_test"] if posterior in FLOATING else ["test_elbo"]
    return ["epoch", "train_objective", *tests, "seconds", "eval_seconds", "status"]


def keep_rows(path: Path, upto: int) -> None:
    """Drop metrics rows of epochs after the checkpoint (written before a crash); atomic."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= upto]
    checkpoint.atomic_write(path, lambda f: f.write("".join(kept).encode()))


def append_row(path: Path, columns: list[str], row: dict) -> None:
    """Append one row to a metrics file, writing the header first when the file is new."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
