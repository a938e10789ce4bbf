"""The training loop of Sec. 7: Adam on the per-batch objective, per-epoch metrics and checkpoints.

A run directory ``--out DIR`` holds:

* ``metrics.csv``: one row per epoch: ``epoch, train_objective`` (mean over
  the epoch's batches of the objective being maximised, nats per image),
  the test ELBO column(s) of :func:`mlpvae.experiments.evaluate.test_elbos` (S^2 source
  labelled for floating-prior models), ``seconds`` (training steps),
  ``eval_seconds`` and ``status``;
* ``checkpoint.npz``: parameters, Adam state, epoch, seed and config, written
  atomically after each epoch (:mod:`mlpvae.training.checkpoint`);
* ``run.json``: config, git SHA, device, dtype, wall time, status.

Randomness: every generator derives from ``seed`` through
``SeedSequence([seed, stream, epoch])`` (streams: initialisation, batch
order, noise and dynamic binarization, test noise), so the state at an epoch
boundary is fully given by ``(seed, epoch)``.  That is what makes ``--resume``
reproduce an uninterrupted run bit for bit on NumPy.

A non-finite loss stops the run: the last good checkpoint (the previous epoch)
is kept, ``status`` becomes ``"diverged"`` in ``metrics.csv`` and
``run.json`` with the epoch and step, and the command exits with status 3.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mlpvae.training import checkpoint
from mlpvae.training import config as C
from mlpvae.training import data as D
from mlpvae.accel import device as dev
from mlpvae.experiments import evaluate as E

STREAM_INIT, STREAM_ORDER, STREAM_NOISE, STREAM_TEST = 0, 1, 2, 3
EXIT_DIVERGED = 3


def generator(seed: int, stream: int, epoch: int, xp=np):
    """The generator of one stream and epoch, on the array module ``xp`` (Not in the paper)."""
    ss = np.random.SeedSequence([seed, stream, epoch])
    if xp is np:
        return np.random.default_rng(ss)
    return xp.random.default_rng(int(ss.generate_state(1, np.uint64)[0]))


def synthetic(cfg: C.TrainConfig) -> D.Dataset:
    """Random uint8 "images" of ``m`` pixels: ten near-binary class templates plus noise (tests, smoke runs) (Not in the paper)."""
    rng = np.random.default_rng(99)  # one data set whatever the training seed
    templates = rng.choice([10.0, 245.0], size=(10, cfg.m))

    def split(N):
        labels = rng.integers(0, 10, N).astype(np.uint8)
        noise = rng.normal(0, 30, (N, cfg.m))
        return np.clip(templates[labels] + noise, 0, 255).astype(np.uint8), labels

    tr, trl = split(cfg.limit or 600)
    te, tel = split(cfg.test_limit or 200)
    return D.Dataset("synthetic", tr, trl, te, tel)


def load_data(cfg: C.TrainConfig) -> D.Dataset:
    """load_data (Sec. 7)."""
    ds = synthetic(cfg) if cfg.dataset == "synthetic" else D.load(cfg.dataset, cfg.data)
    ds.train_images, ds.train_labels = ds.train_images[: cfg.limit], ds.train_labels[: cfg.limit]
    ds.test_images, ds.test_labels = ds.test_images[: cfg.test_limit], ds.test_labels[: cfg.test_limit]
    return ds


def git_sha() -> str | None:
    """git_sha (Not in the paper)."""
    try:
        root = Path(__file__).resolve().parents[2]
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def metric_columns(posterior: str) -> list[str]:
    """metric_columns (Not in the paper)."""
    tests = ["test_elbo_s2_train", "test_elbo_s2_test"] if posterior in E.FLOATING else ["test_elbo"]
    return ["epoch", "train_objective", *tests, "seconds", "eval_seconds", "status"]


def _keep_rows(path: Path, upto: int) -> None:
    """Drop metrics rows of epochs after the checkpoint (written before a crash); atomic."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= upto]
    checkpoint.atomic_write(path, lambda f: f.write("".join(kept).encode()))


def _append_row(path: Path, columns: list[str], row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})


def stack(dicts: list[dict], xp=np) -> dict:
    """One dict of ``(K, ...)`` arrays from K dicts with the same keys and shapes (Not in the paper)."""
    return {k: xp.stack([xp.asarray(d[k]) for d in dicts]) for k in dicts[0]}


def model_view(stacked: dict, k: int) -> dict:
    """Model ``k``'s arrays of a stacked dict, as views (Not in the paper)."""
    return {name: a[k] for name, a in stacked.items()}


def _adam_state(opt, k: int) -> dict:
    """Model ``k``'s share of a stacked Adam state, in the single-model format of a checkpoint.

    Views of the optimiser's moments, which :class:`mlpvae.training.checkpoint.Writer`
    copies to the host at once, instead of :meth:`Adam.state_dict`'s copies
    of every model's moments.
    """
    d: dict = {"step": int(opt.t)}
    for name in opt.m:
        d[f"m.{name}"] = opt.m[name][k]
        d[f"v.{name}"] = opt.v[name][k]
    return d


def _stack_adam_states(states: list[dict], xp) -> dict:
    steps = {int(np.asarray(st["step"]).item()) for st in states}
    if len(steps) > 1:
        raise ValueError(f"--resume: the runs' optimisers are at different steps {sorted(steps)}; resume them separately")
    out = stack([{k: v for k, v in st.items() if k != "step"} for st in states], xp)
    out["step"] = steps.pop()
    return out


def _check_together(cfgs: list, outs: list) -> None:
    if not cfgs or len(cfgs) != len(outs):
        raise ValueError(f"give one run directory per config: {len(cfgs)} configs, {len(outs)} directories")
    for c in cfgs:
        if not isinstance(c, C.TrainConfig):
            raise ValueError(f"configs must be mlpvae.training.config.TrainConfig, got {type(c).__name__}")
    free = ("seed", "out")
    base = {k: v for k, v in cfgs[0].to_dict().items() if k not in free}
    for c in cfgs[1:]:
        diff = sorted(k for k, v in c.to_dict().items() if k not in free and base.get(k) != v)
        if diff:
            raise ValueError(f"models trained together must share every setting except seed and out; {diff} differ")
    seeds = [c.seed for c in cfgs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must differ (the same seed trains the same model twice), got {seeds}")
    dirs = [Path(o).resolve() for o in outs]
    if len(set(dirs)) != len(dirs):
        raise ValueError("every run needs its own directory, got a repeated one")


class TrainingStep:
    """One training step of the stack: loss and gradients, running total, Adam update (Sec. 7).

    On CuPy with the fused kernels (:mod:`mlpvae.accel.fused`) the first call runs
    eagerly (CuPy compiles its kernels then), the second is captured into a
    CUDA graph and launched, and every later call is one launch of that graph:
    no Python, no host synchronisation and no host/device copy inside a step.
    The capture allocates from a memory pool of its own, kept as long as the
    graph, so that nothing allocated later can reuse the graph's scratch
    memory.  The graph reads ``xb`` and ``eps``, written before each launch
    (the batch gather and the noise draws stay outside: CuPy's generators
    advance their state on the host).  Eager on NumPy, and on CuPy with
    ``VAETHEORY_FUSED=0`` or ``VAETHEORY_GRAPH=0``.
    """

    def __init__(self, xp, params, opt, mc, xb, eps, total):
        from mlpvae.accel import fused

        self.xp, self.params, self.opt, self.mc = xp, params, opt, mc
        self.xb, self.eps, self.total = xb, eps, total
        self.grads: dict = {}  # filled by the first step, then reused in place
        self.graph = None
        self.pool = None
        self.calls = 0
        self.use_graph = fused.enabled(xp) and os.environ.get("VAETHEORY_GRAPH", "1") != "0"

    def _eager(self) -> None:
        from mlpvae.nn import model

        loss, self.grads, _aux = model.loss_and_grads(self.params, self.xb, self.eps, self.mc, grads=self.grads)
        self.total += loss
        self.opt.step(self.params, self.grads)

    def __call__(self) -> None:
        if self.graph is None and self.use_graph and self.calls > 0:
            self._capture()
        self.calls += 1
        if self.graph is None:
            self._eager()
            return
        self.graph.launch(stream=self.xp.cuda.get_current_stream())
        self.opt.t += 1  # the graph advanced the device's step count; the host's follows

    def _capture(self) -> None:
        cp = self.xp
        stream = cp.cuda.get_current_stream()
        if stream.ptr in (0, 1):  # the legacy default stream cannot capture: stay eager (see _device_stream)
            self.use_graph = False
            return
        self.pool = cp.cuda.MemoryPool()
        t = self.opt.t
        try:
            with cp.cuda.using_allocator(self.pool.malloc):
                stream.begin_capture()
                try:
                    self._eager()  # recorded, not run
                finally:
                    graph = stream.end_capture()
        except Exception as exc:  # a CuPy/CUDA that cannot capture this step: train eagerly, only slower
            print(f"CUDA graph capture failed ({type(exc).__name__}: {exc}); training without it", file=sys.stderr)
            self.use_graph, self.pool = False, None
            self.opt.t = t  # nothing recorded ran
            return
        self.graph = graph
        self.opt.t = t  # the recording counted a step that only the launch performs


@contextlib.contextmanager
def _device_stream(xp):
    """Run the block on a CuPy stream of its own (a CUDA graph cannot be captured on the legacy default stream).

    A non-blocking stream does not wait for the legacy one, so the device is
    synchronised on entry (arrays made before, e.g. zeros, are then written)
    and on exit.  Nothing on NumPy.
    """
    if xp is np:
        yield None
        return
    dev.synchronize(xp)
    try:
        with xp.cuda.Stream(non_blocking=True) as stream:
            yield stream
    finally:
        dev.synchronize(xp)


class _Run:
    """One model of a (possibly one-model) stack: its config, files and run.json content."""

    def __init__(self, cfg: C.TrainConfig, out):
        self.cfg, self.out = cfg, Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.ck = self.out / "checkpoint.npz"
        self.metrics = self.out / "metrics.csv"
        self.json = self.out / "run.json"
        self.wall_before = 0.0
        self.done = False
        self.info: dict = {}

    def load(self, xp) -> dict:
        if not self.ck.exists():
            raise FileNotFoundError(f"--resume: no checkpoint in {self.out} (expected {self.ck})")
        ck = checkpoint.load(self.ck, xp)
        saved = ck["config"]
        diff = {k: (saved.get(k), v) for k, v in self.cfg.to_dict().items()
                if k not in C.RESUMABLE_KEYS and saved.get(k) != v}
        if diff:
            raise ValueError(f"--resume: settings differ from the checkpoint's in {self.out} (saved, given): {diff}")
        self.wall_before = float(ck.get("wall_seconds", 0.0))
        return ck

    def diverged(self, epoch: int, step: int, every: int, columns) -> None:
        cfg = self.cfg
        when = f"step {step + 1}" + (f" (checked every {every} steps)" if every > 1 else "")
        msg = (f"non-finite loss at epoch {epoch + 1}, {when}: the run diverged "
               f"(likelihood {cfg.likelihood!r}); stopped, the last good checkpoint "
               f"({'epoch ' + str(epoch) if epoch else 'none: it diverged in the first epoch'}) is kept in {self.out}")
        _append_row(self.metrics, columns, {"epoch": epoch + 1, "status": f"diverged at step {step + 1}"})
        self.info.update(status="diverged", diverged={"epoch": epoch + 1, "step": step + 1}, message=msg)
        self.done = True
        print(msg, file=sys.stderr)


def train(cfg: C.TrainConfig, out: str | Path, resume: bool = False) -> dict:
    """Train a VAE as configured; Sec. 7 (Adam, lr 1e-3, batch 300, float32). Returns ``run.json``'s content.

    ``out`` is the run directory.  ``resume`` continues from its
    ``checkpoint.npz`` (the settings must match, except ``epochs``,
    ``device``, ``progress``, ``out`` and ``data``).
    """
    return train_many([cfg], [out], resume=resume)[0]


def train_many(cfgs: list, outs: list, resume: bool = False) -> list[dict]:
    """Train K models that differ only in ``seed`` as one stacked computation (Sec. 7). Returns each ``run.json``.

    The weights of the K models are stacked on a leading axis and every
    step is one batched computation (batched matrix multiplies, one gather of
    the K batches, one Adam update), so launching K models costs about as
    much as launching one on a GPU.  Each model keeps its own random streams
    (initialisation, batch order, noise, test noise) and its own run
    directory, written exactly as :func:`train` writes it: model k's
    parameters, metrics and checkpoints are those of training it alone (bit
    for bit on NumPy, tested; on CuPy with ``VAETHEORY_STACK_EXACT=1``, which
    computes the stack one model at a time, :func:`mlpvae.nn.model.models_apart`;
    without it equal up to the rounding of cuBLAS's and CuPy's batched kernels).  A model whose loss turns non-finite stops as
    it would alone (status ``diverged``, last good checkpoint kept) while
    the others go on.  ``seconds`` and ``wall_seconds`` are the whole stack's.
    ``resume`` needs every checkpoint at the same epoch.
    """
    from mlpvae.nn import adam
    from mlpvae.nn import model

    _check_together(cfgs, outs)
    cfg, K = cfgs[0], len(cfgs)
    runs = [_Run(c, o) for c, o in zip(cfgs, outs)]
    xp, device = dev.select(cfg.device)
    dtype = np.dtype(cfg.dtype)
    mc = cfg.model_config()

    if resume:
        cks = [r.load(xp) for r in runs]
        epochs = sorted({int(ck["epoch"]) for ck in cks})
        if len(epochs) > 1:
            raise ValueError(f"--resume: the checkpoints are at different epochs {epochs}; resume them separately")
        start = epochs[0]
        params = stack([ck["params"] for ck in cks], xp)
        opt = adam.Adam(params, lr=cfg.lr)
        opt.load_state_dict(_stack_adam_states([ck["adam"] for ck in cks], xp))
        for r in runs:
            _keep_rows(r.metrics, start)
    else:
        for r in runs:
            if r.ck.exists():
                raise FileExistsError(f"{r.out} already holds a run (checkpoint.npz); pass --resume or choose another --out")
        for r in runs:
            r.metrics.unlink(missing_ok=True)
        params = stack([model.init_params(mc, generator(c.seed, STREAM_INIT, 0), xp=xp, dtype=dtype) for c in cfgs], xp)
        opt = adam.Adam(params, lr=cfg.lr)
        start = 0

    ds = load_data(cfg)
    train_u8, test_u8 = xp.asarray(ds.train_images), xp.asarray(ds.test_images)  # uploaded once
    N, B = len(train_u8), min(cfg.batch_size, len(train_u8))
    steps = N // B  # the last incomplete batch of a shuffled epoch is dropped
    # Dynamic binarization draws each model's own targets; grayscale targets are shared.
    dynamic = cfg.binarize == "dynamic"
    x_train = xp.empty((K if dynamic else 1,) + train_u8.shape, dtype=dtype)
    x_test = [D.targets(test_u8, scale=cfg.scale, binarize=cfg.binarize, dtype=dtype,
                        rng=generator(c.seed, STREAM_TEST, 0, xp)) for c in (cfgs if dynamic else cfgs[:1])]
    xb = xp.empty((K, B, cfg.m), dtype=dtype)
    eps = xp.empty((K, B, cfg.n), dtype=dtype)
    total = xp.zeros(K, dtype=xp.float64)  # the epoch's summed losses; one buffer, as a CUDA graph needs
    step = TrainingStep(xp, params, opt, mc, xb, eps, total)
    columns = metric_columns(cfg.posterior)
    targets = ("dynamically binarized" if dynamic else "grayscale") + f", scale {cfg.scale}"

    for r in runs:
        r.info = {
            "config": r.cfg.to_dict(),
            "git_sha": git_sha(),
            "device": device,
            "dtype": cfg.dtype,
            "targets": targets,
            "data": {"name": ds.name, "train": int(N), "test": int(len(test_u8)),
                     "files": {k: {"path": str(c.path), "check": c.status} for k, c in ds.checks.items()}},
            "steps_per_epoch": steps,
            "batch_size": B,
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "status": "running",
            "epochs_done": start,
            "wall_seconds": r.wall_before,
        }
        if K > 1:
            r.info["stacked"] = {"models": K, "seeds": [c.seed for c in cfgs],
                                 "computed": "one model at a time" if model.apart() else "batched",
                                 "note": "trained as one stack; seconds and wall_seconds are the stack's"}
        checkpoint.write_json(r.json, r.info)
    t_run = time.perf_counter()

    from tqdm import tqdm

    writer = checkpoint.Writer()  # files are written while the next epoch trains
    try:
        with _device_stream(xp):
            for epoch in range(start, cfg.epochs):
                t0 = time.perf_counter()
                noise_rngs = [generator(c.seed, STREAM_NOISE, epoch, xp) for c in cfgs]
                for k in range(len(x_train)):
                    D.targets(train_u8, scale=cfg.scale, binarize=cfg.binarize, rng=noise_rngs[k], dtype=dtype,
                              out=x_train[k])
                # (steps, K, B) rows of x_train flattened to (len(x_train) * N, m): one gather per step
                perm = np.stack([generator(c.seed, STREAM_ORDER, epoch).permutation(N)[: steps * B].reshape(steps, B)
                                 + (k * N if dynamic else 0) for k, c in enumerate(cfgs)], axis=1)
                perm = xp.asarray(perm)
                rows = x_train.reshape(-1, cfg.m)
                total.fill(0)
                # Checking finiteness syncs the GPU, so there only every 20 steps (and at the end).
                check_every = 1 if xp is np else 20
                bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress,
                           leave=False, file=sys.stderr)
                eps_epoch = None
                if xp is not np:  # on a GPU a draw costs launches and Python: one per model and epoch
                    eps_epoch = xp.empty((steps,) + eps.shape, dtype=dtype)
                    for k in range(K):
                        eps_epoch[:, k] = noise_rngs[k].standard_normal((steps,) + eps.shape[1:], dtype=dtype)
                for s in range(steps):
                    xp.take(rows, perm[s], axis=0, out=xb)
                    if eps_epoch is None:
                        for k in range(K):
                            noise_rngs[k].standard_normal(out=eps[k], dtype=eps.dtype)
                    else:
                        eps[...] = eps_epoch[s]
                    step()
                    bar.update(1)
                    if (s + 1) % check_every == 0 or s + 1 == steps:
                        values = total.tolist()
                        for k, r in enumerate(runs):
                            if not r.done and not math.isfinite(values[k]):
                                r.diverged(epoch, s, check_every, columns)
                        alive = [v for v, r in zip(values, runs) if not r.done]
                        if not alive:
                            break
                        bar.set_postfix(objective=f"{-sum(alive) / len(alive) / (s + 1):.2f}", refresh=False)
                bar.close()
                if all(r.done for r in runs):
                    break
                dev.synchronize(xp)
                seconds = time.perf_counter() - t0
                sums = total.tolist()
                for k, r in enumerate(runs):
                    if r.done:
                        continue
                    t1 = time.perf_counter()
                    p_k = model_view(params, k)
                    elbos = {}
                    if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                        test_rng = generator(r.cfg.seed, STREAM_TEST, epoch + 1, xp)
                        # on copies: arrays of its own, as a lone model's, whatever cuBLAS makes of a view's offset
                        own = {name: a.copy() for name, a in p_k.items()}
                        elbos = E.test_elbos(own, mc, x_train[k if dynamic else 0], x_test[k if dynamic else 0],
                                             test_rng, cfg.eval_k)
                    row = {"epoch": epoch + 1, "train_objective": -sums[k] / steps, **elbos,
                           "seconds": seconds, "eval_seconds": time.perf_counter() - t1, "status": "ok"}
                    # metrics first, checkpoint second: a resume drops rows past the checkpoint.
                    _append_row(r.metrics, columns, row)
                    r.info["wall_seconds"] = r.wall_before + time.perf_counter() - t_run
                    r.info["epochs_done"] = epoch + 1
                    writer.save(r.ck, {"params": p_k, "adam": _adam_state(opt, k), "epoch": epoch + 1,
                                       "seed": r.cfg.seed, "config": r.cfg.to_dict(),
                                       "wall_seconds": r.info["wall_seconds"]}, r.json, r.info)
                    if cfg.progress:
                        shown = ", ".join(f"{key} {v:.2f}" for key, v in elbos.items())
                        who = f"seed {r.cfg.seed}, " if K > 1 else ""
                        print(f"epoch {epoch + 1}: {who}objective {row['train_objective']:.2f}, {shown} nats/image, "
                              f"{seconds:.1f} s", file=sys.stderr)
        for r in runs:
            if not r.done:
                r.info["status"] = "completed"
    except KeyboardInterrupt:
        for r in runs:
            if not r.done:
                r.info["status"] = "interrupted"
        raise
    finally:
        writer.close()  # every checkpoint on disk before run.json says how the runs ended
        for r in runs:
            r.info["wall_seconds"] = r.wall_before + time.perf_counter() - t_run
            r.info["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            checkpoint.write_json(r.json, r.info)
    return [r.info for r in runs]


def add_arguments(parser) -> None:
    """The command-line interface (Not in the paper)."""
    parser.add_argument("--out", metavar="DIR", help="run directory (metrics.csv, checkpoint.npz, run.json)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    C.add_arguments(parser)


def run(args) -> int:
    """The command-line interface (Not in the paper)."""
    try:
        cfg = C.from_args(args)
        out = args.out or cfg.out
        if not out:
            print("vaetheory train: --out DIR is required (or out = \"DIR\" in the TOML config)", file=sys.stderr)
            return 2
        info = train(cfg, out, resume=args.resume)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        print(f"vaetheory train: {exc}", file=sys.stderr)
        return 2
    return EXIT_DIVERGED if info["status"] == "diverged" else 0
