"""A training run's directory as its writer holds it: the lock, the files, the checks of a checkpoint (Sec. 7).

One process writes a run directory at a time: :class:`RunDir` takes an
exclusive ``fcntl.flock`` on ``DIR/.lock`` and keeps it until :meth:`RunDir.close`
(or the process's end: the kernel drops the lock of a killed process, so a
lock file left behind never blocks a later run).  A second writer is refused
with :class:`RunDirBusy`, naming the holder's pid.  Holding the lock, the
writer deletes the temporary files that killed writers left
(:func:`mlpvae.training.checkpoint.remove_stale`).

A checkpoint is resumed only after :meth:`RunDir.load` has checked it: a
readable file, the entries of a run's state, parameters of the config's
shapes and finite, an epoch in ``0..epochs``, and the same settings as the
config (except :data:`mlpvae.training.config.RESUMABLE_KEYS`).

:func:`stop_on_sigterm` makes SIGTERM stop training as Ctrl-C does;
:func:`finish` ends the runs: run.json's ``epochs_done`` is then the epoch of
the checkpoint on disk (never more) and its status says how the run ended.
Also the check of a stack's memory (:func:`check_memory`) and the notes on sizes larger than the data
(:func:`size_notes`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from mlpvae.nn import model
from mlpvae.training import checkpoint, filelock
from mlpvae.training import config as C
from mlpvae.training.metrics import append_row

LOCK_NAME = ".lock"


class RunDirBusy(RuntimeError):
    """The run directory is held by another writer (its pid in the message)."""


class Stopped(KeyboardInterrupt):
    """Training stopped by a signal (SIGINT or SIGTERM); ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def stop_on_sigterm():
    """Within the block, SIGTERM raises :class:`Stopped` in the main thread, as SIGINT raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Stopped(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _missing_parents(path: Path) -> list[Path]:
    """``path`` and those of its ancestors that do not exist, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


class RunDir:
    """One model's run directory, locked for writing: its files, its run.json content, its checkpoint's checks."""

    def __init__(self, cfg: C.TrainConfig, out):
        self.cfg, self.out = cfg, Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise NotADirectoryError(f"--out {self.out} is not a directory")
        self.created = _missing_parents(self.out.absolute())  # removed again if the start fails
        self.out.mkdir(parents=True, exist_ok=True)
        self.lock_fd: int | None = None
        self._lock()
        checkpoint.remove_stale(self.out)
        self.ck = self.out / "checkpoint.npz"
        self.metrics = self.out / "metrics.csv"
        self.json = self.out / "run.json"
        self.wall_before = 0.0
        self.saved_epoch: int | None = None  # the epoch of the checkpoint on disk, once this run has written one
        self.done = False
        self.info: dict = {}

    def _lock(self) -> None:
        fd, holder = filelock.take(self.out / LOCK_NAME)
        if fd is None:
            raise RunDirBusy(
                f"{self.out} is being written by another process (pid {holder}); "
                "wait for it to end or choose another --out"
            )
        self.lock_fd = fd

    def close(self, failed_start: bool = False) -> None:
        """Release the lock (and remove the lock file); after a failed start, remove the directories it created."""
        if self.lock_fd is not None:
            filelock.release(self.out / LOCK_NAME, self.lock_fd)
            self.lock_fd = None
        if failed_start:
            for d in self.created:
                with contextlib.suppress(OSError):
                    d.rmdir()  # only when empty

    def load(self, xp) -> dict:
        """The run's checkpoint, after checking that it is readable, whole, finite, at an epoch
        in ``0..epochs`` and saved with the config's settings (those of C.RESUMABLE_KEYS may differ)."""
        if not self.ck.exists():
            raise FileNotFoundError(f"--resume: no checkpoint in {self.out} (expected {self.ck})")
        ck = checkpoint.load(self.ck, xp)

        def bad(why: str):
            return checkpoint.CheckpointError(f"--resume: {self.ck}: {why}; the run cannot be resumed from it")

        missing = [k for k in ("params", "adam", "epoch", "config") if k not in ck]
        if missing:
            raise bad(f"entries {missing} are missing")
        saved, epoch, params = ck["config"], ck["epoch"], ck["params"]
        if not isinstance(saved, dict) or not isinstance(params, dict) or not isinstance(ck["adam"], dict):
            raise bad("config, params or adam is not a table")
        diff = {
            k: (saved.get(k), v)
            for k, v in self.cfg.to_dict().items()
            if k not in C.RESUMABLE_KEYS and saved.get(k) != v
        }
        if diff:
            raise ValueError(f"--resume: settings differ from the checkpoint's in {self.out} (saved, given): {diff}")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise bad(f"epoch {epoch!r} is not a number of epochs")
        if epoch > self.cfg.epochs:
            raise ValueError(
                f"--resume: {self.ck} is at epoch {epoch}, past --epochs {self.cfg.epochs}; "
                f"give --epochs {epoch} or more"
            )
        want = model.param_shapes(self.cfg.model_config())
        got = {k: tuple(getattr(v, "shape", ())) for k, v in params.items()}
        if got != want:
            raise bad(f"its parameters {sorted(got)} are not the model's {sorted(want)} of the config's shapes")
        if not finite(params, xp):
            raise bad("its parameters are not all finite")
        self.wall_before = float(ck.get("wall_seconds", 0.0))
        return ck

    def diverged(self, epoch: int, step: int | None, every: int, columns) -> None:
        """Mark the run diverged at ``epoch`` and ``step`` (None: its parameters after the epoch are not finite):
        a metrics row, run.json's status and message, stderr."""
        cfg = self.cfg
        if step is None:
            what, when, status = "non-finite parameters", "its end", "diverged: non-finite parameters"
        else:
            what, status = "non-finite loss", f"diverged at step {step + 1}"
            when = f"step {step + 1}" + (f" (checked every {every} steps)" if every > 1 else "")
        msg = (
            f"{what} at epoch {epoch + 1}, {when}: the run diverged "
            f"(likelihood {cfg.likelihood!r}); stopped, the last good checkpoint "
            f"({'epoch ' + str(epoch) if epoch else 'none: it diverged in the first epoch'}) is kept in {self.out}"
        )
        append_row(self.metrics, columns, {"epoch": epoch + 1, "status": status})
        self.info.update(
            status="diverged", diverged={"epoch": epoch + 1, "step": None if step is None else step + 1}, message=msg
        )
        self.done = True
        print(msg, file=sys.stderr)


def open_run_dirs(cfgs: list, outs: list) -> list[RunDir]:
    """A locked :class:`RunDir` per config; none stays locked (or created) if one cannot be."""
    runs: list[RunDir] = []
    try:
        for c, o in zip(cfgs, outs):
            runs.append(RunDir(c, o))
    except BaseException:
        for r in runs:
            r.close(failed_start=True)
        raise
    return runs


def check_memory(mc, K: int, dtype) -> None:
    """Refuse a model whose parameters, gradients and Adam moments would not fit in this machine's memory."""
    count = sum(math.prod(s) for s in model.param_shapes(mc).values())
    need = 4 * K * count * np.dtype(dtype).itemsize
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return
    if need > have:
        raise ValueError(
            f"hidden {mc.hidden}, layers {mc.layers}: {K} model(s) of {count:,} parameters need "
            f"{need / 2**30:.1f} GiB for parameters, gradients and Adam moments, more than this machine's "
            f"{have / 2**30:.1f} GiB"
        )


def size_notes(cfg: C.TrainConfig, n_train: int, n_test: int, name: str) -> list[str]:
    """What the run uses other than asked: a batch larger than the training set, limits beyond the data."""
    notes = []
    if cfg.batch_size > n_train:
        notes.append(
            f"batch_size {cfg.batch_size} is larger than the {n_train} training examples: "
            f"each epoch is one batch of {n_train}"
        )
    for key, have, what in (("limit", n_train, "training"), ("test_limit", n_test, "test")):
        want = getattr(cfg, key)
        if want is not None and want > have:
            notes.append(f"{key} {want} is beyond the {have} {what} examples of {name}: all {have} are used")
    return notes


def finish(runs: list, writer, t_run: float) -> None:
    """Wait for every checkpoint, then write each run.json with its wall time and end time and release the
    directories.  run.json's ``epochs_done`` is the epoch of the checkpoint on disk, never more; a failed
    checkpoint write marks the runs ``failed`` and is raised."""
    failure = None
    try:
        try:
            writer.close()  # every checkpoint on disk before run.json says how the runs ended
        except checkpoint.CheckpointWriteError as exc:
            failure = exc
            set_status(runs, "failed", str(exc))
        for r in runs:
            r.info["epochs_done"] = r.saved_epoch
            if r.info["status"] == "completed" and r.saved_epoch < r.cfg.epochs:
                r.info.update(status="failed", message=f"stopped after epoch {r.saved_epoch} of {r.cfg.epochs}")
            r.info["wall_seconds"] = r.wall_before + time.perf_counter() - t_run
            r.info["finished"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
            try:
                checkpoint.write_json(r.json, r.info)
            except OSError as exc:
                print(f"vaetheory train: could not write {r.json}: {exc.strerror or exc}", file=sys.stderr)
    finally:
        for r in runs:  # released whatever happened: a later run in this process may use the directories
            r.close()
    if failure is not None:
        raise failure


def set_status(runs: list, status: str, message: str | None = None) -> None:
    """Set run.json's status (and message) of the runs that have not ended otherwise (diverged)."""
    for r in runs:
        if not r.done:
            r.info["status"] = status
            if message:
                r.info["message"] = message


def finite(params: dict, xp=np) -> bool:
    """Whether every parameter array is finite."""
    return all(bool(xp.isfinite(v).all()) for v in params.values())
