"""The paper's MLP VAE (Sec. 7): forward pass, objective and hand-written backward pass.

One source for NumPy and CuPy: the array module is read from the inputs.
Longer than 400 lines because the forward pass, the objective and the hand-written
backward pass read as one: each backward step mirrors a forward step of this module,
and apart they would separate a derivative from what it differentiates.

Architecture (Sec. 7): encoder and decoder of ``layers`` dense layers each,
``hidden`` units, ReLU in the middle layers (784-200-200-200-n and
n-200-200-200-784 by default).  A learned variance adds a separate output
layer from the last hidden layer with a softplus, read as standard deviations
(posterior std for ``posterior="learned"``, likelihood std for
``likelihood="gaussian-learned"``).  ``latent_scale`` c multiplies the encoder
outputs (mean and learned std) and divides the decoder input (Fig. 8).

Parameters are a flat dict of arrays: ``enc_W{i}, enc_b{i}`` and ``dec_W{i},
dec_b{i}`` for i < layers (the last is the mean/logit head), plus
``enc_std_W, enc_std_b`` and ``dec_std_W, dec_std_b`` for the learned heads.

Objective per posterior mode (all averaged over the batch, nats per example):

* ``learned``: Eq. (1), single-sample ELBO with prior N(0, I).
* ``constant``: Eq. (2) with Sigma = sigma2 I and the floating prior
  S^2 = Sigma + M_B (Sec. 4.3) held constant within the step.
* ``bilbo``: Eq. (24), gradient through M_B.

Likelihoods: ``bernoulli`` (logits), ``gaussian`` (T = t I),
``gaussian-learned`` (softplus std head), ``baggins`` (T from Eq. (29) with
S_B^2 from Eq. (4) on the batch, gradient through T unless
``baggins_stop_gradient``; with ``bilbo`` this is Eq. (30)).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import numpy as np

from mlpvae.accel import cpu, fused
from mlpvae.nn import layers as Ly
from mlpvae.nn import likelihoods as Lk
from mlpvae.nn import scalars as S
from vaetheory import objectives as O
from vaetheory import validate as V
from vaetheory.xp import array_namespace

POSTERIORS = ("learned", "constant", "bilbo")
LIKELIHOODS = ("bernoulli", "gaussian", "gaussian-learned", "baggins")


@dataclass(frozen=True)
class ModelConfig:
    """The model's settings (Sec. 7; defaults are the paper's 2-D MNIST model).

    ``m`` data dimension, ``n`` latent dimension, ``hidden`` units per hidden
    layer, ``layers`` dense layers per network (>= 1), ``posterior`` and
    ``likelihood`` as in the module docstring, ``sigma2`` the constant
    posterior variance Sigma = sigma2 I (``constant``/``bilbo``), ``t`` the
    constant likelihood variance (``gaussian``), ``tau`` BAGGINS' information
    factor (Eq. (29)), ``baggins_stop_gradient`` hold T fixed in the gradient,
    ``latent_scale`` the fixed scaling c of Fig. 8.
    """

    m: int = 784
    n: int = 2
    hidden: int = 200
    layers: int = 4
    posterior: str = "learned"
    likelihood: str = "bernoulli"
    sigma2: float = 1.0
    t: float = 1.0
    tau: float = 0.2
    baggins_stop_gradient: bool = False
    latent_scale: float = 1.0

    def __post_init__(self):
        for name in ("m", "n", "hidden", "layers"):
            v = V.scalar(name, getattr(self, name), positive=True, integer=True)
            object.__setattr__(self, name, v)
        for name in ("sigma2", "t", "tau", "latent_scale"):
            object.__setattr__(self, name, V.scalar(name, getattr(self, name), positive=True))
        V.choice("posterior", self.posterior, POSTERIORS)
        V.choice("likelihood", self.likelihood, LIKELIHOODS)
        if not isinstance(self.baggins_stop_gradient, (bool, np.bool_)):
            raise ValueError(f"baggins_stop_gradient must be a bool, got {self.baggins_stop_gradient!r}")


STACKABLE = ("sigma2", "t", "tau", "latent_scale")  # the model settings a stack's models may differ in


@dataclass(frozen=True)
class StackConfig(ModelConfig):
    """K models of one shape and code path that differ in scalar settings (Sec. 7 training).

    The fields hold model 0's settings; ``varied`` is ``((name, (v_0, ...,
    v_{K-1})), ...)`` for the settings of :data:`STACKABLE` that the models
    differ in, read by :mod:`mlpvae.nn.scalars`.  With BAGGINS and a constant
    Sigma, ``sigma2`` enters T per example and the models must agree in it.
    """

    varied: tuple = ()

    def __post_init__(self):
        super().__post_init__()
        sizes = set()
        for name, values in self.varied:
            if name not in STACKABLE:
                raise ValueError(f"a stack's models may differ in {', '.join(STACKABLE)} only, not {name!r}")
            for v in values:
                V.scalar(name, v, positive=True)
            sizes.add(len(values))
        if len(sizes) > 1:
            raise ValueError(f"varied settings must give one value per model, got {sorted(sizes)} values")
        if S.varies(self, "sigma2") and self.likelihood == "baggins" and self.posterior != "learned":
            raise ValueError("sigma2 differs: BAGGINS with a constant Sigma cannot stack models of different sigma2")

    def model(self, k: int) -> ModelConfig:
        """Model ``k``'s own :class:`ModelConfig` (Sec. 7)."""
        own = {f: getattr(self, f) for f in ModelConfig.__dataclass_fields__}
        return ModelConfig(**{**own, **{name: values[k] for name, values in self.varied}})


def _dims(config: ModelConfig, out: int, inp: int):
    return [inp] + [config.hidden] * (config.layers - 1) + [out]


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter, in initialisation order (Sec. 7 architecture)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for prefix, inp, out, learned in (
        ("enc", config.m, config.n, config.posterior == "learned"),
        ("dec", config.n, config.m, config.likelihood == "gaussian-learned"),
    ):
        d = _dims(config, out, inp)
        for i in range(config.layers):
            shapes[f"{prefix}_W{i}"] = (d[i], d[i + 1])
            shapes[f"{prefix}_b{i}"] = (d[i + 1],)
        if learned:
            shapes[f"{prefix}_std_W"] = (d[-2], out)
            shapes[f"{prefix}_std_b"] = (out,)
    return shapes


def init_params(config: ModelConfig, rng: np.random.Generator, xp=np, dtype=np.float32) -> dict:
    """Initial parameters (Sec. 7 architecture; the initialisation is Not in the paper).

    Weights are Glorot-uniform (TensorFlow's default for the dense layers the
    paper used), biases zero, drawn in float64 from ``rng`` in the order of
    :func:`param_shapes` and then cast, so one seed gives the same network in
    float32 and float64 and on either device.  With zero biases the learned
    std heads start near softplus(0) = 0.69 (times ``latent_scale`` for the
    posterior).
    """
    V.rng("rng", rng)
    params = {}
    for name, shape in param_shapes(config).items():
        if len(shape) == 2:
            a = Ly.glorot_uniform(rng, *shape)
        else:
            a = np.zeros(shape)
        params[name] = xp.asarray(a.astype(dtype))
    return params


# ---------------------------------------------------------------------------
# forward pieces
# ---------------------------------------------------------------------------
def _check(params, x, config: ModelConfig, eps=None, z=None):
    if not isinstance(config, ModelConfig):
        raise ValueError(f"config must be a mlpvae.nn.model.ModelConfig, got {type(config).__name__}")
    missing = set(param_shapes(config)) - set(params)
    if missing:
        raise ValueError(f"params lacks {sorted(missing)} for this config")
    W0 = params["enc_W0"]
    dtype = W0.dtype
    K = tuple(W0.shape[:1]) if W0.ndim == 3 else ()  # a stack of K models (mlpvae.training.train.train_many)
    lead = ("K",) * len(K)
    dims = {"m": config.m, "n": config.n, **({"K": K[0]} if K else {})}
    for name, shape in param_shapes(config).items():
        p = params[name]
        if tuple(p.shape) != K + shape or p.dtype != dtype:
            raise ValueError(
                f"params[{name!r}] must have shape {K + shape} and dtype {dtype}, got {tuple(p.shape)} {p.dtype}"
            )
    if x is not None:
        x = V.array("x", x, lead + ("B", "m"), dims, finite=False)
        if x.dtype != dtype:
            raise ValueError(f"x must have the parameters' dtype {dtype}, got {x.dtype}")
    if eps is not None:
        eps = V.array("eps", eps, lead + ("B", "n"), dims, finite=False, dtype=dtype)
    if z is not None:
        z = V.array("z", z, lead + ("B", "n"), dims, finite=False, dtype=dtype)
    return x, eps, z


def _encode(params, x, config: ModelConfig, want_std: bool = True):
    """Encoder: hidden activations, mu (B, n), std raw pre-activation and std (learned) or sqrt(sigma2).

    ``want_std=False`` leaves a learned std to the caller (``None``).
    """
    xp = array_namespace(x)
    L, c = config.layers, S.value(config, "latent_scale", xp, x.dtype, x.ndim)
    hs = Ly.trunk_forward(params, "enc", x, L - 1)
    mu = Ly.dense(hs[-1], params[f"enc_W{L - 1}"], params[f"enc_b{L - 1}"])
    if not S.is_one(c):
        mu *= c
    if config.posterior == "learned":
        s_raw = Ly.dense(hs[-1], params["enc_std_W"], params["enc_std_b"])
        if not want_std:
            return hs, mu, s_raw, None
        std = Ly.softplus(s_raw)
        if not S.is_one(c):
            std *= c
        return hs, mu, s_raw, std
    return hs, mu, None, S.value(config, "sigma2", xp, x.dtype, x.ndim, math.sqrt)


def _decode(params, z, config: ModelConfig):
    """Decoder: hidden activations, output (logits or mean) and learned-T std raw pre-activation."""
    L, c = config.layers, S.value(config, "latent_scale", array_namespace(z), z.dtype, z.ndim)
    h0 = z / c if not S.is_one(c) else z
    hs = Ly.trunk_forward(params, "dec", h0, L - 1)
    out = Ly.dense(hs[-1], params[f"dec_W{L - 1}"], params[f"dec_b{L - 1}"])
    t_raw = None
    if config.likelihood == "gaussian-learned":
        t_raw = Ly.dense(hs[-1], params["dec_std_W"], params["dec_std_b"])
    return hs, out, t_raw


def _forward(params, x, eps, config: ModelConfig):
    """Encoder, reparameterised sample z = mu + sqrt(Sigma) eps, decoder; everything the backward needs."""
    xp = array_namespace(x)
    # the fused kernel takes one latent scale for the whole stack
    one_launch = config.posterior == "learned" and fused.enabled(xp) and not S.varies(config, "latent_scale")
    ehs, mu, s_raw, std = _encode(params, x, config, want_std=not one_launch)
    if one_launch:
        std, z = fused.reparameterize(s_raw, eps, mu, config.latent_scale)
    else:
        z = eps * std
        z += mu
    var = std * std if config.posterior == "learned" else S.value(config, "sigma2", xp, x.dtype, x.ndim)
    dhs, out, t_raw = _decode(params, z, config)
    return ehs, mu, s_raw, std, var, dhs, out, t_raw


def encode(params, x, config: ModelConfig):
    """Posterior q(z|x) = N(mu, diag(var)) (Eqs. (1)-(2); Sec. 7 encoder).

    Returns ``mu (B, n)`` and ``var (B, n)``: the learned softplus std squared,
    or ``sigma2`` broadcast for the constant-variance modes.
    """
    x, _, _ = _check(params, x, config)
    xp = array_namespace(x)
    with np.errstate(all="ignore"):
        _, mu, _, std = _encode(params, x, config)
    if config.posterior == "learned":
        return mu, std * std
    return mu, xp.full(mu.shape, config.sigma2, dtype=mu.dtype)


def decode(params, z, config: ModelConfig) -> dict:
    """Decoder nu(z) of Sec. 3's map notation (Sec. 7 decoder).

    Returns ``{"logits": (B, m)}`` (Bernoulli) or ``{"mean": (B, m)}``, plus
    ``{"var": (B, m)}`` (softplus std squared) for ``gaussian-learned``.
    """
    _, _, z = _check(params, None, config, z=z)
    with np.errstate(all="ignore"):
        _, out, t_raw = _decode(params, z, config)
    if config.likelihood == "bernoulli":
        return {"logits": out}
    dec = {"mean": out}
    if t_raw is not None:
        std = Ly.softplus(t_raw)
        dec["var"] = std * std
    return dec


def log_likelihood(dec: dict, x, config: ModelConfig, T=None):
    """log p(x|z) per example in nats, summed over the m outputs (Sec. 7 likelihoods; Eq. (26)).

    ``dec`` from :func:`decode`.  ``T`` is required for ``baggins``: the
    per-example isotropic variance ``(B,)`` of Eq. (29)
    (:func:`vaetheory.objectives.baggins_T`); for ``gaussian`` it defaults to
    ``config.t``.
    """
    if not isinstance(config, ModelConfig):
        raise ValueError(f"config must be a mlpvae.nn.model.ModelConfig, got {type(config).__name__}")
    key = "logits" if config.likelihood == "bernoulli" else "mean"
    if key not in dec:
        raise ValueError(f"dec must hold {key!r} for likelihood {config.likelihood!r}")
    dims = {"m": config.m}
    out = V.array(f"dec[{key!r}]", dec[key], ("B", "m"), dims, finite=False)
    x = V.array("x", x, ("B", "m"), dims, finite=False, dtype=out.dtype)
    xp = array_namespace(out, x)
    with np.errstate(all="ignore"):
        if config.likelihood == "bernoulli":
            return Lk.bernoulli(out, x)[0]
        if config.likelihood == "gaussian-learned":
            var = V.array("dec['var']", dec.get("var"), ("B", "m"), dims, finite=False, dtype=out.dtype)
            d = x - out
            return -0.5 * ((d * d / var + xp.log(var)).sum(axis=1) + config.m * Lk.LOG_2PI)
        if config.likelihood == "baggins" and T is None:
            raise ValueError("T (B,) from Eq. (29) is required for the baggins likelihood")
        if T is None:
            T = config.t
        elif hasattr(T, "shape") and T.ndim == 1:
            T = V.array("T", T, ("B",), dims, finite=False, dtype=out.dtype)
        else:
            T = V.scalar("T", T, positive=True)
        return Lk.gaussian(out, x, T)[0]


def likelihood_T(x, out, mu, var, config: ModelConfig, s2=None):
    """BAGGINS' per-example likelihood variance T (B,) of Eq. (29) at decoder means ``out``; None for the others.

    The one place that decides T for :func:`log_likelihood`: for ``baggins``
    it is :func:`vaetheory.objectives.baggins_T` with the posterior ``mu, var
    (B, n)`` and S^2 = ``s2`` (None: S_B^2 of Eq. (4) on the batch); the other
    likelihoods have a fixed (``t``) or decoded variance and need no T.
    """
    if config.likelihood != "baggins":
        return None
    # Shapes checked, values not: a diverged model's non-finite T passes through to its log-likelihood.
    x, out, mu, var, tau, s2, xp = O.baggins_args(x, out, mu, var, config.tau, s2, finite=False)
    return O.baggins_T_unchecked(xp, x, out, mu, var, tau, s2)


def elbo_per_example(params, x, eps, config: ModelConfig, s2=None):
    """Single-sample ELBO per example with prior N(0, S^2): Eq. (1) / Eq. (2), nats.

    ``-KL(N(mu, Sigma) | N(0, S^2)) + log p(x | z)``, z = mu + sqrt(Sigma) eps.

    ``s2 (n,)``: the prior variance.  Default: ones for ``learned`` (Eq. (1)),
    the floating prior Sigma + M_B of this batch for ``constant`` and
    ``bilbo`` (Sec. 4.3), so that the batch mean equals the training
    objective (for ``bilbo`` by the identity of Eqs. (2) and (24)).  Pass the
    training set's or the evaluation set's S^2 to evaluate a test set.
    For ``baggins`` T comes from Eq. (29) with S^2 = ``s2`` when given, and
    otherwise with S_B^2 of Eq. (4) on this batch, as in training.
    """
    x, eps, _ = _check(params, x, config, eps=eps)
    xp = array_namespace(x, eps)
    with np.errstate(all="ignore"):
        _, mu, _, _, var, _, out, t_raw = _forward(params, x, eps, config)
        learned = config.posterior == "learned"
        var_full = var if learned else xp.full(mu.shape, var, dtype=mu.dtype)
        if s2 is not None:
            s2 = V.array("s2", s2, ("n",), {"n": config.n}, finite=False, dtype=mu.dtype)
            s2_T = s2
        else:
            s2_T = None
            s2 = xp.ones(config.n, dtype=mu.dtype) if learned else O.floating_prior_unchecked(xp, mu, config.sigma2)
        # Unchecked: a diverged model's non-finite values give a non-finite ELBO, not an exception.
        kl = O.kl_eq2_unchecked(xp, mu, var_full, s2, with_var=False).value
        if config.likelihood == "baggins":
            T = likelihood_T(x, out, mu, var, config, s2_T)
            rec = Lk.gaussian(out, x, T)[0]
        elif config.likelihood == "gaussian-learned":
            rec = Lk.gaussian_learned(out, t_raw, x)[0]
        elif config.likelihood == "gaussian":
            rec = Lk.gaussian(out, x, config.t)[0]
        else:
            rec = Lk.bernoulli(out, x)[0]
        return rec - kl


def loss_and_grads(params, x, eps, config: ModelConfig, grads=None):
    """Loss -(objective) and its hand-written gradients (Eqs. (1), (2), (24), (29)-(30); Sec. 7).

    Parameters
    ----------
    params : dict of arrays from :func:`init_params`.
    x : (B, m) targets (intensities in [0, 1] or scaled data), params' dtype.
    eps : (B, n) standard-normal noise drawn by the caller; z = mu + sqrt(Sigma) eps.
    config : ModelConfig.
    grads : optional dict of arrays shaped like ``params`` to write the
        gradients into (reused across steps to avoid allocations).

    Returns
    -------
    loss : 0-d array, -(objective) averaged over the batch, nats per example.
    grads : dict, same keys, shapes and dtype as ``params``.
    aux : dict of 0-d arrays ``objective``, ``kl``, ``rec`` (batch means; for
        ``bilbo`` ``kl`` is the information term of Eq. (24)) and ``s2 (n,)``,
        the prior variance used (ones for ``learned``, Sigma + M_B otherwise).

    Nothing is clipped: a diverging model (e.g. learned T) gives a non-finite
    loss rather than an exception.
    """
    x, eps, _ = _check(params, x, config, eps=eps)
    xp = array_namespace(x, eps)
    grads = {} if grads is None else grads
    with np.errstate(all="ignore"):
        if x.ndim == 3 and x.shape[0] > 1 and apart():
            return _one_model_at_a_time(xp, params, x, eps, config, grads)
        return _loss_and_grads(xp, params, x, eps, config, grads)


_APART: list = []  # models_apart's overrides, innermost last


def apart() -> bool:
    """Whether a stack of models is computed one model at a time
    (``VAETHEORY_STACK_EXACT=1``, :func:`models_apart`; Not in the paper)."""
    return _APART[-1] if _APART else os.environ.get("VAETHEORY_STACK_EXACT", "0") == "1"


@contextlib.contextmanager
def models_apart(on: bool = True):
    """Inside the block, :func:`loss_and_grads` computes a stack one model at a time when ``on`` (Not in the paper)."""
    _APART.append(on)
    try:
        yield
    finally:
        _APART.pop()


def _one_model_at_a_time(xp, params, x, eps, config: ModelConfig, grads):
    """:func:`loss_and_grads` of a stack of K models as K lone models' (Not in the paper).

    A stack's batched kernels need not add up in a lone model's order on a
    GPU: a batched cuBLAS product may round some layer products differently
    from K separate calls, and CuPy's sum over the batch of a short bias
    gradient may too (CuPy chooses a reduction's thread layout by the
    output's contiguous length; ``validation/scripts/device/stack_parts.py`` measures
    which parts differ).  So each model computes on
    (1, ...) copies of its own arrays, of the shapes a lone model's are, and
    only its results are written into the stack: the lone model's own
    numbers, at the cost of K lone steps.
    """
    losses, auxes = [], []
    for k in range(x.shape[0]):
        one = slice(k, k + 1)
        own = config.model(k) if isinstance(config, StackConfig) else config
        loss, g_k, aux = _loss_and_grads(
            xp, {name: p[one].copy() for name, p in params.items()}, x[one].copy(), eps[one].copy(), own, {}
        )
        for name, g in g_k.items():
            if name not in grads:
                grads[name] = xp.empty_like(params[name])
            grads[name][one] = g
        losses.append(loss)
        auxes.append(aux)
    aux = {key: xp.concatenate([a[key] for a in auxes]) for key in auxes[0]}
    return xp.concatenate(losses), grads, aux


def _loss_and_grads(xp, params, x, eps, config: ModelConfig, grads):
    fwd = _forward(params, x, eps, config)
    kl, kl_value, s2 = _kl_terms(xp, fwd[1], fwd[4], x, config)
    rec, grads = _rec_and_backward(xp, params, x, eps, config, grads, fwd, kl.d_mu, kl.d_var, x.shape[-2])
    aux = _objective_aux(xp, rec, kl_value, s2)
    return -aux["objective"], grads, aux


def _objective_aux(xp, rec, kl_value, s2) -> dict:
    """The batch's objective (mean log-likelihood minus the posterior's term) and its parts, as the loss's aux."""
    rec_value = xp.mean(rec, axis=-1)
    return {"objective": rec_value - kl_value, "kl": kl_value, "rec": rec_value, "s2": s2}


def _kl_terms(xp, mu, var, x, config: ModelConfig):
    """The posterior's term of the loss on the whole batch: KL of Eq. (2) (learned and constant Sigma, the
    floating prior of Eq. (4) for the latter) or BILBO's information term of Eq. (24); its value (batch mean)
    and the prior variance S^2."""
    dt, nd = x.dtype, x.ndim
    sig_n, sig_bn = S.value(config, "sigma2", xp, dt, nd - 1), S.value(config, "sigma2", xp, dt, nd)
    if config.posterior == "learned":
        s2 = xp.ones(mu.shape[:-2] + (config.n,), dtype=mu.dtype)
        kl = O.kl_eq2_unchecked(xp, mu, var, s2, with_var=True)
        return kl, xp.mean(kl.value, axis=-1), s2
    if config.posterior == "constant":
        s2 = O.floating_prior_unchecked(xp, mu, sig_n)
        kl = O.kl_eq2_unchecked(xp, mu, sig_bn, s2, with_var=False)
        return kl, xp.mean(kl.value, axis=-1), s2
    # log Sigma where M_B overflows: each model's float64 log, as a lone model's math.log
    kl = O.bilbo_kl_unchecked(xp, mu, sig_n, log_var=S.value(config, "sigma2", xp, dt, nd - 1, math.log))
    return kl, kl.value, O.floating_prior_unchecked(xp, mu, sig_n)


def _rec_and_backward(xp, params, x, eps, config: ModelConfig, grads, fwd, kl_d_mu, kl_d_var, B: int):
    """Per-example log-likelihood (Eqs. (1), (29)-(30)) and the hand-written gradients of the loss, given the
    forward pass ``fwd`` of these rows and the posterior term's gradients ``kl_d_mu``, ``kl_d_var`` for them;
    ``B`` the whole batch's size (the loss is a mean over it).  Returns ``(rec (..., rows), grads)``."""
    dt, nd = x.dtype, x.ndim
    L, c = config.layers, S.value(config, "latent_scale", xp, dt, nd)
    learned = config.posterior == "learned"
    ehs, mu, s_raw, std, var, dhs, out, t_raw = fwd

    scale = -1.0 / B  # gradients below are of the loss = -(objective)
    g_traw = None
    rec_d_mu = rec_d_var = None
    if config.likelihood == "bernoulli":
        rec, g_out = Lk.bernoulli(out, x, scale)
    elif config.likelihood == "gaussian":
        if S.varies(config, "t"):
            rec, g_out = Lk.gaussian_models(
                out,
                x,
                S.value(config, "t", xp, dt, nd - 1),
                S.value(config, "t", xp, dt, nd - 1, Lk.log_normaliser, (config.m,)),
                S.value(config, "t", xp, dt, nd, Lk.over, (scale,)),
            )
        else:
            rec, g_out = Lk.gaussian(out, x, config.t, scale)
    elif config.likelihood == "gaussian-learned":
        rec, g_out, g_traw = Lk.gaussian_learned(out, t_raw, x, scale)
    else:
        tau, inv_tau = S.value(config, "tau", xp, dt, nd - 1), S.value(config, "tau", xp, dt, nd - 1, Lk.over, (1.0,))
        r = O.baggins_log_likelihood_unchecked(xp, x, out, mu, var, tau, config.baggins_stop_gradient, inv_tau)
        rec, g_out, rec_d_mu, rec_d_var = r.value, r.d_nu, r.d_mu, r.d_var
        g_out *= -1.0

    # ---- backward: decoder
    kW, kb = f"dec_W{L - 1}", f"dec_b{L - 1}"
    grads[kW], grads[kb], g_h = Ly.dense_backward(dhs[-1], params[kW], g_out, grads.get(kW), grads.get(kb))
    if g_traw is not None:
        grads["dec_std_W"], grads["dec_std_b"], g_h2 = Ly.dense_backward(
            dhs[-1], params["dec_std_W"], g_traw, grads.get("dec_std_W"), grads.get("dec_std_b")
        )
        g_h += g_h2
    g_z = Ly.trunk_backward(params, "dec", dhs, g_h, grads, L - 1, need_input=True)
    if not S.is_one(c):
        g_z /= c

    # ---- backward: posterior (loss = KL - rec)
    g_mu = g_z + kl_d_mu
    if rec_d_mu is not None:
        g_mu -= rec_d_mu
    if not S.is_one(c):
        g_mu *= c
    kW, kb = f"enc_W{L - 1}", f"enc_b{L - 1}"
    hidden = L > 1  # the heads' input gradient is needed only to reach hidden layers
    grads[kW], grads[kb], g_h = Ly.dense_backward(
        ehs[-1], params[kW], g_mu, grads.get(kW), grads.get(kb), need_input=hidden
    )
    if learned:
        g_var = kl_d_var if rec_d_var is None else kl_d_var - rec_d_var
        g_std = g_z * eps  # z = mu + std * eps
        g_std += 2.0 * std * g_var
        g_std *= Ly.sigmoid(s_raw)
        if not S.is_one(c):
            g_std *= c
        grads["enc_std_W"], grads["enc_std_b"], g_h2 = Ly.dense_backward(
            ehs[-1], params["enc_std_W"], g_std, grads.get("enc_std_W"), grads.get("enc_std_b"), need_input=hidden
        )
        if hidden:
            g_h += g_h2
    if hidden:
        Ly.trunk_backward(params, "enc", ehs, g_h, grads, L - 1, need_input=False)
    return rec, grads


class BatchSplit:
    """:func:`loss_and_grads` with the batch's rows split in ``parts`` blocks, one Python thread each (Sec. 7;
    Not in the paper: a means of speed on the CPU).

    Each block runs its forward pass, its likelihood and its backward on a thread of its own, with one BLAS
    thread and the element-wise kernels of :mod:`mlpvae.accel.cpu` serial in it: matrix products and Numba
    kernels release the GIL, so the blocks run side by side on the cores.  What couples the examples stays
    whole: the posterior's term (the floating prior S^2 of Eq. (4), BILBO's M_B of Eq. (24)) is computed on the
    whole batch's mu between the two phases, so the loss is the same function and every block's gradient is
    scaled by the whole batch's size; the blocks' gradients are then added.  The sums over the batch of the
    weight and bias gradients run in another order than in one piece, so the gradients equal
    :func:`loss_and_grads`'s to rounding, not bit for bit (tested to a stated tolerance).

    Only one model on NumPy is split; a stack of models, CuPy, fewer rows than ``parts``, and BAGGINS (its T of
    Eq. (29) and its gradients reach every example through S^2) run :func:`loss_and_grads` unchanged.  BLAS is
    held at one thread during the blocks and given back its count after them.
    """

    def __init__(self, parts: int):
        from concurrent.futures import ThreadPoolExecutor

        if int(parts) != parts or parts < 1:
            raise ValueError(f"parts must be a positive integer, got {parts!r}")
        self.parts = int(parts)
        self.pool = ThreadPoolExecutor(self.parts) if self.parts > 1 else None
        self.block_grads: list[dict] = [{} for _ in range(self.parts)]
        self._blas = None

    def splits(self, x, config: ModelConfig) -> bool:
        """Whether a call on ``x`` would be split (the conditions in the class docstring)."""
        lone = isinstance(x, np.ndarray) and (x.ndim == 2 or (x.ndim == 3 and x.shape[0] == 1))
        return self.parts > 1 and lone and x.shape[-2] >= self.parts and config.likelihood != "baggins"

    def __call__(self, params, x, eps, config: ModelConfig, grads=None):
        """The loss, gradients and aux of :func:`loss_and_grads` (same arguments and returns)."""
        if not self.splits(x, config):
            return loss_and_grads(params, x, eps, config, grads=grads)

        x, eps, _ = _check(params, x, config, eps=eps)
        grads = {} if grads is None else grads
        stacked = x.ndim == 3  # a stack of one model, as the trainer holds it: computed as the lone model
        if stacked:
            x, eps, params = x[0], eps[0], {name: p[0] for name, p in params.items()}
            config = config.model(0) if isinstance(config, StackConfig) else config
        B = x.shape[0]
        edges = [B * i // self.parts for i in range(self.parts + 1)]
        rows = [slice(edges[i], edges[i + 1]) for i in range(self.parts)]

        def run(f, *args):
            def one(i):
                with cpu.serial():
                    return f(i, *args)

            return list(self.pool.map(one, range(self.parts)))

        def forward(i):
            return _forward(params, x[rows[i]], eps[rows[i]], config)

        def backward(i, fwds, d_mu, d_var):
            part = rows[i]
            dv = None if d_var is None else d_var[part]
            return _rec_and_backward(
                np, params, x[part], eps[part], config, self.block_grads[i], fwds[i], d_mu[part], dv, B
            )[0]

        with np.errstate(all="ignore"), self._one_blas_thread():
            fwds = run(forward)
            mu = np.concatenate([f[1] for f in fwds])
            var = np.concatenate([f[4] for f in fwds]) if config.posterior == "learned" else fwds[0][4]
            kl, kl_value, s2 = _kl_terms(np, mu, var, x, config)
            rec = np.concatenate(run(backward, fwds, kl.d_mu, kl.d_var))
            for name, g in self.block_grads[0].items():
                shape = (1,) + g.shape if stacked else g.shape
                total = grads.get(name)
                if total is None or total.shape != shape:
                    total = grads[name] = np.empty(shape, dtype=g.dtype)
                total = total[0] if stacked else total
                np.add(g, self.block_grads[1][name], out=total)
                for other in self.block_grads[2:]:
                    total += other[name]
            aux = _objective_aux(np, rec, kl_value, s2)
        if stacked:
            aux = {key: np.asarray(v)[None] for key, v in aux.items()}
        return -aux["objective"], grads, aux

    @contextlib.contextmanager
    def _one_blas_thread(self):
        from threadpoolctl import ThreadpoolController

        if self._blas is None:
            self._blas = ThreadpoolController().select(user_api="blas")
        with self._blas.limit(limits=1):
            yield
