"""A figure's runs as cluster tasks: the unit a worker trains; ``queue.json``, where each run stands (Sec. 7).

Not in the paper.  ``vaetheory reproduce --scheduler/--workers`` sends each
unit (a run, or with ``--stack`` a method's seeds) to
:mod:`mlpvae.experiments.cluster` as one task running :func:`train_unit`: the
in-process queue's :func:`mlpvae.experiments.run_queue.ensure_runs` on that
unit, so a task that a killed worker left is resumed from its checkpoint by
the next worker, exactly as a second ``reproduce`` would resume it.

While the tasks run, the figure's folder holds ``queue.json``: each run
queued, running (on which worker, host and pid), done or failed (with the
message), and the driver's host and pid; ``reproduce --list`` reads it
(:func:`queue_note`).
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import time
from pathlib import Path

from mlpvae.experiments.cluster import Executor
from mlpvae.experiments.run_queue import ensure_runs, read_json
from mlpvae.training import checkpoint

QUEUE = "queue.json"


def train_unit(cfgs: list, dirs: list[str], retrain: bool = False) -> dict:
    """On a worker: train, resume or skip one unit's runs (:func:`ensure_runs`); results, seconds (Not in the paper)."""
    t0 = time.perf_counter()
    results = ensure_runs(cfgs, [Path(d) for d in dirs], retrain)
    return {"results": results, "seconds": time.perf_counter() - t0}


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class QueueFile:
    """``queue.json`` of a figure run on a cluster: the state of each run, written atomically on every change."""

    def __init__(self, path: Path, keys: list[str], cluster: str):
        self.path = Path(path)
        self.data = {
            "driver": {"host": socket.gethostname(), "pid": os.getpid()},
            "cluster": cluster,
            "started": _now(),
            "finished": None,
            "runs": {k: {"state": "queued"} for k in keys},
        }
        self.write()

    def write(self) -> None:
        self.data["updated"] = _now()
        checkpoint.write_json(self.path, self.data)

    def set(self, keys: list[str], state: str, **extra) -> None:
        """Set the runs ``keys`` to ``state`` (queued, running, done, failed) with ``extra`` (worker, message)."""
        for k in keys:
            self.data["runs"][k] = {"state": state, **extra, "since": _now()}
        self.write()

    def close(self) -> None:
        """The driver has ended: every run is done or failed, or (interrupted) left as it was."""
        self.data["finished"] = _now()
        self.write()


def queue_note(figure_dir: Path, key: str) -> str | None:
    """The queue state of run ``key`` (its folder relative to the results root) for ``--list``; None without one.

    "queued", "running on WORKER (pid P on HOST)", "done" (with the run's status
    when it is not completed, e.g. diverged) or "failed: MESSAGE";
    a queue whose driver was on this host and has ended says so.
    """
    q = read_json(Path(figure_dir) / QUEUE)
    if not q or key not in q.get("runs", {}):
        return None
    r = q["runs"][key]
    note = r["state"]
    if r["state"] == "running":
        note += f" on {r.get('worker')} (pid {r.get('pid')} on {r.get('host')})"
    elif r["state"] == "failed":
        note += f": {r.get('message')}"
    elif r.get("status") not in (None, "completed"):
        note += f" ({r['status']})"
    driver = q.get("driver", {})
    if r["state"] in ("queued", "running"):
        if q.get("finished"):
            note += f" when its driver stopped at {q['finished']}"
        elif driver.get("host") == socket.gethostname() and not _alive(int(driver.get("pid", 0))):
            note += f" when its driver (pid {driver.get('pid')}) ended"
    return f"queue: {note}"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def train_on_cluster(
    executor: Executor, units: list, dirs: list, keys: list, retrain: bool, queue: QueueFile, gpu: bool, log, progress
):
    """Train ``units`` (lists of ``(method, seed, cfg)``) as tasks; yield ``(unit, results, seconds, worker, error)``.

    ``dirs`` and ``keys`` are each unit's run directories and their
    ``queue.json`` keys.  A unit that failed yields its message as ``error``
    and each run's ``run.json`` (when there is one) as its result.
    """
    names = [", ".join(ks) for ks in keys]

    def started(i, worker, host, pid):
        queue.set(keys[i], "running", worker=worker, host=host, pid=pid)

    args = [
        ([cfg for *_, cfg in unit], [str(Path(d).absolute()) for d in ds], retrain) for unit, ds in zip(units, dirs)
    ]
    for out in executor.run(train_unit, args, names, gpu=gpu, log=log, progress=progress, started=started):
        if out.error is None:
            for key, (_, rinfo) in zip(keys[out.index], out.value["results"]):
                queue.set([key], "done", worker=out.worker, status=(rinfo or {}).get("status"))
            yield out.index, out.value["results"], out.value["seconds"], out.worker, None
        else:
            queue.set(keys[out.index], "failed", worker=out.worker, message=out.error)
            results = [(f"failed: {out.error}", read_json(Path(d) / "run.json") or {}) for d in dirs[out.index]]
            yield out.index, results, None, out.worker, out.error
