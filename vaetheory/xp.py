"""Array-module helpers: the same source runs on NumPy and, when present, CuPy."""

from __future__ import annotations

import os

import numpy as np

try:  # CuPy is optional; an already-installed CuPy is used as it is.
    import cupy as _cupy
except Exception:  # ImportError, or a CUDA driver problem at import time
    _cupy = None


def cupy_or_none():
    """Return the ``cupy`` module if it imported, else ``None``."""
    return _cupy


def is_cupy_array(a) -> bool:
    """True when ``a`` is a CuPy array (False when CuPy is not installed)."""
    return _cupy is not None and isinstance(a, _cupy.ndarray)


def array_namespace(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``.

    Mixing host and device arrays is an error rather than a silent copy.
    """
    kinds = {is_cupy_array(a) for a in arrays if a is not None and hasattr(a, "shape")}
    if kinds == {True}:
        return _cupy
    if True in kinds:
        raise ValueError("arrays mix NumPy and CuPy; move them to one device first")
    return np


def fused_enabled(xp) -> bool:
    """Whether hand-written CuPy kernels serve ``xp``: CuPy, unless ``VAETHEORY_FUSED=0`` (to compare, or to
    work around one).  Read at each call, so a test or a session can switch it."""
    return xp is not np and os.environ.get("VAETHEORY_FUSED", "1") != "0"


def to_numpy(a):
    """Return ``a`` as a NumPy array (copies from the device for CuPy arrays)."""
    if is_cupy_array(a):
        return _cupy.asnumpy(a)
    return np.asarray(a)
