"""The trainer's step at one thread, at two, and with the batch split across two Python threads (issue 26).

    python validation/scripts/split_step_timing.py [--rounds 6] [--steps 20] [--passes 2] [--out FILE.json]

Each of

- ``one``: the trainer's step (`mlpvae.training.step.TrainingStep`, with the Numba kernels when installed), one
  thread;
- ``two``: the same with two threads (OpenBLAS's threads in the products, Numba's pool in the element-wise work);
- ``split``: two threads as ``VAETHEORY_BATCH_SPLIT=2`` uses them (`mlpvae.nn.model.BatchSplit`: half the batch on
  each of two Python threads, one BLAS thread and serial kernels in each);

runs in a process of its own, in turn, for the Bernoulli likelihood at n = 2 and 100 with a learned and a constant
Sigma (weights, batch and noise of `mlpvae.experiments.bench_timing.problem`, seed 0). Unlike `vaetheory bench
train`, whose rounds interleave short blocks of every peer, each process runs its rounds of ``--steps`` steps
back to back: the figure is the minimum ms/step over its rounds, then over the passes. Run it on an otherwise
idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

MODES = {"one": ("1", None), "two": ("2", None), "split": ("2", "2")}
CONFIGS = [(2, "learned"), (2, "constant"), (100, "learned"), (100, "constant")]


def _worker(n: int, posterior: str, rounds: int, steps: int) -> dict:
    import numpy as np

    from mlpvae.accel import cpu
    from mlpvae.experiments.bench_timing import back_to_back_ms, our_stepper, problem

    mc, params, x, eps = problem(np, n, posterior, 300, 16, 0)
    step = our_stepper(np, mc, params, x, eps)
    ms = back_to_back_ms(step, rounds, steps)
    return {"ms": ms, "numba_kernels": cpu.enabled(np), "loss_total": float(step.total)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--worker", nargs=2, metavar=("N", "POSTERIOR"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(_worker(int(a.worker[0]), a.worker[1], a.rounds, a.steps)))
        return 0

    from mlpvae.accel.device import cpu_record
    from mlpvae.experiments.report import write_json
    from mlpvae.training.runs import git_sha

    def child(mode: str, n: int, posterior: str) -> dict:
        threads, split = MODES[mode]
        env = {k: v for k, v in os.environ.items() if k not in ("VAETHEORY_BATCH_SPLIT", "VAETHEORY_CPU_THREADS")}
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[k] = threads
        if split:
            env["VAETHEORY_BATCH_SPLIT"] = split
        args = ["--worker", str(n), posterior, "--rounds", str(a.rounds), "--steps", str(a.steps)]
        r = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=True)
        return json.loads(r.stdout.strip().splitlines()[-1])

    rec: dict = {"git_sha": git_sha(), "cpu": cpu_record(), "load_before": os.getloadavg(), "rows": []}
    best: dict = {}
    for _ in range(a.passes):
        for n, posterior in CONFIGS:
            for mode in MODES:
                r = child(mode, n, posterior)
                key = (n, posterior, mode)
                if key not in best or r["ms"] < best[key]["ms"]:
                    best[key] = r
    for n, posterior in CONFIGS:
        one = best[(n, posterior, "one")]["ms"]
        cells = []
        for mode in MODES:
            r = dict(best[(n, posterior, mode)], n=n, posterior=posterior, mode=mode, speedup_over_one=0.0)
            r["speedup_over_one"] = one / r["ms"]
            rec["rows"].append(r)
            cells.append(f"{mode} {r['ms']:6.2f} ms ({r['speedup_over_one']:.2f}x)")
        print(f"n = {n:3d} {posterior:8s}  " + "   ".join(cells))
    print(f"{rec['cpu']['model']}; Numba kernels: {rec['rows'][0]['numba_kernels']}; x = one thread's ms / this ms")
    rec["load_after"] = os.getloadavg()
    write_json(rec, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
