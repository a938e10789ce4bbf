"""validation/scripts/device/same_run.py and stack_parts.py: what they report, on NumPy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from tiny_runs import TINY

from mlpvae.training import config as C
from mlpvae.training import train as T

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("same_run", ROOT / "validation/scripts/device/same_run.py")
same_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(same_run)


def test_a_stacks_model_is_reported_identical_and_another_seed_is_not(tmp_path, capsys):
    T.train(C.TrainConfig(epochs=2, **TINY), tmp_path / "alone")
    T.train_many(
        [C.TrainConfig(epochs=2, **(TINY | {"seed": s})) for s in (0, 1)], [tmp_path / "stack0", tmp_path / "stack1"]
    )
    assert same_run.main([str(tmp_path / p) for p in ("alone", "stack0", "stack1", "missing")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "identical" in lines[0] and "stack0" in lines[0]
    assert "differs" in lines[1] and "first different metric row: epoch 1" in lines[1]
    assert "not comparable" in lines[2]


def test_stack_parts_reports_every_piece_identical_on_numpy(capsys):
    spec = importlib.util.spec_from_file_location("stack_parts", ROOT / "validation/scripts/device/stack_parts.py")
    stack_parts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stack_parts)
    assert stack_parts.main(["--device", "cpu", "--models", "2", "--batch", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == 15 * 2 + 3 * 2 + 1 + 3 * 2  # products (batched, per model), sums, mean, loss_and_grads
    assert all("2/2 models identical" in line or "outputs identical" in line for line in lines), lines
    a = np.ones((2, 3), np.float32)
    assert stack_parts._compare("x", a, [a[:1], a[1:] + np.float32(1e-7)]).endswith(
        "1/2 models identical; max |diff| 1.19e-07"
    )
