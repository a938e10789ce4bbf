"""The paper's MLP VAE in JAX, as a compiled speed peer of ``vaetheory bench train`` (Sec. 7).

JAX is optional (the ``bench`` extra): ``jax`` is imported inside the
functions.  :func:`loss` is the objective of
:func:`mlpvae.nn.torch_reference.loss` written with ``jax.numpy`` (every
posterior mode and likelihood, any ``latent_scale``): Eq. (1), Eq. (2) with the
floating prior S^2 = Sigma + M_B held constant (``stop_gradient``), Eq. (24),
and the likelihoods of Eqs. (26) and (29)-(30).  :func:`stepper` compiles one
whole training step, ``jax.value_and_grad`` of the loss and an Adam update
(``optax.adam`` when optax is importable, else Algorithm 1 of Kingma & Ba
written out), as one ``jax.jit`` function.
"""

from __future__ import annotations

import math

import numpy as np

LOG_2PI = math.log(2.0 * math.pi)


def loss(p: dict, x, eps, config):
    """-(objective) averaged over the batch, in JAX: Eqs. (1), (2), (24), (26), (29)-(30) (Sec. 7).

    ``p``: dict of ``jax`` arrays with our parameter names and shapes; ``x (B,
    m)``, ``eps (B, n)``.  Returns a 0-d array, nats per example.
    """
    import jax
    import jax.numpy as jnp

    L, c = config.layers, config.latent_scale

    def trunk(prefix, h):
        for i in range(L - 1):
            h = jax.nn.relu(h @ p[f"{prefix}_W{i}"] + p[f"{prefix}_b{i}"])
        return h

    h = trunk("enc", x)
    mu = h @ p[f"enc_W{L - 1}"] + p[f"enc_b{L - 1}"]
    if c != 1.0:
        mu = c * mu
    M = (mu * mu).mean(axis=0)
    if config.posterior == "learned":
        std = jax.nn.softplus(h @ p["enc_std_W"] + p["enc_std_b"])
        if c != 1.0:
            std = c * std
        var = std * std
        kl = 0.5 * (mu * mu + var - 1.0 - jnp.log(var)).sum(axis=1).mean()
        s2 = M + var.mean(axis=0)
    else:
        std = math.sqrt(config.sigma2)
        var = config.sigma2
        s2 = config.sigma2 + M
        if config.posterior == "bilbo":
            kl = 0.5 * jnp.log1p(M / config.sigma2).sum()
        else:
            fixed = jax.lax.stop_gradient(s2)
            r = config.sigma2 / fixed
            kl = (0.5 * (mu * mu / fixed).sum(axis=1)).mean() + 0.5 * (r - 1.0 - jnp.log(r)).sum()
    z = mu + std * eps
    hd = trunk("dec", z / c if c != 1.0 else z)
    out = hd @ p[f"dec_W{L - 1}"] + p[f"dec_b{L - 1}"]
    m = x.shape[1]
    if config.likelihood == "bernoulli":
        rec = (x * out - jax.nn.softplus(out)).sum(axis=1)
    elif config.likelihood == "gaussian-learned":
        t_std = jax.nn.softplus(hd @ p["dec_std_W"] + p["dec_std_b"])
        rec = -0.5 * ((((x - out) / t_std) ** 2 + 2.0 * jnp.log(t_std)).sum(axis=1) + m * LOG_2PI)
    else:
        r = ((x - out) ** 2).sum(axis=1)
        if config.likelihood == "gaussian":
            t, log_t = config.t, math.log(config.t)
        else:
            t = config.tau * r / (s2 / var).sum(axis=-1)
            if config.baggins_stop_gradient:
                t = jax.lax.stop_gradient(t)
            log_t = jnp.log(t)
        rec = -0.5 * (m * (LOG_2PI + log_t) + r / t)
    return kl - rec.mean()


def adam_update(g: dict, state: tuple, lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
    """Adam's update of a dict of gradients (Kingma & Ba, Algorithm 1; Sec. 7), for when optax is absent.

    ``state = (t, m, v)``.  Returns ``(updates, state)``; the parameters move by ``updates``.
    """
    import jax.numpy as jnp

    t, m, v = state
    t = t + 1
    m = {k: b1 * m[k] + (1.0 - b1) * g[k] for k in g}
    v = {k: b2 * v[k] + (1.0 - b2) * g[k] * g[k] for k in g}
    c1, c2 = 1.0 - b1**t, 1.0 - b2**t
    upd = {k: -lr * (m[k] / c1) / (jnp.sqrt(v[k] / c2) + eps) for k in g}
    return upd, (t, m, v)


def stepper(params: dict, x, eps_all, config, lr: float = 1e-3, models: bool = False):
    """A jitted training step in JAX: ``value_and_grad`` and Adam as one compiled function (Sec. 7).

    With ``models``, K models at once: ``params`` stacked on a leading K axis, ``x (K, B, m)``,
    ``eps_all (S, K, B, n)``, and ``jax.vmap`` of ``value_and_grad`` over the models (Adam is
    element-wise, so it acts on the stacked arrays as on K models); the loss returned is the sum
    over the models.  Returns ``(step, sync, note)``: ``step(k)`` runs one step on the noise
    ``eps_all[k % S]`` and returns the step's loss (a device scalar, computed before the update);
    ``sync()`` waits for the work dispatched so far; ``note`` names the versions and the optimiser.
    """
    import jax
    import jax.numpy as jnp

    try:
        import optax
    except ImportError:
        optax = None
    p = {k: jnp.asarray(np.asarray(v)) for k, v in params.items()}
    xj = jnp.asarray(np.asarray(x))
    eps = [jnp.asarray(np.asarray(e)) for e in eps_all]
    if optax is not None:
        opt = optax.adam(lr)
        init, update = opt.init, lambda g, s: opt.update(g, s)
        note = f"jax {jax.__version__}, jit, optax {optax.__version__} adam"
    else:

        def init(q):
            zeros = lambda: {k: jnp.zeros_like(a) for k, a in q.items()}  # noqa: E731
            return jnp.zeros((), jnp.float32), zeros(), zeros()

        update = lambda g, s: adam_update(g, s, lr)  # noqa: E731
        note = f"jax {jax.__version__}, jit, Adam written out (optax not importable)"
    vg = jax.value_and_grad(lambda q, xb, e: loss(q, xb, e, config))
    if models:
        vg = jax.vmap(vg)
        note += f", vmap over {xj.shape[0]} stacked models"
    note += f", {jax.default_backend()}"

    def one(q, s, xb, e):
        value, g = vg(q, xb, e)
        upd, s = update(g, s)
        return {k: q[k] + upd[k] for k in q}, s, value.sum()

    compiled = jax.jit(one, donate_argnums=(0, 1))
    state = [p, init(p)]

    def step(k: int):
        state[0], state[1], value = compiled(state[0], state[1], xj, eps[k % len(eps)])
        return value

    def sync():
        jax.block_until_ready(state[0])

    return step, sync, note
