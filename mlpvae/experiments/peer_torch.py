"""PyTorch speed peers of ``vaetheory bench train``: eager, fused Adam, torch.compile, one graph (Sec. 7).

PyTorch is optional (the ``bench`` and ``torch`` extras): ``torch`` is
imported inside the functions.  Every peer trains the network of
:func:`mlpvae.nn.torch_reference.loss` (the same objective as
:func:`mlpvae.nn.model.loss_and_grads`) from our parameters, data and noise,
with Adam at our hyperparameters:

* ``eager``: autograd and ``torch.optim.Adam`` (``fused=True`` for the fused
  CPU kernel of the optimiser);
* ``compile``: ``torch.compile`` of the whole step as a user writes it
  (zero_grad, loss, backward, ``opt.step()``; Dynamo splits it where it must);
* ``graph``: one graph: ``torch.func.grad_and_value`` of the functional loss and
  a functional Adam (Algorithm 1 of Kingma & Ba), compiled together with
  ``fullgraph=True``.

Each builder returns ``(step, sync, note)``: ``step(k)`` runs one step on the
noise ``eps_all[k % S]`` and returns that step's loss (computed before the
update, as a tensor); ``sync()`` is a no-op on the CPU.
"""

from __future__ import annotations

import numpy as np

from mlpvae.nn import torch_reference


def _inputs(params, x, eps_all, threads):
    import torch

    if threads is not None:
        torch.set_num_threads(int(threads))
    tp = torch_reference.to_torch(params, torch.float32)
    xt = torch.tensor(np.asarray(x), dtype=torch.float32)
    et = [torch.tensor(np.asarray(e), dtype=torch.float32) for e in eps_all]
    return torch, tp, xt, et


def eager(params, x, eps_all, config, threads=None, fused: bool = False, lr: float = 1e-3):
    """PyTorch eager: autograd and ``torch.optim.Adam`` (``fused`` selects its fused kernel) (Sec. 7)."""
    torch, tp, xt, et = _inputs(params, x, eps_all, threads)
    opt = torch.optim.Adam(list(tp.values()), lr=lr, fused=fused or None)

    def step(k: int):
        opt.zero_grad(set_to_none=True)
        value = torch_reference.loss(tp, xt, et[k % len(et)], config)
        value.backward()
        opt.step()
        return value.detach()

    note = f"torch {torch.__version__}, eager, torch.optim.Adam{'(fused=True)' if fused else ''}"
    return step, lambda: None, note


def compiled(params, x, eps_all, config, threads=None, lr: float = 1e-3):
    """``torch.compile`` of the whole eager step, as a user writes it (Sec. 7)."""
    torch, tp, xt, et = _inputs(params, x, eps_all, threads)
    opt = torch.optim.Adam(list(tp.values()), lr=lr)

    def one(e):
        opt.zero_grad(set_to_none=True)
        value = torch_reference.loss(tp, xt, e, config)
        value.backward()
        opt.step()
        return value.detach()

    fn = torch.compile(one)

    def step(k: int):
        return fn(et[k % len(et)])

    return step, lambda: None, f"torch {torch.__version__}, torch.compile of the step (loss, backward, Adam)"


def single_graph(params, x, eps_all, config, threads=None, lr: float = 1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """One compiled graph: ``torch.func`` gradients and a functional Adam, ``fullgraph=True`` (Sec. 7)."""
    torch, tp, xt, et = _inputs(params, x, eps_all, threads)
    p = {k: v.detach().clone() for k, v in tp.items()}
    state = {"p": p, "m": {k: torch.zeros_like(v) for k, v in p.items()}}
    state["v"] = {k: torch.zeros_like(v) for k, v in p.items()}
    state["t"] = torch.zeros((), dtype=torch.float32)

    def grad_value(q, e):
        return torch_reference.loss(q, xt, e, config)

    gv = torch.func.grad_and_value(grad_value)

    def one(q, m, v, t, e):
        g, value = gv(q, e)
        t = t + 1.0
        c1, c2 = 1.0 - b1**t, 1.0 - b2**t
        m = {k: b1 * m[k] + (1.0 - b1) * g[k] for k in q}
        v = {k: b2 * v[k] + (1.0 - b2) * g[k] * g[k] for k in q}
        q = {k: q[k] - lr * (m[k] / c1) / (torch.sqrt(v[k] / c2) + eps) for k in q}
        return q, m, v, t, value

    fn = torch.compile(one, fullgraph=True)

    def step(k: int):
        s = state
        s["p"], s["m"], s["v"], s["t"], value = fn(s["p"], s["m"], s["v"], s["t"], et[k % len(et)])
        return value

    note = f"torch {torch.__version__}, torch.func.grad_and_value + functional Adam, one torch.compile graph"
    return step, lambda: None, note
