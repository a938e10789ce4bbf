"""Faults of ``vaetheory reproduce``: the run lock has no window, recorded results are never destroyed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlpvae.experiments import figure_schema as S
from mlpvae.experiments import reproduce as R
from mlpvae.experiments import run_queue as Q
from mlpvae.training import config as C
from vaetheory import cli


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
    other = hold_lock(dirs[1] / ".queue.lock")  # another process holds seed 1
    try:
        (dirs[1] / ".queue.lock").write_text(str(other.pid))
        (a0, i0), (a1, i1) = Q.ensure_runs(cfgs, dirs)
    finally:
        other.kill()
        other.wait()
    assert a0 == "trained" and i0["status"] == "completed"
    assert a1.startswith("skipped (") and f"process {other.pid}" in a1 and i1 == {}
    assert not (dirs[1] / "checkpoint.npz").exists() and (dirs[1] / ".queue.lock").exists()


def test_a_lock_taken_but_not_yet_written_is_not_stale(tmp_path):
    # the fault: a second process arriving between the lock file's creation and the pid write
    # found it empty, took it for stale and trained the run too
    d = tmp_path / "run"
    other = hold_lock(d / ".queue.lock")
    try:
        assert (d / ".queue.lock").read_text() == ""
        with pytest.raises(Q.Busy, match="being trained by process"):
            with Q.run_lock(d):
                pass
        assert (d / ".queue.lock").exists()
    finally:
        other.kill()
        other.wait()
    # its process gone, the lock goes with it: an empty file left behind is no lock
    with Q.run_lock(d):
        assert (d / ".queue.lock").read_text() == str(os.getpid())
    assert not (d / ".queue.lock").exists()


# ---------------------------------------------------------------------------
# recorded results without their checkpoints (a fresh clone: checkpoints are not committed)
# ---------------------------------------------------------------------------
FIGURES = Path(__file__).resolve().parents[2] / "validation" / "figures"
SMALL = {"dataset": "synthetic", "m": 16, "hidden": 8, "batch_size": 100}
QUICK = dict(seeds=[0], epochs=1, limit=200, test_limit=100, sets=SMALL, device="cpu", progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cloned(tmp_path_factory):
    """A figure's recorded results as a fresh clone has them: every file but the checkpoints."""
    root = tmp_path_factory.mktemp("recorded")
    R.reproduce(FIGURES / "fig4_2d.toml", root, **QUICK, log=lambda s: None)
    for ck in root.rglob("checkpoint.npz"):
        ck.unlink()
    return root


def _list_args(root: Path) -> list[str]:
    sets = [a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")]
    return ["reproduce", str(FIGURES / "fig4_2d.toml"), "--out", str(root), "--seeds", "0", "--epochs", "1"] + [
        "--limit",
        "200",
        "--test-limit",
        "100",
        "--device",
        "cpu",
        "--no-progress",
        *sets,
    ]


def test_list_shows_a_run_without_checkpoint_as_completed_not_new(cloned, capsys):
    assert cli.main([*_list_args(cloned), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(": completed (no checkpoint) (1 epochs" in ln for ln in lines)


def test_no_train_keeps_every_recorded_file_byte_identical(cloned):
    before = _files(cloned)
    said = []
    info = R.reproduce(FIGURES / "fig4_2d.toml", cloned, **QUICK, train=False, log=said.append)
    assert _files(cloned) == before  # the samples PNG is not redrawn as "no checkpoint" panels; run.json kept
    assert any(s.startswith("kept") and "fig4c_samples_2d.png" in s for s in said)
    assert any(s.startswith("kept") and s.split(":")[0].endswith("fig4_2d/run.json") for s in said)
    assert [r["status"] for r in info["runs"]] == ["completed"] * 3


def test_a_plain_run_keeps_recorded_runs_and_retrain_trains_them_afresh(cloned, tmp_path):
    before = _files(cloned)
    info = R.reproduce(FIGURES / "fig4_2d.toml", cloned, **QUICK, log=lambda s: None)
    assert [r["action"] for r in info["runs"]] == ["kept (completed, no checkpoint; --retrain trains it afresh)"] * 3
    assert _files(cloned) == before and not list(cloned.rglob("checkpoint.npz"))
    # summarised from the metrics; a panel PNG drawn where there was none says the model is missing
    summary = json.loads((cloned / "fig4_2d/summary.json").read_text())
    assert all(r["test_elbo"] and r["status"] == ["completed"] for r in summary["methods"])
    copy = tmp_path / "copy"
    shutil.copytree(cloned, copy)
    (copy / "fig4_2d/fig4c_samples_2d.png").unlink()
    R.reproduce(FIGURES / "fig4_2d.toml", copy, **QUICK, train=False, log=lambda s: None)
    assert (copy / "fig4_2d/fig4c_samples_2d.png").stat().st_size > 5000
    # --retrain: deleted and trained afresh
    again = R.reproduce(FIGURES / "fig4_2d.toml", copy, **QUICK, retrain=True, log=lambda s: None)
    assert [r["action"] for r in again["runs"]] == ["retrained (--retrain)"] * 3
    assert len(list(copy.rglob("checkpoint.npz"))) == 3


def test_out_defaults_to_a_local_root_beside_the_recorded_one(tmp_path, capsys):
    fig = S.load_figure(FIGURES / "fig4_2d.toml")
    assert S.default_root(fig, False) == FIGURES.parent / "results" / "figures-local"
    assert S.default_root(fig, True) == FIGURES.parent / "results" / "figures-quick"
    (tmp_path / "v/figures").mkdir(parents=True)
    shutil.copy(FIGURES / "fig4_2d.toml", tmp_path / "v/figures")
    elsewhere = S.load_figure(tmp_path / "v/figures/fig4_2d.toml")
    assert S.default_root(elsewhere, False) == tmp_path / "v/results/figures"  # no recorded results there
    (tmp_path / "v/results/figures").mkdir(parents=True)
    assert S.default_root(elsewhere, False) == tmp_path / "v/results/figures-local"
    # --list says what the record holds beside the local state
    assert cli.main(["reproduce", str(FIGURES / "fig4_2d.toml"), "--seeds", "0", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(f"recorded in {FIGURES.parent / 'results' / 'figures'}: " in ln for ln in lines)
    assert all(ln.split(":")[0].startswith(str(FIGURES.parent / "results" / "figures-local")) for ln in lines)


def test_a_curves_plot_none_of_whose_runs_exist_is_not_drawn_as_empty_axes(tmp_path):
    from mlpvae.experiments.panels import make_plots

    fig = S.load_figure(FIGURES / "fig8.toml")
    said: list[str] = []
    make_plots(fig, tmp_path, None, said.append)
    curves = [spec["file"] for spec in fig.plots if spec["kind"] == "curves"]
    assert curves and not any((tmp_path / fig.name / f).exists() for f in curves)
    assert sum(s.startswith("not drawn") for s in said) == len(curves)
