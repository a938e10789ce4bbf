"""Argument checks at public boundaries.

Every public function validates its inputs once, here, and raises ``ValueError``
naming the argument and the expected shape; internal helpers trust their inputs.

Shapes are given with the letters of :mod:`vaetheory` (``"N"``, ``"n"``, ...)
or integers.  A ``dims`` dict binds letters across arguments, so a mismatched
``N`` between ``mu`` and ``x`` is caught and named.

Example::

    dims = {}
    mu = array("mu", mu, ("N", "n"), dims)
    var = array("var", var, [("N", "n"), ("n",)], dims, positive=True)
    x = array("x", x, ("N", "m"), dims)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vaetheory.xp import array_namespace, is_cupy_array

Shape = Sequence[object]


def _fmt(shape: Shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _bind(shape: Shape, actual: tuple, dims: dict) -> dict | None:
    """Try to match ``actual`` against the symbolic ``shape``; return new bindings or None."""
    if len(shape) != len(actual):
        return None
    new = {}
    for sym, size in zip(shape, actual):
        if isinstance(sym, int):
            if sym != size:
                return None
        elif sym is None:
            continue
        else:
            bound = dims.get(sym, new.get(sym))
            if bound is not None and bound != size:
                return None
            new[sym] = size
    return new


def array(
    name: str,
    a,
    shape: Shape | list[Shape] | None = None,
    dims: dict | None = None,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    finite: bool = True,
    dtype=None,
):
    """Return ``a`` as a floating array after checking it.

    Parameters
    ----------
    name : the argument's name, used in the error message.
    a : array-like (NumPy or CuPy array, list, scalar).
    shape : a tuple of letters/ints/None, or a list of such alternatives.
    dims : dict binding shape letters across arguments; updated in place.
    positive, nonnegative : require every entry > 0 (>= 0).
    finite : require every entry finite (default True).
    dtype : cast to this floating dtype; default keeps float32/float64 and
        turns integers and lists into float64.
    """
    if a is None:
        raise ValueError(f"{name} is required, got None")
    if is_cupy_array(a):
        xp = array_namespace(a)
        arr = a
    else:
        xp = np
        try:
            arr = np.asarray(a)
        except Exception as exc:  # ragged lists and the like
            raise ValueError(f"{name} could not be read as an array: {exc}") from None
    kind = arr.dtype.kind
    if kind in "biu":
        arr = arr.astype(dtype or np.float64)
    elif kind == "f":
        if dtype is not None and arr.dtype != dtype:
            arr = arr.astype(dtype)
    else:
        raise ValueError(f"{name} must be a real floating array, got dtype {arr.dtype}")
    if shape is not None:
        alternatives = shape if isinstance(shape, list) else [shape]
        dims = {} if dims is None else dims
        for alt in alternatives:
            new = _bind(alt, tuple(arr.shape), dims)
            if new is not None:
                if new.get("N") == 0:
                    raise ValueError(f"{name} has N = 0 examples, shape {tuple(arr.shape)}: at least one is required")
                dims.update(new)
                break
        else:
            want = " or ".join(_fmt(alt) for alt in alternatives)
            bound = ", ".join(f"{k}={v}" for k, v in dims.items())
            raise ValueError(
                f"{name} must have shape {want}" + (f" with {bound}" if bound else "") + f", got {tuple(arr.shape)}"
            )
    if finite and arr.size and not bool(xp.all(xp.isfinite(arr))):
        raise ValueError(f"{name} contains NaN or infinite values")
    if positive and arr.size and not bool(xp.all(arr > 0)):
        raise ValueError(f"{name} must be strictly positive (a variance), got min {float(arr.min())!r}")
    if nonnegative and arr.size and not bool(xp.all(arr >= 0)):
        raise ValueError(f"{name} must be non-negative, got min {float(arr.min())!r}")
    return arr


def scalar(name: str, v, *, positive: bool = False, nonnegative: bool = False, integer: bool = False):
    """Return ``v`` as a Python float (or int) after checking it is finite (and positive)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {v!r}") from None
    if not np.isfinite(f):
        raise ValueError(f"{name} must be finite, got {v!r}")
    if positive and not f > 0:
        raise ValueError(f"{name} must be > 0, got {v!r}")
    if nonnegative and not f >= 0:
        raise ValueError(f"{name} must be >= 0, got {v!r}")
    if integer:
        if f != int(f):
            raise ValueError(f"{name} must be a whole number, got {v!r}")
        return int(f)
    return f


def spd(name: str, A, shape: Shape | None = None, dims: dict | None = None):
    """Return ``A`` (..., k, k) after checking it is symmetric positive definite.

    Uses a Cholesky factorisation, which fails exactly when ``A`` is not SPD.
    """
    A = array(name, A, shape, dims)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"{name} must be a square matrix (..., k, k), got {tuple(A.shape)}")
    xp = array_namespace(A)
    scale = float(xp.max(xp.abs(A))) if A.size else 0.0
    if not bool(xp.all(xp.abs(A - xp.swapaxes(A, -1, -2)) <= 1e-10 * max(scale, 1.0))):
        raise ValueError(f"{name} must be symmetric")
    try:
        L = xp.linalg.cholesky(A)
    except Exception:
        raise ValueError(f"{name} must be positive definite (Cholesky failed)") from None
    if not bool(xp.all(xp.isfinite(L))):  # CuPy returns NaN instead of raising
        raise ValueError(f"{name} must be positive definite (Cholesky failed)")
    return A


def rng(name: str, r):
    """Check that ``r`` is a ``numpy.random.Generator`` (or CuPy's); nothing seeds globally."""
    if isinstance(r, np.random.Generator):
        return r
    try:
        import cupy

        if isinstance(r, cupy.random.Generator):
            return r
    except Exception:
        pass
    raise ValueError(
        f"{name} must be a numpy.random.Generator (e.g. numpy.random.default_rng(0)), got {type(r).__name__}"
    )


def choice(name: str, v, options: Sequence[str]) -> str:
    """Check that ``v`` is one of ``options``."""
    if v not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {v!r}")
    return v
