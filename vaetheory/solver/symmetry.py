"""The continuous symmetries of the nonparametric VAE's expected ELBO (Sec. 4) in the solver's coordinates.

A direction along which the objective is constant is a zero eigenvalue of
its Hessian that says nothing about the point: the second-order certificate
(:mod:`vaetheory.solver.certificate`) projects them out, and so does the
solver's Newton polish (:mod:`vaetheory.solver.polish`), whose steps would
otherwise wander along them.
"""

from __future__ import annotations

import numpy as np

from vaetheory.validate import array

__all__ = ["symmetry_directions"]


def symmetry_directions(mu, var, s2, *, constant: bool, rtol: float = 1e-4) -> list:
    """The continuous symmetries of the expected ELBO, Eq. (2) with decoder Eq. (6), as directions.

    The directions are in ``(mu, log var, log s2)`` at ``(mu, var, s2)``.  One latent-scale
    direction per dimension; a rotation direction for each pair of
    dimensions whose prior and posterior variances agree to ``rtol``.

    Parameters
    ----------
    mu : (N, n); var : (N, n) or, with ``constant``, (n,); s2 : (n,).
    constant : one shared variance (the coordinates hold ``n`` log variances, not ``N n``).

    Returns
    -------
    list of ``(name, (P,) direction)``.
    """
    mu = array("mu", mu, ("N", "n"))
    N, n = mu.shape
    var = array("var", var, ("n",) if constant else ("N", "n"), {"N": N, "n": n}, positive=True)
    s2 = array("s2", s2, ("n",), {"n": n}, positive=True)
    nv = n if constant else N * n
    P = N * n + nv + n
    out = []
    for k in range(n):
        v = np.zeros(P)
        v[: N * n] = (np.eye(n)[k] * mu).ravel()
        v[N * n : N * n + nv] = np.tile(np.eye(n)[k] * 2.0, nv // n)
        v[N * n + nv + k] = 2.0
        out.append((f"latent scale z{k + 1}", v))
    vv = np.broadcast_to(var, mu.shape)
    for k in range(n):
        for l in range(k + 1, n):
            close = lambda a, b: np.all(np.abs(a - b) <= rtol * np.maximum(np.abs(a), np.abs(b)))
            if close(s2[k], s2[l]) and close(vv[:, k], vv[:, l]):
                v = np.zeros(P)
                r = np.zeros((N, n))
                r[:, k], r[:, l] = -mu[:, l], mu[:, k]
                v[: N * n] = r.ravel()
                out.append((f"latent rotation z{k + 1}-z{l + 1}", v))
    return out
