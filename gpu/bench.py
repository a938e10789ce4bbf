"""Training-step speed for the paper's MNIST configurations (Sec. 7), against the machine's GEMM rate.

For each configuration (2-D and 100-D latent, Bernoulli likelihood, each
posterior mode, batch 300) it times whole training steps (forward, hand-written
backward, Adam update) after a warm-up, and reports milliseconds per step,
examples per second, and the achieved fraction of the float32 matrix-multiply
rate measured in the same process on a large square GEMM.  The step's FLOPs are
counted analytically from the parameter shapes: ``2 B fan_in fan_out`` for each
dense layer's forward product, the same for its weight gradient, and the same
for its input gradient except on the encoder's first layer (no gradient with
respect to the data is needed).  Element-wise work is not counted, so the
fraction is the share of the step's time the GEMMs would take at the measured
rate.  On the CPU, the thread count comes from ``OMP_NUM_THREADS`` and is
reported.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from gpu import device as dev

CONFIGS = [(n, posterior) for n in (2, 100) for posterior in ("learned", "constant", "bilbo")]


def step_flops(params, B: int, m: int) -> int:
    """Matrix-multiply FLOPs of one training step of batch ``B`` (Not in the paper).

    Forward + backward, counted from the weight shapes (see the module docstring).
    """
    total = 0
    for W in params.values():
        if W.ndim != 2:
            continue
        fi, fo = W.shape
        per = 2 * B * fi * fo
        total += 3 * per if fi != m else 2 * per  # forward, dW, dh (no dh for the data input)
    return total


def gemm_rate(xp, size: int, dtype=np.float32, repeats: int = 3, shape=None) -> float:
    """Best-of-``repeats`` FLOP/s of ``A @ B`` in ``dtype`` (Not in the paper).

    The product is square of side ``size``, or ``shape = (M, K, N)``.
    """
    M, K, N = shape or (size, size, size)
    rng = np.random.default_rng(0)
    A = xp.asarray(rng.standard_normal((M, K)).astype(dtype))
    Bm = xp.asarray(rng.standard_normal((K, N)).astype(dtype))
    out = xp.empty((M, N), dtype=dtype)
    xp.matmul(A, Bm, out=out)
    dev.synchronize(xp)
    inner = max(1, int(2e9 // (2 * M * K * N)))  # ~2 GFLOP per timing, so small shapes are timed reliably
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            xp.matmul(A, Bm, out=out)
        dev.synchronize(xp)
        best = min(best, (time.perf_counter() - t) / inner)
    return 2 * M * K * N / best


def time_steps(xp, n: int, posterior: str, B: int = 300, steps: int = 30, warmup: int = 5, seed: int = 0) -> dict:
    """Time ``steps`` training steps of the paper's network on random binary-ish data (Sec. 7)."""
    from gpu import adam, model

    mc = model.ModelConfig(n=n, posterior=posterior, likelihood="bernoulli")
    rng = np.random.default_rng(seed)
    params = model.init_params(mc, rng, xp=xp, dtype=np.float32)
    opt = adam.Adam(params, lr=1e-3)
    x = xp.asarray(rng.random((B, mc.m), dtype=np.float32))
    eps_all = xp.asarray(rng.standard_normal((warmup + steps, B, n), dtype=np.float32))
    for s in range(warmup):
        _, grads, _ = model.loss_and_grads(params, x, eps_all[s], mc)
        opt.step(params, grads)
    dev.synchronize(xp)
    t = time.perf_counter()
    for s in range(warmup, warmup + steps):
        _, grads, _ = model.loss_and_grads(params, x, eps_all[s], mc)
        opt.step(params, grads)
    dev.synchronize(xp)
    sec = (time.perf_counter() - t) / steps
    return {"n": n, "posterior": posterior, "likelihood": "bernoulli", "batch": B,
            "ms_per_step": 1e3 * sec, "examples_per_s": B / sec, "step_gflop": step_flops(params, B, mc.m) / 1e9}


def bench(device: str = "auto", steps: int = 30, warmup: int = 5, B: int = 300, gemm_size: int | None = None,
          configs=CONFIGS) -> dict:
    """Run every configuration; return a JSON-able report (rates in GFLOP/s) (Sec. 7)."""
    xp, desc = dev.select(device)
    size = gemm_size or (8192 if xp is not np else 2048)
    large = gemm_rate(xp, size)
    similar = gemm_rate(xp, 0, shape=(B, 784, 200))
    rows = []
    for n, posterior in configs:
        r = time_steps(xp, n, posterior, B, steps, warmup)
        r["achieved_gflop_s"] = r["step_gflop"] / (r["ms_per_step"] / 1e3)
        r["fraction_of_gemm_rate"] = r["achieved_gflop_s"] / (large / 1e9)
        rows.append(r)
    return {"device": desc, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "steps": steps,
            "warmup": warmup, "gemm_large": {"size": size, "gflop_s": large / 1e9},
            "gemm_step_sized": {"shape": [B, 784, 200], "gflop_s": similar / 1e9}, "results": rows}


def format_report(rep: dict) -> str:
    """The report of :func:`bench` as a text table (Not in the paper)."""
    lines = [f"device: {rep['device']}  OMP_NUM_THREADS={rep['omp_num_threads']}",
             f"float32 GEMM {rep['gemm_large']['size']}^3: {rep['gemm_large']['gflop_s']:.1f} GFLOP/s; "
             f"step-sized {tuple(rep['gemm_step_sized']['shape'])}: {rep['gemm_step_sized']['gflop_s']:.1f} GFLOP/s",
             f"{'n':>4} {'posterior':>9} {'ms/step':>9} {'examples/s':>11} {'GFLOP/step':>10} {'GFLOP/s':>8} {'of GEMM':>8}"]
    for r in rep["results"]:
        lines.append(f"{r['n']:>4} {r['posterior']:>9} {r['ms_per_step']:>9.2f} {r['examples_per_s']:>11.0f} "
                     f"{r['step_gflop']:>10.3f} {r['achieved_gflop_s']:>8.1f} {100 * r['fraction_of_gemm_rate']:>7.1f}%")
    return "\n".join(lines)


def add_arguments(parser) -> None:
    """The command-line interface (Not in the paper)."""
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per configuration (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    parser.add_argument("--batch-size", type=int, default=300)
    parser.add_argument("--gemm-size", type=int, default=None, help="square GEMM size (default 2048 CPU, 8192 GPU)")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")


def run(args) -> int:
    """The command-line interface (Not in the paper)."""
    rep = bench(args.device, args.steps, args.warmup, args.batch_size, args.gemm_size)
    print(format_report(rep))
    if args.json:
        from gpu.checkpoint import write_json

        write_json(args.json, rep)
    return 0
