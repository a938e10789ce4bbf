"""The linear-Gaussian VAE: closed-form stationary point and exact evidence.

A linear decoder ``nu(z) = W z + b`` with unit-normal likelihood and prior
``N(0, S^2)`` is probabilistic PCA with the noise variance fixed to 1
(Tipping & Bishop 1999; Lucas et al. 2019).  Its ELBO has a closed-form
stationary point where the Gaussian posterior is the true posterior, so the
ELBO, the Laplace form Eq. (16) and the exact log likelihood coincide.  Every
direction whose data variance is not above the likelihood variance collapses
(Sec. 6, "On Memorization").

Shapes: ``x (N, m)``, ``W (m, n)``, ``b (m,)``, ``V (n, m)`` (linear encoder
``mu = V (x - b)``), ``var (n,)`` (posterior variance Sigma, the same for every
example), ``s2 (n,)`` (diagonal prior variance S^2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vaetheory.validate import array, choice, scalar

__all__ = [
    "LinearVAE",
    "linear_stationary_point",
    "linear_posterior",
    "linear_elbo",
    "linear_log_likelihood",
    "linear_laplace_log_evidence",
    "linear_expected_elbo",
    "linear_expected_log_likelihood",
    "linear_optimal_expected_log_likelihood",
]

_LOG2PI = np.log(2 * np.pi)


@dataclass(frozen=True)
class LinearVAE:
    """A linear-Gaussian VAE (decoder, encoder, posterior and prior variances).

    Attributes
    ----------
    W : (m, n) decoder matrix; nu(z) = W z + b.
    b : (m,) decoder offset (the data mean at the stationary point).
    V : (n, m) encoder matrix; mu(x) = V (x - b).
    var : (n,) posterior variance Sigma (diagonal, constant over examples).
    s2 : (n,) prior variance S^2 (diagonal).
    lam : (m,) data covariance eigenvalues, descending.
    U : (m, m) matching eigenvectors (columns).
    collapsed : (n,) True where the latent direction collapsed (Sec. 6).
    """

    W: np.ndarray
    b: np.ndarray
    V: np.ndarray
    var: np.ndarray
    s2: np.ndarray
    lam: np.ndarray
    U: np.ndarray
    collapsed: np.ndarray

    @property
    def n(self) -> int:
        """Latent dimension n."""
        return self.W.shape[1]

    @property
    def m(self) -> int:
        """Data dimension m."""
        return self.W.shape[0]


def _marginal_cov(model: LinearVAE) -> np.ndarray:
    """(m, m) covariance ``W S^2 W^T + I`` of x under the linear-Gaussian model."""
    return (model.W * model.s2) @ model.W.T + np.eye(model.m)


def _model(model) -> LinearVAE:
    if not isinstance(model, LinearVAE):
        raise ValueError(f"model must be a LinearVAE (from linear_stationary_point), got {type(model).__name__}")
    return model


def _moments(x, cov, mean):
    """Return (C, b) from data ``x`` (biased covariance) or from ``cov``/``mean``."""
    if x is not None:
        if cov is not None or mean is not None:
            raise ValueError("give either x or cov (and mean), not both")
        x = array("x", x, ("N", "m"))
        b = x.mean(axis=0)
        d = x - b
        C = d.T @ d / x.shape[0]
        return (C + C.T) / 2, b
    if cov is None:
        raise ValueError("cov is required when x is not given")
    dims: dict = {}
    C = array("cov", cov, ("m", "m"), dims)
    scale = max(1.0, float(np.abs(C).max()))
    if not np.allclose(C, C.T, rtol=0, atol=1e-10 * scale):
        raise ValueError("cov must be symmetric")
    # A covariance is positive semidefinite: a zero covariance (constant data) is valid, an indefinite one is not.
    low = float(np.linalg.eigvalsh((C + C.T) / 2).min())
    if low < -1e-10 * scale:
        raise ValueError(f"cov must be positive semidefinite (a covariance), got eigenvalue {low!r}")
    b = np.zeros(C.shape[0]) if mean is None else array("mean", mean, ("m",), dims)
    return (C + C.T) / 2, b


def linear_stationary_point(x=None, *, n: int, cov=None, mean=None, var=1.0) -> LinearVAE:
    """The closed-form stationary point of the expected ELBO, Eq. (2), for a linear decoder,
    where Eqs. (11), (12) and (25) hold exactly.

    Probabilistic PCA with unit likelihood variance (Tipping & Bishop 1999):
    with data covariance ``C = U diag(lam) U^T`` (lam descending) the decoder
    columns are ``W_k = u_k sqrt((lam_k - 1) / s2_k)`` when ``lam_k > 1`` and
    ``0`` otherwise (the collapse of Sec. 6), the posterior is the true
    posterior ``Sigma = (S^-2 + W^T W)^-1``, Eq. (25), with mean
    ``mu = Sigma W^T (x - b)``, Eq. (11) exactly.

    Reading of the paper: the posterior variance is chosen and the prior
    floats, ``S^2 = Sigma + E[mu mu^T]`` (Sec. 4.3, the floating prior, which
    is Eq. (4)); this gives ``s2_k = lam_k var_k`` for active directions and
    ``s2_k = var_k`` for collapsed ones.  The ELBO is invariant to this latent
    scale, so any positive ``var`` gives the same evidence.

    Parameters
    ----------
    x : (N, m) data; its mean and biased (1/N) covariance are used, so the
        expected ELBO below is exactly the data average.  Or give ``cov``.
    n : latent dimension, ``1 <= n <= m``.
    cov : (m, m) data covariance (instead of ``x``).
    mean : (m,) data mean (with ``cov``; default zero).
    var : scalar or (n,) positive constant posterior variance Sigma.

    Returns
    -------
    LinearVAE
    """
    C, b = _moments(x, cov, mean)
    m = C.shape[0]
    n = scalar("n", n, positive=True, integer=True)
    if n > m:
        raise ValueError(f"n must be at most m = {m}, got {n}")
    var = np.broadcast_to(array("var", var, [(), ("n",)], {"n": n}, positive=True), (n,)).copy()
    lam, U = np.linalg.eigh(C)
    lam, U = lam[::-1], U[:, ::-1]
    top = lam[:n]
    collapsed = top <= 1.0
    s2 = np.where(collapsed, var, top * var)
    w = np.sqrt(np.where(collapsed, 0.0, top - 1.0) / s2)
    W = U[:, :n] * w
    V = (var * w)[:, None] * U[:, :n].T
    return LinearVAE(W=W, b=b, V=V, var=var, s2=s2, lam=lam, U=U, collapsed=collapsed)


def linear_posterior(model: LinearVAE, x, kind: str = "constant"):
    """Posterior means and variances of the linear VAE, Eq. (25) (the true posterior).

    Parameters
    ----------
    model : a :class:`LinearVAE`.
    x : (N, m) data.
    kind : ``"full"`` gives ``var (n, n)`` (the posterior covariance
        ``(S^-2 + W^T W)^-1``, diagonal in the principal frame), ``"diagonal"``
        gives per-example diagonal variances ``(N, n)``, ``"constant"`` one
        shared ``(n,)``; at the stationary point all three are the same matrix.

    Returns
    -------
    mu : (N, n) posterior means ``V (x - b)``.
    var : see ``kind``.
    """
    x = array("x", x, ("N", "m"), {"m": _model(model).m})
    choice("kind", kind, ("full", "diagonal", "constant"))
    mu = (x - model.b) @ model.V.T
    if kind == "full":
        P = np.diag(1.0 / model.s2) + model.W.T @ model.W
        return mu, np.linalg.inv(P)
    if kind == "diagonal":
        return mu, np.broadcast_to(model.var, mu.shape).copy()
    return mu, model.var.copy()


def _check_params(W, b, V, var, s2):
    dims: dict = {}
    W = array("W", W, ("m", "n"), dims)
    b = array("b", b, ("m",), dims)
    V = array("V", V, ("n", "m"), dims)
    var = array("var", var, ("n",), dims, positive=True)
    s2 = array("s2", s2, ("n",), dims, positive=True)
    return W, b, V, var, s2


def linear_elbo(x, W, b, V, var, s2):
    """Per-example ELBO, Eq. (2), of a linear encoder/decoder, in closed form.

    ``E_q |x - W z - b|^2 = |x - b - W mu|^2 + tr(W^T W Sigma)`` is exact for
    a linear decoder, so no quadrature is involved.

    Parameters
    ----------
    x : (N, m) data.
    W, b : decoder ``nu(z) = W z + b``, shapes (m, n) and (m,).
    V : (n, m) encoder, ``mu = V (x - b)``.
    var : (n,) constant diagonal posterior variance Sigma.
    s2 : (n,) diagonal prior variance S^2.

    Returns
    -------
    (N,) ELBO of each example, in nats.
    """
    W, b, V, var, s2 = _check_params(W, b, V, var, s2)
    x = array("x", x, ("N", "m"), {"m": W.shape[0]})
    d = x - b
    mu = d @ V.T
    r = d - mu @ W.T
    m = W.shape[0]
    kl = 0.5 * (np.sum(var / s2 - 1.0 - np.log(var / s2)) + np.sum(mu**2 / s2, axis=1))
    ell = -0.5 * (m * _LOG2PI + np.sum(r**2, axis=1) + np.sum((W**2).sum(axis=0) * var))
    return ell - kl


def linear_log_likelihood(model: LinearVAE, x):
    """Exact log p(x) of the linear-Gaussian model, ``N(x; b, W S^2 W^T + I)``, which Eq. (16) must equal.

    Parameters
    ----------
    model : a :class:`LinearVAE`.
    x : (N, m) data.

    Returns
    -------
    (N,) log evidence of each example.
    """
    x = array("x", x, ("N", "m"), {"m": _model(model).m})
    Cm = _marginal_cov(model)
    L = np.linalg.cholesky(Cm)
    y = np.linalg.solve(L, (x - model.b).T)
    return -0.5 * (model.m * _LOG2PI + 2 * np.sum(np.log(np.diag(L))) + np.sum(y**2, axis=0))


def linear_laplace_log_evidence(model: LinearVAE, x):
    """Eq. (16) at ``z = mu`` for the linear decoder (exact there).

    ``-1/2 (m log 2 pi + |S^-1 mu|^2 + |x - nu(mu)|^2 + log|J S^2 J^T + I|)``
    with ``J = W``, using Sylvester's identity ``log|I_n + S J^T J S|``.

    Parameters
    ----------
    model : a :class:`LinearVAE`.
    x : (N, m) data.

    Returns
    -------
    (N,) the Eq. (16) value for each example.
    """
    x = array("x", x, ("N", "m"), {"m": _model(model).m})
    mu = (x - model.b) @ model.V.T
    r = x - model.b - mu @ model.W.T
    s = np.sqrt(model.s2)
    _, logdet = np.linalg.slogdet(np.eye(model.n) + (s[:, None] * (model.W.T @ model.W)) * s[None, :])
    return -0.5 * (model.m * _LOG2PI + np.sum(mu**2 / model.s2, axis=1) + np.sum(r**2, axis=1) + logdet)


def linear_expected_elbo(cov, mean, W, b, V, var, s2) -> float:
    """Expected ELBO, Eq. (2), over data ``x ~ N(mean, cov)`` for a linear encoder/decoder, in closed form.

    With ``d = x - b``, ``D = E[d d^T] = cov + (mean - b)(mean - b)^T``:
    ``E|d - W V d|^2 = tr((I - W V) D (I - W V)^T)`` and
    ``E|S^-1 mu|^2 = tr(S^-2 V D V^T)``.  Used to check stationarity of
    :func:`linear_stationary_point` by finite differences over every parameter.

    Parameters
    ----------
    cov : (m, m) data covariance; mean : (m,) data mean.
    W, b, V, var, s2 : as in :func:`linear_elbo`.

    Returns
    -------
    float, the expected ELBO in nats.
    """
    W, b, V, var, s2 = _check_params(W, b, V, var, s2)
    C, mean = _moments(None, cov, mean)
    m = W.shape[0]
    delta = mean - b
    D = C + np.outer(delta, delta)
    R = np.eye(m) - W @ V
    res = np.trace(R @ D @ R.T)
    mumu = np.diag(V @ D @ V.T)
    kl = 0.5 * np.sum(var / s2 - 1.0 - np.log(var / s2) + mumu / s2)
    ell = -0.5 * (m * _LOG2PI + res + np.sum((W**2).sum(axis=0) * var))
    return float(ell - kl)


def linear_expected_log_likelihood(model: LinearVAE, cov, mean=None) -> float:
    """Exact expected log evidence ``E_x log N(x; b, W S^2 W^T + I)`` over ``x ~ N(mean, cov)`` (Eq. (16), expected).

    Parameters
    ----------
    model : a :class:`LinearVAE`.
    cov : (m, m) data covariance; mean : (m,) data mean (default zero).

    Returns
    -------
    float, nats per example.
    """
    _model(model)
    C, mean = _moments(None, cov, mean)
    Cm = _marginal_cov(model)
    delta = mean - model.b
    _, logdet = np.linalg.slogdet(Cm)
    return float(-0.5 * (model.m * _LOG2PI + logdet + np.trace(np.linalg.solve(Cm, C + np.outer(delta, delta)))))


def linear_optimal_expected_log_likelihood(lam, n: int) -> float:
    """Known answer for the maximum expected log evidence, Eq. (16), with n latent dimensions.

    The collapse of Sec. 6:

    The model covariance matches the data on the top ``n`` eigen-directions
    whose variance exceeds 1 and is the unit likelihood variance elsewhere:
    ``-1/2 (m log 2 pi + sum_{k active} (log lam_k + 1) + sum_{k other} lam_k)``.

    Parameters
    ----------
    lam : (m,) data covariance eigenvalues (any order).
    n : latent dimension.

    Returns
    -------
    float, nats per example.
    """
    lam = np.sort(array("lam", lam, ("m",), positive=True))[::-1]
    n = scalar("n", n, positive=True, integer=True)
    active = np.zeros(lam.shape, bool)
    active[:n] = lam[:n] > 1.0
    return float(-0.5 * (lam.size * _LOG2PI + np.sum(np.log(lam[active]) + 1.0) + np.sum(lam[~active])))
