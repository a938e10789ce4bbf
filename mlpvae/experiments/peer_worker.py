"""One implementation of the training step in a process of its own, driven by ``vaetheory bench train`` (Sec. 7).

``python -m mlpvae.experiments.peer_worker SPEC`` (``SPEC`` a JSON object:
``peer``, ``n``, ``posterior``, ``likelihood``, ``batch``, ``seed``,
``noise``, ``warmup``) builds the random problem of
:func:`mlpvae.experiments.bench_timing.problem` from the seed (so every peer
starts from the same weights and sees the same batch and noise), builds the
peer's stepper, runs three checked steps (their losses are reported for the
equality check; the first call includes any compilation, reported apart), then
the warm-up, and answers one JSON line ``ready``.  It then reads commands on
stdin, one a line, and answers each with one JSON line:

* ``time K``: K steps; wall milliseconds per step and the process's CPU time
  over wall time (every thread of the process counted);
* ``gemm``: the float32 GEMM rate at this process's thread count;
* ``profile``: the per-phase profile of our step (peers ``ours*`` only);
* ``quit``.

The thread counts come from the environment the parent sets
(:func:`mlpvae.experiments.peer_bench.worker_env`) before anything is imported.
Anything the libraries print goes to stderr; stdout carries only the answers.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

import numpy as np

from mlpvae.experiments import bench_profile, peer_jax, peer_torch
from mlpvae.experiments.bench_timing import gemm_rate, our_stepper, problem

PEERS = (
    "ours",
    "ours-numpy",
    "ours-serial-kernels",
    "torch-eager",
    "torch-eager-fused",
    "torch-compile",
    "torch-graph",
    "jax-jit",
)
OURS = ("ours", "ours-numpy", "ours-serial-kernels")


def _ours(mc, params, x, eps_all):
    st = our_stepper(np, mc, params, x, eps_all)

    def step(k: int):
        before = float(st.total)
        st()
        return float(st.total) - before

    path = "default CPU path"
    if os.environ.get("VAETHEORY_FUSED") == "0":
        path = "NumPy reference (VAETHEORY_FUSED=0)"
    elif os.environ.get("VAETHEORY_CPU_THREADS"):
        path = f"element-wise kernels on {os.environ['VAETHEORY_CPU_THREADS']} thread(s)"
    return step, lambda: None, f"ours, numpy {np.__version__}, {path}"


def build(peer: str, mc, params, x, eps_all, threads: int):
    """``(step, sync, note)`` of ``peer`` on the problem (Not in the paper); ImportError when its library is absent."""
    if peer in OURS:
        return _ours(mc, params, x, eps_all)
    if peer == "torch-eager":
        return peer_torch.eager(params, x, eps_all, mc, threads)
    if peer == "torch-eager-fused":
        return peer_torch.eager(params, x, eps_all, mc, threads, fused=True)
    if peer == "torch-compile":
        return peer_torch.compiled(params, x, eps_all, mc, threads)
    if peer == "torch-graph":
        return peer_torch.single_graph(params, x, eps_all, mc, threads)
    if peer == "jax-jit":
        return peer_jax.stepper(params, x, eps_all, mc)
    raise ValueError(f"peer must be one of {PEERS}, got {peer!r}")


def threadpools() -> list:
    """The thread pools loaded in this process (threadpoolctl): library, version, kernel, threads (Not in the paper)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "version", "architecture", "num_threads", "threading_layer", "filepath")
    return [{k: d.get(k) for k in keep if k in d} for d in threadpool_info()]


def timed(step, sync, start: int, count: int) -> dict:
    """Wall ms per step and CPU time / wall time of ``count`` steps from step index ``start`` (Not in the paper)."""
    sync()
    c0, w0 = time.process_time(), time.perf_counter()
    for k in range(start, start + count):
        step(k)
    sync()
    wall = time.perf_counter() - w0
    return {"ms": 1e3 * wall / count, "cpu_over_wall": (time.process_time() - c0) / wall}


def serve(spec: dict, out) -> None:
    """Set up the peer of ``spec``, answer ``ready``, then answer commands from stdin (Not in the paper)."""
    threads = int(spec["threads"])
    say = lambda d: (out.write(json.dumps(d) + "\n"), out.flush())  # noqa: E731
    mc, params, x, eps_all = problem(
        np, spec["n"], spec["posterior"], spec["batch"], spec["noise"], spec["seed"], spec["likelihood"]
    )
    t0 = time.perf_counter()
    try:
        step, sync, note = build(spec["peer"], mc, params, x, eps_all, threads)
    except ImportError as exc:
        say({"missing": f"{type(exc).__name__}: {exc}"})
        return
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    losses = [float(step(0))]
    first_s = time.perf_counter() - t0
    losses += [float(step(k)) for k in (1, 2)]
    k = 3
    for _ in range(spec["warmup"]):
        step(k)
        k += 1
    sync()
    say(
        {
            "ready": True,
            "note": note,
            "losses": losses,
            "build_s": build_s,
            "first_step_s": first_s,
            "pid": os.getpid(),
            "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "threadpools": threadpools(),
        }
    )
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            return
        if cmd[0] == "time":
            count = int(cmd[1])
            say(timed(step, sync, k, count))
            k += count
        elif cmd[0] == "gemm":
            say(
                {
                    "gemm_large_gflop_s": gemm_rate(np, 2048) / 1e9,
                    "gemm_step_sized_gflop_s": gemm_rate(np, 0, shape=(spec["batch"], 784, 200)) / 1e9,
                }
            )
        elif cmd[0] == "profile":
            say(bench_profile.profile(mc, params, x, eps_all, reps=int(cmd[1]) if len(cmd) > 1 else 20))
        else:
            say({"error": f"unknown command {cmd[0]!r}"})


def main(argv=None) -> int:
    """Entry point: serve one peer; a failure is answered as ``error`` with its message (Not in the paper)."""
    argv = sys.argv[1:] if argv is None else argv
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the libraries' own prints must not mix with the answers
    try:
        serve(json.loads(argv[0]), out)
    except Exception as exc:  # reported to the parent, which records the peer as failed
        traceback.print_exc()
        out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        out.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
