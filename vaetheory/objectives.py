"""Batch objectives of Secs. 4.3, 4.4 and 5.1, forward and backward, on any array module.

These are the functions the MLP VAE in :mod:`mlpvae` trains with: each takes NumPy
or CuPy arrays (float32 or float64) and returns arrays of the same kind, with
the value and its hand-written gradient (vector-Jacobian product) side by side.

Conventions shared by every function here:

* ``mu (B, n)`` posterior means of a batch of ``B`` examples; ``sigma2`` the
  posterior variance Sigma (diagonal): a positive scalar, an ``(n,)`` array or,
  where a function says so, a per-example ``(B, n)`` array (learned variances).
* ``s2 (n,)`` the diagonal prior variance S^2; ``x, nu (B, m)`` data and
  decoder means; ``tau`` the information factor of Eq. (29).
* Every gradient is the gradient of the *batch objective*: the batch average
  ``E_B[value]`` for per-example values ``(B,)``, or the value itself when it
  is a batch scalar (0-d).  So the gradients of the floating-prior KL and of
  BILBO are directly comparable, and the batch coupling introduced by
  ``M_B`` and ``S_B^2`` is included.
* The public functions check their inputs (``vaetheory.validate``): shapes,
  a batch of at least one example, finite values, positive variances and
  ``tau``; a violation raises ``ValueError`` naming the argument.

The ``*_unchecked`` kernels (:func:`floating_prior_unchecked`,
:func:`kl_eq2_unchecked`, :func:`bilbo_kl_unchecked`, :func:`baggins_T_unchecked`,
:func:`baggins_log_likelihood_unchecked`) are the same computations WITHOUT
any argument check, with ``xp`` explicit, for the trainer's hot path: a diverging
trainer sees a non-finite loss, not an exception, and CuPy never synchronises.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from vaetheory import validate as V
from vaetheory.xp import array_namespace

__all__ = [
    "Objective",
    "floating_prior",
    "kl_learned",
    "kl_constant",
    "bilbo_kl",
    "baggins_T",
    "baggins_log_likelihood",
    "bilbo_baggins",
    "floating_prior_unchecked",
    "kl_eq2_unchecked",
    "bilbo_kl_unchecked",
    "baggins_T_unchecked",
    "baggins_log_likelihood_unchecked",
    "baggins_args",
]

_LOG_2PI = math.log(2.0 * math.pi)


class Objective(NamedTuple):
    """A value with the gradients of the batch objective it defines.

    ``value`` is per example ``(B,)`` (the batch objective is its mean) or a
    batch scalar (0-d).  ``d_mu (B, n)``, ``d_var (B, n)`` and ``d_nu (B, m)``
    are gradients of the batch objective; ``None`` where the variable is held
    constant or does not enter.
    """

    value: Any
    d_mu: Any
    d_var: Any = None
    d_nu: Any = None


# argument checks (see the module docstring)
def _mu(mu, dims, finite=True, dtype=None):
    mu = V.array("mu", mu, ("B", "n"), dims, finite=finite, dtype=dtype)
    if finite and mu.shape[0] == 0:
        raise ValueError("mu must hold at least one example (B >= 1), got shape " + str(tuple(mu.shape)))
    return mu


def _variance(name, v, dims, dtype, per_example: bool, finite=True):
    """Sigma as a scalar, ``(n,)`` or (if allowed) ``(B, n)`` array of ``dtype``; positive when ``finite``."""
    if not hasattr(v, "shape") or getattr(v, "ndim", 0) == 0:
        return V.scalar(name, v, positive=True)
    shapes = [("n",), ("B", "n")] if per_example else [("n",)]
    return V.array(name, v, shapes, dims, finite=finite, positive=finite, dtype=dtype)


def _tau(tau):
    return V.scalar("tau", tau, positive=True)


# unchecked kernels (trusted inputs, explicit xp).  They also take a leading models axis K (``mu (K, B, n)``,
# ``s2 (K, n)``, per-example values ``(K, B)``, batch scalars ``(K,)``) for the stacked trainer
# (mlpvae.training.train.train_many): batch reductions run over axis -2, sums over n or m over axis -1, and
# per-model vectors broadcast through ``[..., None, :]``, so model k of a stack gets exactly its lone numbers.
def _per_example(var, mu) -> bool:
    return getattr(var, "ndim", 0) == mu.ndim


def floating_prior_unchecked(xp, mu, var):
    """Eq. (4) on a batch, S^2 = E_B[Sigma + diag(mu)^2], unchecked (see :func:`floating_prior`).

    ``var`` is a scalar, ``(n,)`` or per-example ``(B, n)``; takes the models axis K.
    """
    s2 = xp.mean(mu * mu, axis=-2)
    if _per_example(var, mu):
        s2 += xp.mean(var, axis=-2)
    else:
        s2 += var
    return s2


def kl_eq2_unchecked(xp, mu, var, s2, with_var: bool) -> Objective:
    """Per-example KL(N(mu, var) | N(0, s2)) of Eq. (2) and its batch-mean gradients, unchecked.

    The kernel of :func:`kl_learned` (``with_var=True``: ``d_var`` too) and
    :func:`kl_constant`; takes the models axis K.
    """
    B = mu.shape[-2]
    s2 = s2[..., None, :]  # broadcast over the batch
    ratio = var / s2  # (1, n), (B, n) or with the models axis in front
    # 1/2 sum_k (var/s2 - 1 - log(var/s2)) + 1/2 |mu|^2_{s2^-1}
    per_k = 0.5 * (ratio - 1.0 - xp.log(ratio))
    value = 0.5 * xp.sum(mu * mu / s2, axis=-1)
    if _per_example(var, mu):
        value += xp.sum(per_k, axis=-1)
    else:
        value += xp.sum(per_k * xp.ones(mu.shape[-1], dtype=mu.dtype), axis=-1)
    d_mu = mu / (B * s2)
    d_var = (0.5 / B) * (1.0 / s2 - 1.0 / var) if with_var else None
    return Objective(value, d_mu, d_var)


def _baggins_pieces(xp, x, nu, mu, var, tau, s2):
    """Residual r (B,), S^2 (n,), tr(Sigma^-1 S^2) (B,) and T (B,) of Eq. (29)."""
    d = x - nu
    r = xp.sum(d * d, axis=-1)
    if s2 is None:
        s2 = floating_prior_unchecked(xp, mu, var)
    if _per_example(var, mu):
        trace = xp.sum(s2[..., None, :] / var, axis=-1)
    else:
        trace = xp.sum(s2 / var, axis=-1)[..., None] * xp.ones(mu.shape[-2], dtype=mu.dtype)
    T = (tau * r) / trace
    return d, r, s2, trace, T


# public functions
def floating_prior(mu, sigma2):
    """Floating prior S^2 = Sigma + M_B with M_B = E_B[diag(mu)^2]: Eq. (4) on a batch.

    The "floating prior trick" of Sec. 4.3: Sigma is fixed and the prior floats.

    Parameters
    ----------
    mu : (B, n) posterior means of the batch.
    sigma2 : posterior variance Sigma: positive scalar, (n,) or (B, n); with a
        per-example (B, n) Sigma this is Eq. (4)'s diagonal, E_B[Sigma + diag(mu)^2].

    Returns
    -------
    s2 : (n,) the diagonal prior variance S^2, same array type and dtype as ``mu``.
    """
    dims: dict = {}
    mu = _mu(mu, dims)
    var = _variance("sigma2", sigma2, dims, mu.dtype, per_example=True)
    return floating_prior_unchecked(array_namespace(mu), mu, var)


def kl_learned(mu, var, s2=None):
    """KL of a learned posterior from the prior N(0, S^2), by default S = I: Eq. (1) with Eq. (2)'s KL.

    Parameters
    ----------
    mu, var : (B, n) posterior means and (learned) diagonal variances Sigma.
    s2 : (n,) prior variance S^2, held constant; default ones (the standard
        VAE's N(0, I) prior of Eq. (1)).

    Returns
    -------
    Objective
        ``value (B,)`` per-example KL(N(mu, Sigma) | N(0, I)) in nats;
        ``d_mu, d_var (B, n)`` gradients of the batch mean ``E_B[value]``.
    """
    dims: dict = {}
    mu = _mu(mu, dims)
    var = V.array("var", var, ("B", "n"), dims, positive=True, dtype=mu.dtype)
    xp = array_namespace(mu, var)
    if s2 is None:
        s2 = xp.ones(mu.shape[1], dtype=mu.dtype)
    else:
        s2 = V.array("s2", s2, ("n",), dims, positive=True, dtype=mu.dtype)
    return kl_eq2_unchecked(xp, mu, var, s2, with_var=True)


def kl_constant(mu, sigma2, s2):
    """KL of a constant-variance posterior from N(0, S^2), S^2 held constant: Eq. (2).

    The "constant Sigma" method of Sec. 4.3 evaluates Eq. (2) with the floating
    prior S^2 = Sigma + M_B (:func:`floating_prior`) computed on the batch and
    then held constant within the step: no gradient flows through ``s2``.

    Parameters
    ----------
    mu : (B, n) posterior means.
    sigma2 : constant posterior variance Sigma, positive scalar or (n,).
    s2 : (n,) prior variance S^2 (treated as a constant).

    Returns
    -------
    Objective
        ``value (B,)`` per-example KL in nats; ``d_mu (B, n)`` gradient of
        ``E_B[value]`` with ``s2`` fixed; ``d_var`` is ``None``.
    """
    dims: dict = {}
    mu = _mu(mu, dims)
    var = _variance("sigma2", sigma2, dims, mu.dtype, per_example=False)
    s2 = V.array("s2", s2, ("n",), dims, positive=True, dtype=mu.dtype)
    return kl_eq2_unchecked(array_namespace(mu, s2), mu, var, s2, with_var=False)


def bilbo_kl(mu, sigma2):
    """The information term of BILBO, 1/2 log|I + Sigma^-1 M_B| = 1/2 sum_k log1p(M_B,k / Sigma_k): Eq. (24).

    BILBO = -bilbo_kl + E_B[E_q[log p(x|z)]] (Eq. (24)).  The gradient goes
    through M_B = E_B[diag(mu)^2]; it equals the gradient of the batch mean of
    :func:`kl_constant` with S^2 = Sigma + M_B held fixed, because that S^2 is
    the stationary prior of Eqs. (3)-(4) (the S^2 derivative vanishes there).

    Parameters
    ----------
    mu : (B, n) posterior means.
    sigma2 : constant posterior variance Sigma, positive scalar or (n,).

    Returns
    -------
    Objective
        ``value`` 0-d, in nats (non-negative); ``d_mu (B, n)`` its gradient.
    """
    dims: dict = {}
    mu = _mu(mu, dims)
    var = _variance("sigma2", sigma2, dims, mu.dtype, per_example=False)
    return bilbo_kl_unchecked(array_namespace(mu), mu, var, host_check=True)


def bilbo_kl_unchecked(xp, mu, var, *, host_check=None, log_var=None):
    """BILBO's information term of Eq. (24) and its gradient, unchecked (see :func:`bilbo_kl`); takes the models axis
    K (``log_var``: log Sigma, default from ``var``).  Overflow of M_B or M_B / Sigma is detected on the host, then
    recomputed safely; by default (``host_check=None``) only on NumPy: no CuPy synchronisation or extra kernels."""
    B = mu.shape[-2]
    with np.errstate(over="ignore"):  # an overflow is handled below
        M = xp.mean(mu * mu, axis=-2)
        ratio = M / var
        value = 0.5 * xp.sum(xp.log1p(ratio), axis=-1)
        d_mu = mu / (B * (var + M)[..., None, :])
    if not (xp is np if host_check is None else host_check) or bool(xp.all(xp.isfinite(ratio))):
        return Objective(value, d_mu)
    return _bilbo_kl_overflow_safe(xp, mu, var, ratio, M, value, d_mu, log_var)


def _bilbo_kl_overflow_safe(xp, mu, var, ratio, M, value, d_mu, log_var=None):
    """Eq. (24) where M_B or M_B / Sigma overflows: M_B = s^2 E_B[(mu / s)^2], s = max_B |mu|, in logs:
    log1p(M_B / Sigma) = logaddexp(0, log M_B - log Sigma), mu / (B (Sigma + M_B)) = (mu / s) / (B (Sigma / s
    + s E_B[(mu / s)^2])).  Entries that did not overflow keep the plain values; non-finite mu stays non-finite."""
    B = mu.shape[-2]
    s = xp.max(xp.abs(mu), axis=-2, keepdims=True)
    s = xp.where(s > 0, s, 1.0)
    u = mu / s
    Mu = xp.mean(u * u, axis=-2)
    s1 = s[..., 0, :]
    log_var = (xp.log(var) if hasattr(var, "shape") else math.log(var)) if log_var is None else log_var
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        alt = xp.logaddexp(0.0, 2.0 * xp.log(s1) + xp.log(Mu) - log_var)
        plain = xp.log1p(ratio)
        terms = xp.where(xp.isfinite(ratio) | xp.isnan(alt), plain, alt)
        var_b = var[..., None, :] if getattr(var, "ndim", 0) >= 1 else var  # beside s (..., 1, n)
        d_alt = u / (B * (var_b / s + (s1 * Mu)[..., None, :]))
    value = 0.5 * xp.sum(terms, axis=-1)
    d_mu = xp.where(xp.isfinite(var + M)[..., None, :] | xp.isnan(d_alt), d_mu, d_alt)
    return Objective(value, d_mu)


def baggins_T(x, nu, mu, var, tau, s2=None):
    """Per-example isotropic likelihood variance T = tau |x - nu|^2 / tr(Sigma^-1 S^2): Eq. (29).

    Parameters
    ----------
    x, nu : (B, m) data and decoder means nu(z).
    mu : (B, n) posterior means (used for S_B^2).
    var : Sigma: positive scalar, (n,) or per-example (B, n).
    tau : information factor tau > 0.
    s2 : (n,) S^2; default S_B^2 from Eq. (4) on the batch (:func:`floating_prior`).

    Returns
    -------
    T : (B,) the scalar t_b with T_b = t_b I_m.
    """
    x, nu, mu, var, tau, s2, xp = baggins_args(x, nu, mu, var, tau, s2)
    return baggins_T_unchecked(xp, x, nu, mu, var, tau, s2)


def baggins_T_unchecked(xp, x, nu, mu, var, tau, s2=None):
    """Eq. (29)'s T (B,), unchecked (see :func:`baggins_T`); ``s2`` None for S_B^2 of Eq. (4) on the batch."""
    return _baggins_pieces(xp, x, nu, mu, var, tau, s2)[-1]


def baggins_args(x, nu, mu, var, tau, s2=None, *, finite=True):
    """Check the arguments of Eqs. (29)-(30); return (x, nu, mu, var, tau, s2, xp) in the dtype of ``x``.

    Shapes always; with ``finite`` also finite values, positive variances and B >= 1
    (``finite=False``: a diverged model's non-finite values pass through)."""
    dims: dict = {}
    x = V.array("x", x, ("B", "m"), dims, finite=finite)
    nu = V.array("nu", nu, ("B", "m"), dims, finite=finite, dtype=x.dtype)
    mu = _mu(mu, dims, finite=finite, dtype=x.dtype)
    var = _variance("var", var, dims, x.dtype, per_example=True, finite=finite)
    if s2 is not None:
        s2 = V.array("s2", s2, ("n",), dims, finite=finite, positive=finite, dtype=x.dtype)
    return x, nu, mu, var, _tau(tau), s2, array_namespace(x, nu, mu)


def baggins_log_likelihood(x, nu, mu, var, tau, stop_gradient=False):
    """Gaussian log-likelihood log N(x; nu, T I) with BAGGINS' T from Eq. (29) (Eqs. (29)-(30)).

    With T from Eq. (29), |x - nu|^2 / T = tr(Sigma^-1 S_B^2) / tau, so
    ``log p = -1/2 (m log(2 pi T) + tr(Sigma^-1 S_B^2) / tau)``; averaged over
    the batch and added to -:func:`bilbo_kl` this is Eq. (30).  S_B^2 is Eq. (4)
    on the batch (:func:`floating_prior`).

    Reading of the paper: Eq. (30) is optimised as written, so by default the
    gradient flows through T (through the residual and through S_B^2, which
    couples the batch).  ``stop_gradient=True`` is the variant that treats T
    as a constant within the step (gradient of ``-|x - nu|^2 / (2T)`` only).

    Parameters
    ----------
    x, nu : (B, m) data and decoder means at the sampled z.
    mu : (B, n) posterior means.
    var : Sigma: positive scalar, (n,) or per-example learned (B, n).
    tau : information factor tau > 0.
    stop_gradient : bool, hold T constant in the gradient.

    Returns
    -------
    Objective
        ``value (B,)`` log p(x|z) in nats; ``d_nu (B, m)``, ``d_mu (B, n)`` and
        (for a (B, n) ``var``) ``d_var (B, n)``: gradients of ``E_B[value]``;
        with ``stop_gradient`` ``d_mu`` and ``d_var`` are zero arrays / ``None``.
    """
    x, nu, mu, var, tau, _, xp = baggins_args(x, nu, mu, var, tau, None)
    return baggins_log_likelihood_unchecked(xp, x, nu, mu, var, tau, bool(stop_gradient))


def baggins_log_likelihood_unchecked(xp, x, nu, mu, var, tau, stop_gradient, inv_tau=None):
    """log N(x; nu, T I) with T from Eq. (29) and its gradients, unchecked (see :func:`baggins_log_likelihood`).

    Takes the models axis K; ``tau`` and ``inv_tau`` (default ``1 / tau``) may then be each model's ``(K, 1)``.
    """
    inv_tau = 1.0 / tau if inv_tau is None else inv_tau
    B, m = x.shape[-2:]
    per_example_var = _per_example(var, mu)
    d, r, s2, trace, T = _baggins_pieces(xp, x, nu, mu, var, tau, None)
    value = -0.5 * (m * (_LOG_2PI + xp.log(T)) + trace / tau)
    if stop_gradient:
        # d/dnu of -|x - nu|^2 / (2T) with T fixed, averaged over the batch
        d_nu = d * (1.0 / (B * T))[..., None]
        return Objective(value, xp.zeros_like(mu), xp.zeros_like(mu) if per_example_var else None, d_nu)
    # value_b = -1/2 (m log r_b - m log trace_b + trace_b / tau) + const
    d_nu = d * (m / (B * r))[..., None]
    g_trace = (0.5 / B) * (m / trace - inv_tau)  # d E_B[value] / d trace_b
    if per_example_var:
        G = xp.sum(g_trace[..., None] / var, axis=-2)[..., None, :]  # d / d s2_k
        d_var = G / B - g_trace[..., None] * s2[..., None, :] / (var * var)
        d_mu = mu * ((2.0 / B) * G)
        return Objective(value, d_mu, d_var, d_nu)
    G = xp.sum(g_trace, axis=-1)[..., None, None] / var
    d_mu = mu * ((2.0 / B) * G)
    return Objective(value, d_mu, None, d_nu)


def bilbo_baggins(x, nu, mu, sigma2, tau, stop_gradient=False):
    """BILBO with BAGGINS likelihood variances, BILBO_BAGGINS: Eq. (30) (with Eqs. (24) and (29)).

    ``-1/2 (log|I + Sigma^-1 M_B| + tr(I + Sigma^-1 M_B) / tau + E_B[log|2 pi T|])``
    with ``T`` from Eq. (29) per example (``log|2 pi T| = m log(2 pi t_b)``) and
    z ~ N(mu, Sigma) sampled independently per example (``nu = nu(z)``).  The
    gradient goes through T as written; ``stop_gradient=True`` holds T fixed
    (see :func:`baggins_log_likelihood`).

    Parameters
    ----------
    x, nu : (B, m) data and decoder means.
    mu : (B, n) posterior means.
    sigma2 : constant posterior variance Sigma, positive scalar or (n,).
    tau : information factor tau > 0.
    stop_gradient : bool, hold T constant in the gradient.

    Returns
    -------
    Objective
        ``value`` 0-d (to be maximised), ``d_mu (B, n)``, ``d_nu (B, m)``.
    """
    dims: dict = {}
    x = V.array("x", x, ("B", "m"), dims)
    nu = V.array("nu", nu, ("B", "m"), dims, dtype=x.dtype)
    mu = _mu(mu, dims, dtype=x.dtype)
    var = _variance("sigma2", sigma2, dims, x.dtype, per_example=False)
    tau = _tau(tau)
    xp = array_namespace(x, nu, mu)
    B, m = x.shape
    n = mu.shape[1]
    info = xp.mean(mu * mu, axis=0) / var  # diag(Sigma^-1 M_B)
    *_, T = _baggins_pieces(xp, x, nu, mu, var, tau, None)
    value = -0.5 * (xp.sum(xp.log1p(info)) + (n + xp.sum(info)) / tau + m * xp.mean(_LOG_2PI + xp.log(T)))
    kl = bilbo_kl_unchecked(xp, mu, var, host_check=True)
    rec = baggins_log_likelihood_unchecked(xp, x, nu, mu, var, tau, bool(stop_gradient))
    return Objective(value, rec.d_mu - kl.d_mu, None, rec.d_nu)
