"""One implementation of the training step in a process of its own, driven by ``vaetheory bench train`` (Sec. 7).

``python -m mlpvae.experiments.peer_worker SPEC`` (``SPEC`` a JSON object:
``peer``, ``n``, ``posterior``, ``likelihood``, ``batch``, ``seed``,
``noise``, ``warmup``, optionally ``device`` (``cpu`` or ``gpu``) and ``models``
K) builds the random problem of
:func:`mlpvae.experiments.bench_timing.problem` from the seed (so every peer
starts from the same weights and sees the same batch and noise; K models: seeds
``seed`` to ``seed + K - 1``, stacked on a leading axis as a stack of ours), builds the
peer's stepper, runs three checked steps (their losses are reported for the
equality check; the first call includes any compilation, reported apart), then
the warm-up, and answers one JSON line ``ready``.  It then reads commands on
stdin, one a line, and answers each with one JSON line:

* ``time K``: K steps; wall milliseconds per step and the process's CPU time
  over wall time (every thread of the process counted);
* ``gemm``: the float32 GEMM rate at this process's thread count;
* ``profile``: the per-phase profile of our step (peers ``ours*`` only);
* ``gemms R``: the matrix products of our step timed in this peer's library
  (:mod:`mlpvae.experiments.gemm_libraries`), ``R`` passes per repeat; one model on the CPU;
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

from mlpvae.accel import device as dev
from mlpvae.experiments import bench_profile, gemm_libraries, peer_jax, peer_torch
from mlpvae.experiments.bench_timing import gemm_rate, our_stepper, problem
from mlpvae.nn.stacking import stack

PEERS = (
    "ours",
    "ours-numpy",
    "ours-serial-kernels",
    "ours-split",
    "torch-eager",
    "torch-eager-fused",
    "torch-compile",
    "torch-compile-ro",
    "torch-graph",
    "torch-vmap",
    "jax-jit",
    "jax-vmap",
)
OURS = ("ours", "ours-numpy", "ours-serial-kernels", "ours-split")
ENSEMBLES = ("ours", "torch-vmap", "jax-vmap")  # the peers that train K models at once


def _ours(mc, params, x, eps_all, xp=np):
    st = our_stepper(xp, mc, params, x, eps_all)

    def step(k: int):
        st()
        return st.total  # the running sum: no copy or sync per step (first_losses differences it)

    step.cumulative = True
    path = "default CPU path" if xp is np else f"CuPy {xp.__version__} (fused kernels, CUDA graph)"
    if os.environ.get("VAETHEORY_FUSED") == "0":
        path = "NumPy reference (VAETHEORY_FUSED=0)" if xp is np else "plain CuPy (VAETHEORY_FUSED=0)"
    elif os.environ.get("VAETHEORY_BATCH_SPLIT", "1") not in ("", "1") and xp is np:
        path = f"the batch in {os.environ['VAETHEORY_BATCH_SPLIT']} blocks on Python threads (VAETHEORY_BATCH_SPLIT)"
    elif os.environ.get("VAETHEORY_CPU_THREADS"):
        path = f"element-wise kernels on {os.environ['VAETHEORY_CPU_THREADS']} thread(s)"
    return step, lambda: dev.synchronize(xp), f"ours, numpy {np.__version__}, {path}"


def first_losses(step, count: int = 3) -> tuple[list, float]:
    """The losses of steps 0 to ``count - 1`` as floats, summed over a stack's models, and the first call's seconds.

    The first call includes any compilation (Not in the paper).
    """
    values, first_s = [], 0.0
    for k in range(count):
        t0 = time.perf_counter()
        values.append(float(step(k).sum()))
        if k == 0:
            first_s = time.perf_counter() - t0
    if getattr(step, "cumulative", False):
        values = np.diff([0.0] + values).tolist()
    return values, first_s


def build(peer: str, mc, params, x, eps_all, threads: int, device: str = "cpu"):
    """``(step, sync, note)`` of ``peer`` on the problem (Not in the paper); ImportError when its library is absent.

    ``x (K, B, m)`` (with stacked ``params`` and ``eps_all (S, K, B, n)``) is K models at once,
    for :data:`ENSEMBLES` only; ``device``: ``cpu`` or ``gpu`` (CuPy for ours, CUDA for PyTorch;
    JAX runs on its default backend).
    """
    if np.ndim(x) == 3 and peer not in ENSEMBLES:
        raise ValueError(f"{peer} trains one model; K models at once: {ENSEMBLES}")
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    td = "cuda" if device == "gpu" else "cpu"
    if peer in ("torch-vmap", "jax-vmap") and np.ndim(x) == 2:  # one model as a stack of one
        params, x, eps_all = stack([params]), np.asarray(x)[None], np.asarray(eps_all)[:, None]
    if peer in OURS:
        return _ours(mc, params, x, eps_all, dev.select(device)[0])
    if peer == "torch-eager":
        return peer_torch.eager(params, x, eps_all, mc, threads, device=td)
    if peer == "torch-eager-fused":
        return peer_torch.eager(params, x, eps_all, mc, threads, fused=True, device=td)
    if peer == "torch-compile":
        return peer_torch.compiled(params, x, eps_all, mc, threads, device=td)
    if peer == "torch-compile-ro":
        return peer_torch.compiled(params, x, eps_all, mc, threads, device=td, mode="reduce-overhead")
    if peer == "torch-graph":
        return peer_torch.single_graph(params, x, eps_all, mc, threads, device=td)
    if peer == "torch-vmap":
        return peer_torch.ensemble(params, x, eps_all, mc, threads, device=td)
    if peer == "jax-jit":
        return peer_jax.stepper(params, x, eps_all, mc)
    if peer == "jax-vmap":
        return peer_jax.stepper(params, x, eps_all, mc, models=True)
    raise ValueError(f"peer must be one of {PEERS}, got {peer!r}")


def models_problem(n: int, posterior: str, B: int, count: int, seed: int, likelihood: str, K: int):
    """:func:`mlpvae.experiments.bench_timing.problem` for K models (seeds ``seed`` to ``seed + K - 1``), stacked.

    K = 1: the single problem.  Otherwise stacked parameters, ``x (K, B, m)`` and
    ``eps_all (count, K, B, n)``, as :func:`mlpvae.experiments.bench_timing.time_stack` stacks them (Not in the paper).
    """
    if K == 1:
        return problem(np, n, posterior, B, count, seed, likelihood)
    probs = [problem(np, n, posterior, B, count, seed + i, likelihood) for i in range(K)]
    x = np.stack([q[2] for q in probs])
    return probs[0][0], stack([q[1] for q in probs]), x, np.stack([q[3] for q in probs], axis=1)


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
    device = spec.get("device", "cpu")
    mc, params, x, eps_all = models_problem(
        spec["n"],
        spec["posterior"],
        spec["batch"],
        spec["noise"],
        spec["seed"],
        spec["likelihood"],
        spec.get("models", 1),
    )
    t0 = time.perf_counter()
    try:
        step, sync, note = build(spec["peer"], mc, params, x, eps_all, threads, device)
    except ImportError as exc:
        say({"missing": f"{type(exc).__name__}: {exc}"})
        return
    build_s = time.perf_counter() - t0
    losses, first_s = first_losses(step, 3)
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
            "threadpools": dev.threadpools(),
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
            xp = dev.select(device)[0]
            say(
                {
                    "gemm_large_gflop_s": gemm_rate(xp, 2048 if xp is np else 8192) / 1e9,
                    "gemm_step_sized_gflop_s": gemm_rate(xp, 0, shape=(spec["batch"], 784, 200)) / 1e9,
                }
            )
        elif cmd[0] == "gemms":
            lib = gemm_libraries.library_of(spec["peer"])
            products = gemm_libraries.step_products(mc, params, x, eps_all[0])
            reps = int(cmd[1]) if len(cmd) > 1 else 20
            say({"library": lib, "ms": gemm_libraries.products_ms(lib, products, reps=reps)})
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
