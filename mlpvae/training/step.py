"""One training step of a stack of models, replayed as a CUDA graph on CuPy, and the
device stream it runs on (Sec. 7)."""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

from mlpvae.accel import cpu, fused
from mlpvae.accel import device as dev
from mlpvae.nn import model


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

    On NumPy, ``VAETHEORY_BATCH_SPLIT=P`` (P > 1) computes the loss and gradients of one model's batch in P
    blocks of rows on P Python threads (:class:`mlpvae.nn.model.BatchSplit`): the same loss, gradients equal
    to rounding, not bit for bit, so a run with it is not the reference's (``run.json`` records it).
    """

    def __init__(self, xp, params, opt, mc, xb, eps, total):
        self.xp, self.params, self.opt, self.mc = xp, params, opt, mc
        self.xb, self.eps, self.total = xb, eps, total
        self.grads: dict = {}  # filled by the first step, then reused in place
        self.graph = None
        self.pool = None
        self.calls = 0
        self.use_graph = fused.enabled(xp) and os.environ.get("VAETHEORY_GRAPH", "1") != "0"
        parts = batch_split_parts() if xp is np else 1
        split = model.BatchSplit(parts) if parts > 1 else None
        self.split_parts = parts if split is not None and split.splits(xb, mc) else 1  # run.json records it
        self.loss_and_grads = split if self.split_parts > 1 else model.loss_and_grads

    def _eager(self) -> None:
        loss, self.grads, _aux = self.loss_and_grads(self.params, self.xb, self.eps, self.mc, grads=self.grads)
        self.total += loss
        # split: the element-wise kernels stay on one thread beside the blocks' threads; Numba's parallel pool
        # woken for Adam between two split passes costs more than Adam itself (docs/peers.md)
        with cpu.serial() if self.split_parts > 1 else contextlib.nullcontext():
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
        if stream.ptr in (0, 1):  # the legacy default stream cannot capture: stay eager (see device_stream)
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


def batch_split_parts() -> int:
    """``VAETHEORY_BATCH_SPLIT``: the blocks one model's batch is split into on NumPy (1, the default: none;
    Not in the paper).  A value that is not a positive integer is an error, not ignored."""
    raw = os.environ.get("VAETHEORY_BATCH_SPLIT", "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"VAETHEORY_BATCH_SPLIT must be a positive integer (the batch's blocks), got {raw!r}")
    return int(raw)


@contextlib.contextmanager
def device_stream(xp):
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
