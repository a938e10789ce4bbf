"""Faults of `vaetheory train` (docs/guarantees.md, "Training runs"): each test makes one happen.

Concurrent writers, corrupted or out-of-range checkpoints, SIGKILL / SIGTERM / a full disk during a run,
stale temporary files, failed starts, and settings that are wrong or mean nothing for the model.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import HAVE_MNIST, TINY, assert_same_run, rows, tiny

from mlpvae.training import checkpoint, rundir
from mlpvae.training import config as C
from mlpvae.training import train as T
from mlpvae.training.step import TrainingStep
from vaetheory.cli import main

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def tiny_flags(**kw) -> list[str]:
    """`vaetheory train` flags of the tiny config with ``kw`` replaced."""
    d = {k: v for k, v in (TINY | kw).items() if k != "progress"}
    return [a for k, v in d.items() for a in ("--" + k.replace("_", "-"), str(v))] + ["--no-progress"]


def cli(*args, capsys):
    """`vaetheory ...` in this process: (exit status, stderr)."""
    status = main([str(a) for a in args])
    return status, capsys.readouterr().err


def hold(out: Path) -> subprocess.Popen:
    """Another process that holds ``out`` as its writer until killed."""
    code = (
        "import sys; from mlpvae.training import rundir; from tiny_runs import tiny; "
        f"rundir.RunDir(tiny(), {str(out)!r}); print('held', flush=True); sys.stdin.read()"
    )
    env = dict(ENV, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}")
    pipe = subprocess.PIPE
    p = subprocess.Popen([sys.executable, "-c", code], stdin=pipe, stdout=pipe, text=True, env=env)
    assert p.stdout.readline().strip() == "held"
    return p


# ---------------------------------------------------------------- concurrent writers


def test_second_writer_is_refused_naming_the_holder_and_a_stale_lock_file_blocks_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    other = hold(out)
    try:
        with pytest.raises(rundir.RunDirBusy, match=f"pid {other.pid}"):
            T.train(tiny(epochs=1), out)
        status, err = cli("train", "--out", out, *tiny_flags(epochs=1), capsys=capsys)
        assert status == 2 and f"pid {other.pid}" in err and "Traceback" not in err
        assert not (out / "checkpoint.npz").exists()
    finally:
        other.kill()  # SIGKILL: its lock file stays behind, its lock goes with it
        other.wait()
    assert (out / rundir.LOCK_NAME).exists()
    T.train(tiny(epochs=1), out)
    assert not (out / rundir.LOCK_NAME).exists()  # released at the end


def test_two_lock_attempts_in_one_process_and_train_many_releases_every_directory(tmp_path):
    first = rundir.RunDir(tiny(), tmp_path / "a")
    with pytest.raises(rundir.RunDirBusy, match=f"pid {os.getpid()}"):
        rundir.RunDir(tiny(), tmp_path / "a")
    with pytest.raises(rundir.RunDirBusy):  # a stack that includes a held directory
        T.train_many([tiny(seed=0, epochs=1), tiny(seed=1, epochs=1)], [tmp_path / "b", tmp_path / "a"])
    assert not (tmp_path / "b").exists()  # the other directory is released and removed again
    first.close()
    T.train_many([tiny(seed=0, epochs=1), tiny(seed=1, epochs=1)], [tmp_path / "b", tmp_path / "a"])
    assert not list(tmp_path.glob("*/" + rundir.LOCK_NAME))


# ---------------------------------------------------------------- corrupted checkpoints


def corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "flipped byte":
        i = len(data) // 3  # inside the arrays: the zip's CRC no longer matches
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
    elif how == "missing entries":
        state = checkpoint.load(path)
        del state["params"]
        checkpoint.save(path, state)
    elif how == "missing array":
        state = checkpoint.load(path)
        del state["params"]["enc_W0"]
        checkpoint.save(path, state)
    elif how == "a directory":
        path.unlink()
        path.mkdir()
        (path / "x").write_text("x")
    elif how == "not a zip":
        path.write_text("hello\n" * 100)


@pytest.mark.parametrize(
    "how", ["truncated", "empty", "flipped byte", "missing entries", "missing array", "a directory", "not a zip"]
)
def test_corrupted_checkpoint_is_one_clear_error_naming_the_file(tmp_path, capsys, how):
    out = tmp_path / "run"
    T.train(tiny(epochs=1), out)
    metrics = (out / "metrics.csv").read_text()
    corrupt(out / "checkpoint.npz", how)
    status, err = cli("train", "--out", out, *tiny_flags(epochs=2), "--resume", capsys=capsys)
    assert status == 2 and "Traceback" not in err, err
    assert str(out / "checkpoint.npz") in err and err.count("\n") == 1, err
    assert (out / "metrics.csv").read_text() == metrics  # nothing dropped
    if how not in ("missing entries", "missing array"):
        with pytest.raises(checkpoint.CheckpointError, match="checkpoint.npz"):
            checkpoint.load(out / "checkpoint.npz")


def test_every_single_flipped_byte_loads_the_same_state_or_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, {"params": {"w": np.arange(6.0)}, "epoch": 3})
    data = path.read_bytes()
    for i in range(len(data)):
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1 :])
        try:
            state = checkpoint.load(path)
        except checkpoint.CheckpointError:
            continue
        # bytes the zip does not check (a timestamp, say) may change without harm
        assert state["epoch"] == 3 and np.array_equal(state["params"]["w"], np.arange(6.0)), i


def rewrite(path: Path, **changes) -> None:
    state = checkpoint.load(path)
    for k, v in changes.items():
        if k == "params":
            state["params"] = {n: a * v for n, a in state["params"].items()}
        else:
            state[k] = v
    checkpoint.save(path, state)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(epoch=-1), "epoch -1 is not a number of epochs"),
        (dict(epoch=True), "epoch True"),
        (dict(epoch=5), "at epoch 5, past --epochs 2; give --epochs 5 or more"),
        (dict(params=np.float32("nan")), "parameters are not all finite"),
        (dict(adam={"step": 1}), "Adam state does not fit"),
    ],
)
def test_checkpoint_out_of_range_or_not_finite_is_refused_and_metrics_are_kept(tmp_path, capsys, changes, message):
    out = tmp_path / "run"
    T.train(tiny(epochs=2), out)
    metrics, info = (out / "metrics.csv").read_text(), (out / "run.json").read_text()
    rewrite(out / "checkpoint.npz", **changes)
    status, err = cli("train", "--out", out, *tiny_flags(epochs=2), "--resume", capsys=capsys)
    assert status == 2 and message in err and "Traceback" not in err, err
    assert (out / "metrics.csv").read_text() == metrics  # epoch -1 must not drop every row
    assert (out / "run.json").read_text() == info  # nor claim "completed"


def test_parameters_turned_non_finite_by_the_last_update_are_not_the_last_good_checkpoint(tmp_path, monkeypatch):
    class Poisoned(TrainingStep):
        def __call__(self):
            super().__call__()
            if self.calls == 6:  # the last step of epoch 2: its loss was finite, its update is not
                self.params["enc_W0"][...] = np.nan

    monkeypatch.setattr(T, "TrainingStep", Poisoned)
    info = T.train(tiny(epochs=3), tmp_path)
    assert info["status"] == "diverged" and info["diverged"] == {"epoch": 2, "step": None}
    assert checkpoint.load(tmp_path / "checkpoint.npz")["epoch"] == 1
    assert json.loads((tmp_path / "run.json").read_text())["epochs_done"] == 1
    assert [x["status"] for x in rows(tmp_path / "metrics.csv")] == ["ok", "diverged: non-finite parameters"]


# ---------------------------------------------------------------- killed, stopped, disk full


def start_cli(out: Path, epochs: int) -> subprocess.Popen:
    args = [sys.executable, "-m", "vaetheory", "train", "--out", str(out), *tiny_flags(epochs=epochs, limit=600)]
    # SIGINT as a terminal sends it, even when this test runs where SIGINT is ignored (a background job)
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    pipe = subprocess.PIPE
    return subprocess.Popen(args, stdout=pipe, stderr=pipe, text=True, env=ENV, preexec_fn=default_sigint)


def wait_for_epoch(out: Path, p: subprocess.Popen, epoch: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:
        try:
            if json.loads((out / "run.json").read_text())["epochs_done"] >= epoch:
                return
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"no epoch {epoch} checkpoint: {p.poll()}")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killed_or_terminated_run_is_never_ahead_of_its_checkpoint_and_resumes_exactly(tmp_path, sig):
    epochs = 400
    out = tmp_path / "run"
    p = start_cli(out, epochs)
    wait_for_epoch(out, p, 2)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    info = json.loads((out / "run.json").read_text())
    ck = checkpoint.load(out / "checkpoint.npz")
    assert 2 <= info["epochs_done"] <= ck["epoch"] < epochs
    if sig == signal.SIGTERM:
        assert p.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in err and "Traceback" not in err
    if sig == signal.SIGINT:
        assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err
    if sig != signal.SIGKILL:
        assert info["status"] == "interrupted" and info["epochs_done"] == ck["epoch"]
    else:
        assert p.returncode == -signal.SIGKILL and info["status"] == "running"
    (out / ".checkpoint.npz.stale.tmp").write_bytes(b"half a checkpoint")  # as a writer killed mid-write leaves
    done = ck["epoch"] + 1
    T.train(tiny(epochs=done, limit=600), out, resume=True)
    assert not list(out.glob(".*.tmp"))
    T.train(tiny(epochs=done, limit=600), tmp_path / "straight")
    assert_same_run(tmp_path / "straight", out)


def test_full_disk_stops_the_run_at_once_with_a_message_and_it_resumes_exactly(tmp_path, monkeypatch, capsys):
    real, steps, failed_at = checkpoint.atomic_write, [], []
    real_call = TrainingStep.__call__

    def full(path, write):
        if Path(path).name == "checkpoint.npz" and len(steps) > 3:  # epoch 2's checkpoint
            failed_at.append(len(steps))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, write)

    monkeypatch.setattr(checkpoint, "atomic_write", full)
    monkeypatch.setattr(TrainingStep, "__call__", lambda self: steps.append(1) or real_call(self))
    out = tmp_path / "run"
    status, err = cli("train", "--out", out, *tiny_flags(epochs=5), capsys=capsys)
    assert status == 2 and "Traceback" not in err
    assert f"could not write the checkpoint {out / 'checkpoint.npz'}: No space left on device" in err
    assert len(steps) - failed_at[0] <= 1  # stopped at the next step, not after another epoch
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "failed" and "No space left" in info["message"]
    assert info["epochs_done"] == checkpoint.load(out / "checkpoint.npz")["epoch"] == 1
    monkeypatch.setattr(checkpoint, "atomic_write", real)
    T.train(tiny(epochs=5), out, resume=True)
    T.train(tiny(epochs=5), tmp_path / "straight")
    assert_same_run(tmp_path / "straight", out)


def test_exception_during_a_run_leaves_run_json_at_the_checkpoint(tmp_path, monkeypatch):
    real_call, calls = TrainingStep.__call__, []

    def failing(self):
        calls.append(1)
        if len(calls) == 8:  # epoch 3
            raise RuntimeError("boom")
        real_call(self)

    monkeypatch.setattr(TrainingStep, "__call__", failing)
    with pytest.raises(RuntimeError, match="boom"):
        T.train(tiny(epochs=5), tmp_path)
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["status"] == "failed" and info["message"] == "boom"
    assert info["epochs_done"] == checkpoint.load(tmp_path / "checkpoint.npz")["epoch"] == 2
    monkeypatch.setattr(TrainingStep, "__call__", real_call)
    assert T.train(tiny(epochs=5), tmp_path, resume=True)["status"] == "completed"  # the lock was released


def test_failed_start_leaves_no_directory_behind(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "run"
    status, err = cli("train", "--out", out, *tiny_flags(epochs=1, m=12, hidden=10**9), capsys=capsys)
    assert status == 2 and "GiB" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()
    (tmp_path / "kept").mkdir()
    status, err = cli("train", "--out", tmp_path / "kept", *tiny_flags(epochs=1), "--resume", capsys=capsys)
    assert status == 2 and "no checkpoint" in err and (tmp_path / "kept").is_dir()  # not made by the run


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "toml, message",
    [
        ("epochs = true", "epochs must be a number, got True"),
        ('lr = "0.001"', "lr must be a number, got '0.001'"),
        ("hidden = false", "hidden must be a number"),
        ("epochs = 0", "epochs must be > 0"),
        ("posterior = 3", "posterior must be one of"),
        ("data = 5", "data must be a path"),
        ("epochs = [", "is not valid TOML"),
    ],
)
def test_wrong_types_and_zero_epochs_in_toml_are_errors(tmp_path, capsys, toml, message):
    (tmp_path / "c.toml").write_text(toml + "\n")
    status, err = cli("train", "--config", tmp_path / "c.toml", "--out", tmp_path / "r", capsys=capsys)
    assert status == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "flags, key",
    [
        (["--posterior", "learned", "--sigma2", "2"], "sigma2"),
        (["--likelihood", "bernoulli", "--tau", "2"], "tau"),
        (["--likelihood", "bernoulli", "--t", "2"], "t"),
        (["--likelihood", "gaussian", "--binarize", "dynamic"], "binarize"),
    ],
)
def test_flags_meaningless_for_the_model_are_refused(tmp_path, capsys, flags, key):
    status, err = cli("train", "--out", tmp_path / "r", *tiny_flags(epochs=1), *flags, capsys=capsys)
    assert status == 2 and f"{key} = " in err and "has no effect" in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


def test_the_same_settings_from_a_toml_file_are_warned_about(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('posterior = "learned"\nsigma2 = 2.0\n')
    cfg = C.make_config(tmp_path / "c.toml", **tiny_flags_dict())
    assert cfg.sigma2 == 2.0 and "warning" in capsys.readouterr().err
    for toml in sorted((ROOT / "mlpvae/configs").glob("*.toml")):  # the shipped defaults: no error, no warning
        C.make_config(toml, epochs=1)
        assert capsys.readouterr().err == "", toml


def tiny_flags_dict() -> dict:
    return {k: v for k, v in TINY.items() if k != "progress"}


def test_config_directory_and_huge_hidden_are_clear_errors(tmp_path, capsys):
    status, err = cli("train", "--config", tmp_path, "--out", tmp_path / "r", capsys=capsys)
    assert status == 2 and "is a directory" in err and "Traceback" not in err
    status, err = cli("train", "--out", tmp_path / "r", *tiny_flags(epochs=1, hidden=10**7), capsys=capsys)
    assert status == 2 and "hidden 10000000" in err and "GiB" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_batch_larger_than_the_training_set_is_reported(tmp_path, capsys):
    status, err = cli("train", "--out", tmp_path / "r", *tiny_flags(epochs=1, batch_size=1000), capsys=capsys)
    assert status == 0 and "batch_size 1000 is larger than the 60 training examples" in err
    info = json.loads((tmp_path / "r/run.json").read_text())
    assert info["batch_size"] == 60 and "batch_size 1000" in info["notes"][0]


def test_limits_beyond_the_data_are_reported():
    notes = rundir.size_notes(tiny(limit=100, test_limit=50), 60, 20, "mnist")
    assert notes == [
        "limit 100 is beyond the 60 training examples of mnist: all 60 are used",
        "test_limit 50 is beyond the 20 test examples of mnist: all 20 are used",
    ]


@pytest.mark.skipif(not HAVE_MNIST, reason="needs MNIST under $VAETHEORY_DATA (CI sets it)")
def test_mnist_test_limit_beyond_the_data_is_reported(tmp_path, capsys):
    flags = ["--dataset", "mnist", "--limit", "300", "--test-limit", "20000", "--batch-size", "100"]
    flags += ["--hidden", "8", "--epochs", "1", "--device", "cpu", "--no-progress"]
    status, err = cli("train", "--out", tmp_path / "r", *flags, capsys=capsys)
    assert status == 0 and "test_limit 20000 is beyond the 10000 test examples" in err
