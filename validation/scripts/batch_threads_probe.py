"""Whether splitting the batch across Python threads speeds up the CPU step (issue 26, a means considered).

    python validation/scripts/batch_threads_probe.py [--rounds 6] [--steps 20] [--out FILE.json]

The two-thread step shares the cores between OpenBLAS's threads (inside each product) and NumPy's
single-threaded element-wise passes. The alternative probed here: two Python threads, each computing the loss and
gradients of half the batch with one BLAS thread (`mlpvae.nn.model.loss_and_grads` on rows 0-149 and 150-299), the
two gradients averaged, then Adam. For a learned Sigma (prior N(0, I)) the loss is a mean over examples, so the
average of the halves' gradients is the batch's gradient, checked here against the whole batch's to float32
rounding; a floating prior (constant Sigma, BILBO) couples the examples through S^2, so the split would need a
second pass and is not timed. Each of

- ``one``: the whole batch, one BLAS thread;
- ``blas2``: the whole batch, two BLAS threads (what the trainer does with two threads);
- ``halves2``: two Python threads, half the batch each, one BLAS thread each;

runs in a process of its own, in turn, for n = 2 and n = 100 (Bernoulli likelihood, learned Sigma; weights,
batch and noise from seed 0); min ms/step over the rounds, two passes over the modes. Two further lines say why:
the same product (150 x 784 by 784 x 200, float32) and the same element-wise pass (max and multiply on 150 x 200)
200 and 2,000 times, serially and from two threads. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MODES = ("one", "blas2", "halves2")
B = 300


def _worker(mode: str, n: int, rounds: int, steps: int) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from threadpoolctl import threadpool_limits

    from mlpvae.experiments.bench_timing import back_to_back_ms
    from mlpvae.nn import model as M
    from mlpvae.nn.adam import Adam

    mc = M.ModelConfig(m=784, n=n, posterior="learned", likelihood="bernoulli")
    rng = np.random.default_rng(0)
    p = M.init_params(mc, rng)
    x = rng.random((B, 784), dtype=np.float32)
    eps = rng.standard_normal((B, n), dtype=np.float32)
    opt = Adam(p, lr=1e-3)
    out: dict = {"mode": mode, "n": n}
    if mode == "halves2":
        threadpool_limits(1)
        pool = ThreadPoolExecutor(2)
        halves = ((x[: B // 2], eps[: B // 2]), (x[B // 2 :], eps[B // 2 :]))
        g: list[dict] = [{}, {}]

        def half(i):
            return M.loss_and_grads(p, halves[i][0], halves[i][1], mc, grads=g[i])[0]

        def grads_now() -> dict:
            list(pool.map(half, (0, 1)))
            for k in g[0]:
                g[0][k] += g[1][k]
                g[0][k] *= 0.5
            return g[0]

        _, whole, _ = M.loss_and_grads(p, x, eps, mc)
        split = grads_now()
        out["grad_max_rel_diff"] = max(
            float(np.max(np.abs(split[k] - whole[k])) / max(float(np.max(np.abs(whole[k]))), 1e-30)) for k in whole
        )

        def step():
            opt.step(p, grads_now())
    else:
        gg: dict = {}

        def step():
            M.loss_and_grads(p, x, eps, mc, grads=gg)
            opt.step(p, gg)

    out["ms"] = back_to_back_ms(step, rounds, steps, warmup=3)
    return out


def _micro() -> dict:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    rng = np.random.default_rng(0)
    a, w = rng.random((150, 784), dtype=np.float32), rng.random((784, 200), dtype=np.float32)
    h = rng.random((150, 200), dtype=np.float32)

    def gemm(_):
        for _ in range(200):
            a @ w

    def elementwise(_):
        for _ in range(2000):
            np.maximum(h, 0, out=h)
            h * 1.0001

    pool = ThreadPoolExecutor(2)
    res = {}
    for name, f in (("gemm", gemm), ("elementwise", elementwise)):
        serial = two = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            f(0)
            f(0)
            serial = min(serial, time.perf_counter() - t)
            t = time.perf_counter()
            list(pool.map(f, (0, 1)))
            two = min(two, time.perf_counter() - t)
        res[name] = {"serial_s": serial, "two_threads_s": two, "speedup": serial / two}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--worker", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--micro", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(_worker(a.worker[0], int(a.worker[1]), a.rounds, a.steps)))
        return 0
    if a.micro:
        print(json.dumps(_micro()))
        return 0

    from mlpvae.experiments.report import write_json
    from mlpvae.training.runs import git_sha

    def child(args: list[str], threads: int) -> dict:
        env = dict(os.environ)
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[k] = str(threads)
        env["VAETHEORY_FUSED"] = "0"  # the NumPy reference: the probe is about NumPy's passes
        r = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=True)
        return json.loads(r.stdout.strip().splitlines()[-1])

    rec: dict = {"git_sha": git_sha(), "cpu_count": os.cpu_count(), "load_before": os.getloadavg(), "rows": []}
    best: dict = {}
    for _ in range(2):
        for n in (2, 100):
            for mode in MODES:
                r = child(
                    ["--worker", mode, str(n), "--rounds", str(a.rounds), "--steps", str(a.steps)],
                    1 if mode == "one" else 2,
                )
                key = (mode, n)
                if key not in best or r["ms"] < best[key]["ms"]:
                    best[key] = r
    for n in (2, 100):
        one = best[("one", n)]["ms"]
        for mode in MODES:
            r = best[(mode, n)]
            r["speedup_over_one"] = one / r["ms"]
            rec["rows"].append(r)
            extra = f", split gradient vs whole {r['grad_max_rel_diff']:.1e}" if "grad_max_rel_diff" in r else ""
            print(f"n = {n:3d} {mode:8s} {r['ms']:7.2f} ms/step  ({r['speedup_over_one']:.2f}x one thread){extra}")
    rec["micro"] = child(["--micro"], 1)
    for name, m in rec["micro"].items():
        print(f"{name:11s}: two Python threads {m['speedup']:.2f}x one (serial {m['serial_s'] * 1e3:.1f} ms)")
    rec["load_after"] = os.getloadavg()
    write_json(rec, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
