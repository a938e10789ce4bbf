"""Our training step against its peers, each in a process of its own, side by side in one run (Sec. 7).

For each thread count and configuration, one worker process per
implementation (:mod:`mlpvae.experiments.peer_worker`) builds the same
problem from the same seed (weights, batch, noise) and reports the losses of
its first three steps; the parent checks them against ours (step 1 within
``LOSS_RTOL``: the same float32 forward pass, summed in another order; steps 2
and 3 within ``LOSS_RTOL_LATER``: Adam's first steps move every weight by about
the learning rate in the sign of its gradient, so a gradient that is nearly
zero may round to either sign), then times them in rounds taken in turn (one
block of steps per worker per round; the others wait idle on a pipe), so a
change in machine load hits each alike.  Each worker's figure is the minimum
ms/step over the rounds; its ratio is its time over ours (below 1: the peer is
faster).  The first call, which includes any compilation, is reported apart.

Thread counts are set in each worker's environment before it imports
anything (BLAS, OpenMP, Numba, XLA) and by ``torch.set_num_threads``; each
block's process CPU time over wall time is recorded, and a worker whose ratio
exceeds its thread count by more than ``OVERUSE`` is flagged.  A peer whose
library is missing is reported as missing, one that fails as failed, with the
reason; none is dropped.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
from tqdm import tqdm

from mlpvae.accel.device import cpu_model
from mlpvae.experiments.bench_timing import problem, step_flops
from mlpvae.experiments.peer_worker import ENSEMBLES, PEERS
from vaetheory.validate import choice

LOSS_RTOL = 1e-5  # float32 sums of 235,200 likelihood terms in another order; about 80 ulps of a loss near 540
LOSS_RTOL_LATER = 1e-4  # after Adam steps, see the module docstring
OVERUSE = 0.3  # CPU time over wall time above the thread count by more than this is flagged
NOISE_DRAWS = 16


def peer_list(text: str) -> list:
    """The peers named by ``--peers`` (``all``, ``none`` or a comma list) (Not in the paper)."""
    if text.strip() == "none":
        return []
    if text.strip() == "all":
        return list(PEERS)
    return [choice("--peers", v.strip(), PEERS) for v in text.split(",")]


def thread_list(text: str | None, default: int, option: str = "--threads") -> list:
    """The positive counts named by ``option`` (``--threads``, ``--models``; default ``[default]``).

    Not in the paper.
    """
    if text is None:
        return [default]
    try:
        out = [int(v) for v in text.split(",")]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise ValueError(f"{option} must be positive integers separated by commas, got {text!r}")
    return out


def worker_env(threads: int, peer: str) -> dict:
    """The environment of a worker at ``threads`` threads (Not in the paper).

    BLAS, OpenMP and Numba read their counts from it at import; XLA's CPU
    client is held to one thread only by its flags (at more threads it uses one
    per core).  ``ours-numpy`` runs the plain NumPy reference (``VAETHEORY_FUSED=0``),
    ``ours-serial-kernels`` our element-wise kernels on one thread (BLAS on ``threads``), ``ours-split`` the
    batch in ``threads`` blocks of rows on Python threads (``VAETHEORY_BATCH_SPLIT``).
    """
    env = dict(os.environ)
    t = str(int(threads))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = t
    if int(threads) == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    if peer == "ours-numpy":
        env["VAETHEORY_FUSED"] = "0"
    if peer == "ours-serial-kernels":
        env["VAETHEORY_CPU_THREADS"] = "1"
    if peer == "ours-split":
        env["VAETHEORY_BATCH_SPLIT"] = t
    env.setdefault("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    return env


def worker_cpus(threads: int) -> list[int] | None:
    """The cores a worker at ``threads`` threads is pinned to, or None to leave it free (Not in the paper).

    Thread-count settings are requests a library may exceed (XLA's CPU client keeps threads of its
    own even with one intra-op thread); pinning the process to the first ``threads`` of the cores it
    may use makes the count binding for every peer alike.  None when there are no more cores than that.
    """
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[: int(threads)] if int(threads) < len(allowed) else None


class Worker:
    """A running :mod:`mlpvae.experiments.peer_worker` process and its pipes (Not in the paper)."""

    def __init__(self, spec: dict):
        self.spec = spec
        cpus = worker_cpus(spec["threads"])
        # set before the worker starts, so that every thread it creates inherits the mask
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus is not None else None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlpvae.experiments.peer_worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if spec.get("quiet", True) else None,
            text=True,
            env=worker_env(spec["threads"], spec["peer"]),
            preexec_fn=pin,
        )
        self.ready = self.read()

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            return {"error": f"the worker exited with status {self.proc.wait()} before answering"}
        return json.loads(line)

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def loss_check(ours: list, theirs: list) -> dict:
    """Whether a peer's first three losses equal ours within ``LOSS_RTOL`` / ``LOSS_RTOL_LATER`` (Not in the paper)."""
    rel = [abs(a - b) / abs(b) for a, b in zip(theirs, ours)]
    ulp = float(np.spacing(np.float32(abs(ours[0]))))
    ok = rel[0] <= LOSS_RTOL and all(r <= LOSS_RTOL_LATER for r in rel[1:])
    return {"losses": theirs, "rel_diff": rel, "step1_diff_f32_ulps": abs(theirs[0] - ours[0]) / ulp, "same_loss": ok}


def compare_config(spec: dict, peers, rounds: int, steps: int, profile_reps: int, gemm: bool) -> dict:
    """Every peer on one configuration at one thread count, side by side (see the module docstring)."""
    load_before = list(os.getloadavg())
    workers, rows = {}, {}
    try:
        for peer in peers:
            if spec.get("models", 1) > 1 and peer not in ENSEMBLES:
                rows[peer] = {"status": "single model", "reason": f"trains one model; K models at once: {ENSEMBLES}"}
                continue
            w = Worker(dict(spec, peer=peer))
            r = w.ready
            if "ready" in r:
                workers[peer] = w
                rows[peer] = dict(status="timed", **r)
            else:
                w.close()
                rows[peer] = {
                    "status": "missing" if "missing" in r else "failed",
                    "reason": r.get("missing", r.get("error")),
                }
        ref = rows.get("ours", {}).get("losses")
        for r in rows.values():
            if ref and "losses" in r:
                r["check"] = loss_check(ref, r["losses"])
        per = max(1, steps // rounds)
        blocks = {p: [] for p in workers}
        for _ in range(rounds):
            for peer, w in workers.items():
                blocks[peer].append(w.ask(f"time {per}"))
                time.sleep(0.05)  # lets spinning OpenMP threads of the last worker go to sleep
        for peer, b in blocks.items():
            ms = [x["ms"] for x in b]
            cpu = [x["cpu_over_wall"] for x in b]
            best = int(np.argmin(ms))
            rows[peer].update(
                ms_per_step=ms[best],
                ms_blocks=ms,
                cpu_over_wall=cpu[best],
                cpu_over_wall_blocks=cpu,
                overuses_threads=bool(max(cpu) > spec["threads"] + OVERUSE),
                compile_s=max(0.0, rows[peer]["first_step_s"] - ms[best] / 1e3),
            )
        if "ours" in rows and "ms_per_step" in rows["ours"]:
            base = rows["ours"]["ms_per_step"]
            for r in rows.values():
                if "ms_per_step" in r:
                    r["ratio_to_ours"] = r["ms_per_step"] / base
        extra = {}
        if profile_reps > 0 and spec.get("device", "cpu") == "cpu" and spec.get("models", 1) == 1:
            if "ours" in workers:
                extra["profile"] = workers["ours"].ask(f"profile {profile_reps}")
            for peer, w in workers.items():  # the same products in each peer's library, in its own process
                rows[peer]["step_gemms"] = w.ask(f"gemms {profile_reps}")
        if "ours" in workers and gemm:
            extra["gemm"] = workers["ours"].ask("gemm")
    finally:
        for w in workers.values():
            w.close()
    keys = ("n", "posterior", "likelihood", "batch", "threads")
    return {
        **{k: spec[k] for k in keys},
        "device": spec.get("device", "cpu"),
        "models": spec.get("models", 1),
        "peers": rows,
        **extra,
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
    }


def run_peers(
    configs,
    peers=PEERS,
    threads=(1,),
    B: int = 300,
    steps: int = 60,
    warmup: int = 5,
    rounds: int = 6,
    seed: int = 0,
    profile_reps: int = 20,
    quiet: bool = True,
    device: str = "cpu",
    models=(1,),
) -> dict:
    """The side-by-side comparison over ``threads`` x ``models`` x ``configs``; a JSON-able report (Sec. 7).

    ``configs``: ``(n, posterior, likelihood)`` triples.  ``ours`` is always
    included (it is the reference of the loss check and of the ratios).
    ``profile_reps > 0`` adds the per-phase profile of our step
    (:mod:`mlpvae.experiments.bench_profile`) to each CPU row of one model, and each peer's
    ``step_gemms``: the step's matrix products timed in that peer's library, in its process
    (:mod:`mlpvae.experiments.gemm_libraries`).
    ``device``: ``cpu`` or ``gpu`` (ours on CuPy, PyTorch on CUDA; JAX on its default backend).
    ``models``: the stack sizes K; at K > 1 ours trains a stack and the peers of
    :data:`mlpvae.experiments.peer_worker.ENSEMBLES` vmap K models; the others are listed as
    ``single model``.  A row's ``step_gflop`` is the K models' together.
    """
    peers = ["ours"] + [p for p in peers if p != "ours"]
    for p in peers:
        if p not in PEERS:
            raise ValueError(f"peers must be among {PEERS}, got {p!r}")
    out = []
    models = [int(K) for K in models]
    if not models or min(models) < 1:
        raise ValueError(f"models must be positive stack sizes, got {models!r}")
    jobs = [(t, K, c) for t in threads for K in models for c in configs]
    for i, (t, K, (n, posterior, likelihood)) in enumerate(tqdm(jobs, desc="bench peers", file=sys.stderr)):
        spec = dict(
            n=n,
            posterior=posterior,
            likelihood=likelihood,
            batch=B,
            seed=seed,
            noise=NOISE_DRAWS,
            warmup=warmup,
            threads=int(t),
            quiet=quiet,
            device=device,
            models=K,
        )
        first_of_threads = i == 0 or jobs[i - 1][0] != t
        row = compare_config(spec, peers, rounds, steps, profile_reps, gemm=first_of_threads)
        mc, params, _, _ = problem(np, n, posterior, 1, 1, seed, likelihood)
        row["step_gflop"] = K * step_flops(params, B, mc.m) / 1e9
        out.append(row)
    rates = {r["threads"]: r["gemm"] for r in out if "gemm" in r}
    for r in out:
        g = rates.get(r["threads"])
        o = r["peers"].get("ours", {})
        if g and "ms_per_step" in o:
            r["ours_fraction_of_gemm_rate"] = r["step_gflop"] / (o["ms_per_step"] / 1e3) / g["gemm_large_gflop_s"]
    return {
        "device": device,
        "models": models,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": [int(t) for t in threads],
        "batch": B,
        "steps": steps,
        "rounds": rounds,
        "warmup": warmup,
        "loss_rtol": [LOSS_RTOL, LOSS_RTOL_LATER],
        "gemm": rates,
        "rows": out,
    }


def format_peers(rep: dict) -> str:
    """The side-by-side report as text: one table per thread count (Not in the paper)."""
    lines = [
        f"{'GPU run; host ' if rep.get('device') == 'gpu' else ''}CPU: {rep['cpu_model']} ({rep['cpu_count']} cores); "
        f"batch {rep['batch']}; "
        f"min ms/step over {rep['rounds']} rounds; ratio = peer ms / our ms (below 1: the peer is faster)"
    ]
    peers = list(dict.fromkeys(p for r in rep["rows"] for p in r["peers"]))
    for t in rep["threads"]:
        g = rep["gemm"].get(t)
        lines.append(
            f"-- {t} thread(s)" + (f"; float32 GEMM 2048^3 {g['gemm_large_gflop_s']:.1f} GFLOP/s" if g else "")
        )
        lines.append(
            f"{'K':>3} {'n':>4} {'posterior':>9} {'ours ms':>8} {'of GEMM':>7}  "
            + "  ".join(f"{p:>17}" for p in peers[1:])
        )
        for r in (r for r in rep["rows"] if r["threads"] == t):
            o = r["peers"].get("ours", {})
            cells = []
            for p in peers[1:]:
                q = r["peers"].get(p, {})
                if "ratio_to_ours" in q:
                    flag = ("" if q.get("check", {}).get("same_loss", False) else "!") + (
                        "*" if q["overuses_threads"] else ""
                    )
                    cells.append(f"{q['ms_per_step']:7.2f} ({q['ratio_to_ours']:.2f}){flag:<2}")
                else:
                    cells.append(q.get("status", "-"))
            frac = r.get("ours_fraction_of_gemm_rate")
            lines.append(
                f"{r.get('models', 1):>3} {r['n']:>4} {r['posterior']:>9} {o.get('ms_per_step', float('nan')):8.2f} "
                f"{(100 * frac if frac else float('nan')):6.1f}%  " + "  ".join(f"{c:>17}" for c in cells)
            )
            if "profile" in r:
                pr = r["profile"]
                lines.append(
                    "     profile ms: "
                    + ", ".join(
                        f"{k} {pr[k]:.2f}" for k in ("step", "gemm", "elementwise", "adam", "python", "batch_gather")
                    )
                )
            gm = {p: q["step_gemms"] for p, q in r["peers"].items() if "ms" in q.get("step_gemms", {})}
            if gm:
                lines.append(
                    "     the step's GEMMs in each peer's library, ms: "
                    + ", ".join(f"{p} ({g['library']}) {g['ms']:.2f}" for p, g in gm.items())
                )
    lines.append(
        "K = models trained at once (ours: one stack; torch-vmap, jax-vmap: vmap ensembles; 'single model': a peer "
        "that trains one); ! = loss differs from ours beyond the tolerance; * = used more cores than its threads"
    )
    for r in rep["rows"]:
        for p, q in r["peers"].items():
            if q.get("status") not in ("timed", "single model"):
                lines.append(
                    f"{p} (n={r['n']} {r['posterior']}, {r['threads']} threads): {q['status']}: {q.get('reason')}"
                )
    first = {p: q for r in rep["rows"] for p, q in r["peers"].items() if "compile_s" in q}
    lines.append(
        "first call beyond a step (compilation): " + ", ".join(f"{p} {q['compile_s']:.1f} s" for p, q in first.items())
    )
    return "\n".join(lines)
