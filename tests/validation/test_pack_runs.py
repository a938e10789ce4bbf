"""validation/scripts/device/pack_runs.py: finished runs travel as parameters only, cut-off runs whole (resumable)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from tiny_runs import TINY, assert_same_run

from mlpvae.training import checkpoint
from mlpvae.training import config as C
from mlpvae.training import train as T

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("pack_runs", ROOT / "validation/scripts/device/pack_runs.py")
pack_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pack_runs)


def test_a_cut_off_run_keeps_its_adam_state_and_resumes_exactly(tmp_path):
    results = tmp_path / "results" / "figx"
    T.train(C.TrainConfig(epochs=2, **TINY), tmp_path / "straight")
    T.train(C.TrainConfig(epochs=2, **TINY), results / "done" / "seed0")
    T.train(C.TrainConfig(epochs=1, **TINY), results / "cut" / "seed0")
    # what a run killed by `timeout` leaves: its last checkpoint, and run.json still saying "running"
    info = json.loads((results / "cut/seed0/run.json").read_text())
    (results / "cut/seed0/run.json").write_text(json.dumps(info | {"status": "running"}))

    assert pack_runs.main(str(tmp_path / "results"), str(tmp_path / "packed"), "figx") == 0
    done = checkpoint.load(tmp_path / "packed/figx/done/seed0/checkpoint.npz")
    cut = checkpoint.load(tmp_path / "packed/figx/cut/seed0/checkpoint.npz")
    assert "adam" not in done and set(done) == {"params", "epoch", "seed", "config"}
    assert "adam" in cut and cut["epoch"] == 1

    # brought home, the cut-off run resumes to the same run as one trained straight through
    home = tmp_path / "home"
    shutil.copytree(tmp_path / "packed/figx/cut/seed0", home)
    T.train(C.TrainConfig(epochs=2, **TINY), home, resume=True)
    assert_same_run(home, tmp_path / "straight")  # parameters, Adam state and metrics
