"""Which array module a run uses: CuPy on a GPU, or NumPy."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from vaetheory.validate import choice
from vaetheory.xp import cupy_or_none


def gpu_count() -> int:
    """Number of CUDA devices CuPy sees; 0 without CuPy or a driver (Not in the paper)."""
    cp = cupy_or_none()
    if cp is None:
        return 0
    try:
        return int(cp.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device
        return 0


def select(device: str = "auto"):
    """Return ``(xp, description)`` for ``device`` in {"auto", "cpu", "gpu"} (Not in the paper).

    "auto" is CuPy when it imports and finds a GPU, else NumPy; "gpu" without
    one is an error saying why.
    """
    choice("device", device, ("auto", "cpu", "gpu"))
    if device == "cpu" or (device == "auto" and gpu_count() == 0):
        return np, f"cpu (NumPy {np.__version__}, {platform.processor() or platform.machine()})"
    cp = cupy_or_none()
    if cp is None:
        raise RuntimeError("--device gpu needs CuPy: pip install 'vaetheory[gpu]' (cupy-cuda13x)")
    if gpu_count() == 0:
        raise RuntimeError("--device gpu: CuPy found no GPU (cupy.cuda.runtime.getDeviceCount() == 0)")
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return cp, f"gpu ({name}, CuPy {cp.__version__})"


def synchronize(xp) -> None:
    """Wait for queued GPU work (no-op on NumPy), so wall-clock timings are honest (Not in the paper)."""
    if xp is not np:
        xp.cuda.Device().synchronize()


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (else :func:`platform.processor`) (Not in the paper)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def threadpools() -> list:
    """The thread pools loaded in this process (threadpoolctl): library, version, kernel, threads (Not in the paper)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "version", "architecture", "num_threads", "threading_layer", "filepath")
    return [{k: d.get(k) for k in keep if k in d} for d in threadpool_info()]


def cpu_record() -> dict:
    """What a CPU run's numbers depend on beyond the code and the data (Not in the paper): the CPU model, its
    core count and each BLAS library with its version, kernel and threads.  A run reproduces bit for bit only
    on the same BLAS kernel (docs/reproducing.md), so ``run.json`` records it."""
    keep = ("internal_api", "version", "architecture", "num_threads")
    return {"model": cpu_model(), "cores": os.cpu_count(), "blas": [{k: p.get(k) for k in keep} for p in numpy_blas()]}


def numpy_blas() -> list:
    """The BLAS pools NumPy computes with: those shipped inside NumPy's wheel (``numpy.libs``), else every BLAS
    pool loaded (a NumPy linked to a system BLAS) (Not in the paper)."""
    blas = [p for p in threadpools() if p.get("user_api") == "blas"]
    own = [p for p in blas if any(part.startswith("numpy") for part in Path(p.get("filepath") or "").parts)]
    return own or blas
