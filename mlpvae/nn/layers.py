"""Dense layers and activations, each forward next to its hand-written backward.

Everything takes the array module from its inputs (NumPy or CuPy) and keeps
their dtype.  Weights are stored ``W (fan_in, fan_out)`` so a layer is
``h @ W + b`` on batch-first ``h (B, fan_in)``.  A leading models axis K
stacks independent networks (``h (K, B, fan_in)``, ``W (K, fan_in, fan_out)``,
``b (K, fan_out)``): every function here reduces over the batch axis -2 and
multiplies with batched matmuls, so model k of a stack computes exactly what
it computes alone (:func:`mlpvae.training.train.train_many`).  Backward functions write the
parameter gradients into caller-given arrays when they are passed (``out``
buffers reused across steps) and work in place on the incoming gradient where
that saves a temporary.
"""

from __future__ import annotations

import numpy as np

from mlpvae.accel import cpu, fused, gemm
from vaetheory.xp import array_namespace


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Glorot/Xavier uniform weights U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Not in the paper).

    The paper's experiments used TensorFlow dense layers, whose default
    initialisation is this one with zero biases; we follow it.  Drawn in
    float64 from ``rng`` so the same seed gives the same weights in any dtype.
    """
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=(fan_in, fan_out))


def dense(h, W, b):
    """``h @ W + b`` with one output allocation (``b`` broadcast over the batch axis -2)."""
    out = gemm.matmul(h, W)
    out += b[..., None, :]
    return out


def dense_backward(h, W, g, gW=None, gb=None, need_input: bool = True):
    """Backward of :func:`dense`: ``(dW, db, dh)`` for output gradient ``g ([K,] B, fan_out)``.

    ``gW``/``gb`` if given receive the results in place; ``dh`` is ``None``
    unless ``need_input``.
    """
    hT = h.swapaxes(-1, -2)
    gW = gemm.matmul(hT, g, out=gW)
    if gb is None:
        gb = g.sum(axis=-2)
    else:
        g.sum(axis=-2, out=gb)
    dh = gemm.matmul(g, W.swapaxes(-1, -2)) if need_input else None
    return gW, gb, dh


def relu_(a):
    """ReLU in place; returns ``a``."""
    xp = array_namespace(a)
    return xp.maximum(a, 0, out=a)


def relu_backward_(g, h):
    """Multiply ``g`` in place by ReLU's derivative, given the ReLU *output* ``h`` (h > 0 iff a > 0)."""
    xp = array_namespace(g)
    if fused.enabled(xp):
        return fused.relu_backward_(g, h)
    if cpu.enabled(xp) and g.flags.c_contiguous and h.flags.c_contiguous and g.shape == h.shape:
        return cpu.relu_backward_(g, h)
    g *= h > 0
    return g


def softplus(a):
    """log(1 + e^a) = max(a, 0) + log1p(e^-|a|), stable for any ``a``.

    Written with four in-place ufuncs: NumPy's ``logaddexp(0, a)`` is the same
    function but much slower on float32.
    """
    xp = array_namespace(a)
    out = xp.abs(a)
    xp.negative(out, out=out)
    xp.exp(out, out=out)
    xp.log1p(out, out=out)
    out += xp.maximum(a, 0)
    return out


def sigmoid(a):
    """1 / (1 + e^-a) through tanh, which neither overflows nor loses the tails' sign."""
    xp = array_namespace(a)
    s = xp.tanh(0.5 * a)
    s += 1
    s *= 0.5
    return s


def trunk_forward(params, prefix: str, h, count: int):
    """The ``count`` ReLU layers ``{prefix}_W{i}, {prefix}_b{i}``, i < count.

    Returns the list ``hs`` of layer inputs and the last output:
    ``hs[0] = h`` and ``hs[i + 1] = relu(hs[i] @ W_i + b_i)``.
    """
    hs = [h]
    one_pass = cpu.enabled(array_namespace(h))
    for i in range(count):
        W, b = params[f"{prefix}_W{i}"], params[f"{prefix}_b{i}"]
        if one_pass:
            hs.append(cpu.bias_relu_(gemm.matmul(hs[-1], W), b))
        else:
            hs.append(relu_(dense(hs[-1], W, b)))
    return hs


def trunk_backward(params, prefix: str, hs, g, grads, count: int, need_input: bool):
    """Backward of :func:`trunk_forward` from ``g = dL/d hs[count]``; fills ``grads`` in place.

    ``g`` is overwritten.  Returns ``dL/d hs[0]`` if ``need_input`` else ``None``.
    """
    for i in range(count - 1, -1, -1):
        relu_backward_(g, hs[i + 1])
        kW, kb = f"{prefix}_W{i}", f"{prefix}_b{i}"
        gW, gb, g = dense_backward(hs[i], params[kW], g, grads.get(kW), grads.get(kb), need_input=need_input or i > 0)
        grads[kW], grads[kb] = gW, gb
    return g if need_input else None
