"""``vaetheory analyze RUN...``: the analyses of many trained runs, in this process or as cluster tasks.

Not in the paper.  This is the ``analyze`` command's entry point: with one run
and neither ``--scheduler`` nor ``--workers`` it is
:func:`mlpvae.experiments.analyze.run`, exactly as before; with several runs
each run is one unit (:func:`analyze_unit`: the full analysis, or with
``--grid-images`` / ``--mode-images`` the per-image report), run one after
the other in this process, or as tasks of :mod:`mlpvae.experiments.cluster`
after the shared-folder check (each run's folder must be on a filesystem the
workers share: they write the run's files there).  The reports are printed in
the order the runs were given, whatever order the tasks end in; a run that
fails is reported with its message and the others finish (exit status 1).
``--summarize`` and ``--versus`` take one run.  ``--chunk-images C`` splits
``--grid-images`` / ``--mode-images`` into chunks of C images (one unit each), joined in order.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from mlpvae.experiments import analyze, cluster, grid_report, mode_report
from mlpvae.experiments.evaluate import print_written, run_dir_problem, write_per_image

PER_IMAGE = {"grid": (grid_report, "grid_evidence"), "mode": (mode_report, "mode_evidence")}


def analyze_unit(run_dir: str, kind: str, options: dict) -> dict:
    """Analyse one run (``kind``: ``analysis``, ``grid``, ``mode``, or a chunk); its report and files written.

    Not in the paper: ``analysis`` is :func:`mlpvae.experiments.analyze.analyze_run`
    with ``options``; ``grid`` / ``mode`` are the ``evaluate_run`` of
    :mod:`mlpvae.experiments.grid_report` / :mod:`mlpvae.experiments.mode_report`
    on ``options["images"]`` test images, written as ``analyze --grid-images``
    / ``--mode-images`` writes them.  Returns ``{"report": markdown, "written": [paths]}``;
    ``grid-chunk`` / ``mode-chunk`` (``options["first"]``, ``options["images"]``) write nothing
    and return the module's ``per_image`` (``meta`` and ``per``) and its seconds.
    """
    out = Path(run_dir)
    if kind.endswith("-chunk"):
        t0 = time.perf_counter()
        o = dict(options)
        module = PER_IMAGE[kind[: -len("-chunk")]][0]
        meta, per = module.per_image(run_dir, o.pop("first"), o.pop("images"), **o)
        return {"meta": meta, "per": per, "seconds": time.perf_counter() - t0}
    if kind == "analysis":
        res = analyze.analyze_run(run_dir, **options)
        written = [out / "analysis.json", out / "analysis.md", out / "analysis_per_image.npz", *res.get("plots", [])]
        return {"report": analyze.report_md(res), "written": [str(p) for p in written]}
    module, name = PER_IMAGE[kind]
    opts = dict(options)
    images = opts.pop("images")
    if images < 1:
        raise ValueError(f"--{kind}-images must be >= 1, got {images}")
    summary, per = module.evaluate_run(run_dir, images, **opts)
    return {"report": module.report_md(summary), "written": write_per_image(run_dir, name, summary, per)}


def add_arguments(parser) -> None:
    """``vaetheory analyze``'s options (:func:`mlpvae.experiments.analyze.add_arguments`) and the cluster's."""
    analyze.add_arguments(parser)
    cluster.add_cluster_arguments(parser, "run")
    parser.add_argument(
        "--chunk-images",
        type=int,
        metavar="C",
        help="with --grid-images or --mode-images: the images in chunks of C, one task each, joined in order (log "
        "p(x) by the grid, the modes, Eq. (16) as unchunked; the IWAE and ELBO draws are each chunk's own stream)",
    )


def unit_of(args) -> tuple[str, dict]:
    """The kind of analysis and its options from the parsed arguments (Not in the paper)."""
    if args.grid_images is not None or args.mode_images is not None:
        kind = "grid" if args.grid_images is not None else "mode"
        images = args.grid_images if kind == "grid" else args.mode_images
        opts = dict(images=images, iwae_k=args.iwae_k, elbo_k=args.elbo_k, device=args.device)
        return kind, opts
    opts = dict(
        iwae_k=args.iwae_k,
        elbo_k=args.elbo_k,
        opt_k=args.opt_k,
        test_limit=args.test_limit,
        limit=args.limit,
        cv_limit=args.cv_limit,
        device=args.device,
        plots=not args.no_plots,
    )
    return "analysis", opts


def run(args) -> int:
    """``vaetheory analyze RUN...``: one run as before, or many in order (see the module doc); the exit status."""
    runs = list(args.run_dir)
    if args.plots_only:  # drawing only: each run in turn, here
        codes = []
        for d in runs:
            args.run_dir = d
            codes.append(analyze.run(args))
        return max(codes)
    many = len(runs) > 1 or args.scheduler is not None or args.workers is not None or args.chunk_images is not None
    if not many:
        args.run_dir = runs[0]
        return analyze.run(args)
    if args.summarize or args.versus:
        print("vaetheory analyze: --summarize and --versus take one run directory", file=sys.stderr)
        return 2
    problems = [p for p in (run_dir_problem(d) for d in runs) if p]
    if problems:
        print("\n".join(f"vaetheory analyze: {p}" for p in problems), file=sys.stderr)
        return 2
    kind, opts = unit_of(args)
    try:
        executor = cluster.start(args.scheduler, cluster.parse_workers(args.workers), log=_err, progress=args.progress)
    except (ValueError, RuntimeError) as exc:
        print(f"vaetheory analyze: {exc}", file=sys.stderr)
        return 2
    try:
        outcomes = analyze_many(runs, kind, opts, executor, args.progress, args.chunk_images)
    except (cluster.ClusterError, ValueError) as exc:
        print(f"vaetheory analyze: {exc}", file=sys.stderr)
        return 2
    finally:
        if executor is not None:
            executor.close()
    failed = 0
    for d, (value, error) in zip(runs, outcomes):
        if error is not None:
            failed += 1
            print(f"vaetheory analyze: {d}: {error}", file=sys.stderr)
            continue
        print(value["report"])
        print_written(value["written"])
    return 1 if failed else 0


def chunks_of(images: int, chunk: int | None) -> list[tuple[int, int]]:
    """``(first, count)`` of each chunk of ``chunk`` images among the first ``images`` (one chunk without)."""
    if chunk is not None and chunk < 1:
        raise ValueError(f"--chunk-images must be >= 1, got {chunk}")
    step = images if chunk is None else chunk
    return [(a, min(step, images - a)) for a in range(0, images, step)]


def analyze_many(
    runs: list, kind: str, opts: dict, executor=None, progress: bool = False, chunk: int | None = None
) -> list[tuple]:
    """:func:`analyze_unit` on each run, here or (``executor``) as tasks; ``(value, error)`` per run, in order.

    Not in the paper.  ``chunk`` (``kind`` ``grid`` or ``mode``) splits each
    run's images into chunks of that many, one unit each, joined in order
    (:func:`join_chunks`); the chunks' results do not depend on where they ran.
    On a cluster every worker must first see each run's parent folder
    (:meth:`mlpvae.experiments.cluster.Executor.check_shared`, raising
    :class:`mlpvae.experiments.cluster.ClusterError`).  A run that fails (any
    of its chunks) has ``value`` None and its message as ``error``; the others go on.
    """
    if len({os.path.realpath(d) for d in runs}) != len(runs):
        raise ValueError("a run directory is given twice")
    if chunk is not None and kind not in PER_IMAGE:
        raise ValueError("--chunk-images is for --grid-images and --mode-images")
    units, owner, names = [], [], []
    for i, d in enumerate(runs):
        if chunk is not None:
            for first, count in chunks_of(opts["images"], chunk):
                part = {"first": first, "images": count, "total": opts["images"]}
                units.append((str(Path(d).absolute()), f"{kind}-chunk", {**opts, **part}))
                owner.append(i)
                names.append(f"{os.path.normpath(d)}[{first}:{first + count}]")
        else:
            units.append((str(Path(d).absolute()), kind, opts))
            owner.append(i)
            names.append(os.path.normpath(d))
    results: list = [None] * len(units)
    if executor is None:
        for j, (d, k, o) in enumerate(units):
            try:
                results[j] = (analyze_unit(d, k, {**o, "progress": progress}), None)
            except (FileNotFoundError, ValueError, RuntimeError) as exc:
                results[j] = (None, str(exc))
    else:
        seconds = sum(executor.check_shared(f) for f in sorted({str(Path(d).absolute().parent) for d in runs}))
        executor.check_seconds = seconds
        _err(f"cluster: every worker sees the runs' folders (checked in {seconds:.3f} s)")
        tasks = [(d, k, {**o, "progress": False}) for d, k, o in units]
        gpu = executor.gpu or opts.get("device") == "gpu"
        for out in executor.run(analyze_unit, tasks, names, gpu=gpu, log=_err):
            results[out.index] = (out.value, out.error)
    outcomes = []
    for i, d in enumerate(runs):
        mine = [results[j] for j in range(len(units)) if owner[j] == i]
        errors = [e for _, e in mine if e is not None]
        if errors:
            outcomes.append((None, "; ".join(errors)))
        elif chunk is not None:
            outcomes.append((join_chunks(d, kind, [v for v, _ in mine]), None))
        else:
            outcomes.append(mine[0])
    return outcomes


def join_chunks(run_dir, kind: str, parts: list[dict]) -> dict:
    """A run's grid or mode report from its chunks in order: arrays joined, summarised, written (Not in the paper)."""
    module, name = PER_IMAGE[kind]
    per = {k: np.concatenate([p["per"][k] for p in parts]) for k in parts[0]["per"]}
    timed = [k for k in parts[0]["meta"] if k.endswith("_seconds")]
    meta = {**parts[0]["meta"], **{k: sum(p["meta"][k] for p in parts) for k in timed}}
    summary, per = module.summarize(meta, per, sum(p["seconds"] for p in parts))
    summary["chunks"] = len(parts)
    return {"report": module.report_md(summary), "written": write_per_image(run_dir, name, summary, per)}


def _err(line: str) -> None:
    print(line, file=sys.stderr)
