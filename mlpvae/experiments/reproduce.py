"""``vaetheory reproduce CONFIG``: every run of one paper figure, its PNGs and its summary (Sec. 7, Appendix C).

The config's schema is :mod:`mlpvae.experiments.figure_schema`'s.  This module
runs a figure (:func:`reproduce`) and is its command line
(:func:`add_arguments`, :func:`run`); the runs are trained by
:mod:`mlpvae.experiments.run_queue`, drawn by :mod:`mlpvae.experiments.panels`
and summarised by :mod:`mlpvae.experiments.figure_summary`.

Output under ``--out ROOT`` (default ``validation/results/figures-local``, or
``validation/results/figures`` where the recorded results are not; with a quick-run
override (``--epochs``, ``--limit``, ``--test-limit``, ``--set``; not
``--seeds``, which changes no run) ``validation/results/figures-quick``): ``ROOT/<figure>/<method>/seed<k>/`` is
an ordinary ``vaetheory train`` run directory (metrics.csv, checkpoint.npz,
run.json); ``ROOT/<figure>/`` holds the PNGs, ``summary.json``,
``summary.md`` and ``run.json`` (config, overrides, git SHA, devices, dtypes,
wall time, what happened to each run).  A finished run is skipped, a stopped
one resumed from its checkpoint, a diverged one kept as a result, and a
recorded result whose checkpoint is absent (a fresh clone) kept: summarised
and drawn from its metrics, never deleted to train it afresh without ``--retrain``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
import tomllib
from pathlib import Path

from mlpvae.experiments import cluster
from mlpvae.experiments.cluster import add_cluster_arguments
from mlpvae.experiments.figure_schema import (
    check_seeds,
    default_root,
    load_figure,
    recorded_root,
    run_dir,
)
from mlpvae.experiments.figure_summary import summarize, summary_markdown
from mlpvae.experiments.figure_tasks import QUEUE, QueueFile, queue_note, train_on_cluster
from mlpvae.experiments.panels import make_plots
from mlpvae.experiments.redraw import redraw
from mlpvae.experiments.run_queue import (
    NO_CHECKPOINT,
    batches,
    ensure_runs,
    plan_runs,
    read_json,
    recorded_without_checkpoint,
    run_state,
)
from mlpvae.training import checkpoint
from mlpvae.training.runs import git_sha


def reproduce(
    config: str | Path,
    root: str | Path | None = None,
    device: str = "auto",
    seeds: list[int] | None = None,
    epochs: int | None = None,
    limit: int | None = None,
    test_limit: int | None = None,
    sets: dict | None = None,
    progress: bool | None = None,
    train: bool = True,
    log=print,
    stack: bool = False,
    methods: list[str] | None = None,
    retrain: bool = False,
    executor=None,
) -> dict:
    """Run every (method x seed) of a figure config, then its PNGs and summary; Sec. 7, Appendix C.

    ``epochs``, ``limit``, ``test_limit`` and ``sets`` (any other TrainConfig
    keys) are quick-run overrides and ``seeds`` a subset of runs, all recorded
    in ``run.json``; without ``root`` the runs go to ``validation/results/figures`` (or
    ``validation/results/figures-quick`` when a quick-run override is given).  A run
    another process is training (it holds the run's lock) is skipped, not trained twice.  ``train=False``
    only redraws the figures and the summary from what is on disk.  Returns
    the figure's ``run.json`` content.  ``stack`` trains the runs that can share a
    stack (same shapes and code path; any seeds, sigma2, t, tau, latent scale, data scale and
    learning rate, across methods: :func:`mlpvae.experiments.run_queue.batches`) together as one
    batched computation per memory-sized stack (:func:`mlpvae.training.train.train_many`; the
    same results as one by one, in one process).  ``methods`` trains only
    the methods named (the PNGs and the summary still cover the whole figure,
    with the runs not on disk shown as missing).  A recorded result without
    its checkpoint is kept (``retrain``: trained afresh); when nothing is to be
    trained and such runs are there, the figure's ``run.json`` is left as it is
    and a PNG that needs their models is not redrawn.  ``executor`` (an
    :class:`mlpvae.experiments.cluster.Executor`) trains each unit (a run, or
    a stack) as a Dask task after checking that every worker sees ``root``; a
    unit that fails is recorded with its message (status ``"completed with
    failures"``) while the others finish.
    """
    fig = load_figure(config)
    overrides = {"epochs": epochs, "limit": limit, "test_limit": test_limit, **(sets or {})}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    # seeds alone do not change a run, so e.g. seeds in parallel processes are still full runs
    quick = bool(overrides)
    if root is None:
        root = default_root(fig, quick)
        if not quick and root != recorded_root(fig):
            log(f"results in {root} (the recorded ones in {recorded_root(fig)} are written only with --out)")
    root = Path(root)
    override = check_seeds(list(seeds), "--seeds") if seeds is not None else None
    if executor is not None and progress is None:
        progress = False  # a worker's per-epoch bars would interleave on the driver's terminal
    per_run = {**overrides, "device": device, **({"progress": progress} if progress is not None else {})}
    # every run's settings are checked before the first one starts
    plan = list(plan_runs(fig, override, per_run, methods))
    out_dir = root / fig.name
    states = [run_state(run_dir(root, m, s), cfg) for m, s, cfg in plan]
    to_train = train and any(st in ("new", "stopped") or (retrain and st.endswith(NO_CHECKPOINT)) for st in states)
    lacking = [m for m, s, _ in plan if recorded_without_checkpoint(run_dir(root, m, s)) is not None]
    keep_record = bool(lacking) and not to_train and (out_dir / "run.json").exists()
    if keep_record:
        log(f"kept {out_dir / 'run.json'}: nothing to train, and {len(lacking)} run(s) have no checkpoint")

    def record():
        if not keep_record:
            checkpoint.write_json(out_dir / "run.json", info)

    out_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "figure": fig.name,
        "config_path": str(fig.path),
        "config": fig.raw,
        "overrides": {
            **overrides,
            **({"seeds": override} if override is not None else {}),
            **({"methods": list(methods)} if methods is not None else {}),
        },
        "quick_run": quick,
        "root": str(root),
        "git_sha": git_sha(),
        "device_requested": device,
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "status": "running",
        "runs": [],
    }
    record()
    t0 = time.perf_counter()
    try:
        units = list(batches(plan, stack))
        failures = []
        if executor is not None and train:
            info["cluster"] = executor.describe()
            record()
            failures = _train_on_cluster(executor, units, root, out_dir, retrain, device, info, log, record)
        else:
            for batch in units:
                dirs = [run_dir(root, method, seed) for method, seed, _ in batch]
                t1 = time.perf_counter()
                if train:
                    results = ensure_runs([cfg for *_, cfg in batch], dirs, retrain)
                else:
                    results = [("not trained (--no-train)", read_json(d / "run.json") or {}) for d in dirs]
                _add_runs(info, batch, dirs, results, time.perf_counter() - t1, len(plan), log, stack)
                record()
        info["plots"] = [str(p) for p in make_plots(fig, root, override, log)]
        summary = summarize(fig, root, override)
        checkpoint.write_json(out_dir / "summary.json", summary)
        (out_dir / "summary.md").write_text(summary_markdown(summary))
        info["status"] = "completed" if not failures else "completed with failures"
        if failures:
            info["failures"] = failures
    except KeyboardInterrupt:
        info["status"] = "interrupted"
        raise
    finally:
        info["devices"] = sorted({r["device"] for r in info["runs"] if r.get("device")})
        info["dtypes"] = sorted({r["dtype"] for r in info["runs"] if r.get("dtype")})
        info["wall_seconds"] = time.perf_counter() - t0
        info["finished"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        if info["status"] == "running":
            info["status"] = "failed"
        record()
    return info


def _add_runs(info: dict, batch, dirs, results, took, total: int, log, stack: bool, worker=None) -> None:
    """Append one unit's runs to the figure's ``run.json`` content and log a line per run."""
    for (method, seed, _), d, (action, rinfo) in zip(batch, dirs, results):
        rinfo = rinfo or {}
        info["runs"].append(
            {
                "method": method.name,
                "seed": seed,
                "dir": str(d),
                "action": action,
                "status": "failed" if action.startswith("failed") else rinfo.get("status", "missing"),
                "epochs_done": rinfo.get("epochs_done"),
                "device": rinfo.get("device"),
                "dtype": rinfo.get("dtype"),
                "run_wall_seconds": rinfo.get("wall_seconds"),
                "seconds_this_call": took,
                "stacked_with": len(batch),
                **({"worker": worker} if worker else {}),
            }
        )
        log(
            f"[{len(info['runs'])}/{total}] {d}: {cluster.first_line(action)}, status {info['runs'][-1]['status']}, "
            f"{rinfo.get('epochs_done', 0)} epochs"
            + (f", {took:.1f} s" if took is not None else "")
            + (f" (stack of {len(batch)})" if stack else "")
            + (f" on {worker}" if worker else "")
        )


def _train_on_cluster(executor, units, root: Path, out_dir: Path, retrain, device, info, log, record) -> list[dict]:
    """Every unit as a cluster task (:mod:`mlpvae.experiments.figure_tasks`); the runs in plan order; the failures."""
    seconds = executor.check_shared(root)
    info["cluster"]["shared_folder_check_seconds"] = seconds
    log(f"cluster: every worker sees {root.absolute()} (checked in {seconds:.3f} s)")
    dirs = [[run_dir(root, m, s) for m, s, _ in unit] for unit in units]
    keys = [[str(d.relative_to(root)) for d in ds] for ds in dirs]
    queue = QueueFile(out_dir / QUEUE, [k for ks in keys for k in ks], executor.kind)
    total = sum(len(u) for u in units)
    failures = []
    gpu = executor.gpu or device == "gpu"
    try:
        for i, results, took, worker, error in train_on_cluster(
            executor, units, dirs, keys, retrain, queue, gpu, log, progress=None
        ):
            _add_runs(info, units[i], dirs[i], results, took, total, executor.write, len(units[i]) > 1, worker)
            if error is not None:
                failures.append({"runs": keys[i], "worker": worker, "message": error})
            record()
    finally:
        queue.close()
    order = {str(run_dir(root, m, s)): j for j, (m, s, _) in enumerate(u for unit in units for u in unit)}
    info["runs"].sort(key=lambda r: order[r["dir"]])
    return failures  # the caller says each message once (grouped_failures)


def grouped_failures(failures: list[dict]) -> list[tuple[list[str], str]]:
    """The failed runs grouped by their message, in order of first failure (Not in the paper).

    A setting every run shares (data not found) fails every run the same way: its message is said once.
    """
    groups: dict[str, list[str]] = {}
    for f in failures:
        groups.setdefault(f["message"], []).extend(f["runs"])
    return [(runs, message) for message, runs in groups.items()]


def _parse_set(text: str) -> tuple[str, object]:
    """``--set KEY=VALUE`` as ``(key, value)``: the value parsed as TOML, else kept as a bare word."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--set {text!r}: expected KEY=VALUE")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value  # a bare word, e.g. dataset=synthetic
    return key.strip().replace("-", "_"), parsed


def add_arguments(parser) -> None:
    """Add ``vaetheory reproduce``'s arguments to ``parser`` (Not in the paper).

    The config, device, seeds, methods, quick-run overrides, results root, and
    the ``--no-train``, ``--plots-only``, ``--list`` and ``--stack`` modes.
    """
    parser.add_argument("config", metavar="CONFIG", help="a figure config, e.g. validation/figures/fig4_2d.toml")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="auto: CuPy when it finds a GPU, else NumPy (default auto)",
    )
    parser.add_argument("--seeds", help="comma-separated seeds instead of the config's, e.g. 0,1")
    parser.add_argument("--methods", help="comma-separated method names: train only these (plots cover all)")
    parser.add_argument("--epochs", type=int, help="epochs per run instead of the config's (quick run)")
    parser.add_argument("--limit", type=int, help="use only the first N training images (quick run)")
    parser.add_argument("--test-limit", type=int, help="use only the first N test images (quick run)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any training setting for every run, e.g. --set hidden=32 (repeatable)",
    )
    parser.add_argument(
        "--out",
        metavar="ROOT",
        help="results root (default validation/results/figures-local when the recorded "
        "validation/results/figures exists, else that; validation/results/figures-quick with overrides)",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="train afresh the recorded runs whose checkpoint is absent (deletes their run.json and metrics.csv)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="per-epoch progress of each run (default: the trainer's)",
    )
    parser.add_argument(
        "--no-train",
        dest="train",
        action="store_false",
        help="only redraw the PNGs and the summary from the runs on disk",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="list the runs and their state (with --scheduler/--workers runs: queued, running on which worker, "
        "done or failed); train nothing",
    )
    add_cluster_arguments(parser, "run")
    parser.add_argument(
        "--plots-only",
        action="store_true",
        help="only redraw the PNGs from the runs on disk (curves from metrics.csv); train nothing, keep run.json "
        "and the summary; writes plots.json",
    )
    parser.add_argument(
        "--stack",
        action="store_true",
        help="train the runs that can share a stack (same shapes and code path; seeds, sigma2, t, tau, latent "
        "scale, data scale and learning rate may differ) together as one batched computation, as many as half "
        "the device's memory holds (the results of one by one: "
        "bit for bit on NumPy; on CuPy with VAETHEORY_STACK_EXACT=1, one model at a time)",
    )


def run(args) -> int:
    """Run ``vaetheory reproduce`` from parsed arguments and print the summary (Not in the paper).

    ``--list`` prints the runs and their state instead.  Returns the exit
    status: 0, 1 when a unit failed on a cluster (the others finished; each
    failure on stderr), or 2 (with the message on stderr) on a bad config or argument.
    """
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
        methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
        sets = dict(_parse_set(s) for s in args.set)
        if args.list:
            return _list(args, seeds, sets, methods)
        if args.plots_only:
            done = redraw(args.config, args.out, seeds, log=lambda s: print(s, file=sys.stderr))
            out_dir = Path(done["root"]) / done["figure"]
            print(f"redrew {len(done['drawn'])} PNG, kept {len(done['kept_without_checkpoint'])} (no checkpoint)")
            print("wrote " + ", ".join([*done["drawn"], str(out_dir / "plots.json")]))
            return 0
        bar = args.progress is not False  # the bar over tasks; per-epoch bars of the runs only with --progress
        workers = cluster.parse_workers(args.workers)
        executor = cluster.start(args.scheduler, workers, log=_err, progress=bar) if args.train else None
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        print(f"vaetheory reproduce: {exc}", file=sys.stderr)
        return 2
    try:
        info = reproduce(
            args.config,
            args.out,
            args.device,
            seeds,
            args.epochs,
            args.limit,
            args.test_limit,
            sets,
            args.progress,
            args.train,
            log=lambda s: print(s, file=sys.stderr),
            stack=args.stack,
            methods=methods,
            retrain=args.retrain,
            executor=executor,
        )
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        print(f"vaetheory reproduce: {exc}", file=sys.stderr)
        return 2
    finally:
        if executor is not None:
            executor.close()
    out_dir = Path(info["root"]) / info["figure"]
    print((out_dir / "summary.md").read_text())
    queue = f"{QUEUE}, " if executor is not None and args.train else ""
    print(f"wrote {out_dir}/ (run.json, {queue}summary.json, summary.md, {len(info['plots'])} PNG)")
    for runs, message in grouped_failures(info.get("failures", [])):
        print(f"vaetheory reproduce: failed: {', '.join(runs)}: {message}", file=sys.stderr)
    return 1 if info.get("failures") else 0


def _err(line: str) -> None:
    print(line, file=sys.stderr)


def _list(args, seeds, sets, methods=None) -> int:
    """``--list``: print each run's directory, state and main settings; train nothing."""
    fig = load_figure(args.config)
    overrides = {
        k: v
        for k, v in {"epochs": args.epochs, "limit": args.limit, "test_limit": args.test_limit, **sets}.items()
        if v is not None
    }
    root = Path(args.out) if args.out else default_root(fig, bool(overrides))
    recorded = recorded_root(fig) if not args.out and root != recorded_root(fig) and not overrides else None
    for method, seed, cfg in plan_runs(fig, seeds, {**overrides, "device": args.device}, methods):
        d = run_dir(root, method, seed)
        line = f"{d}: {run_state(d, cfg)} ({cfg.epochs} epochs, {cfg.posterior}, {cfg.likelihood}, n={cfg.n})"
        note = queue_note(root / fig.name, str(d.relative_to(root)))
        if note:
            line += f"; {note}"
        if recorded is not None:  # the default root is the local one: say what the record holds too
            try:
                state = run_state(run_dir(recorded, method, seed), cfg)
            except ValueError:
                state = "other settings"
            if state != "new":
                line += f"; recorded in {recorded}: {state}"
        print(line)
    return 0
