"""Faults of ``vaetheory reproduce``: the run lock has no window, recorded results are never destroyed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlpvae.experiments import run_queue as Q
from mlpvae.training import config as C


def hold_lock(path: Path) -> subprocess.Popen:
    """Another process that holds ``path``'s OS lock (and has written nothing into it) until killed."""
    code = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_queues_side_by_side_skip_the_runs_another_process_trains(tmp_path):
    cfgs = [
        C.TrainConfig(
            dataset="synthetic",
            m=16,
            hidden=8,
            layers=2,
            epochs=1,
            limit=60,
            test_limit=20,
            seed=s,
            device="cpu",
            progress=False,
        )
        for s in (0, 1)
    ]
    dirs = [tmp_path / "seed0", tmp_path / "seed1"]
    other = hold_lock(dirs[1] / ".lock")  # another process holds seed 1
    try:
        (dirs[1] / ".lock").write_text(str(other.pid))
        (a0, i0), (a1, i1) = Q.ensure_runs(cfgs, dirs)
    finally:
        other.kill()
        other.wait()
    assert a0 == "trained" and i0["status"] == "completed"
    assert a1.startswith("skipped (") and f"process {other.pid}" in a1 and i1 == {}
    assert not (dirs[1] / "checkpoint.npz").exists() and (dirs[1] / ".lock").exists()


def test_a_lock_taken_but_not_yet_written_is_not_stale(tmp_path):
    # the fault: a second process arriving between the lock file's creation and the pid write
    # found it empty, took it for stale and trained the run too
    d = tmp_path / "run"
    other = hold_lock(d / ".lock")
    try:
        assert (d / ".lock").read_text() == ""
        with pytest.raises(Q.Busy, match="being trained by process"):
            with Q.run_lock(d):
                pass
        assert (d / ".lock").exists()
    finally:
        other.kill()
        other.wait()
    # its process gone, the lock goes with it: an empty file left behind is no lock
    with Q.run_lock(d):
        assert (d / ".lock").read_text() == str(os.getpid())
    assert not (d / ".lock").exists()
