"""Checkpoints and small run files written atomically (Sec. 7 training runs).

A checkpoint is one ``.npz``: every array of a nested state (parameters, Adam
moments) under a ``/``-joined key, and the non-array leaves (epoch, step
counts, seeds, RNG states, config) as one JSON document under ``__meta__``.
Writes go to a temporary file in the same directory, are flushed to disk and
then renamed over the target with ``os.replace``, so a crash leaves either the
old or the new file, never a partial one; a writer killed mid-write leaves its
temporary ``.NAME.*.tmp`` beside the target, which :func:`remove_stale` deletes.
A file that cannot be read as a checkpoint raises :class:`CheckpointError`
naming it, whatever is wrong with it (truncated, empty, altered, entries
missing, a directory in its place).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from vaetheory.xp import is_cupy_array, to_numpy

_META = "__meta__"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not hold a run's state; the message names the file."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint or run file that could not be written (disk full, read-only); the message names the file."""


def remove_stale(directory: str | Path, names=("checkpoint.npz", "run.json", "metrics.csv")) -> list[Path]:
    """Delete the temporary files (``.NAME.*.tmp``) that writers killed mid-write left in ``directory``.

    Only safe while no other process writes there (the run directory's lock is held).  Returns the removed paths.
    """
    removed = []
    for name in names:
        for tmp in Path(directory).glob(f".{name}.*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def atomic_write(path: str | Path, write) -> None:
    """Write ``path`` atomically through ``write(fileobj)`` (Not in the paper).

    A temporary file beside ``path`` is written, fsynced and renamed over it.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically (Not in the paper)."""
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2, default=_jsonable) + "\n").encode()))


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def _is_array(v) -> bool:
    return isinstance(v, np.ndarray) or is_cupy_array(v)


def _split(state, prefix: str, arrays: dict, meta: dict) -> None:
    """Arrays of a nested dict/list into ``arrays`` (flat keys), everything else into ``meta``."""
    for k, v in state.items():
        if "/" in str(k):
            raise ValueError(f"state key {k!r} may not contain '/'")
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            meta[k] = {}
            _split(v, key + "/", arrays, meta[k])
        elif _is_array(v):
            # a host copy, never a view: the caller may update its arrays while a Writer writes this one
            arrays[key] = to_numpy(v) if is_cupy_array(v) else np.array(v, copy=True)
            meta[k] = {"__array__": key}
        else:
            meta[k] = v


def _join(meta, arrays, xp):
    if isinstance(meta, dict):
        if set(meta) == {"__array__"}:
            return xp.asarray(arrays[meta["__array__"]])
        return {k: _join(v, arrays, xp) for k, v in meta.items()}
    return meta


def save(path: str | Path, state: dict) -> None:
    """Write a nested state (dicts of arrays and JSON-able values) to ``path`` atomically (Not in the paper).

    NumPy and CuPy arrays are stored as NumPy arrays (a device array is copied
    to the host here, once per checkpoint); their dtypes are kept exactly.
    """
    _write_snapshot(path, snapshot(state))


def snapshot(state: dict) -> dict:
    """The arrays of ``state`` copied to the host plus its metadata, ready for
    :func:`save`'s file (Not in the paper)."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict = {}
    _split(state, "", arrays, meta)
    arrays[_META] = np.frombuffer(json.dumps(meta, default=_jsonable).encode(), dtype=np.uint8)
    return arrays


def _write_snapshot(path, payload: dict) -> None:
    atomic_write(path, lambda f: np.savez(f, **payload))


class Writer:
    """Checkpoints and run.json files written by one background thread, in order (Not in the paper).

    :meth:`save` copies the state to the host at once (so training may go on
    updating its arrays) and queues the file writes; writing a few MB and
    fsyncing it then overlaps the next epoch instead of stalling it (on a GPU
    about a tenth of a second per epoch for a stack of five models).  A
    failed write is raised by the next :meth:`save`, :meth:`check` or :meth:`wait`:
    as it happened (an ``OSError``), or with ``named=True`` as a
    :class:`CheckpointWriteError` that names the file (training uses that).
    """

    def __init__(self, named: bool = False):
        from concurrent.futures import ThreadPoolExecutor

        self.named = named
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vaetheory-checkpoint")
        self._pending: list = []

    def save(self, path, state: dict, json_path=None, json_obj=None, done=None) -> None:
        """Queue ``state`` for ``path`` and then, if given, ``json_obj`` for ``json_path`` (snapshotted now);
        ``done()`` is called (in the writer's thread) once both are on disk."""
        self._raise_failures()
        payload = snapshot(state)
        obj = json.loads(json.dumps(json_obj, default=_jsonable)) if json_path is not None else None

        def job():
            for target, write in (
                (path, lambda: _write_snapshot(path, payload)),
                (json_path, lambda: write_json(json_path, obj)),
            ):
                if target is None:
                    continue
                try:
                    write()
                except OSError as exc:
                    if not self.named:
                        raise
                    what = "the checkpoint " if target == path else ""
                    raise CheckpointWriteError(f"could not write {what}{target}: {exc.strerror or exc}") from exc
            if done is not None:
                done()

        self._pending.append(self._pool.submit(job))

    def check(self) -> None:
        """Raise the failure of a write that has finished, if any (cheap: called during an epoch)."""
        self._raise_failures()

    def _raise_failures(self) -> None:
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if f not in done]
        for f in done:
            f.result()

    def wait(self) -> None:
        """Block until every queued write is on disk; raise the first failure."""
        pending, self._pending = self._pending, []
        for f in pending:
            f.result()

    def close(self) -> None:
        """Wait for every pending write, then stop the writer thread (raising a write's failure, if any)."""
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def load(path: str | Path, xp=np) -> dict:
    """Read a state written by :func:`save`; arrays are created with ``xp`` (NumPy or CuPy) (Not in the paper).

    Raises FileNotFoundError when there is no file, :class:`CheckpointError` naming ``path``
    when there is one that is not a readable checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if _META not in arrays:
            raise KeyError(f"no {_META} entry")
        meta = json.loads(arrays.pop(_META).tobytes().decode())
        if not isinstance(meta, dict):
            raise ValueError("its metadata is not a table")
        return _join(meta, arrays, xp)
    except Exception as exc:  # whatever a damaged zip, header or JSON raises (BadZipFile, EOFError, ...)
        why = str(exc) or type(exc).__name__
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}: {why}); "
            "it is truncated, altered or not a checkpoint: remove it to start afresh"
        ) from None
