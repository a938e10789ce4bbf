"""mlpvae.experiments.cluster and figure_tasks: a figure on a LocalCluster of processes is bit for bit the
in-process figure, survives a worker killed with SIGKILL, reports a failing unit once and finishes the others.

One LocalCluster of two worker processes (one thread each) serves the module; the runs are tiny
synthetic ones (``tests/tiny_runs.py``'s sizes), so the whole module takes seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TOL
from threadpoolctl import threadpool_limits
from tiny_runs import assert_same_run, rows, train_synthetic

from mlpvae.experiments import analyze_runs as AR
from mlpvae.experiments import cluster as X
from mlpvae.experiments import figure_tasks as F
from mlpvae.experiments import reproduce as R
from mlpvae.experiments import run_queue as Q
from mlpvae.training import checkpoint
from mlpvae.training import streams as S
from vaetheory import cli

TINY_FIG = """
title = "tiny"
paper = "none"
seeds = [0, 1]

[defaults]
dataset = "synthetic"
m = 16
n = 2
hidden = 8
limit = 120
test_limit = 20
batch_size = 40
epochs = 3
device = "cpu"
progress = false

[methods.learned]
posterior = "learned"

[methods.bilbo]
posterior = "bilbo"
"""
QUIET = dict(log=lambda s: None, progress=False)


@pytest.fixture(scope="module")
def executor():
    ex = X.start(workers=2, log=lambda s: None, progress=False)
    yield ex
    ex.close()


@pytest.fixture
def fig(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_FIG)
    return path


def test_workers_and_scheduler_are_checked_and_without_either_there_is_no_cluster(monkeypatch):
    assert X.start(None, None) is None  # in-process, as before
    assert X.parse_workers(None) is None and X.parse_workers("3") == 3 and X.parse_workers("GPU") == "gpu"
    for bad in ("0", "two", "-1"):
        with pytest.raises(ValueError, match="--workers"):
            X.parse_workers(bad)
    with pytest.raises(ValueError, match="not both"):
        X.start("tcp://127.0.0.1:1", 2)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if the cluster extra were not installed
    with pytest.raises(X.ClusterError, match=r"pip install -e \"\.\[cluster\]\""):
        X.start(workers=2)
    monkeypatch.setitem(sys.modules, "dask_cuda", None)
    monkeypatch.delitem(sys.modules, "distributed")
    with pytest.raises(X.ClusterError, match="dask-cuda"):
        X.start(workers="gpu")


def test_the_shared_folder_check_passes_on_local_workers_and_leaves_nothing(executor, tmp_path):
    seconds = executor.check_shared(tmp_path / "root")
    assert 0 < seconds < 60 and executor.check_seconds == seconds
    assert list((tmp_path / "root").iterdir()) == []  # the token file is gone
    assert len(executor.describe()["workers"]) == 2


class OtherMachine:
    """A client whose second worker sees another filesystem at the same path (as a machine without the share)."""

    def __init__(self, elsewhere: Path):
        self.elsewhere = elsewhere

    def run(self, fn, path):
        moved = self.elsewhere / Path(path).name
        return {"tcp://here:1": fn(path), "tcp://there:2": fn(str(moved))}


def test_a_worker_that_cannot_see_the_folder_is_refused_by_name(tmp_path):
    ex = X.Executor(OtherMachine(tmp_path / "not-shared"), kind="two machines")
    with pytest.raises(X.ClusterError, match=r"1 of 2 worker\(s\) cannot use .*tcp://there:2: error: No such file"):
        ex.check_shared(tmp_path / "root")
    (tmp_path / "not-shared").mkdir()
    (tmp_path / "not-shared" / "x").write_text("")
    ex.client.elsewhere = tmp_path / "not-shared"
    with pytest.raises(X.ClusterError, match="tcp://there:2: error"):
        ex.check_shared(tmp_path / "root")  # a folder there, but not this one: the token is not found
    assert X.read_token(str(tmp_path / "missing" / "t")).startswith("error: ")


def test_a_figure_on_the_cluster_is_bit_for_bit_the_in_process_one(executor, fig, tmp_path):
    with threadpool_limits(limits=1, user_api="blas"):  # as on a worker: one BLAS thread
        here = R.reproduce(fig, tmp_path / "here", **QUIET)
    there = R.reproduce(fig, tmp_path / "there", **QUIET, executor=executor)
    stacked = R.reproduce(fig, tmp_path / "stacked", **QUIET, executor=executor, stack=True)
    for info in (there, stacked):
        assert info["status"] == "completed" and info["cluster"]["shared_folder_check_seconds"] > 0
        assert [(r["method"], r["seed"], r["action"]) for r in info["runs"]] == [
            (r["method"], r["seed"], r["action"]) for r in here["runs"]
        ]
        assert {r["worker"] for r in info["runs"]} <= set(info["cluster"]["workers"])
    assert {r["stacked_with"] for r in stacked["runs"]} == {2}
    for m in ("learned", "bilbo"):
        for s in (0, 1):
            for other in ("there", "stacked"):
                assert_same_run(tmp_path / "here/tiny" / m / f"seed{s}", tmp_path / other / "tiny" / m / f"seed{s}")
    summaries = [json.loads((tmp_path / r / "tiny/summary.json").read_text()) for r in ("here", "there", "stacked")]
    elbos = [[m["test_elbo"] for m in s["methods"]] for s in summaries]
    assert elbos[0] == elbos[1] == elbos[2]
    queue = json.loads((tmp_path / "there/tiny/queue.json").read_text())
    assert queue["finished"] and {r["state"] for r in queue["runs"].values()} == {"done"}
    assert not (tmp_path / "here/tiny/queue.json").exists()  # in-process: nothing new


def kill_when_checkpointed(figure_dir: Path, key: str, epoch: int, seen: dict) -> threading.Thread:
    """Watch ``queue.json``: once run ``key`` runs and its checkpoint is at ``epoch`` or later, SIGKILL its worker.

    ``seen`` gets what the run held at the kill: its checkpoint epoch, its metrics rows and the --list line.
    """

    def watch():
        deadline = time.monotonic() + 120
        ck = figure_dir.parent / key / "checkpoint.npz"
        while time.monotonic() < deadline:
            q = Q.read_json(figure_dir / F.QUEUE) or {}
            r = q.get("runs", {}).get(key, {})
            if r.get("state") == "running" and ck.exists():
                at = int(checkpoint.load(ck)["epoch"])
                if at >= epoch:
                    seen["note"] = F.queue_note(figure_dir, key)
                    seen["epoch"], seen["rows"] = at, rows(ck.parent / "metrics.csv")[:at]
                    os.kill(int(r["pid"]), signal.SIGKILL)  # killed, not asked to stop
                    seen["pid"] = int(r["pid"])
                    return
            time.sleep(0.005)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_a_killed_worker_loses_nothing_past_its_checkpoint_and_the_run_resumes_bit_for_bit(executor, fig, tmp_path):
    epochs = 400  # long enough (seconds) that the kill lands mid-run
    quick = dict(QUIET, seeds=[0], methods=["learned"], epochs=epochs)
    seen: dict = {}
    watcher = kill_when_checkpointed(tmp_path / "killed/tiny", "tiny/learned/seed0", 3, seen)
    info = R.reproduce(fig, tmp_path / "killed", **quick, executor=executor)
    watcher.join(5)
    assert "pid" in seen, "the worker was never killed"
    assert 3 <= seen["epoch"] < epochs, f"killed at epoch {seen['epoch']}: not mid-run"
    assert seen["note"].startswith("queue: running on tcp://") and f"(pid {seen['pid']} on " in seen["note"]
    run = info["runs"][0]
    assert (run["action"], run["status"], run["epochs_done"]) == ("resumed", "completed", epochs)
    assert run["worker"] in info["cluster"]["workers"] or run["worker"].startswith("tcp://")
    d = tmp_path / "killed/tiny/learned/seed0"
    # the epochs checkpointed before the kill were not trained again: their rows, timings included, are kept
    assert rows(d / "metrics.csv")[: seen["epoch"]] == seen["rows"]
    assert [int(r["epoch"]) for r in rows(d / "metrics.csv")] == list(range(1, epochs + 1))
    with threadpool_limits(limits=1, user_api="blas"):
        R.reproduce(fig, tmp_path / "whole", **quick)
    assert_same_run(tmp_path / "whole/tiny/learned/seed0", d)


FAILING_FIG = (
    TINY_FIG.replace("seeds = [0, 1]", "seeds = [0]")
    + """
[methods.diverges]
likelihood = "gaussian-learned"
lr = 1e6

[methods.nodata]
dataset = "mnist"
m = 784
data = "/nonexistent/mnist"
"""
)


def test_a_failing_unit_is_reported_once_with_its_message_and_the_others_finish(executor, tmp_path, capsys):
    path = tmp_path / "failing.toml"
    path.write_text(FAILING_FIG)
    lines: list[str] = []
    info = R.reproduce(path, tmp_path / "out", log=lines.append, executor=executor)
    by = {r["method"]: r for r in info["runs"]}
    assert info["status"] == "completed with failures"
    assert [f["runs"] for f in info["failures"]] == [["failing/nodata/seed0"]]
    assert "DataNotFoundError" in info["failures"][0]["message"] and "/nonexistent/mnist" in by["nodata"]["action"]
    assert by["nodata"]["status"] == "failed"
    assert (by["learned"]["status"], by["bilbo"]["status"], by["diverges"]["status"]) == (
        "completed",
        "completed",
        "diverged",
    )
    assert sum(ln.startswith("  running  failing/nodata/seed0 on") for ln in lines) == 1  # not retried
    assert any(ln.startswith("  failed   failing/nodata/seed0: DataNotFoundError") for ln in lines)
    assert cli.main(["reproduce", str(path), "--out", str(tmp_path / "out"), "--list"]) == 0
    listed = capsys.readouterr().out
    assert "nodata/seed0: new" in listed and "queue: failed: DataNotFoundError" in listed
    assert "diverges/seed0: diverged" in listed and "queue: done (diverged)" in listed
    assert "learned/seed0: finished" in listed and "queue: done" in listed


def test_the_cli_runs_a_figure_on_workers_and_exits_1_on_a_failed_unit(tmp_path, capsys):
    path = tmp_path / "failing.toml"
    path.write_text(FAILING_FIG)
    args = ["reproduce", str(path), "--out", str(tmp_path / "out"), "--workers", "1", "--methods", "learned,nodata"]
    assert cli.main(args) == 1
    out, err = capsys.readouterr()
    assert "cluster: a LocalCluster of 1 worker process(es)" in err and "every worker sees" in err
    assert "vaetheory reproduce: failed: failing/nodata/seed0: DataNotFoundError" in err
    # the whole message (with every place looked in) once; progress lines carry its first line only
    assert err.count("looked in:\n  /nonexistent/mnist") == 1 and "Compute Failed" not in err
    assert "queue.json" in out and (tmp_path / "out/failing/learned/seed0/checkpoint.npz").exists()


def test_a_queue_whose_driver_ended_says_so(tmp_path):
    q = F.QueueFile(tmp_path / F.QUEUE, ["a/seed0", "b/seed0"], "test")
    q.set(["a/seed0"], "running", worker="tcp://w:1", host="h", pid=7)
    assert F.queue_note(tmp_path, "a/seed0") == "queue: running on tcp://w:1 (pid 7 on h)"
    assert F.queue_note(tmp_path, "b/seed0") == "queue: queued"
    assert F.queue_note(tmp_path, "c/seed0") is None
    q.data["driver"]["pid"] = 2**22 + 12345  # beyond pid_max: no such process
    q.write()
    assert F.queue_note(tmp_path, "b/seed0").endswith(f"when its driver (pid {2**22 + 12345}) ended")
    q.close()
    assert "when its driver stopped at" in F.queue_note(tmp_path, "a/seed0")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for s in (0, 1):
        train_synthetic(root / f"seed{s}", seed=s, epochs=2)
    return [root / "seed0", root / "seed1"]


def same_npz(a: Path, b: Path) -> None:
    with np.load(a) as x, np.load(b) as y:
        assert sorted(x.files) == sorted(y.files)
        for k in x.files:
            # the same arithmetic per image; some BLAS kernels (OpenBLAS' Haswell ones) round a product by an
            # ulp differently with the thread count or the rows in the batch, so float arrays agree to rounding
            if np.issubdtype(x[k].dtype, np.floating):
                np.testing.assert_allclose(x[k], y[k], rtol=TOL["known_answer_f64"], atol=0, err_msg=k)
            else:
                np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_analyses_of_many_runs_on_the_cluster_are_those_of_one_process_in_order(executor, two_runs, tmp_path):
    here = [tmp_path / "here" / d.name for d in two_runs]
    for d, h in zip(two_runs, here):
        shutil.copytree(d, h)
    opts = dict(images=4, iwae_k=30, elbo_k=2, device="cpu")
    with threadpool_limits(limits=1, user_api="blas"):
        local = AR.analyze_many([str(h) for h in here], "grid", opts)
    there = AR.analyze_many([str(d) for d in two_runs], "grid", opts, executor)
    assert all(e is None for _, e in local + there) and executor.check_seconds > 0
    for (lv, _), (tv, _), h, d in zip(local, there, here, two_runs):
        assert tv["written"] == [str(d / "grid_evidence.json"), str(d / "grid_evidence_per_image.npz")]
        assert lv["report"].replace(str(h), str(d)) == tv["report"]  # in the order given
        same_npz(h / "grid_evidence_per_image.npz", d / "grid_evidence_per_image.npz")
    # a run that fails is reported with its message; the other is analysed
    broken = tmp_path / "broken"
    shutil.copytree(two_runs[0], broken)
    (broken / "checkpoint.npz").write_bytes(b"not a checkpoint")
    out = AR.analyze_many([str(broken), str(two_runs[1])], "analysis", dict(iwae_k=10, elbo_k=2, plots=False), executor)
    assert out[0][0] is None and "checkpoint" in out[0][1].lower()
    assert out[1][1] is None and "# Analysis of" in out[1][0]["report"]
    with pytest.raises(ValueError, match="twice"):
        AR.analyze_many([str(broken), str(broken)], "analysis", {})


def test_the_analyze_command_takes_many_runs_and_a_scheduler_address(executor, two_runs, capsys):
    address = executor.client.scheduler.address
    argv = ["analyze", *map(str, two_runs), "--mode-images", "3", "--iwae-k", "20", "--elbo-k", "2"]
    assert cli.main([*argv, "--scheduler", address, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.index(str(two_runs[0])) < out.index(str(two_runs[1]))  # reports in the order given
    assert out.count("wrote 2 files:") == 2 and (two_runs[1] / "mode_evidence.json").exists()
    assert cli.main(["analyze", str(two_runs[0]), str(two_runs[1]), "--summarize"]) == 2
    assert cli.main(["analyze", str(two_runs[0]), "nowhere", "--mode-images", "3"]) == 2


def test_chunks_of_images_are_gathered_in_order_and_the_grid_is_that_of_one_piece(executor, two_runs, tmp_path):
    assert AR.chunks_of(5, 2) == [(0, 2), (2, 2), (4, 1)] and AR.chunks_of(5, None) == [(0, 5)]
    runs = {w: tmp_path / w for w in ("whole", "here", "there")}
    for d in runs.values():
        shutil.copytree(two_runs[0], d)
    opts = dict(images=5, iwae_k=30, elbo_k=2, device="cpu")
    with threadpool_limits(limits=1, user_api="blas"):
        ((whole, e0),) = AR.analyze_many([str(runs["whole"])], "grid", opts)
        ((here, e1),) = AR.analyze_many([str(runs["here"])], "grid", opts, chunk=2)
    ((there, e2),) = AR.analyze_many([str(runs["there"])], "grid", opts, executor, chunk=2)
    assert e0 is e1 is e2 is None
    same_npz(runs["here"] / "grid_evidence_per_image.npz", runs["there"] / "grid_evidence_per_image.npz")
    with (
        np.load(runs["whole"] / "grid_evidence_per_image.npz") as a,
        np.load(runs["there"] / "grid_evidence_per_image.npz") as b,
    ):
        assert sorted(a.files) == sorted(b.files)
        for k in ("grid_log_px", "grid_err", "mode", "mu", "eq16_at_mean", "eq16_at_mode", "gap_eq18"):
            # deterministic per image: chunks change nothing but the rounding of the encoder's products, which
            # some BLAS kernels block by the number of rows (OpenBLAS' Haswell kernels: 1 ulp in mu)
            np.testing.assert_allclose(a[k], b[k], rtol=TOL["known_answer_f64"], atol=0, err_msg=k)
        assert not np.array_equal(a["iwae"][2:], b["iwae"][2:])  # later chunks draw from their own streams
    summary = json.loads((runs["there"] / "grid_evidence.json").read_text())
    assert summary["chunks"] == 3 and summary["images"] == 5
    with pytest.raises(ValueError, match="--chunk-images"):
        AR.analyze_many([str(runs["here"])], "analysis", dict(images=5), chunk=2)
    # the posterior modes (any n) in chunks: the same per-image search, gathered in order
    opts = dict(images=5, iwae_k=20, elbo_k=2, device="cpu")
    with threadpool_limits(limits=1, user_api="blas"):
        ((_, e3),) = AR.analyze_many([str(runs["whole"])], "mode", opts)
        ((_, e4),) = AR.analyze_many([str(runs["here"])], "mode", opts, chunk=2)
    ((_, e5),) = AR.analyze_many([str(runs["there"])], "mode", opts, executor, chunk=2)
    assert e3 is e4 is e5 is None
    same_npz(runs["here"] / "mode_evidence_per_image.npz", runs["there"] / "mode_evidence_per_image.npz")
    with (
        np.load(runs["whole"] / "mode_evidence_per_image.npz") as a,
        np.load(runs["there"] / "mode_evidence_per_image.npz") as b,
    ):
        for k in ("mode", "mu", "log_joint_at_mode", "eq16_at_mode"):  # to rounding, as same_npz says why
            np.testing.assert_allclose(a[k], b[k], rtol=TOL["known_answer_f64"], atol=0, err_msg=k)
        np.testing.assert_array_equal(a["iterations"], b["iterations"])
    # a chunk's stream depends on where it starts only, and is not the unchunked one
    a, b = (S.chunk_generator(3, S.STREAM_ANALYSIS, 2, 4).standard_normal(4) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, S.generator(3, S.STREAM_ANALYSIS, 2).standard_normal(4))
    with pytest.raises(ValueError, match="first"):
        S.chunk_generator(3, S.STREAM_ANALYSIS, 2, 0)


def test_a_task_that_kills_every_worker_it_runs_on_is_given_up_and_the_others_finish(executor):
    lines: list[str] = []
    outs = list(executor.run(os._exit, [(3,)], ["dies"], log=lines.append, progress=False))
    outs += list(executor.run(os.getpid, [()], ["lives"], log=lines.append, progress=False))
    by = {o.name: o for o in outs}
    assert by["dies"].value is None and by["dies"].error.startswith("KilledWorker")
    assert by["lives"].error is None
    # given up after distributed.scheduler.allowed-failures (3) + 1 deaths; a dying worker's start events may be lost
    assert "on 4 different workers" in by["dies"].error, by["dies"].error


def test_gpu_tasks_without_a_gpu_worker_are_refused_not_left_waiting(executor, fig, tmp_path):
    assert executor.gpu_workers() == []  # a LocalCluster of CPU processes
    with pytest.raises(X.ClusterError, match="no worker offers the resource GPU"):
        list(executor.run(os.getpid, [()], ["g"], gpu=True, progress=False))
    with pytest.raises(X.ClusterError, match="resource GPU"):
        R.reproduce(fig, tmp_path, **QUIET, executor=executor, device="gpu")


def test_failures_with_one_message_are_said_once_and_progress_lines_stay_one_line():
    failures = [
        {"runs": ["f/a/seed0"], "message": "DataNotFoundError: not found; looked in:\n  /x"},
        {"runs": ["f/b/seed0"], "message": "ValueError: bad"},
        {"runs": ["f/a/seed1", "f/a/seed2"], "message": "DataNotFoundError: not found; looked in:\n  /x"},
    ]
    assert R.grouped_failures(failures) == [
        (["f/a/seed0", "f/a/seed1", "f/a/seed2"], "DataNotFoundError: not found; looked in:\n  /x"),
        (["f/b/seed0"], "ValueError: bad"),
    ]
    assert (
        X.first_line("DataNotFoundError: not found; looked in:\n  /x")
        == "DataNotFoundError: not found; looked in: (...)"
    )
    assert X.first_line("ValueError: bad") == "ValueError: bad"
    assert X.first_line("ValueError: bad\n") == "ValueError: bad"
