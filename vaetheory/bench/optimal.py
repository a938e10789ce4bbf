"""Benchmark of the closed-form decoder Eq. (6) and its Jacobian Eq. (7) against a plain GEMM.

``python -m vaetheory.bench.optimal [--device cpu|gpu] [--dtype float64 float32]
[--N 60000] [--M 10000] [--m 784] [--n 2] [--json PATH]``

For each dtype it times :func:`vaetheory.optimal.optimal_decoder` and
:func:`vaetheory.optimal.optimal_decoder_jacobian` on synthetic posteriors
(N means, diagonal variances, data in [0, 1]) at M query points, counts the
matrix-multiply FLOPs they must do (log weights 2 M N 2n, nu 2 M N m, Jacobian
n more times 2 M N m), and reports the achieved FLOP rate next to that of one
large square GEMM of the same dtype measured in the same run, plus the peak
memory (NumPy: tracemalloc; CuPy: the memory pool's high-water mark).
The target is at least half the GEMM rate (docs/results.md records the measurements).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import tracemalloc

import numpy as np

from vaetheory import optimal as o


def _xp(device: str):
    if device == "cpu":
        return np, "cpu (NumPy): " + (platform.processor() or platform.machine())
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    return cupy, "gpu (CuPy): " + props["name"].decode()


def _sync(xp):
    if xp is not np:
        xp.cuda.Stream.null.synchronize()


def _time(xp, fn, repeat: int) -> float:
    """Best wall time of ``repeat`` calls, synchronised on the GPU (warm up first)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        _sync(xp)
        best = min(best, time.perf_counter() - t)
    return best


def _peak_bytes(xp, fn) -> int:
    """Peak bytes allocated while ``fn`` runs (tracemalloc on NumPy, the CuPy pool otherwise)."""
    if xp is np:
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    pool = xp.get_default_memory_pool()
    pool.free_all_blocks()
    base = pool.total_bytes()
    fn()
    _sync(xp)
    return pool.total_bytes() - base


def bench(
    device="cpu",
    dtypes=("float64", "float32"),
    N=60000,
    M=10000,
    m=784,
    n=2,
    gemm_size=None,
    repeat=2,
    seed=0,
    chunk=None,
) -> dict:
    """Time Eqs. (6)-(7) and a plain GEMM; return the figures (Not in the paper: a benchmark)."""
    xp, desc = _xp(device)
    gemm_size = gemm_size or (8192 if xp is not np else 2048)
    rng = np.random.default_rng(seed)
    host = dict(
        mu=rng.standard_normal((N, n)),
        var=np.exp(rng.uniform(np.log(1e-3), 0.0, (N, n))),
        x=rng.uniform(0.0, 1.0, (N, m)),
        z=rng.standard_normal((M, n)) * 1.5,
    )
    flops_nu = 2.0 * M * N * m + 2.0 * M * N * 2 * n
    flops_jac = flops_nu + n * 2.0 * M * N * m
    res = {
        "device": desc,
        "N": N,
        "M": M,
        "m": m,
        "n": n,
        "chunk": chunk,
        "gemm_size": gemm_size,
        "flops_counted": "log weights 2*M*N*2n + nu 2*M*N*m (+ Jacobian n*2*M*N*m)",
        "results": {},
    }
    for name in dtypes:
        dt = np.dtype(name)
        a = {k: xp.asarray(v.astype(dt)) for k, v in host.items()}
        A = xp.asarray(rng.standard_normal((gemm_size, gemm_size)).astype(dt))
        A @ A  # warm-up
        t_gemm = _time(xp, lambda: A @ A, repeat)
        gemm_rate = 2.0 * gemm_size**3 / t_gemm
        call_nu = lambda: o.optimal_decoder(a["z"], a["mu"], a["var"], a["x"], chunk=chunk)  # noqa: E731
        call_jac = lambda: o.optimal_decoder_jacobian(a["z"], a["mu"], a["var"], a["x"], chunk=chunk)  # noqa: E731
        peak_nu = _peak_bytes(xp, call_nu)  # also the warm-up
        t_nu = _time(xp, call_nu, repeat)
        peak_jac = _peak_bytes(xp, call_jac)
        t_jac = _time(xp, call_jac, repeat)
        r = {
            "gemm_seconds": t_gemm,
            "gemm_gflops": gemm_rate / 1e9,
            "decoder_seconds": t_nu,
            "decoder_gflops": flops_nu / t_nu / 1e9,
            "decoder_fraction_of_gemm": flops_nu / t_nu / gemm_rate,
            "jacobian_seconds": t_jac,
            "jacobian_gflops": flops_jac / t_jac / 1e9,
            "jacobian_fraction_of_gemm": flops_jac / t_jac / gemm_rate,
            "decoder_peak_bytes": peak_nu,
            "jacobian_peak_bytes": peak_jac,
            "output_bytes_jacobian": M * m * (n + 1) * dt.itemsize,
        }
        res["results"][name] = r
        a = A = None  # the device arrays go before the next dtype's are made
    return res


def main(argv=None) -> int:
    """Command-line entry of the optimal-decoder benchmark; prints the figures (and JSON with ``--json``)."""
    p = argparse.ArgumentParser(prog="python -m vaetheory.bench.optimal", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--dtype", nargs="+", choices=("float64", "float32"), default=["float64", "float32"])
    p.add_argument("--N", type=int, default=60000, help="posteriors (60000)")
    p.add_argument("--M", type=int, default=10000, help="query points (10000)")
    p.add_argument("--m", type=int, default=784, help="data dimension (784)")
    p.add_argument("--n", type=int, default=2, help="latent dimension (2)")
    p.add_argument("--chunk", type=int, default=None, help="query points per block (default: the library's)")
    p.add_argument("--gemm-size", type=int, default=None, help="reference square GEMM size (CPU 2048, GPU 8192)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)
    res = bench(
        args.device, tuple(args.dtype), args.N, args.M, args.m, args.n, args.gemm_size, args.repeat, chunk=args.chunk
    )
    print(f"{res['device']}: N={args.N} posteriors, M={args.M} queries, m={args.m}, n={args.n}")
    for name, r in res["results"].items():
        print(f"  {name}: plain GEMM {r['gemm_gflops']:9.1f} GFLOP/s")
        for what in ("decoder", "jacobian"):
            print(
                f"  {name}: {what:8s} {r[what + '_seconds']:8.3f} s  {r[what + '_gflops']:9.1f} GFLOP/s  "
                f"{100 * r[what + '_fraction_of_gemm']:5.1f}% of GEMM  "
                f"peak {r[what + '_peak_bytes'] / 2**20:8.1f} MiB"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
