"""Where the time of one Eq. (6) chunk goes: each pass over the (chunk, N) block timed alone.

    PYTHONPATH=. python validation/scripts/device/optimal_phases.py [cpu|gpu] [chunk]

Times, for N = 60,000 posteriors, m = 784, n = 2 and one chunk of query points (the library's default
size unless given), the steps of `vaetheory.optimal._gemm_kernel`'s decoder branch: the log-density GEMM
(inner dimension 2n + 1), the row max, the shifted exp (+ cast), the row sum, and the weighted sum of
the data W x, plus W x with a ones column appended to x (the row sum folded into the GEMM; 785 columns,
and padded to 792 so the leading dimension stays a multiple of 8).  Prints ms per chunk and each step's
share, per dtype, so that the next change to the kernel goes where the time is.  Not in the paper.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from vaetheory import numerics, optimal_gemm


def main(device: str = "cpu", chunk: str | None = None) -> int:
    if device == "gpu":
        import cupy as xp

        def timed(fn, repeat=20):
            fn()
            start, stop = xp.cuda.Event(), xp.cuda.Event()
            ts = []
            for _ in range(repeat):
                start.record()
                fn()
                stop.record()
                stop.synchronize()
                ts.append(xp.cuda.get_elapsed_time(start, stop))
            return float(np.median(ts))
    else:
        xp = np

        def timed(fn, repeat=3):
            fn()
            ts = []
            for _ in range(repeat):
                t = time.perf_counter()
                fn()
                ts.append(1e3 * (time.perf_counter() - t))
            return float(np.median(ts))

    N, m, n = 60000, 784, 2
    block = optimal_gemm.GPU_BLOCK_ELEMENTS if device == "gpu" else numerics.BLOCK_ELEMENTS
    c = int(chunk) if chunk else max(1, block // N)
    rng = np.random.default_rng(0)
    zk = xp.asarray(rng.standard_normal((c, n)))
    coef = xp.asarray(rng.standard_normal((2 * n + 1, N)) * 0.1)
    ones = xp.ones((c, 1))
    print(f"{device}: one chunk of {c} query points, N={N}, m={m}, n={n}")
    for name in ("float64", "float32"):
        dt = np.dtype(name)
        x = xp.asarray(rng.uniform(0, 1, (N, m)).astype(dt))
        x1 = xp.concatenate([x, xp.ones((N, 1), dtype=dt)], axis=1)
        x8 = xp.concatenate([x1, xp.zeros((N, 7), dtype=dt)], axis=1)
        logn = xp.concatenate([zk * zk, zk, ones], axis=1) @ coef
        top = logn.max(axis=1, keepdims=True)
        w = optimal_gemm.exp_shifted(xp, logn.copy(), top, dt)
        steps = {
            "log-density GEMM (c, 2n+1) @ (2n+1, N)": lambda: xp.concatenate([zk * zk, zk, ones], axis=1) @ coef,
            "row max": lambda: logn.max(axis=1, keepdims=True),
            "shifted exp (+ cast)": lambda: optimal_gemm.exp_shifted(xp, logn.copy(), top, dt),
            "  (the copy inside the line above)": lambda: logn.copy(),
            "row sum": lambda: w.sum(axis=1, keepdims=True),
            "W x (c, N) @ (N, m)": lambda: w @ x,
        }
        t = {k: timed(f) for k, f in steps.items()}
        total = sum(v for k, v in t.items() if not k.startswith("  ")) - t["  (the copy inside the line above)"]
        flops = 2.0 * c * N * m
        print(
            f" {name}: total {total:.3f} ms per chunk; W x alone {flops / t['W x (c, N) @ (N, m)'] / 1e6:.0f} GFLOP/s"
        )
        for k, v in t.items():
            print(f"   {k:42s} {v:8.3f} ms  {100 * v / total:5.1f}%")
        for label, xx in (("W [x, 1] (785 columns)", x1), ("W [x, 1, 0] (792 columns)", x8)):
            v = timed(lambda xx=xx: w @ xx)
            print(
                f"   {label:42s} {v:8.3f} ms  "
                f"(replaces W x + row sum: {t['W x (c, N) @ (N, m)'] + t['row sum']:.3f} ms)"
            )
        x = x1 = x8 = logn = w = None  # the device arrays go before the next dtype's are made
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
