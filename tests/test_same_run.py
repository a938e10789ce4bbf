"""validation/gpu/same_run.py: says identical only when parameters, Adam state and metrics all agree."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from test_gpu_train import TINY

from gpu import config as C, train as T

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("same_run", ROOT / "validation/gpu/same_run.py")
same_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(same_run)


def test_a_stacks_model_is_reported_identical_and_another_seed_is_not(tmp_path, capsys):
    T.train(C.TrainConfig(epochs=2, **TINY), tmp_path / "alone")
    T.train_many([C.TrainConfig(epochs=2, **(TINY | {"seed": s})) for s in (0, 1)],
                 [tmp_path / "stack0", tmp_path / "stack1"])
    assert same_run.main([str(tmp_path / p) for p in ("alone", "stack0", "stack1", "missing")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "identical" in lines[0] and "stack0" in lines[0]
    assert "differs" in lines[1] and "first different metric row: epoch 1" in lines[1]
    assert "not comparable" in lines[2]
