"""Units of work as Dask distributed tasks: a local or existing cluster, the shared-folder check, fault tolerance.

Not in the paper: how ``vaetheory reproduce`` and ``vaetheory analyze`` spread
their runs over processes and machines.  :func:`start` gives an
:class:`Executor` for ``--scheduler ADDRESS`` (an existing Dask cluster),
``--workers N`` (a ``LocalCluster`` of N worker processes with one thread
each) or ``--workers gpu`` (dask-cuda's ``LocalCUDACluster``: one worker per
GPU, each offering the resource ``GPU=1``); without either flag there is no
executor and the commands work in-process, as they always did.

Every worker needs this package installed and the results folder on a shared
filesystem: :meth:`Executor.check_shared` writes a token file there and has
every worker read it back (and write beside it) before any work is sent,
and refuses with a message naming each worker that cannot.

Fault tolerance is Dask's, on units that resume: a unit is an ordinary
resumable run (or stack), so a worker process killed mid-run loses only the
epoch in progress; the scheduler gives the task to another worker (up to
``distributed.scheduler.allowed-failures`` worker deaths, 3 by default), which
resumes from the last checkpoint.  A task that raises (a bad config) is never
retried: :meth:`Executor.run` reports its message and the other tasks go on.

Tasks run with one BLAS thread (``threadpoolctl``), so a worker's threads do
not oversubscribe its cores.  The progress bar counts finished tasks; a
state line is printed when a task starts on a worker (pushed by the worker as
a Dask event), finishes or fails.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from threadpoolctl import threadpool_limits
from tqdm import tqdm

TOPIC = "vaetheory-task"  # the Dask event topic on which a task says where it started
BLAS_ENV = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
INSTALL = 'pip install -e ".[cluster]"'


class ClusterError(RuntimeError):
    """The cluster cannot be used: Dask missing, no workers, or a worker that cannot see the results folder."""


@dataclass
class Outcome:
    """What became of one task: its value, or the message of its failure (then ``value`` is None)."""

    index: int
    name: str
    value: object = None
    error: str | None = None
    worker: str | None = None


def parse_workers(text: str | None) -> int | str | None:
    """``--workers`` as a number of worker processes (>= 1) or ``"gpu"``; None when not given (Not in the paper)."""
    if text is None:
        return None
    if str(text).strip().lower() == "gpu":
        return "gpu"
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"--workers must be a number of processes or 'gpu', got {text!r}") from None
    if n < 1:
        raise ValueError(f"--workers must be >= 1, got {n}")
    return n


def start(
    scheduler: str | None = None, workers: int | str | None = None, log=print, progress: bool = True
) -> Executor | None:
    """Connect to ``scheduler`` or start a local cluster of ``workers``; None when neither is given (in-process).

    Not in the paper.  Raises :class:`ClusterError` when Dask distributed (or,
    for ``workers="gpu"``, dask-cuda) is not installed or the scheduler cannot
    be reached, ValueError when both are given.  ``progress``: the executor's
    bar over tasks (:meth:`Executor.run`).
    """
    if scheduler is not None and workers is not None:
        raise ValueError("give --scheduler ADDRESS or --workers N, not both")
    if scheduler is None and workers is None:
        return None
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"--scheduler and --workers need Dask distributed: {INSTALL}") from None
    cluster = None
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        kind = f"the Dask scheduler at {scheduler}"
    elif workers == "gpu":
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise ClusterError("--workers gpu needs dask-cuda and CuPy: pip install dask-cuda cupy-cuda13x") from None
        # one worker per visible GPU, each offering one GPU resource that GPU tasks request
        cluster = LocalCUDACluster(threads_per_worker=1, resources={"GPU": 1}, dashboard_address=":0")
        client = distributed.Client(cluster)
        kind = f"a LocalCUDACluster of {len(cluster.workers)} GPU worker(s)"
    else:
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            env=BLAS_ENV,
            # a failed task is reported by the driver with its message; the workers' own tracebacks
            # would repeat it once per task
            silence_logs=logging.CRITICAL,
        )
        client = distributed.Client(cluster)
        kind = f"a LocalCluster of {workers} worker process(es), one thread each"
    ex = Executor(client, cluster, gpu=workers == "gpu", kind=kind, progress=progress)
    try:
        client.wait_for_workers(1, timeout="60s")
    except (OSError, TimeoutError):
        ex.close()
        raise ClusterError(f"{kind} has no worker after 60 s") from None
    log(f"cluster: {kind}; dashboard {ex.dashboard or 'none (install bokeh for one)'}")
    return ex


def read_token(path: str) -> str:
    """On a worker: the token in ``path`` after writing and removing a file beside it; else why not (Not in the paper).

    Used by :meth:`Executor.check_shared`; returns ``"error: ..."`` instead of raising, so every worker answers.
    """
    p = Path(path)
    try:
        probe = p.with_name(f"{p.name}.{socket.gethostname()}.{os.getpid()}")
        probe.write_text("w")
        probe.unlink()
        return p.read_text()
    except OSError as exc:
        return f"error: {exc.strerror or exc} ({socket.gethostname()}, cwd {os.getcwd()})"


def run_task(fn, name: str, args: tuple):
    """On a worker: announce the task (a Dask event), then ``fn(*args)`` on one BLAS thread (Not in the paper)."""
    from distributed import get_worker

    worker = get_worker()
    worker.log_event(TOPIC, {"task": name, "worker": worker.address, "host": socket.gethostname(), "pid": os.getpid()})
    with threadpool_limits(limits=1, user_api="blas"):
        return fn(*args)


class Executor:
    """A Dask client with its cluster (when this process started one); see the module doc (Not in the paper)."""

    def __init__(self, client, cluster=None, gpu: bool = False, kind: str = "", progress: bool = True):
        self.client, self.cluster, self.gpu, self.kind, self.progress = client, cluster, gpu, kind, progress
        self.check_seconds: float | None = None
        self.bar = None  # the progress bar of the tasks while :meth:`run` is running

    def write(self, line: str) -> None:
        """Print a line on stderr, above the progress bar while there is one."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Close the client, and the cluster when this process started it."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    @property
    def dashboard(self) -> str | None:
        """The dashboard's address, or None when the scheduler serves none (bokeh not installed)."""
        services = self.client.scheduler_info().get("services", {})
        return self.client.dashboard_link if "dashboard" in services else None

    def workers(self) -> list[str]:
        """The addresses of the workers the scheduler knows now."""
        return sorted(self.client.scheduler_info().get("workers", {}))

    def gpu_workers(self) -> list[str]:
        """The addresses of the workers that offer the resource ``GPU``."""
        workers = self.client.scheduler_info().get("workers", {})
        return sorted(w for w, info in workers.items() if info.get("resources", {}).get("GPU", 0) >= 1)

    def describe(self) -> dict:
        """What ran the work, for a command's ``run.json``: kind, workers, dashboard, the shared-folder check's cost."""
        return {
            "kind": self.kind,
            "workers": self.workers(),
            "dashboard": self.dashboard,
            "shared_folder_check_seconds": self.check_seconds,
        }

    def check_shared(self, folder: str | Path) -> float:
        """Refuse unless every worker can read a token written in ``folder`` and write beside it; the seconds it took.

        Raises :class:`ClusterError` naming the workers that cannot (the folder
        is not on a shared filesystem, or not at the same path there), or when
        the workers cannot run this package's code (not installed).
        """
        folder = Path(folder).absolute()
        folder.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(16)
        path = folder / f".cluster-check-{token}"
        path.write_text(token)
        t0 = time.perf_counter()
        try:
            seen = self.client.run(read_token, str(path))
        except Exception as exc:  # a worker without this package cannot unpickle read_token
            raise ClusterError(
                f"the workers could not run the shared-folder check ({type(exc).__name__}: {exc}); "
                f"each worker needs this package installed ({INSTALL})"
            ) from None
        finally:
            path.unlink(missing_ok=True)
        self.check_seconds = time.perf_counter() - t0
        if not seen:
            raise ClusterError(f"{self.kind} has no workers")
        bad = {w: v for w, v in seen.items() if v != token}
        if bad:
            why = {w: v if v.startswith("error") else "another file there" for w, v in bad.items()}
            lines = "; ".join(f"{w}: {v}" for w, v in sorted(why.items()))
            raise ClusterError(
                f"{len(bad)} of {len(seen)} worker(s) cannot use {folder}: the results folder must be on a "
                f"filesystem every worker shares, at the same path ({lines})"
            )
        return self.check_seconds

    def run(
        self,
        fn,
        args: list[tuple],
        names: list[str],
        *,
        gpu: bool = False,
        log=print,
        progress: bool | None = None,
        started=None,
    ):
        """``fn(*a)`` for each ``a`` in ``args`` as one task each; yield an :class:`Outcome` per task as it ends.

        ``gpu`` makes each task request the resource ``GPU=1`` (workers started
        with ``--resources GPU=1``, as :func:`start` does for ``--workers gpu``);
        without such a worker it raises :class:`ClusterError` instead of waiting forever.
        A task that raises yields its message and is not retried; one whose
        workers died ``allowed-failures`` times yields Dask's ``KilledWorker``
        message.  Lines on ``log`` (above the bar, :meth:`write`): started on
        which worker, failed; ``started(index, worker, host, pid)`` is called when a
        task starts (again, on another worker, after its worker died).
        ``progress``: the bar over tasks (default the executor's).
        """
        progress = self.progress if progress is None else progress
        import distributed

        if gpu and not self.gpu_workers():
            raise ClusterError(
                "the tasks need a GPU, and no worker offers the resource GPU: use --workers gpu, or start "
                "one worker per GPU with --resources GPU=1 (docs/cluster.md)"
            )
        events: queue.SimpleQueue = queue.SimpleQueue()
        self.client.subscribe_topic(TOPIC, lambda event: events.put(event[1]))
        futures = {}
        for i, (a, name) in enumerate(zip(args, names)):
            f = self.client.submit(
                run_task, fn, name, a, key=f"{name}-{secrets.token_hex(4)}", pure=False,
                resources={"GPU": 1} if gpu else None, retries=0,
            )  # fmt: skip
            futures[f] = i
        log(f"cluster: {len(futures)} task(s) queued on {len(self.workers())} worker(s)")
        bar = tqdm(total=len(futures), desc="tasks", unit="task", disable=not progress, file=sys.stderr)
        self.bar = bar if progress else None
        say = self.write if progress else log

        index = {name: i for i, name in enumerate(names)}
        ended: set[int] = set()
        where: dict[str, str] = {}
        pending = set(futures)
        try:
            while pending:
                try:
                    done, pending = distributed.wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    done = set()
                while not events.empty():
                    e = events.get()
                    if e.get("task") not in index or index[e["task"]] in ended:
                        continue  # another command's task, or an event that arrived after its task ended
                    where[e["task"]] = e["worker"]
                    say(f"  running  {e['task']} on {e['worker']} (pid {e['pid']} on {e['host']})")
                    if started is not None:
                        started(index[e["task"]], e["worker"], e["host"], e["pid"])
                for f in sorted(done, key=futures.get):
                    i = futures[f]
                    ended.add(i)
                    name = names[i]
                    out = Outcome(i, name, worker=where.get(name))
                    if f.status == "finished":
                        out.value = f.result()
                    else:
                        exc = f.exception()
                        out.error = f"{type(exc).__name__}: {exc}"
                        say(f"  failed   {name}: {first_line(out.error)}")
                    bar.update(1)
                    yield out
        finally:
            bar.close()
            self.bar = None
            self.client.unsubscribe_topic(TOPIC)
            for f in pending:
                f.cancel()


def first_line(message: str) -> str:
    """The first line of a failure's message, with a hint that more follows (Not in the paper).

    A progress line per failed task stays one line; the whole message is printed once at the end.
    """
    head, _, rest = message.partition("\n")
    return head + (" (...)" if rest.strip() else "")


def add_cluster_arguments(parser, what: str = "run") -> None:
    """Add ``--scheduler ADDRESS`` and ``--workers N|gpu`` to a command's parser (Not in the paper)."""
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help=f"send each {what} as a task to the Dask scheduler at ADDRESS, e.g. tcp://10.0.0.5:8786 "
        f"(workers need this package and the results folder on a shared filesystem; {INSTALL})",
    )
    parser.add_argument(
        "--workers",
        metavar="N|gpu",
        help="start a local Dask cluster of N worker processes (one BLAS thread each), or with 'gpu' one "
        "worker per GPU (dask-cuda); default: in this process",
    )
