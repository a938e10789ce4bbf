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

On the CPU the command also runs the peers side by side, each in a process of
its own (:mod:`mlpvae.experiments.peer_bench`: PyTorch eager, fused Adam,
torch.compile, one torch.func graph, JAX jit; loss-checked against ours), and
then skips the in-process PyTorch comparison below.

When PyTorch is importable (it is an optional comparison, never a dependency),
the same network, objective, data, noise and initial parameters are also timed
in PyTorch eager (:mod:`mlpvae.nn.torch_reference`, autograd and ``torch.optim.Adam``;
on the CPU with ``torch.set_num_threads`` equal to our BLAS threads, on the GPU
on the same card), in blocks interleaved with ours, and the ratio torch ms /
our ms is reported.  The timing primitives (GEMM rate, our step, interleaved
blocks) are :mod:`mlpvae.experiments.bench_timing`'s.  ``--stack K`` also times K models trained as one
stack against the same K models one by one.  The
evaluation of a run is timed too: the test ELBO on 10,000 images and IWAE with
k = 5000 on a subset, extrapolated to 10,000 (both chunked, memory bounded).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from mlpvae.accel import device as dev
from mlpvae.experiments import peer_bench
from mlpvae.experiments.bench_timing import (
    blas_threads,
    gemm_rate,
    interleaved,
    our_stepper,
    problem,
    step_flops,
    time_eval,
    time_stack,
)
from mlpvae.nn import torch_reference
from mlpvae.nn.model import LIKELIHOODS, POSTERIORS
from mlpvae.training.checkpoint import write_json
from mlpvae.training.runs import git_sha
from mlpvae.training.step import device_stream
from vaetheory.validate import choice

CONFIGS = [(n, posterior) for n in (2, 100) for posterior in ("learned", "constant", "bilbo")]


def with_likelihoods(configs, likelihoods) -> list[tuple]:
    """``(n, posterior, likelihood)`` for every configuration and likelihood (Not in the paper)."""
    return [(c[0], c[1], lik) for lik in likelihoods for c in configs]


def _triple(c) -> tuple:
    """A configuration as ``(n, posterior, likelihood)``, Bernoulli when it names none."""
    return (c[0], c[1], c[2] if len(c) > 2 else "bernoulli")


def time_steps(
    xp,
    n: int,
    posterior: str,
    B: int = 300,
    steps: int = 30,
    warmup: int = 5,
    seed: int = 0,
    torch_threads: int | None = None,
    rounds: int = 3,
    torch_device: str | None = None,
    likelihood: str = "bernoulli",
) -> dict:
    """Time training steps of the paper's network on random data, ours and optionally PyTorch's (Sec. 7).

    Both implementations start from the same float32 parameters and see the
    same data and noise.  After ``warmup`` untimed steps each, ``steps`` timed
    steps each are run in ``rounds`` interleaved blocks (ours, PyTorch, ours,
    ...), so a change in machine load hits both; ``ms_per_step`` is the median
    block.  PyTorch runs only when ``torch_threads`` is given (the thread count
    for ``torch.set_num_threads``) or ``torch_device = "cuda"`` (on the GPU,
    timed after ``torch.cuda.synchronize``).
    """
    mc, params, x, eps_all = problem(xp, n, posterior, B, warmup + steps, seed, likelihood)
    runners = {"ours": (our_stepper(xp, mc, params, x, eps_all), lambda: dev.synchronize(xp))}
    if torch_device == "cuda":
        import torch

        runners["torch"] = (torch_reference.stepper(params, x, eps_all, mc, device="cuda"), torch.cuda.synchronize)
    elif torch_threads is not None:
        runners["torch"] = (torch_reference.stepper(params, x, eps_all, mc, threads=torch_threads), lambda: None)
    blocks = interleaved(runners, steps, warmup, rounds)
    ms = float(np.median(blocks["ours"]))
    params_xp = {k: xp.asarray(v) for k, v in params.items()}
    r = {
        "n": n,
        "posterior": posterior,
        "likelihood": likelihood,
        "batch": B,
        "ms_per_step": ms,
        "examples_per_s": B / (ms / 1e3),
        "step_gflop": step_flops(params_xp, B, mc.m) / 1e9,
        "ms_blocks": blocks["ours"],
    }
    if "torch" in runners:
        tms = float(np.median(blocks["torch"]))
        r.update(torch_ms_per_step=tms, torch_ms_blocks=blocks["torch"], speedup_vs_torch=tms / ms)
    return r


def bench(
    device: str = "auto",
    steps: int = 30,
    warmup: int = 5,
    B: int = 300,
    gemm_size: int | None = None,
    configs=CONFIGS,
    torch: bool = True,
    rounds: int = 3,
    eval_images: int = 10000,
    iwae_k: int = 5000,
    iwae_images: int = 20,
    stack: int = 0,
) -> dict:
    """Run every configuration; return a JSON-able report (rates in GFLOP/s) (Sec. 7).

    With ``torch`` and PyTorch importable, on the CPU, each configuration is
    also timed in PyTorch eager with ``torch.set_num_threads(blas_threads())``,
    interleaved with ours.  ``eval_images = 0`` skips the evaluation timing.
    ``stack = K > 1`` also times K models trained as one stack against one by
    one (:func:`mlpvae.experiments.bench_timing.time_stack`).
    """
    xp, desc = dev.select(device)
    size = gemm_size or (8192 if xp is not np else 2048)
    large = gemm_rate(xp, size)
    similar = gemm_rate(xp, 0, shape=(B, 784, 200))
    threads = blas_threads()
    use_torch = False
    if not torch:
        torch_note = "not requested (--no-torch)"
    elif xp is not np and not torch_reference.available(cuda=True):
        torch_note = "torch with CUDA is not importable: no GPU comparison"
    elif xp is not np:
        import torch as _torch

        torch_note = f"torch {_torch.__version__}, eager, CUDA, the same GPU"
        use_torch = True
    elif not torch_reference.available():
        torch_note = "torch is not importable"
    else:
        import torch as _torch

        torch_note = f"torch {_torch.__version__}, eager, CPU, set_num_threads({threads})"
        use_torch = True
    rows = []
    with device_stream(xp):  # where the trainer runs (a CUDA graph needs a stream of its own)
        for n, posterior, likelihood in map(_triple, configs):
            r = time_steps(
                xp,
                n,
                posterior,
                B,
                steps,
                warmup,
                rounds=rounds,
                torch_threads=threads if use_torch and xp is np else None,
                torch_device="cuda" if use_torch and xp is not np else None,
                likelihood=likelihood,
            )
            r["achieved_gflop_s"] = r["step_gflop"] / (r["ms_per_step"] / 1e3)
            r["fraction_of_gemm_rate"] = r["achieved_gflop_s"] / (large / 1e9)
            rows.append(r)
        stacks = (
            [
                time_stack(xp, n, posterior, stack, B, steps, warmup, rounds, likelihood)
                for n, posterior, likelihood in map(_triple, configs)
            ]
            if stack > 1
            else []
        )
    evals = []
    if eval_images > 0:
        first = {}
        for n, posterior, _ in map(_triple, configs):
            first.setdefault(n, posterior)
        evals = [time_eval(xp, n, p, eval_images, iwae_k, iwae_images) for n, p in first.items()]
    return {
        "git_sha": git_sha(),  # of the code that ran
        "device": desc,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "blas_threads": threads,
        "steps": steps,
        "warmup": warmup,
        "rounds": rounds,
        "torch": torch_note,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gemm_large": {"size": size, "gflop_s": large / 1e9},
        "gemm_step_sized": {"shape": [B, 784, 200], "gflop_s": similar / 1e9},
        "results": rows,
        "stacked": stacks,
        "evaluation": evals,
    }


def format_report(rep: dict) -> str:
    """The report of :func:`bench` as a text table (Not in the paper)."""
    load = rep.get("load_average")
    lines = [
        f"device: {rep['device']}  OMP_NUM_THREADS={rep['omp_num_threads']}  BLAS threads={rep['blas_threads']}"
        + (f"  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}" if load else ""),
        f"float32 GEMM {rep['gemm_large']['size']}^3: {rep['gemm_large']['gflop_s']:.1f} GFLOP/s; "
        f"step-sized {tuple(rep['gemm_step_sized']['shape'])}: {rep['gemm_step_sized']['gflop_s']:.1f} GFLOP/s",
        f"PyTorch: {rep['torch']}",
        f"{'n':>4} {'posterior':>9} {'likelihood':>16} {'ms/step':>9} {'examples/s':>11} "
        f"{'GFLOP/step':>10} {'GFLOP/s':>8} "
        f"{'of GEMM':>8} {'torch ms':>9} {'speedup':>8}",
    ]
    for r in rep["results"]:
        tail = (
            f" {r['torch_ms_per_step']:>9.2f} {r['speedup_vs_torch']:>7.2f}x"
            if "torch_ms_per_step" in r
            else f" {'-':>9} {'-':>8}"
        )
        lines.append(
            f"{r['n']:>4} {r['posterior']:>9} {r['likelihood']:>16} {r['ms_per_step']:>9.2f} "
            f"{r['examples_per_s']:>11.0f} "
            f"{r['step_gflop']:>10.3f} {r['achieved_gflop_s']:>8.1f} {100 * r['fraction_of_gemm_rate']:>7.1f}%" + tail
        )
    for r in rep.get("stacked", []):
        lines.append(
            f"stack of {r['models']} n={r['n']} {r['posterior']} {r['likelihood']}: "
            f"{r['stack_ms_per_step']:.2f} ms per step of "
            f"all {r['models']} models; one by one {r['one_by_one_ms_per_step']:.2f} ms; "
            f"speedup {r['speedup']:.2f}x"
            + (
                f"; one model at a time (bit for bit as alone) {r['apart_ms_per_step']:.2f} ms, "
                f"speedup {r['apart_speedup']:.2f}x"
                if "apart_ms_per_step" in r
                else ""
            )
        )
    for e in rep.get("evaluation", []):
        lines.append(
            f"evaluation n={e['n']} ({e['posterior']}): test ELBO on {e['images']} images "
            f"{e['elbo_s']:.2f} s; IWAE k={e['iwae_k']}: {e['iwae_s_timed']:.2f} s on "
            f"{e['iwae_images_timed']} images, "
            f"{e['iwae_s_extrapolated']:.0f} s extrapolated to {e['images']}"
        )
    return "\n".join(lines)


def add_arguments(parser) -> None:
    """Add ``vaetheory bench train``'s arguments to ``parser`` (Not in the paper).

    Device, step counts, batch and GEMM sizes, the PyTorch comparison, the
    evaluation timing, likelihoods, ``--stack`` and the JSON report path.
    """
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="where to time: auto = the GPU when CuPy finds one, else the CPU (default auto)",
    )
    parser.add_argument("--steps", type=int, default=30, help="timed steps per configuration (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    parser.add_argument("--batch-size", type=int, default=300, help="examples per training step (default 300)")
    parser.add_argument("--gemm-size", type=int, default=None, help="square GEMM size (default 2048 CPU, 8192 GPU)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing blocks, ours and PyTorch (default 3)")
    parser.add_argument(
        "--no-torch",
        action="store_true",
        help="skip the PyTorch eager comparison (default: run it when PyTorch is installed)",
    )
    parser.add_argument(
        "--eval-images", type=int, default=10000, help="images for the evaluation timing, 0 to skip (default 10000)"
    )
    parser.add_argument("--iwae-k", type=int, default=5000, help="IWAE samples per image (default 5000)")
    parser.add_argument(
        "--iwae-images",
        type=int,
        default=20,
        help="images the IWAE timing runs on, extrapolated to --eval-images (default 20)",
    )
    parser.add_argument(
        "--likelihoods",
        default="bernoulli",
        metavar="L1,L2",
        help="likelihoods to time (default bernoulli; also gaussian, gaussian-learned, baggins)",
    )
    parser.add_argument(
        "--stack",
        type=int,
        default=0,
        metavar="K",
        help="also time K models trained as one stack against one by one (default: skip)",
    )
    parser.add_argument(
        "--posteriors",
        default=",".join(POSTERIORS),
        metavar="P1,P2",
        help="posterior modes to time, each at n = 2 and n = 100 (default learned,constant,bilbo)",
    )
    parser.add_argument(
        "--latents",
        default="2,100",
        metavar="N1,N2",
        help="latent dimensions n to time, among 2 and 100 (default 2,100)",
    )
    parser.add_argument(
        "--peers",
        default="all",
        metavar="P1,P2",
        help="implementations timed side by side, each in its own process: all (default), none, or "
        f"some of {','.join(peer_bench.PEERS)} (ours is always included); on the CPU it replaces the in-process "
        "PyTorch comparison; on a GPU ours runs on CuPy and PyTorch on CUDA",
    )
    parser.add_argument(
        "--models",
        default="1",
        metavar="K1,K2",
        help="stack sizes of the peer comparison: K models trained at once (ours as one stack, torch-vmap and "
        "jax-vmap as vmap ensembles; the other peers train one model, at K = 1) (default 1)",
    )
    parser.add_argument(
        "--threads",
        default=None,
        metavar="T1,T2",
        help="thread counts of the peer comparison (default: the BLAS threads of this process, see OMP_NUM_THREADS)",
    )
    parser.add_argument(
        "--profile-reps",
        type=int,
        default=20,
        help="steps per repeat of the per-phase profile of our step in the peer comparison, 0 to skip (default 20)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON (default: print only)")


def run(args) -> int:
    """Run ``vaetheory bench train`` from parsed arguments and print the report (Not in the paper).

    ``--json PATH`` also writes it as JSON.  Returns the exit status: 0, or 2
    on an unknown likelihood.
    """
    try:
        likelihoods = [choice("--likelihoods", v.strip(), LIKELIHOODS) for v in args.likelihoods.split(",")]
        posteriors = [choice("--posteriors", v.strip(), POSTERIORS) for v in args.posteriors.split(",")]
        peers = peer_bench.peer_list(args.peers)
        threads = peer_bench.thread_list(args.threads, blas_threads())
        models = peer_bench.thread_list(args.models, 1, "--models")
        latents = [int(choice("--latents", v.strip(), ("2", "100"))) for v in args.latents.split(",")]
    except ValueError as exc:
        print(f"vaetheory bench train: {exc}", file=sys.stderr)
        return 2
    configs = with_likelihoods([c for c in CONFIGS if c[1] in posteriors and c[0] in latents], likelihoods)
    cpu = args.device == "cpu" or (args.device == "auto" and dev.select("auto")[0] is np)
    rep = bench(
        args.device,
        args.steps,
        args.warmup,
        args.batch_size,
        args.gemm_size,
        torch=not args.no_torch and not (peers and cpu),
        configs=configs,
        rounds=args.rounds,
        eval_images=args.eval_images,
        iwae_k=args.iwae_k,
        iwae_images=args.iwae_images,
        stack=args.stack,
    )
    print(format_report(rep))
    if peers:
        rep["peers"] = peer_bench.run_peers(
            configs,
            peers,
            threads,
            args.batch_size,
            args.steps,
            args.warmup,
            args.rounds,
            profile_reps=args.profile_reps,
            device="cpu" if cpu else "gpu",
            models=models,
        )
        print(peer_bench.format_peers(rep["peers"]))
    if args.json:
        write_json(args.json, rep)
    return 0
