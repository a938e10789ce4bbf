"""The trained decoder's Jacobian J = d nu / d z, Eq. (8), by forward mode through the MLP.

The decoder of :mod:`mlpvae.nn.model` is ``h_0 = z / c``, ``h_{i+1} = relu(h_i W_i +
b_i)`` for the hidden layers, and ``out = h_{L-1} W_{L-1} + b_{L-1}`` (logits
for the Bernoulli likelihood, means otherwise).  Pushing the n unit tangents
e_k through it at once (n Jacobian-vector products) turns every layer into
one GEMM of ``(B n, fan_in) @ (fan_in, fan_out)``: the tangent of a ReLU layer
is ``(T_i W_i) * [a_i > 0]``.  Work is chunked over examples so the tangents,
``(chunk, n, max(hidden, m))``, stay bounded.

Same source on NumPy and CuPy; the dtype is the parameters'.
"""

from __future__ import annotations

import numpy as np

from mlpvae.nn import layers as Ly
from mlpvae.nn.model import ModelConfig, decode, param_shapes
from vaetheory import validate as V
from vaetheory.xp import array_namespace

_BLOCK_ELEMENTS = 1 << 22


def _check(params, z, config):
    if not isinstance(config, ModelConfig):
        raise ValueError(f"config must be a mlpvae.nn.model.ModelConfig, got {type(config).__name__}")
    missing = {k for k in param_shapes(config) if k.startswith("dec_")} - set(params)
    if missing:
        raise ValueError(f"params lacks {sorted(missing)} for this config")
    dtype = params["dec_W0"].dtype
    return V.array("z", z, ("B", "n"), {"n": config.n}, dtype=dtype)


def _chunk(config, chunk):
    if chunk is None:
        return max(1, _BLOCK_ELEMENTS // (config.n * max(config.hidden, config.m)))
    return V.scalar("chunk", chunk, positive=True, integer=True)


def decoder_jacobian(params, z, config: ModelConfig, *, chunk=None):
    """The decoder output and its Jacobian at z, Eq. (8) for the trained MLP (Sec. 7 decoder).

    Forward mode: n Jacobian-vector products, batched so each layer is one
    GEMM.  At ``z = mu`` this is the paper's J of Eq. (8) for the network
    decoder (for the Bernoulli likelihood, the Jacobian of the logits).

    Parameters
    ----------
    params : dict of decoder (and encoder) parameters from :func:`mlpvae.nn.model.init_params`.
    z : (B, n) latent points, the parameters' dtype and array module.
    config : mlpvae.nn.model.ModelConfig.
    chunk : examples per block; tangents are (chunk, n, max(hidden, m))
        (default: about 4M elements).

    Returns
    -------
    out : (B, m) decoder output (logits or mean), equal to :func:`mlpvae.nn.model.decode`'s.
    J : (B, m, n) with ``J[b, j, k] = d out_j / d z_k`` at ``z[b]``.
    """
    z = _check(params, z, config)
    chunk = _chunk(config, chunk)
    xp = array_namespace(z)
    B, n = z.shape
    L, c = config.layers, config.latent_scale
    out = xp.empty((B, config.m), dtype=z.dtype)
    J = xp.empty((B, config.m, n), dtype=z.dtype)
    for s in range(0, B, chunk):
        sl = slice(s, min(B, s + chunk))
        b = sl.stop - sl.start
        h = z[sl] / c if c != 1.0 else z[sl]
        T = None  # tangents (b * n, width); None while they are the unit vectors / c
        for i in range(L):
            W, bias = params[f"dec_W{i}"], params[f"dec_b{i}"]
            a = Ly.dense(h, W, bias)
            # the first layer's tangent is W_0 / c for every example: no GEMM needed
            TW = xp.broadcast_to(W / c, (b, n, W.shape[1])).reshape(b * n, -1) if T is None else T @ W
            if i == L - 1:
                out[sl] = a
                J[sl] = TW.reshape(b, n, -1).transpose(0, 2, 1)
                break
            mask = (a > 0).astype(z.dtype)
            T = (TW.reshape(b, n, -1) * mask[:, None, :]).reshape(b * n, -1)
            h = a * mask
    return out, J


def decoder_vjp(params, z, config: ModelConfig):
    """The decoder output at z and its vector-Jacobian product ``g -> J^T g``, Eq. (8) by reverse mode (Sec. 7 decoder).

    One forward pass keeps the ReLU layers' outputs; ``vjp(g)`` then pulls an
    output gradient ``g (B, m)`` back through them, ``g W_{L-1}^T``, the ReLU
    masks and the hidden weights, to ``(J^T g) (B, n)`` with ``J = d out / d z``
    at each z (Eq. (8)).  This is the gradient of ``sum_j g_j out_j`` in z at
    the cost of about one more forward pass, whatever n is, where
    :func:`decoder_jacobian` costs n tangents: what a sampler that needs only
    the gradient of log p(x|z) uses.

    Parameters
    ----------
    params : dict of decoder parameters (:func:`mlpvae.nn.model.init_params`).
    z : (B, n) latent points, the parameters' dtype and array module.
    config : mlpvae.nn.model.ModelConfig.

    Returns
    -------
    out : (B, m) decoder output (logits or mean), equal to :func:`mlpvae.nn.model.decode`'s.
    vjp : callable ``g (B, m) -> (B, n)``, ``J^T g`` row by row.
    """
    z = _check(params, z, config)
    L, c = config.layers, config.latent_scale
    hs = Ly.trunk_forward(params, "dec", z / c if c != 1.0 else z, L - 1)
    out = Ly.dense(hs[-1], params[f"dec_W{L - 1}"], params[f"dec_b{L - 1}"])

    def vjp(g):
        g = g @ params[f"dec_W{L - 1}"].T
        for i in range(L - 2, -1, -1):
            g = Ly.relu_backward_(g, hs[i + 1]) @ params[f"dec_W{i}"].T
        return g / c if c != 1.0 else g

    return out, vjp


def finite_difference_jacobian(params, z, config: ModelConfig, h: float = 1e-5):
    """Central finite differences of the decoder output, the check on :func:`decoder_jacobian` (Not in the paper).

    ``(out(z + h e_k) - out(z - h e_k)) / 2h`` for each latent direction k,
    with the representable step.  Use float64 parameters: the error is
    O(h^2) truncation plus O(eps / h) cancellation, except where a ReLU
    switches within h of z.

    Returns
    -------
    (B, m, n) Jacobians.
    """
    z = _check(params, z, config)
    xp = array_namespace(z)
    key = "logits" if config.likelihood == "bernoulli" else "mean"
    cols = []
    for k in range(config.n):
        zp, zm = z.copy(), z.copy()
        zp[:, k] += h
        zm[:, k] -= h
        step = (zp[:, k] - zm[:, k])[:, None]
        cols.append((decode(params, zp, config)[key] - decode(params, zm, config)[key]) / step)
    return xp.stack(cols, axis=-1)


def cast_params(params, dtype=np.float64) -> dict:
    """The parameters in another dtype (float64 for the analyses of Secs. 4.1-4.3) (Not in the paper)."""
    return {k: v.astype(dtype) for k, v in params.items()}
