"""The training runs of a figure: their state on disk, a lock per run, and training them in batches (Sec. 7 training).

A run directory is new, stopped, finished, diverged, or a recorded result
without its checkpoint (:func:`run_state`; checkpoints are not committed);
:func:`ensure_runs` trains the new and stopped ones, stacking those in the same
state, under a per-run lock (:func:`run_lock`) so processes working through the
same queue side by side never train one run twice.  A recorded result is never
deleted to train it afresh unless asked (``retrain``).  :func:`plan_runs` and
:func:`batches` list a figure's runs and group them for training.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from mlpvae.experiments.figure_schema import Figure, Method, run_config, seeds_of
from mlpvae.training import config as C
from mlpvae.training import filelock
from mlpvae.training import stacks as S
from mlpvae.training import train as T


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``; None when it is missing or unreadable (e.g. half written) (Not in the paper)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


NO_CHECKPOINT = " (no checkpoint)"  # the suffix of the state of a recorded result whose checkpoint is absent


def recorded_without_checkpoint(directory: Path) -> dict | None:
    """The ``run.json`` of a run that has results (completed, or epochs done) but no checkpoint; else None.

    Such a run is a recorded result, e.g. on a fresh clone (checkpoints are
    not committed): its metrics stand, its parameters are gone (Not in the paper).
    """
    info = read_json(directory / "run.json")
    if info is None or (directory / "checkpoint.npz").exists() or info.get("status") == "diverged":
        return None
    if info.get("status") == "completed" or int(info.get("epochs_done") or 0) > 0:
        return info
    return None


def run_state(directory: Path, cfg) -> str:
    """What a run directory holds for ``cfg`` (Not in the paper).

    new, stopped, finished, diverged, or ``"completed (no checkpoint)"`` /
    ``"stopped (no checkpoint)"`` for a recorded result whose checkpoint is
    absent (:func:`recorded_without_checkpoint`): kept, not trained afresh.

    Raises ValueError when it holds a run with other settings (other than
    those :data:`mlpvae.training.config.RESUMABLE_KEYS` allows to differ).
    """
    info = read_json(directory / "run.json")
    has_ck = (directory / "checkpoint.npz").exists()
    if info is None:
        return "stopped" if has_ck else "new"
    saved = info.get("config", {})
    diff = {k: (saved.get(k), v) for k, v in cfg.to_dict().items() if k not in C.RESUMABLE_KEYS and saved.get(k) != v}
    if diff:
        raise ValueError(
            f"{directory} holds a run with other settings (saved, wanted): {diff}; "
            f"choose another --out for these settings"
        )
    if info.get("status") == "diverged":
        return "diverged"  # deterministic: a resume would diverge again
    if not has_ck:
        if recorded_without_checkpoint(directory) is not None:
            return ("completed" if info.get("status") == "completed" else "stopped") + NO_CHECKPOINT
        return "new"
    if info.get("status") == "completed" and int(info.get("epochs_done", 0)) >= cfg.epochs:
        return "finished"
    return "stopped"


def _kept(state: str, retrain: bool) -> str | None:
    """The action of a run that is not trained: finished, diverged, or a recorded result (unless ``retrain``)."""
    if state in ("finished", "diverged"):
        return f"skipped ({state})"
    if state.endswith(NO_CHECKPOINT) and not retrain:
        return f"kept ({state[: -len(NO_CHECKPOINT)]}, no checkpoint; --retrain trains it afresh)"
    return None


def ensure_runs(cfgs: list, directories: list, retrain: bool = False) -> list[tuple[str, dict]]:
    """Train, resume or skip runs that can share a stack, those to train as one stack (Sec. 7 training).

    Runs in the same state (new, or stopped at the same epoch) are trained
    together by :func:`mlpvae.training.train.train_many`, which gives each exactly what
    training it alone gives.  A recorded result without its checkpoint is kept
    as it is, unless ``retrain``: then it is deleted and trained afresh.
    Returns ``(action, run.json content)`` per run.
    """
    results: list = [None] * len(cfgs)
    todo = []
    for i, (cfg, d) in enumerate(zip(cfgs, directories)):
        kept = _kept(run_state(d, cfg), retrain)
        if kept:
            results[i] = (kept, read_json(d / "run.json"))
        else:
            todo.append(i)
    with contextlib.ExitStack() as locks:
        mine = []
        for i in todo:
            try:
                locks.enter_context(run_lock(directories[i]))
            except Busy as exc:  # queues side by side: the process that holds the run trains it
                results[i] = (f"skipped ({exc})", read_json(directories[i] / "run.json") or {})
                continue
            mine.append(i)
        groups: dict = {}
        retrained = []
        for i in mine:
            d = directories[i]
            state = run_state(d, cfgs[i])  # another process may have finished it meanwhile
            kept = _kept(state, retrain)
            if kept:
                results[i] = (kept, read_json(d / "run.json"))
                continue
            if state.endswith(NO_CHECKPOINT):  # --retrain: the recorded result goes
                retrained.append(i)
            if state == "new" or state.endswith(NO_CHECKPOINT):
                # a run that stopped before its first checkpoint leaves files that a fresh start replaces
                for leftover in ("run.json", "metrics.csv"):
                    (d / leftover).unlink(missing_ok=True)
                key = ("new", 0)
            else:
                key = ("stopped", int((read_json(d / "run.json") or {}).get("epochs_done", -1)))
            groups.setdefault(key, []).append(i)
        for (state, _), members in groups.items():
            infos = T.train_many(
                [cfgs[i] for i in members], [directories[i] for i in members], resume=(state == "stopped")
            )
            for i, info in zip(members, infos):
                results[i] = ("resumed" if state == "stopped" else "trained", info)
        for i in retrained:
            results[i] = ("retrained (--retrain)", results[i][1])
    return results


class Busy(RuntimeError):
    """Another live process holds the run's lock (Not in the paper)."""


@contextlib.contextmanager
def run_lock(directory: Path):
    """Hold an exclusive OS lock (``fcntl.flock``) on ``directory/.queue.lock`` while training (Not in the paper).

    The trainer holds its own lock, ``directory/.lock``, inside this one.

    The lock is :mod:`mlpvae.training.filelock`'s: held until released or until
    the process ends, with no stale lock to clean up.  Raises :class:`Busy`
    while another process holds it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ".queue.lock"
    fd, holder = filelock.take(path)
    if fd is None:
        raise Busy(f"{directory} is being trained by process {holder} (it holds {path})")
    try:
        yield
    finally:
        filelock.release(path, fd)


def _only(fig: Figure, names: list[str] | None) -> list[Method]:
    """The figure's methods, or (``--methods``) those named, in the config's order (Not in the paper)."""
    if names is None:
        return list(fig.methods.values())
    unknown = [n for n in names if n not in fig.methods]
    if unknown or not names:
        raise ValueError(
            f"--methods: unknown method(s) {', '.join(unknown) or '(none given)'}; "
            f"{fig.name} has {', '.join(fig.methods)}"
        )
    return [m for m in fig.methods.values() if m.name in names]


def plan_runs(fig: Figure, override, per_run: dict, names: list[str] | None = None):
    """``(method, seed, TrainConfig)`` of every run of ``fig``, each once: two names may share a run (Not in the paper).

    ``override`` is the ``--seeds`` override, ``per_run`` the settings every run
    overrides, ``names`` the ``--methods`` selection.
    """
    seen = set()
    for m in _only(fig, names):
        for s in seeds_of(fig, m, override):
            if (m.folder, m.run_name, s) not in seen:
                seen.add((m.folder, m.run_name, s))
                yield m, s, run_config(m, s, per_run)


def batches(plan: list, stack: bool, max_models: int | None = None):
    """The plan one run at a time, or (``stack``) in stacks of runs that can share one (Not in the paper).

    Runs share a stack when their configs agree in every shape and code path
    (:func:`mlpvae.training.stacks.stack_key`: they may differ in seed, sigma2,
    t, tau, latent scale, data scale and learning rate), across the figure's
    methods, in the plan's order; a stack holds at most ``max_models`` runs
    (default: as many as half the device's memory holds,
    :func:`mlpvae.training.stacks.models_per_stack`), and never the same
    settings twice (two methods may name one run's settings in two folders).
    """
    if not stack:
        yield from ([p] for p in plan)
        return
    groups: dict = {}
    for p in plan:
        groups.setdefault(S.stack_key(p[2]), []).append(p)
    for members in groups.values():
        cap = max_models or S.models_per_stack(members[0][2])
        chunks: list = []
        for p in members:
            own = tuple(sorted((k, v) for k, v in p[2].to_dict().items() if k != "out"))
            for chunk, seen in chunks:
                if len(chunk) < cap and own not in seen:
                    break
            else:
                chunk, seen = [], set()
                chunks.append((chunk, seen))
            chunk.append(p)
            seen.add(own)
        yield from (chunk for chunk, _ in chunks)
