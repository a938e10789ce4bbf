"""The same MLP VAE in PyTorch eager, as an optional speed and correctness reference (Sec. 7).

PyTorch is never a dependency of vaetheory: ``torch`` is imported inside the
functions, and :func:`available` says whether it can be.  The network, the
objective and the optimiser mirror :mod:`mlpvae.nn.model` and :mod:`mlpvae.nn.adam` for every
posterior mode, every likelihood and any ``latent_scale``:

* ``learned``: Eq. (1), prior N(0, I), std = softplus of a separate head.
* ``constant``: Eq. (2) with Sigma = sigma2 I and the floating prior
  S^2 = Sigma + M_B (Sec. 4.3) detached, i.e. held constant within the step.
* ``bilbo``: Eq. (24), 1/2 sum_k log1p(M_B,k / Sigma) with the gradient through M_B.
* likelihoods: Bernoulli from logits; Gaussian with T = t I; Gaussian with a
  learned softplus std head (Eq. (26)); BAGGINS, T from Eq. (29) on the batch,
  through which autograd differentiates (detached with ``baggins_stop_gradient``).

Parameters are the dict of :func:`mlpvae.nn.model.init_params` (our names, shapes
``(fan_in, fan_out)``), copied into leaf tensors, so both implementations
start from the same network and ``autograd`` gives the gradients that
:func:`mlpvae.nn.model.loss_and_grads` writes by hand.  ``torch.optim.Adam`` with
its defaults is Algorithm 1 of Kingma & Ba, as :class:`mlpvae.nn.adam.Adam`.
"""

from __future__ import annotations

import math

import numpy as np

_LOG_2PI = math.log(2.0 * math.pi)


def available(cuda: bool = False) -> bool:
    """Whether ``torch`` can be imported (and, with ``cuda``, sees a CUDA GPU) (Not in the paper)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available()) if cuda else True


def to_torch(params: dict, dtype=None, device: str = "cpu") -> dict:
    """Our parameter dict (NumPy arrays) as PyTorch leaf tensors that require grad (Not in the paper).

    ``dtype``: a torch dtype; default the arrays' own (float32 or float64).
    """
    import torch

    return {k: torch.tensor(np.asarray(v), dtype=dtype, device=device).requires_grad_(True) for k, v in params.items()}


def loss(tp: dict, x, eps, config):
    """-(objective) averaged over the batch, in PyTorch: Eqs. (1), (2), (24), (26), (29)-(30) (Sec. 7).

    Parameters
    ----------
    tp : dict of torch tensors from :func:`to_torch`.
    x : (B, m) torch tensor of targets.
    eps : (B, n) torch tensor of standard-normal noise; z = mu + sqrt(Sigma) eps.
    config : :class:`mlpvae.nn.model.ModelConfig`.

    Returns
    -------
    loss : 0-d tensor, nats per example, the same quantity as the first
        output of :func:`mlpvae.nn.model.loss_and_grads`.
    """
    import torch
    import torch.nn.functional as F

    L, c = config.layers, config.latent_scale

    def trunk(prefix, h):
        for i in range(L - 1):
            h = torch.relu(torch.addmm(tp[f"{prefix}_b{i}"], h, tp[f"{prefix}_W{i}"]))
        return h

    h = trunk("enc", x)
    mu = torch.addmm(tp[f"enc_b{L - 1}"], h, tp[f"enc_W{L - 1}"])
    if c != 1.0:  # as mlpvae.nn.model does: no extra operation in the timed c = 1 case
        mu = c * mu
    M = (mu * mu).mean(dim=0)
    if config.posterior == "learned":
        std = F.softplus(torch.addmm(tp["enc_std_b"], h, tp["enc_std_W"]))
        if c != 1.0:
            std = c * std
        var = std * std
        # KL(N(mu, var) | N(0, I)) of Eq. (1), per example
        kl = 0.5 * (mu * mu + var - 1.0 - torch.log(var)).sum(dim=1).mean()
        s2 = M + var.mean(dim=0)  # Eq. (4), for BAGGINS' T
    else:
        std = math.sqrt(config.sigma2)
        var = config.sigma2
        s2 = config.sigma2 + M
        if config.posterior == "bilbo":
            kl = 0.5 * torch.log1p(M / config.sigma2).sum()  # Eq. (24)
        else:
            fixed = s2.detach()  # floating prior held constant (Sec. 4.3)
            r = config.sigma2 / fixed
            kl = (0.5 * (mu * mu / fixed).sum(dim=1)).mean() + 0.5 * (r - 1.0 - torch.log(r)).sum()
    z = mu + std * eps
    hd = trunk("dec", z / c if c != 1.0 else z)
    out = torch.addmm(tp[f"dec_b{L - 1}"], hd, tp[f"dec_W{L - 1}"])
    m = x.shape[1]
    if config.likelihood == "bernoulli":
        rec = (x * out - F.softplus(out)).sum(dim=1)  # x l - softplus(l)
    elif config.likelihood == "gaussian-learned":
        t_std = F.softplus(torch.addmm(tp["dec_std_b"], hd, tp["dec_std_W"]))
        rec = -0.5 * ((((x - out) / t_std) ** 2 + 2.0 * torch.log(t_std)).sum(dim=1) + m * _LOG_2PI)
    else:
        r = ((x - out) ** 2).sum(dim=1)
        if config.likelihood == "gaussian":
            t = config.t
            log_t = math.log(t)
        else:  # BAGGINS' T of Eq. (29) on the batch: tau |x - nu|^2 / tr(Sigma^-1 S_B^2)
            t = config.tau * r / (s2 / var).sum(dim=-1)
            if config.baggins_stop_gradient:
                t = t.detach()
            log_t = torch.log(t)
        rec = -0.5 * (m * (_LOG_2PI + log_t) + r / t)
    return kl - rec.mean()


def loss_and_grads(params: dict, x, eps, config):
    """Loss and autograd gradients as NumPy float64, for comparison with
    :func:`mlpvae.nn.model.loss_and_grads` (Sec. 7).

    ``params``, ``x (B, m)``, ``eps (B, n)`` are NumPy arrays; the computation
    is done in float64 whatever their dtype.
    """
    import torch

    tp = to_torch(params, torch.float64)
    value = loss(
        tp, torch.tensor(np.asarray(x), dtype=torch.float64), torch.tensor(np.asarray(eps), dtype=torch.float64), config
    )
    value.backward()
    value = value.detach()
    return value.item(), {k: t.grad.numpy() for k, t in tp.items()}


def stepper(
    params: dict,
    x,
    eps_all,
    config,
    lr: float = 1e-3,
    threads: int | None = None,
    dtype=np.float32,
    device: str = "cpu",
):
    """A closure doing one PyTorch training step (forward, autograd backward, Adam) per call (Sec. 7).

    ``params`` (copied to ``dtype``, float32 for training), ``x (B, m)`` and the
    noise ``eps_all (S, B, n)`` are NumPy arrays; call ``s`` uses
    ``eps_all[s % S]``, like our timed loop.  ``threads``: passed to
    ``torch.set_num_threads`` (the BLAS threads our side uses), so both sides
    get the same cores.  ``device``: ``"cpu"`` or ``"cuda"``.  The closure's
    ``params`` attribute is the dict of torch tensors it updates.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(int(threads))
    tdtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]
    tp = to_torch(params, tdtype, device)
    opt = torch.optim.Adam(list(tp.values()), lr=lr)
    xt = torch.tensor(np.asarray(x), dtype=tdtype, device=device)
    et = torch.tensor(np.asarray(eps_all), dtype=tdtype, device=device)
    count = [0]

    def step():
        opt.zero_grad(set_to_none=True)
        value = loss(tp, xt, et[count[0] % len(et)], config)
        value.backward()
        opt.step()
        count[0] += 1

    step.params = tp
    return step
