"""The scalar settings of a stack of models that differ in them (Sec. 7 training).

A lone model, or a stack whose models agree, reads a setting such as
``sigma2`` or ``latent_scale`` as a Python float, which NumPy rounds to the
arrays' dtype where it meets them.  A stack whose models differ in it
(:class:`mlpvae.nn.model.StackConfig`) holds each model's value;
:func:`value` gives them as one ``(K, 1, ...)`` array of the arrays' dtype,
each computed in float64 as Python computes the lone model's float (through
``fn`` where the step uses a function of the setting) and then rounded as
NumPy rounds that float.  Broadcast over the stack, each model's element-wise
arithmetic is then the lone model's, bit for bit.
"""

from __future__ import annotations

import numpy as np

_CACHE: dict = {}  # one device array per setting, function and shape: made once, read by every step


def varied(config) -> dict:
    """``name -> (value of model 0, ..., of model K-1)`` of the settings the stack's models differ in
    (empty for a :class:`mlpvae.nn.model.ModelConfig`); Not in the paper (numerics)."""
    return dict(getattr(config, "varied", ()))


def varies(config, name: str) -> bool:
    """Whether the models of the stack ``config`` differ in ``name`` (Not in the paper (numerics))."""
    return name in varied(config)


def value(config, name: str, xp, dtype, ndim: int, fn=None, args: tuple = ()):
    """``config.<name>`` (or ``fn(config.<name>, *args)``) as the step uses it (Not in the paper (numerics)).

    A Python float where the models agree; where they differ, a ``(K, 1, ...)``
    array of ``ndim`` dimensions and dtype ``dtype``: each model's float64
    value rounded to ``dtype``, as NumPy rounds a Python float beside an
    array of that dtype.  ``fn`` must be a module-level function (the arrays
    are kept per function and made once, before a CUDA graph captures a step).
    """
    values = varied(config).get(name)
    if values is None:
        v = getattr(config, name)
        return v if fn is None else fn(v, *args)
    key = (config, name, fn, args, np.dtype(dtype).str, ndim, xp.__name__)
    if key not in _CACHE:
        host = np.array([v if fn is None else fn(v, *args) for v in values], dtype=np.float64)
        _CACHE[key] = xp.asarray(host.astype(dtype).reshape((len(values),) + (1,) * (ndim - 1)))
    return _CACHE[key]


def is_one(c) -> bool:
    """Whether ``c`` is the Python float 1.0 (a lone model skips a scaling by 1; an array is always applied,
    exactly: multiplying or dividing by 1 changes no bit); Not in the paper (numerics)."""
    return not hasattr(c, "shape") and c == 1.0
