"""A sweep of many small runs in-process against a LocalCluster of worker processes (docs/cluster.md).

    OMP_NUM_THREADS=1 python validation/scripts/cluster_overhead.py --workers 2 \
        --json validation/results/cluster/overhead.json

Trains the same sweep (``--methods`` learning rates x ``--seeds`` seeds of a small
synthetic run) with ``vaetheory reproduce`` in this process and on a
LocalCluster, ``--rounds`` times each, alternating, each into a fresh folder;
checks that every run is bit for bit the same both ways; and measures the
scheduler's cost per task (no-op tasks through the same executor) and the
shared-folder check.  Wall times include neither the cluster's start (timed
apart) nor Python's imports.  The machine's load average is recorded: on a
shared machine the numbers are a measurement under that load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from mlpvae.experiments import cluster
from mlpvae.experiments.reproduce import reproduce
from mlpvae.training import checkpoint
from mlpvae.training.runs import git_sha


def sweep_toml(methods: int, seeds: int, epochs: int) -> str:
    lines = [
        'title = "cluster overhead sweep"',
        'paper = "none"',
        f"seeds = {list(range(seeds))}",
        "[defaults]",
        'dataset = "synthetic"',
        "m = 64",
        "n = 2",
        "hidden = 64",
        "limit = 2000",
        "test_limit = 200",
        "batch_size = 100",
        f"epochs = {epochs}",
        'device = "cpu"',
        "progress = false",
    ]
    for i in range(methods):
        lines += [f"[methods.lr{i}]", f"lr = {1e-3 * (1 + i) / methods}"]
    return "\n".join(lines) + "\n"


def same_runs(a: Path, b: Path) -> int:
    """The number of checkpoints compared; raises unless every one is bitwise the same under both roots."""
    n = 0
    for ck in sorted(a.rglob("checkpoint.npz")):
        x, y = checkpoint.load(ck), checkpoint.load(b / ck.relative_to(a))
        for k in x["params"]:
            if not np.array_equal(x["params"][k], y["params"][k]):
                raise AssertionError(f"{ck}: {k} differs")
        n += 1
    return n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--methods", type=int, default=6)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--noop-tasks", type=int, default=200)
    p.add_argument("--json", help="write the measurements here")
    a = p.parse_args()
    quiet = dict(log=lambda s: None, progress=False)
    res: dict = {
        "command": " ".join(["python", *sys.argv]),
        "git_sha": git_sha(),
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "runs": a.methods * a.seeds,
        "epochs": a.epochs,
        "workers": a.workers,
    }
    with tempfile.TemporaryDirectory() as tmp:
        fig = Path(tmp) / "sweep.toml"
        fig.write_text(sweep_toml(a.methods, a.seeds, a.epochs))
        t0 = time.perf_counter()
        ex = cluster.start(workers=a.workers, log=lambda s: None, progress=False)
        res["cluster_start_seconds"] = time.perf_counter() - t0
        try:
            here, there = [], []
            for r in range(a.rounds):
                with threadpool_limits(limits=1, user_api="blas"):  # a worker's setting, for the same numbers
                    t0 = time.perf_counter()
                    reproduce(fig, Path(tmp) / f"here{r}", **quiet)
                    here.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                reproduce(fig, Path(tmp) / f"there{r}", **quiet, executor=ex)
                there.append(time.perf_counter() - t0)
                print(f"round {r}: in-process {here[-1]:.1f} s, {a.workers} workers {there[-1]:.1f} s", file=sys.stderr)
            res["checkpoints_bitwise_equal"] = same_runs(Path(tmp) / "here0", Path(tmp) / "there0")
            checks = [ex.check_shared(Path(tmp) / "check") for _ in range(10)]
            t0 = time.perf_counter()
            n = a.noop_tasks
            list(ex.run(os.getpid, [()] * n, [f"noop{i}" for i in range(n)], log=lambda s: None, progress=False))
            noop = time.perf_counter() - t0
        finally:
            ex.close()
    res.update(
        in_process_seconds=here,
        cluster_seconds=there,
        speedup_per_round=[h / t for h, t in zip(here, there)],
        in_process_seconds_per_run=statistics.median(here) / res["runs"],
        noop_tasks=n,
        scheduler_seconds_per_task=noop / n,
        shared_folder_check_seconds_median=statistics.median(checks),
        shared_folder_check_seconds_max=max(checks),
        load_average_after=os.getloadavg(),
    )
    text = json.dumps(res, indent=2)
    print(text)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(text + "\n")
        print(f"wrote {a.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
