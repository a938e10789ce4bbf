"""The training loop of Sec. 7: Adam on the per-batch objective, per-epoch metrics and checkpoints.

A run directory ``--out DIR`` holds:

* ``metrics.csv``: one row per epoch: ``epoch, train_objective`` (mean over
  the epoch's batches of the objective being maximised, nats per image),
  the test ELBO column(s) of :func:`mlpvae.nn.batched.test_elbos` (S^2 source
  labelled for floating-prior models), ``seconds`` (training steps),
  ``eval_seconds`` and ``status``;
* ``checkpoint.npz``: parameters, Adam state, epoch, seed and config, written
  atomically after each epoch (:mod:`mlpvae.training.checkpoint`);
* ``run.json``: config, git SHA, device (on the CPU also its model and BLAS kernel), dtype, wall time, status, and
  ``epochs_done``: the epoch of the checkpoint on disk, never more.

One process writes a directory at a time (:mod:`mlpvae.training.rundir`:
an ``fcntl.flock`` held for the life of the run); SIGTERM stops a run as
Ctrl-C does, a checkpoint that cannot be written stops it at once.

Randomness: every generator derives from ``seed`` through
``SeedSequence([seed, stream, epoch])`` (:mod:`mlpvae.training.streams`:
initialisation, batch order, noise and dynamic binarization, test noise), so
the state at an epoch boundary is fully given by ``(seed, epoch)``.  That is what makes ``--resume``
reproduce an uninterrupted run bit for bit on NumPy.

A non-finite loss stops the run: the last good checkpoint (the previous epoch)
is kept, ``status`` becomes ``"diverged"`` in ``metrics.csv`` and
``run.json`` with the epoch and step, and the command exits with status 3.
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mlpvae.accel import device as dev
from mlpvae.nn import adam, model
from mlpvae.nn.batched import test_elbos
from mlpvae.nn.stacking import adam_state, model_view, stack, stack_adam_states
from mlpvae.training import checkpoint, stacks
from mlpvae.training import config as C
from mlpvae.training import data as D
from mlpvae.training.data import load_data
from mlpvae.training.metrics import append_row, keep_rows, metric_columns
from mlpvae.training.rundir import (
    Stopped,
    check_memory,
    finish,
    finite,
    open_run_dirs,
    set_status,
    size_notes,
    stop_on_sigterm,
)
from mlpvae.training.runs import git_sha
from mlpvae.training.step import TrainingStep, device_stream
from mlpvae.training.streams import STREAM_INIT, STREAM_NOISE, STREAM_ORDER, STREAM_TEST, generator

EXIT_DIVERGED = 3  # the exit status of `vaetheory train` when a run diverged


def train(cfg: C.TrainConfig, out: str | Path, resume: bool = False) -> dict:
    """Train a VAE as configured; Sec. 7 (Adam, lr 1e-3, batch 300, float32). Returns ``run.json``'s content.

    ``out`` is the run directory.  ``resume`` continues from its
    ``checkpoint.npz`` (the settings must match, except ``epochs``,
    ``device``, ``progress``, ``out`` and ``data``).
    """
    return train_many([cfg], [out], resume=resume)[0]


def train_many(cfgs: list, outs: list, resume: bool = False) -> list[dict]:
    """Train K models of one shape and code path as one stacked computation (Sec. 7). Returns each ``run.json``.

    The models may differ in the scalar settings of
    :data:`mlpvae.training.stacks.FREE` (seed, sigma2, t, tau, latent scale,
    data scale lambda, learning rate) and must share every other
    (:func:`mlpvae.training.stacks.check_together` names what differs).
    The weights of the K models are stacked on a leading axis and every
    step is one batched computation (batched matrix multiplies, one gather of
    the K batches, one Adam update), so launching K models costs about as
    much as launching one on a GPU; a setting the models differ in enters as
    a ``(K, 1, ...)`` array of each model's value (:mod:`mlpvae.nn.scalars`).
    Each model keeps its own random streams
    (initialisation, batch order, noise, test noise), its own settings and its own run
    directory, written exactly as :func:`train` writes it: model k's
    parameters, metrics and checkpoints are those of training it alone (bit
    for bit on NumPy, tested; on CuPy with ``VAETHEORY_STACK_EXACT=1``, which
    computes the stack one model at a time, :func:`mlpvae.nn.model.models_apart`;
    without it equal up to the rounding of cuBLAS's and CuPy's batched kernels).
    A model whose loss turns non-finite stops as
    it would alone (status ``diverged``, last good checkpoint kept) while
    the others go on.  ``seconds`` and ``wall_seconds`` are the whole stack's.
    ``resume`` needs every checkpoint at the same epoch.
    """
    with stop_on_sigterm():  # SIGTERM stops as Ctrl-C does: status "interrupted", checkpoints kept
        tr = _start(cfgs, outs, resume)
        writer = checkpoint.Writer(named=True)  # files are written while the next epoch trains
        try:
            with device_stream(tr.xp):
                for epoch in range(tr.start, tr.cfg.epochs):
                    if not _epoch(tr, epoch, writer):
                        break
            set_status(tr.runs, "completed")
        except KeyboardInterrupt:
            set_status(tr.runs, "interrupted")
            raise
        except BaseException as exc:
            set_status(tr.runs, "failed", str(exc))
            raise
        finally:
            finish(tr.runs, writer, tr.t_run)
    return [r.info for r in tr.runs]


class _Training:
    """What the epochs of :func:`train_many` share: the stack's runs, parameters, optimiser, data and buffers."""

    def __init__(self, cfgs: list, outs: list, resume: bool):
        stacks.check_together(cfgs, outs)
        self.cfgs, self.cfg, self.K, self.resume = cfgs, cfgs[0], len(cfgs), resume
        self.differing = stacks.differing(cfgs)
        self.lr = [c.lr for c in cfgs] if "lr" in self.differing else cfgs[0].lr  # per model where they differ
        cfg = self.cfg
        self.runs = open_run_dirs(cfgs, outs)  # locked: one writer per directory
        try:
            self.xp, self.device = dev.select(cfg.device)
            self.dtype = np.dtype(cfg.dtype)
            self.mc = stacks.model_config(cfgs)  # each model's sigma2, t, tau, latent scale where they differ
            self.mcs = [c.model_config() for c in cfgs]
            check_memory(self.mc, self.K, self.dtype)
            self.params, self.opt, self.start = _initial_state(self, resume)
        except BaseException:
            for r in self.runs:
                r.close(failed_start=True)
            raise
        self.t_run = 0.0


def _initial_state(tr: _Training, resume: bool):
    """The stacked parameters, the optimiser and the first epoch: from the checkpoints, or freshly initialised."""
    xp, runs = tr.xp, tr.runs
    if resume:
        cks = [r.load(xp) for r in runs]
        epochs = sorted({int(ck["epoch"]) for ck in cks})
        if len(epochs) > 1:
            raise ValueError(f"--resume: the checkpoints are at different epochs {epochs}; resume them separately")
        start = epochs[0]
        params = stack([ck["params"] for ck in cks], xp)
        opt = adam.Adam(params, lr=tr.lr)
        try:
            opt.load_state_dict(stack_adam_states([ck["adam"] for ck in cks], xp))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            names = ", ".join(str(r.ck) for r in runs)
            why = f"its Adam state does not fit the model ({exc})"
            raise checkpoint.CheckpointError(f"--resume: {names}: {why}") from None
        for r in runs:
            keep_rows(r.metrics, start)
        return params, opt, start
    for r in runs:
        if r.ck.exists():
            raise FileExistsError(
                f"{r.out} already holds a run (checkpoint.npz); pass --resume or choose another --out"
            )
    for r in runs:
        r.metrics.unlink(missing_ok=True)
    params = stack(
        [model.init_params(tr.mc, generator(c.seed, STREAM_INIT, 0), xp=xp, dtype=tr.dtype) for c in tr.cfgs], xp
    )
    return params, adam.Adam(params, lr=tr.lr), 0


def _start(cfgs: list, outs: list, resume: bool) -> _Training:
    """Check the configs, lock the run directories, resume or initialise, upload the data, allocate the
    step's buffers, write each run.json.  A start that fails releases the directories and removes those it made."""
    tr = _Training(cfgs, outs, resume)
    try:
        _prepare(tr)
    except BaseException:
        for r in tr.runs:
            r.close(failed_start=True)
        raise
    return tr


def _prepare(tr: _Training) -> None:
    """The data on the device, the step's buffers, each run.json (:func:`_start`)."""
    cfgs = tr.cfgs
    xp, cfg, dtype, K = tr.xp, tr.cfg, tr.dtype, tr.K
    ds = load_data(cfg)
    if tr.resume:  # the data a run continues on is the data it started on
        for r in tr.runs:
            D.verify_run_data(r.out, ds)
    tr.train_u8, test_u8 = xp.asarray(ds.train_images), xp.asarray(ds.test_images)  # uploaded once
    tr.N, tr.B = len(tr.train_u8), min(cfg.batch_size, len(tr.train_u8))
    notes = size_notes(cfg, tr.N, len(test_u8), ds.name)
    for note in notes:
        print(f"vaetheory train: note: {note}", file=sys.stderr)
    tr.steps = tr.N // tr.B  # the last incomplete batch of a shuffled epoch is dropped
    # Dynamic binarization or differing data scales give each model its own targets; else they are shared.
    tr.own = stacks.own_targets(cfgs)
    tr.x_train = xp.empty((K if tr.own else 1,) + tr.train_u8.shape, dtype=dtype)
    tr.x_test = [
        D.targets(test_u8, scale=c.scale, binarize=cfg.binarize, dtype=dtype, rng=generator(c.seed, STREAM_TEST, 0, xp))
        for c in (cfgs if tr.own else cfgs[:1])
    ]
    tr.xb = xp.empty((K, tr.B, cfg.m), dtype=dtype)
    tr.eps = xp.empty((K, tr.B, cfg.n), dtype=dtype)
    tr.total = xp.zeros(K, dtype=xp.float64)  # the epoch's summed losses; one buffer, as a CUDA graph needs
    tr.step = TrainingStep(xp, tr.params, tr.opt, tr.mc, tr.xb, tr.eps, tr.total)
    tr.columns = metric_columns(cfg.posterior)
    dynamic = cfg.binarize == "dynamic"
    for r in tr.runs:
        targets = ("dynamically binarized" if dynamic else "grayscale") + f", scale {r.cfg.scale}"
        r.info = {
            "config": r.cfg.to_dict(),
            "git_sha": git_sha(),
            "device": tr.device,
            **({"cpu": dev.cpu_record()} if xp is np else {}),
            "dtype": cfg.dtype,
            "targets": targets,
            "data": {
                "name": ds.name,
                "train": int(tr.N),
                "test": int(len(test_u8)),
                "files": D.file_record(ds),
            },
            **({"notes": notes} if notes else {}),
            "steps_per_epoch": tr.steps,
            "batch_size": tr.B,
            **({"batch_split": tr.step.split_parts} if tr.step.split_parts > 1 else {}),
            "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "status": "running",
            "epochs_done": tr.start,
            "wall_seconds": r.wall_before,
        }
        if K > 1:
            r.info["stacked"] = {
                "models": K,
                "seeds": [c.seed for c in cfgs],
                "differing": tr.differing,  # each model's value of the settings the stack's models differ in
                "computed": "one model at a time" if model.apart() else "batched",
                "note": "trained as one stack; seconds and wall_seconds are the stack's",
            }
        r.saved_epoch = tr.start
        checkpoint.write_json(r.json, r.info)
    tr.t_run = time.perf_counter()


def _epoch_data(tr: _Training, epoch: int):
    """The epoch's noise generators (one per model), its training targets in ``tr.x_train`` and its batch order.

    Returns ``noise_rngs`` and ``perm (steps, K, B)``: rows of ``x_train``
    flattened to ``(len(x_train) * N, m)``, so that a step is one gather.
    """
    xp, cfg, N, B, steps = tr.xp, tr.cfg, tr.N, tr.B, tr.steps
    noise_rngs = [generator(c.seed, STREAM_NOISE, epoch, xp) for c in tr.cfgs]
    for k in range(len(tr.x_train)):
        D.targets(
            tr.train_u8,
            scale=tr.cfgs[k].scale,
            binarize=cfg.binarize,
            rng=noise_rngs[k],
            dtype=tr.dtype,
            out=tr.x_train[k],
        )
    perm = np.stack(
        [
            generator(c.seed, STREAM_ORDER, epoch).permutation(N)[: steps * B].reshape(steps, B)
            + (k * N if tr.own else 0)
            for k, c in enumerate(tr.cfgs)
        ],
        axis=1,
    )
    return noise_rngs, xp.asarray(perm)


def _train_epoch(tr: _Training, epoch: int, writer) -> None:
    """The epoch's training steps; a model whose running loss turns non-finite is marked diverged and left out."""
    xp, cfg, K, eps, steps, runs = tr.xp, tr.cfg, tr.K, tr.eps, tr.steps, tr.runs
    noise_rngs, perm = _epoch_data(tr, epoch)
    rows = tr.x_train.reshape(-1, cfg.m)
    tr.total.fill(0)
    # Checking finiteness syncs the GPU, so there only every 20 steps (and at the end).
    check_every = 1 if xp is np else 20
    bar = tqdm(
        total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress, leave=False, file=sys.stderr
    )
    eps_epoch = None
    if xp is not np:  # on a GPU a draw costs launches and Python: one per model and epoch
        eps_epoch = xp.empty((steps,) + eps.shape, dtype=tr.dtype)
        for k in range(K):
            eps_epoch[:, k] = noise_rngs[k].standard_normal((steps,) + eps.shape[1:], dtype=tr.dtype)
    for s in range(steps):
        xp.take(rows, perm[s], axis=0, out=tr.xb)
        if eps_epoch is None:
            for k in range(K):
                noise_rngs[k].standard_normal(out=eps[k], dtype=eps.dtype)
        else:
            eps[...] = eps_epoch[s]
        tr.step()
        bar.update(1)
        if (s + 1) % check_every == 0 or s + 1 == steps:
            writer.check()  # a checkpoint that could not be written stops the run now, not after the epoch
            values = tr.total.tolist()
            for k, r in enumerate(runs):
                if not r.done and not math.isfinite(values[k]):
                    r.diverged(epoch, s, check_every, tr.columns)
            alive = [v for v, r in zip(values, runs) if not r.done]
            if not alive:
                break
            bar.set_postfix(objective=f"{-sum(alive) / len(alive) / (s + 1):.2f}", refresh=False)
    bar.close()


def _record_epoch(tr: _Training, epoch: int, seconds: float, writer) -> None:
    """Each live model's test ELBO (when due), metrics row and checkpoint after the epoch."""
    cfg, steps, K = tr.cfg, tr.steps, tr.K
    sums = tr.total.tolist()
    for k, r in enumerate(tr.runs):
        if r.done:
            continue
        t1 = time.perf_counter()
        p_k = model_view(tr.params, k)
        if not finite(p_k, tr.xp):  # a finite loss, then an update to inf or NaN: not a good checkpoint
            r.diverged(epoch, None, 1, tr.columns)
            continue
        elbos = {}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            test_rng = generator(r.cfg.seed, STREAM_TEST, epoch + 1, tr.xp)
            # on copies: arrays of its own, as a lone model's, whatever cuBLAS makes of a view's offset
            own = {name: a.copy() for name, a in p_k.items()}
            at = k if tr.own else 0
            elbos = test_elbos(own, tr.mcs[k], tr.x_train[at], tr.x_test[at], test_rng, cfg.eval_k)
        row = {
            "epoch": epoch + 1,
            "train_objective": -sums[k] / steps,
            **elbos,
            "seconds": seconds,
            "eval_seconds": time.perf_counter() - t1,
            "status": "ok",
        }
        # metrics first, checkpoint second: a resume drops rows past the checkpoint.
        append_row(r.metrics, tr.columns, row)
        r.info["wall_seconds"] = r.wall_before + time.perf_counter() - tr.t_run
        r.info["epochs_done"] = epoch + 1  # in the run.json written after this checkpoint
        writer.save(
            r.ck,
            {
                "params": p_k,
                "adam": adam_state(tr.opt, k),
                "epoch": epoch + 1,
                "seed": r.cfg.seed,
                "config": r.cfg.to_dict(),
                "wall_seconds": r.info["wall_seconds"],
            },
            r.json,
            r.info,
            done=lambda r=r, e=epoch + 1: setattr(r, "saved_epoch", e),
        )
        if cfg.progress:
            shown = ", ".join(f"{key} {v:.2f}" for key, v in elbos.items())
            who = "".join(f"{key} {getattr(r.cfg, key)}, " for key in tr.differing) if K > 1 else ""
            print(
                f"epoch {epoch + 1}: {who}objective {row['train_objective']:.2f}, {shown} nats/image, {seconds:.1f} s",
                file=sys.stderr,
            )


def _epoch(tr: _Training, epoch: int, writer) -> bool:
    """Train one epoch and record it; False when every model has diverged (training stops)."""
    t0 = time.perf_counter()
    _train_epoch(tr, epoch, writer)
    if all(r.done for r in tr.runs):
        return False
    dev.synchronize(tr.xp)
    _record_epoch(tr, epoch, time.perf_counter() - t0, writer)
    return True


def add_arguments(parser) -> None:
    """The options of ``vaetheory train``: the run directory, ``--resume`` and every training setting."""
    parser.add_argument("--out", metavar="DIR", help="run directory (metrics.csv, checkpoint.npz, run.json)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    C.add_arguments(parser)


def run(args) -> int:
    """``vaetheory train``: train as configured; the exit status (2 for bad settings, 3 for a diverged run)."""
    try:
        cfg = C.from_args(args)
        out = args.out or cfg.out
        if not out:
            print('vaetheory train: --out DIR is required (or out = "DIR" in the TOML config)', file=sys.stderr)
            return 2
        info = train(cfg, out, resume=args.resume)
    except Stopped as exc:
        print(f"vaetheory train: {exc}; the last checkpoint is kept in {out}: continue with --resume", file=sys.stderr)
        return 128 + exc.signum
    except (ValueError, OSError, RuntimeError, MemoryError) as exc:
        print(f"vaetheory train: {exc or type(exc).__name__}", file=sys.stderr)
        return 2
    files = ", ".join(name for name in ("metrics.csv", "checkpoint.npz", "run.json") if (Path(out) / name).exists())
    print(
        f"{info['status']}: {info.get('epochs_done', 0)} epochs on {info.get('device', '?')}, "
        f"{info.get('wall_seconds', 0.0):.1f} s; wrote {out}/ ({files})"
    )
    return EXIT_DIVERGED if info["status"] == "diverged" else 0
