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
``--summarize`` and ``--versus`` take one run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from mlpvae.experiments import analyze, cluster, grid_report, mode_report
from mlpvae.experiments.evaluate import print_written, run_dir_problem
from mlpvae.training.checkpoint import write_json

PER_IMAGE = {"grid": (grid_report, "grid_evidence"), "mode": (mode_report, "mode_evidence")}


def analyze_unit(run_dir: str, kind: str, options: dict) -> dict:
    """Analyse one run (``kind``: ``analysis``, ``grid`` or ``mode``); write its files; its report and files.

    Not in the paper: ``analysis`` is :func:`mlpvae.experiments.analyze.analyze_run`
    with ``options``; ``grid`` / ``mode`` are the ``evaluate_run`` of
    :mod:`mlpvae.experiments.grid_report` / :mod:`mlpvae.experiments.mode_report`
    on ``options["images"]`` test images, written as ``analyze --grid-images``
    / ``--mode-images`` writes them.  Returns ``{"report": markdown, "written": [paths]}``.
    """
    out = Path(run_dir)
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
    write_json(out / f"{name}.json", summary)
    np.savez(out / f"{name}_per_image.npz", **per)
    written = [str(out / f"{name}.json"), str(out / f"{name}_per_image.npz")]
    return {"report": module.report_md(summary), "written": written}


def add_arguments(parser) -> None:
    """``vaetheory analyze``'s options (:func:`mlpvae.experiments.analyze.add_arguments`) and the cluster's."""
    analyze.add_arguments(parser)
    cluster.add_cluster_arguments(parser, "run")


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
    many = len(runs) > 1 or args.scheduler is not None or args.workers is not None
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
        outcomes = analyze_many(runs, kind, opts, executor, args.progress)
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


def analyze_many(runs: list, kind: str, opts: dict, executor=None, progress: bool = False) -> list[tuple]:
    """:func:`analyze_unit` on each run, here or (``executor``) as tasks; ``(value, error)`` per run, in order.

    Not in the paper.  On a cluster every worker must first see each run's
    parent folder (:meth:`mlpvae.experiments.cluster.Executor.check_shared`, raising
    :class:`mlpvae.experiments.cluster.ClusterError`).  A run that fails has
    ``value`` None and its message as ``error``; the others go on.
    """
    if len({os.path.realpath(d) for d in runs}) != len(runs):
        raise ValueError("a run directory is given twice")
    outcomes: list = [None] * len(runs)
    if executor is None:
        for i, d in enumerate(runs):
            try:
                outcomes[i] = (analyze_unit(d, kind, {**opts, "progress": progress}), None)
            except (FileNotFoundError, ValueError, RuntimeError) as exc:
                outcomes[i] = (None, str(exc))
        return outcomes
    seconds = sum(executor.check_shared(f) for f in sorted({str(Path(d).absolute().parent) for d in runs}))
    executor.check_seconds = seconds
    _err(f"cluster: every worker sees the runs' folders (checked in {seconds:.3f} s)")
    tasks = [(str(Path(d).absolute()), kind, {**opts, "progress": False}) for d in runs]
    for out in executor.run(analyze_unit, tasks, [os.path.normpath(d) for d in runs], log=_err):
        outcomes[out.index] = (out.value, out.error)
    return outcomes


def _err(line: str) -> None:
    print(line, file=sys.stderr)
