"""Adam (Kingma & Ba 2014, Algorithm 1), updating parameter arrays in place (Sec. 7).

The paper trains with Adam, learning rate 1e-3 (Sec. 7).  This is Algorithm 1
of the Adam paper exactly, bias corrections included:

    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) g^2
    p <- p - lr (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

It runs on NumPy or CuPy arrays with one scratch buffer per parameter, so a
step allocates nothing.
"""

from __future__ import annotations

import numpy as np

from mlpvae.accel import cpu, fused
from vaetheory import validate as V
from vaetheory.xp import array_namespace


class Adam:
    """Adam optimiser over a dict of arrays (Sec. 7; Algorithm 1 of Kingma & Ba).

    Parameters
    ----------
    params : dict name -> array; its keys, shapes and dtypes fix the state.
    lr, beta1, beta2, eps : the usual hyperparameters (paper: lr = 1e-3).
        ``lr`` may be a sequence of K rates for a stack of K models
        (``(K, ...)`` arrays): model k's update is then the lone model's with
        rate ``lr[k]``, bit for bit on NumPy.
    """

    def __init__(self, params: dict, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.lrs = None  # per model, for a stack whose models differ in the rate
        if isinstance(lr, (list, tuple)):
            self.lrs = tuple(V.scalar("lr", v, positive=True) for v in lr)
            lr = self.lrs[0]
        self.lr = V.scalar("lr", lr, positive=True)
        self.beta1 = V.scalar("beta1", beta1, nonnegative=True)
        self.beta2 = V.scalar("beta2", beta2, nonnegative=True)
        if not (self.beta1 < 1 and self.beta2 < 1):
            raise ValueError(f"beta1 and beta2 must be < 1, got {beta1!r}, {beta2!r}")
        self.eps = V.scalar("eps", eps, positive=True)
        if not params:
            raise ValueError("params must be a non-empty dict of arrays")
        xp = array_namespace(*params.values())
        self.t = 0
        self.m = {k: xp.zeros_like(p) for k, p in params.items()}
        self.v = {k: xp.zeros_like(p) for k, p in params.items()}
        self._buf = {k: xp.empty_like(p) for k, p in params.items()}
        self._t_dev = None  # the step count on the device (fused CuPy path only)
        self._lr_dev = None  # the rates on the device (fused CuPy path, per-model rates only)
        if self.lrs is not None and any(p.ndim < 1 or p.shape[0] != len(self.lrs) for p in params.values()):
            raise ValueError(f"{len(self.lrs)} learning rates need arrays of {len(self.lrs)} stacked models")

    def step(self, params: dict, grads: dict) -> None:
        """One Adam update of ``params`` in place from ``grads`` (same keys and shapes)."""
        if set(grads) != set(self.m) or set(params) != set(self.m):
            raise ValueError(f"params and grads must have the keys {sorted(self.m)}")
        xp = array_namespace(*params.values())
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        if fused.enabled(xp):
            self._fused_step(xp, params, grads)
            return
        c1 = 1.0 - b1**self.t
        c2 = 1.0 - b2**self.t
        one_pass = cpu.enabled(xp)
        lr_c1 = self.lr / c1
        if self.lrs is not None:  # each model's lr / c1 in float64, then rounded as the lone model's float
            lr_c1 = np.array([lr / c1 for lr in self.lrs])
        for k, p in params.items():
            if one_pass and all(a.flags.c_contiguous for a in (p, grads[k], self.m[k], self.v[k])):
                for j, rate in enumerate([lr_c1] if self.lrs is None else lr_c1.tolist()):
                    at = slice(None) if self.lrs is None else j  # a model's slice of a C-contiguous stack is one
                    cpu.adam_(p[at], grads[k][at], self.m[k][at], self.v[k][at], b1, b2, self.eps, rate, c2)
                continue
            g, m, v, buf = grads[k], self.m[k], self.v[k], self._buf[k]
            m *= b1
            xp.multiply(g, 1.0 - b1, out=buf)
            m += buf
            v *= b2
            xp.multiply(g, g, out=buf)
            buf *= 1.0 - b2
            v += buf
            xp.divide(v, c2, out=buf)
            xp.sqrt(buf, out=buf)
            buf += self.eps
            xp.divide(m, buf, out=buf)
            if self.lrs is None:
                buf *= lr_c1
            else:
                buf *= xp.asarray(lr_c1.astype(p.dtype).reshape((-1,) + (1,) * (p.ndim - 1)))
            p -= buf

    def _fused_step(self, xp, params: dict, grads: dict) -> None:
        """The same update, one kernel per tensor, step count and bias corrections kept on the device.

        Nothing here reads the host's ``t``, so a CUDA graph that captured one
        step replays every later one correctly (:mod:`mlpvae.training.train`); the caller
        of a replay advances ``t`` on the host.
        """
        if self._t_dev is None:
            self._t_dev = xp.asarray(float(self.t - 1))
        self._t_dev += 1.0
        dtype = next(iter(params.values())).dtype
        lr = self.lr
        if self.lrs is not None:
            if self._lr_dev is None:
                self._lr_dev = xp.asarray(np.array(self.lrs))
            lr = self._lr_dev
        # float64 on the device as on the host path, then the update's dtype
        lr_c1 = (lr / (1.0 - self.beta1**self._t_dev)).astype(dtype)
        c2 = (1.0 - self.beta2**self._t_dev).astype(dtype)
        for k, p in params.items():
            rate = lr_c1 if self.lrs is None else lr_c1.reshape((-1,) + (1,) * (p.ndim - 1))
            fused.adam_(p, grads[k], self.m[k], self.v[k], self.beta1, self.beta2, self.eps, rate, c2)

    def state_dict(self) -> dict:
        """``{"step": int, "m.<name>": array, "v.<name>": array}`` (copies; hyperparameters are config)."""
        d: dict = {"step": int(self.t)}
        for k in self.m:
            d[f"m.{k}"] = self.m[k].copy()
            d[f"v.{k}"] = self.v[k].copy()
        return d

    def load_state_dict(self, d: dict) -> None:
        """Restore from :meth:`state_dict` output (arrays may come back as NumPy; copied into place)."""
        want = {"step"} | {f"{s}.{k}" for k in self.m for s in "mv"}
        if set(d) != want:
            raise ValueError(
                f"state dict keys do not match this optimiser: missing {sorted(want - set(d))}, "
                f"unexpected {sorted(set(d) - want)}"
            )
        xp = array_namespace(*self.m.values())
        for k in self.m:
            for s, store in (("m", self.m), ("v", self.v)):
                a = d[f"{s}.{k}"]
                if tuple(a.shape) != tuple(store[k].shape):
                    raise ValueError(f"{s}.{k} must have shape {tuple(store[k].shape)}, got {tuple(a.shape)}")
                store[k][...] = xp.asarray(a, dtype=store[k].dtype)
        self.t = V.scalar("step", np.asarray(d["step"]).item(), nonnegative=True, integer=True)
        self._t_dev = None
