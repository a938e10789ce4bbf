"""Which array module a run uses: CuPy on a GPU, or NumPy."""

from __future__ import annotations

import platform

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
