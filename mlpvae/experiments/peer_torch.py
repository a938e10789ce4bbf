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
  ``fullgraph=True``;
* ``ensemble``: K models at once, torch.func's ensembling recipe: the K models'
  parameters stacked on a leading axis (what ``torch.func.stack_module_state``
  does for modules; our network is already a dict of tensors), ``torch.vmap`` of
  ``grad_and_value`` over the models, their data and noise, and the functional
  Adam on the stacked tensors, compiled as one graph.

``compiled`` takes a ``mode`` (``"reduce-overhead"``: CUDA graphs on a GPU).
Every builder takes ``device`` (``"cpu"`` or ``"cuda"``) and returns ``(step,
sync, note)``: ``step(k)`` runs one step on the noise ``eps_all[k % S]`` and
returns that step's loss (computed before the update, as a tensor; for an
ensemble the sum over its models); ``sync()`` waits for the device.
"""

from __future__ import annotations

import numpy as np

from mlpvae.nn import torch_reference


def _inputs(params, x, eps_all, threads, device="cpu"):
    import torch

    if threads is not None:
        torch.set_num_threads(int(threads))
    tp = torch_reference.to_torch(params, torch.float32, device)
    xt = torch.tensor(np.asarray(x), dtype=torch.float32, device=device)
    et = [torch.tensor(np.asarray(e), dtype=torch.float32, device=device) for e in eps_all]
    return torch, tp, xt, et


def _sync(torch, device):
    return torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)


def _adam(b1, b2, lr, eps):
    """Adam (Kingma & Ba, Algorithm 1) on dicts of tensors, functional: ``(q, m, v, t, g) -> (q, m, v, t)``."""
    import torch

    def update(q, m, v, t, g):
        t = t + 1.0
        c1, c2 = 1.0 - b1**t, 1.0 - b2**t
        m = {k: b1 * m[k] + (1.0 - b1) * g[k] for k in q}
        v = {k: b2 * v[k] + (1.0 - b2) * g[k] * g[k] for k in q}
        q = {k: q[k] - lr * (m[k] / c1) / (torch.sqrt(v[k] / c2) + eps) for k in q}
        return q, m, v, t

    return update


def _state(torch, tp):
    p = {k: v.detach().clone() for k, v in tp.items()}
    zeros = lambda: {k: torch.zeros_like(v) for k, v in p.items()}  # noqa: E731
    return {
        "p": p,
        "m": zeros(),
        "v": zeros(),
        "t": torch.zeros((), dtype=torch.float32, device=next(iter(p.values())).device),
    }


def eager(params, x, eps_all, config, threads=None, fused: bool = False, lr: float = 1e-3, device="cpu"):
    """PyTorch eager: autograd and ``torch.optim.Adam`` (``fused`` selects its fused kernel) (Sec. 7)."""
    torch, tp, xt, et = _inputs(params, x, eps_all, threads, device)
    opt = torch.optim.Adam(list(tp.values()), lr=lr, fused=fused or None)

    def step(k: int):
        opt.zero_grad(set_to_none=True)
        value = torch_reference.loss(tp, xt, et[k % len(et)], config)
        value.backward()
        opt.step()
        return value.detach()

    note = f"torch {torch.__version__}, eager, torch.optim.Adam{'(fused=True)' if fused else ''}, {device}"
    return step, _sync(torch, device), note


def compiled(params, x, eps_all, config, threads=None, lr: float = 1e-3, device="cpu", mode=None):
    """``torch.compile`` of the whole eager step, as a user writes it; ``mode`` as torch.compile's (Sec. 7)."""
    torch, tp, xt, et = _inputs(params, x, eps_all, threads, device)
    opt = torch.optim.Adam(list(tp.values()), lr=lr)

    def one(e):
        opt.zero_grad(set_to_none=True)
        value = torch_reference.loss(tp, xt, e, config)
        value.backward()
        opt.step()
        return value.detach()

    fn = torch.compile(one, mode=mode)

    def step(k: int):
        if mode != "reduce-overhead":
            return fn(et[k % len(et)])
        torch.compiler.cudagraph_mark_step_begin()  # a CUDA graph's outputs are overwritten by its next replay
        return fn(et[k % len(et)]).clone()

    note = f"torch {torch.__version__}, torch.compile(mode={mode!r}) of the step (loss, backward, Adam), {device}"
    return step, _sync(torch, device), note


def single_graph(params, x, eps_all, config, threads=None, lr: float = 1e-3, b1=0.9, b2=0.999, eps=1e-8, device="cpu"):
    """One compiled graph: ``torch.func`` gradients and a functional Adam, ``fullgraph=True`` (Sec. 7)."""
    torch, tp, xt, et = _inputs(params, x, eps_all, threads, device)
    state = _state(torch, tp)
    gv = torch.func.grad_and_value(lambda q, e: torch_reference.loss(q, xt, e, config))
    adam = _adam(b1, b2, lr, eps)

    def one(q, m, v, t, e):
        g, value = gv(q, e)
        return (*adam(q, m, v, t, g), value)

    fn = torch.compile(one, fullgraph=True)

    def step(k: int):
        s = state
        s["p"], s["m"], s["v"], s["t"], value = fn(s["p"], s["m"], s["v"], s["t"], et[k % len(et)])
        return value

    note = f"torch {torch.__version__}, torch.func.grad_and_value + functional Adam, one torch.compile graph, {device}"
    return step, _sync(torch, device), note


def ensemble(params, x, eps_all, config, threads=None, lr: float = 1e-3, b1=0.9, b2=0.999, eps=1e-8, device="cpu"):
    """K models in one compiled graph: ``torch.vmap`` of ``grad_and_value`` over stacked parameters (Sec. 7).

    ``params``: a stacked dict (every array with a leading K axis), ``x (K, B, m)``,
    ``eps_all (S, K, B, n)``: each model its own data and noise.
    """
    torch, tp, xt, et = _inputs(params, x, eps_all, threads, device)
    state = _state(torch, tp)
    gv = torch.vmap(torch.func.grad_and_value(lambda q, xb, e: torch_reference.loss(q, xb, e, config)))
    adam = _adam(b1, b2, lr, eps)

    def one(q, m, v, t, e):
        g, value = gv(q, xt, e)
        return (*adam(q, m, v, t, g), value.sum())

    fn = torch.compile(one, fullgraph=True)

    def step(k: int):
        s = state
        s["p"], s["m"], s["v"], s["t"], value = fn(s["p"], s["m"], s["v"], s["t"], et[k % len(et)])
        return value

    K = int(xt.shape[0])
    note = f"torch {torch.__version__}, vmap over {K} stacked models of grad_and_value + functional Adam"
    note += f", one torch.compile graph, {device}"
    return step, _sync(torch, device), note
