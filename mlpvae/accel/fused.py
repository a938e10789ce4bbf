"""Fused element-wise CUDA kernels for the chains between the matrix multiplies (Sec. 7 model, CuPy only).

On a GPU a chain of element-wise NumPy-style operations costs one kernel
launch and one pass over memory per operation; at the paper's batch of 300 the
launches, not the arithmetic, dominate.  Each kernel here does one chain in
one launch, with the same operations in the same order as the NumPy code it
replaces (the reference, which the CPU runs and the GPU tests compare with):

* :func:`relu_backward_`: ``g *= h > 0`` (:func:`mlpvae.nn.layers.relu_backward_`);
* :func:`bernoulli`: log-likelihood terms and their gradient from logits
  (:func:`mlpvae.nn.likelihoods.bernoulli`), softplus computed once for both;
* :func:`reparameterize`: ``std = c softplus(s_raw)``, ``z = eps std + mu``
  (the learned posterior of :func:`mlpvae.nn.model._forward`);
* :func:`adam_`: the whole Adam update of one tensor (:class:`mlpvae.nn.adam.Adam`),
  with the bias corrections read from device scalars so that a captured CUDA
  graph stays correct as the step count grows.

``VAETHEORY_FUSED=0`` in the environment turns them off (the plain CuPy
operations run instead), e.g. to compare the two on a GPU.
"""

from __future__ import annotations

from vaetheory.xp import fused_enabled

_KERNELS: dict = {}

# softplus(a) = log1p(exp(-|a|)) + max(a, 0), the order of mlpvae.nn.layers.softplus
_SOFTPLUS = "(log1p(exp(-fabs(a))) + fmax(a, (T)0))"


def enabled(xp) -> bool:
    """Whether the fused kernels serve ``xp``: CuPy, unless ``VAETHEORY_FUSED=0`` (Not in the paper)."""
    return fused_enabled(xp)


def _kernel(name: str):
    if name not in _KERNELS:
        import cupy as cp

        spec = {
            "relu_grad": ("T h", "T g", "g = g * (T)(h > (T)0)"),
            "bernoulli": (
                "T l, T x, T s",
                "T t, T d",
                f"T a = l; T sp = {_SOFTPLUS}; t = x * l - sp; d = (exp(l - sp) - x) * s",
            ),
            "bernoulli_value": ("T l, T x", "T t", f"T a = l; t = x * l - {_SOFTPLUS}"),
            "reparameterize": (
                "T s_raw, T eps, T mu, T c",
                "T sd, T z",
                f"T a = s_raw; sd = {_SOFTPLUS} * c; z = eps * sd + mu",
            ),
            "adam": (
                "T g, T b1, T omb1, T b2, T omb2, T eps, T lr_c1, T c2",
                "T p, T m, T v",
                "m = m * b1 + g * omb1; v = v * b2 + (g * g) * omb2; p -= (m / (sqrt(v / c2) + eps)) * lr_c1",
            ),
        }[name]
        _KERNELS[name] = cp.ElementwiseKernel(*spec, name=f"vaetheory_{name}")
    return _KERNELS[name]


def relu_backward_(g, h):
    """``g *= (h > 0)`` in one launch (backward of ReLU given its output ``h``); returns ``g``."""
    _kernel("relu_grad")(h, g)
    return g


def bernoulli(logits, x, scale=None):
    """Bernoulli log-likelihood per example and its gradient w.r.t. the logits (Sec. 7), one launch.

    Same contract as :func:`mlpvae.nn.likelihoods.bernoulli`: ``(logp (..., B), d or None)``
    where ``d`` is the gradient of ``scale * sum log p``.
    """
    if scale is None:
        t = _kernel("bernoulli_value")(logits, x)
        return t.sum(axis=-1), None
    t, d = _kernel("bernoulli")(logits, x, logits.dtype.type(-scale))
    return t.sum(axis=-1), d


def reparameterize(s_raw, eps, mu, c: float):
    """``std = c softplus(s_raw)`` and ``z = eps std + mu`` in one launch (Eq. (1)'s sample); returns ``(std, z)``."""
    return _kernel("reparameterize")(s_raw, eps, mu, s_raw.dtype.type(c))


def adam_(p, g, m, v, b1: float, b2: float, eps: float, lr_c1, c2) -> None:
    """One Adam update of ``p``, ``m``, ``v`` in place (Kingma & Ba, Algorithm 1; Sec. 7), one launch.

    ``lr_c1 = lr / (1 - beta1^t)`` and ``c2 = 1 - beta2^t`` are 0-d device
    arrays of ``p``'s dtype (or Python floats).
    """
    T = p.dtype.type
    _kernel("adam")(g, T(b1), T(1.0 - b1), T(b2), T(1.0 - b2), T(eps), lr_c1, c2, p, m, v)
