"""The training loop of Sec. 7: Adam on the per-batch objective, per-epoch metrics and checkpoints.

A run directory ``--out DIR`` holds:

* ``metrics.csv``: one row per epoch: ``epoch, train_objective`` (mean over
  the epoch's batches of the objective being maximised, nats per image),
  the test ELBO column(s) of :func:`gpu.evaluate.test_elbos` (S^2 source
  labelled for floating-prior models), ``seconds`` (training steps),
  ``eval_seconds`` and ``status``;
* ``checkpoint.npz``: parameters, Adam state, epoch, seed and config, written
  atomically after each epoch (:mod:`gpu.checkpoint`);
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

import csv
import datetime as _dt
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from gpu import checkpoint, config as C, data as D, device as dev, evaluate as E

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
    rng = np.random.default_rng([cfg.seed, 99])
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
        root = Path(__file__).resolve().parent.parent
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


def _fill_normal(rng, out, xp) -> None:
    """Standard-normal draws into ``out``; NumPy writes in place, CuPy's Generator draws then copies on device."""
    if xp is np:
        rng.standard_normal(out=out, dtype=out.dtype)
    else:
        out[...] = rng.standard_normal(out.shape, dtype=out.dtype)


class NonFiniteLoss(RuntimeError):
    pass


def train(cfg: C.TrainConfig, out: str | Path, resume: bool = False) -> dict:
    """Train a VAE as configured; Sec. 7 (Adam, lr 1e-3, batch 300, float32). Returns ``run.json``'s content.

    ``out`` is the run directory.  ``resume`` continues from its
    ``checkpoint.npz`` (the settings must match, except ``epochs``,
    ``device``, ``progress``, ``out`` and ``data``).
    """
    from gpu import adam, model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ck_path, metrics_path, run_path = out / "checkpoint.npz", out / "metrics.csv", out / "run.json"
    xp, device = dev.select(cfg.device)
    dtype = np.dtype(cfg.dtype)
    mc = cfg.model_config()
    wall_before = 0.0

    if resume:
        if not ck_path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint in {out} (expected {ck_path})")
        ck = checkpoint.load(ck_path, xp)
        saved = ck["config"]
        diff = {k: (saved.get(k), v) for k, v in cfg.to_dict().items()
                if k not in C.RESUMABLE_KEYS and saved.get(k) != v}
        if diff:
            raise ValueError(f"--resume: settings differ from the checkpoint's (saved, given): {diff}")
        params, start = ck["params"], int(ck["epoch"])
        opt = adam.Adam(params, lr=cfg.lr)
        opt.load_state_dict(ck["adam"])
        wall_before = float(ck.get("wall_seconds", 0.0))
        _keep_rows(metrics_path, start)
    else:
        if ck_path.exists():
            raise FileExistsError(f"{out} already holds a run (checkpoint.npz); pass --resume or choose another --out")
        metrics_path.unlink(missing_ok=True)
        params = model.init_params(mc, generator(cfg.seed, STREAM_INIT, 0), xp=xp, dtype=dtype)
        opt = adam.Adam(params, lr=cfg.lr)
        start = 0

    ds = load_data(cfg)
    train_u8, test_u8 = xp.asarray(ds.train_images), xp.asarray(ds.test_images)  # uploaded once
    N, B = len(train_u8), min(cfg.batch_size, len(train_u8))
    steps = N // B  # the last incomplete batch of a shuffled epoch is dropped
    x_train = xp.empty(train_u8.shape, dtype=dtype)
    x_test = D.targets(test_u8, scale=cfg.scale, binarize=cfg.binarize, dtype=dtype,
                       rng=generator(cfg.seed, STREAM_TEST, 0, xp))
    xb = xp.empty((B, cfg.m), dtype=dtype)
    eps = xp.empty((B, cfg.n), dtype=dtype)
    grads = {}  # filled by the first step, then reused in place
    columns = metric_columns(cfg.posterior)
    targets = ("dynamically binarized" if cfg.binarize == "dynamic" else "grayscale") + f", scale {cfg.scale}"

    info = {
        "config": cfg.to_dict(),
        "git_sha": git_sha(),
        "device": device,
        "dtype": cfg.dtype,
        "targets": targets,
        "data": {"name": ds.name, "train": int(N), "test": int(len(test_u8)),
                 "files": {r: {"path": str(c.path), "check": c.status} for r, c in ds.checks.items()}},
        "steps_per_epoch": steps,
        "batch_size": B,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "status": "running",
        "epochs_done": start,
        "wall_seconds": wall_before,
    }
    checkpoint.write_json(run_path, info)
    t_run = time.perf_counter()

    from tqdm import tqdm

    try:
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            order_rng = generator(cfg.seed, STREAM_ORDER, epoch)
            noise_rng = generator(cfg.seed, STREAM_NOISE, epoch, xp)
            D.targets(train_u8, scale=cfg.scale, binarize=cfg.binarize, rng=noise_rng, dtype=dtype, out=x_train)
            perm = xp.asarray(order_rng.permutation(N)[: steps * B].reshape(steps, B))
            total = xp.zeros((), dtype=xp.float64)
            # Checking finiteness syncs the GPU, so there only every 20 steps (and at the end).
            check_every = 1 if xp is np else 20
            bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress,
                       leave=False, file=sys.stderr)
            for s in range(steps):
                xp.take(x_train, perm[s], axis=0, out=xb)
                _fill_normal(noise_rng, eps, xp)
                loss, grads, _aux = model.loss_and_grads(params, xb, eps, mc, grads=grads)
                total += loss
                if (s + 1) % check_every == 0 or s + 1 == steps:
                    value = float(total)
                    if not math.isfinite(value):
                        raise NonFiniteLoss(epoch, s, check_every)
                    bar.set_postfix(objective=f"{-value / (s + 1):.2f}", refresh=False)
                opt.step(params, grads)
                bar.update(1)
            bar.close()
            dev.synchronize(xp)
            seconds = time.perf_counter() - t0
            t1 = time.perf_counter()
            elbos = {}
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                test_rng = generator(cfg.seed, STREAM_TEST, epoch + 1, xp)
                elbos = E.test_elbos(params, mc, x_train, x_test, test_rng, cfg.eval_k)
            row = {"epoch": epoch + 1, "train_objective": -float(total) / steps, **elbos,
                   "seconds": seconds, "eval_seconds": time.perf_counter() - t1, "status": "ok"}
            # metrics first, checkpoint second: a resume drops rows past the checkpoint.
            _append_row(metrics_path, columns, row)
            info["wall_seconds"] = wall_before + time.perf_counter() - t_run
            info["epochs_done"] = epoch + 1
            checkpoint.save(ck_path, {"params": params, "adam": opt.state_dict(), "epoch": epoch + 1,
                                      "seed": cfg.seed, "config": cfg.to_dict(), "wall_seconds": info["wall_seconds"]})
            checkpoint.write_json(run_path, info)
            if not cfg.progress:
                continue
            shown = ", ".join(f"{k} {v:.2f}" for k, v in elbos.items())
            print(f"epoch {epoch + 1}: objective {row['train_objective']:.2f}, {shown} nats/image, {seconds:.1f} s",
                  file=sys.stderr)
        info["status"] = "completed"
    except NonFiniteLoss as exc:
        epoch, step, every = exc.args
        when = f"step {step + 1}" + (f" (checked every {every} steps)" if every > 1 else "")
        msg = (f"non-finite loss at epoch {epoch + 1}, {when}: the run diverged "
               f"(likelihood {cfg.likelihood!r}); stopped, the last good checkpoint "
               f"({'epoch ' + str(epoch) if epoch else 'none: it diverged in the first epoch'}) is kept in {out}")
        _append_row(metrics_path, columns, {"epoch": epoch + 1, "status": f"diverged at step {step + 1}"})
        info.update(status="diverged", diverged={"epoch": epoch + 1, "step": step + 1}, message=msg)
        print(msg, file=sys.stderr)
    except KeyboardInterrupt:
        info["status"] = "interrupted"
        raise
    finally:
        info["wall_seconds"] = wall_before + time.perf_counter() - t_run
        info["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        checkpoint.write_json(run_path, info)
    return info


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
